//! Which daemons an operator command acts on: the key dirs under the runtime dir, and the
//! `--all` / `--root DIR` / `-- CMD...` selection shared by `shoal stop`, `restart` and `logs`.
//!
//! A key dir is found by its name (16 lowercase hex characters) and described by its
//! `meta.json`. The meta file is informative only: it says which root and command the dir
//! belongs to, never whether a daemon is alive there (only the socket answering says that).
//! A dir without a readable `meta.json` (a daemon still starting, or a damaged dir) cannot be
//! matched by root or command; `shoal status` still lists it.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use shoal_ipc::{DaemonMeta, DaemonPaths, RuntimeDirSource};

/// The runtime dir, resolved like `shoal daemon` and `shoal proxy` resolve it: `SHOAL_RUNTIME_DIR`
/// from the environment or the config file, else the default for the uid.
pub(crate) fn runtime_dir() -> anyhow::Result<(PathBuf, RuntimeDirSource)> {
    let configured = crate::config::var("SHOAL_RUNTIME_DIR")?;
    Ok(shoal_ipc::resolve_runtime_dir(
        |name| {
            (name == "SHOAL_RUNTIME_DIR")
                .then(|| configured.clone())
                .flatten()
        },
        nix::unistd::geteuid().as_raw(),
    ))
}

/// One key dir found under the runtime dir.
#[derive(Debug)]
pub(crate) struct KeyDir {
    /// The key id (the dir's name).
    pub(crate) key: String,
    /// Its files.
    pub(crate) paths: DaemonPaths,
    /// Its `meta.json`, or why it could not be read.
    pub(crate) meta: Result<DaemonMeta, String>,
}

/// Every key dir under `runtime_dir`, sorted by key. A missing runtime dir means no daemon has
/// run yet: an empty list, not an error.
pub(crate) fn key_dirs(runtime_dir: &Path) -> anyhow::Result<Vec<KeyDir>> {
    let entries = match std::fs::read_dir(runtime_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("list the runtime dir {}", runtime_dir.display()));
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("list the runtime dir {}", runtime_dir.display()))?;
        let Some(key) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Only key dirs: temp files and anything else a user put there are not daemons. A
        // symlink is never followed (`file_type` does not follow it).
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !is_dir || !is_key_id(&key) {
            continue;
        }
        let paths = DaemonPaths::in_dir(entry.path());
        let meta = DaemonMeta::read(&paths.meta).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => "no meta.json".to_owned(),
            _ => format!("unreadable meta.json: {error}"),
        });
        dirs.push(KeyDir { key, paths, meta });
    }
    dirs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(dirs)
}

fn is_key_id(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Which daemons `stop`, `restart` and `logs` act on.
///
/// Shown in each command's help through `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SelectionArgs {
    /// Every daemon of this user
    #[arg(long, conflicts_with_all = ["root", "command"])]
    all: bool,

    /// The daemons serving this project root [default: the git top level of the current
    /// directory, else the current directory]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Only the daemon(s) serving exactly this server command line (as given to `shoal proxy`)
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// A resolved selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Every daemon.
    All,
    /// The daemons of one canonical root, optionally only those serving one command line.
    Root {
        /// The canonical project root, as `meta.json` spells it.
        root: String,
        /// The exact backend argv, when given.
        command: Option<Vec<String>>,
    },
}

impl SelectionArgs {
    /// Resolve `--root` (canonically, like `shoal proxy` does, so that the same spelling picks
    /// the same daemons) or the current project root.
    pub(crate) fn resolve(&self) -> anyhow::Result<Selection> {
        if self.all {
            return Ok(Selection::All);
        }
        let cwd = std::env::current_dir().context("read the current directory")?;
        let root = crate::root::project_root(self.root.as_deref(), &cwd).with_context(|| {
            format!(
                "use {} as the project root",
                self.root.as_deref().unwrap_or(&cwd).display()
            )
        })?;
        let text = |value: &std::ffi::OsStr| value.to_string_lossy().into_owned();
        Ok(Selection::Root {
            root: text(root.as_os_str()),
            command: (!self.command.is_empty())
                .then(|| self.command.iter().map(|arg| text(arg)).collect()),
        })
    }
}

impl Selection {
    /// Whether the daemon described by `meta` is selected.
    pub(crate) fn matches(&self, meta: &DaemonMeta) -> bool {
        match self {
            Selection::All => true,
            Selection::Root { root, command } => {
                meta.root == *root && command.as_ref().is_none_or(|argv| meta.argv == *argv)
            }
        }
    }

    /// The selected dirs, in `dirs` order; a dir without meta is selected by `--all` only.
    pub(crate) fn apply(&self, dirs: Vec<KeyDir>) -> Vec<KeyDir> {
        dirs.into_iter()
            .filter(|dir| match &dir.meta {
                Ok(meta) => self.matches(meta),
                Err(_) => *self == Selection::All,
            })
            .collect()
    }

    /// What was asked for, for messages: `daemons for /p`, `daemons for /p running npx -y x`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Selection::All => "daemons".to_owned(),
            Selection::Root {
                root,
                command: None,
            } => format!("daemons for {root}"),
            Selection::Root {
                root,
                command: Some(argv),
            } => format!(
                "daemons for {root} running `{}`",
                crate::status::command_line(argv)
            ),
        }
    }

    /// The message for "nothing matched", with what the user can do next.
    pub(crate) fn none_matched(&self) -> String {
        let hint = match self {
            Selection::All => "daemons start with the first `shoal proxy` of a project",
            Selection::Root { .. } => {
                "`shoal status` lists every daemon; pick one with --root DIR [-- CMD...], or use --all"
            }
        };
        format!("find {}: none found; {hint}", self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(root: &str, argv: &[&str]) -> DaemonMeta {
        DaemonMeta {
            pid: 1,
            version: "0".into(),
            protocol: 1,
            key: "0123456789abcdef".into(),
            root: root.into(),
            argv: argv.iter().map(|arg| (*arg).to_owned()).collect(),
            socket: String::new(),
            started_at_unix_ms: 0,
            idle_timeout_ms: None,
            exited: None,
        }
    }

    #[test]
    fn matches_by_root_then_exact_command() {
        let root = |command: Option<&[&str]>| Selection::Root {
            root: "/p".into(),
            command: command.map(|argv| argv.iter().map(|arg| (*arg).to_owned()).collect()),
        };
        let served = meta("/p", &["npx", "-y", "server"]);
        assert!(Selection::All.matches(&served));
        assert!(root(None).matches(&served));
        assert!(root(Some(&["npx", "-y", "server"])).matches(&served));
        assert!(
            !root(Some(&["npx", "-y"])).matches(&served),
            "a prefix is not the command"
        );
        assert!(
            !root(Some(&["npx -y server"])).matches(&served),
            "argv, not a joined string"
        );
        assert!(
            !root(None).matches(&meta("/p/sub", &["npx"])),
            "roots match exactly"
        );
        assert!(!root(None).matches(&meta("/", &["npx"])));
    }

    #[test]
    fn key_ids_only() {
        assert!(is_key_id("0123456789abcdef"));
        assert!(!is_key_id("0123456789ABCDEF"));
        assert!(!is_key_id("0123456789abcde"));
        assert!(!is_key_id(".0123456789abcde"));
    }
}
