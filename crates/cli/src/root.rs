//! The project root: `--root`, else the git top level of the working directory, else the working
//! directory; always canonical, so that `/work/p`, `/work/./p` and a symlink to it share a daemon.

use std::io;
use std::path::{Path, PathBuf};

/// Resolve the project root from an optional `--root` and the working directory.
pub(crate) fn project_root(root: Option<&Path>, cwd: &Path) -> io::Result<PathBuf> {
    match root {
        Some(root) => std::fs::canonicalize(cwd.join(root)),
        None => {
            let cwd = std::fs::canonicalize(cwd)?;
            Ok(git_top_level(&cwd).unwrap_or(cwd))
        }
    }
}

/// The nearest ancestor of `dir` (itself included) holding a `.git` directory or file (a
/// worktree or submodule has a `.git` file). No `git` process: it must work where git is not
/// installed, and it runs on every session start.
fn git_top_level(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|ancestor| ancestor.join(".git").symlink_metadata().is_ok())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_git_top_level_else_the_directory_itself() {
        let base = std::env::temp_dir().join(format!("shoal-root-{}", std::process::id()));
        let nested = base.join("repo/src/deep");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::create_dir_all(base.join("repo/.git")).unwrap();
        let repo = std::fs::canonicalize(base.join("repo")).unwrap();
        assert_eq!(project_root(None, &nested).unwrap(), repo);
        assert_eq!(
            project_root(Some(Path::new("src")), &repo).unwrap(),
            repo.join("src"),
            "--root wins, relative to the working directory"
        );
        let plain = base.join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        // The temp dir is in no repository, so a plain directory is its own root.
        assert_eq!(
            project_root(None, &plain).unwrap(),
            std::fs::canonicalize(&plain).unwrap()
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
