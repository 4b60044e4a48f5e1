//! Replacing a host's config file: backed up, atomic, and never over a write someone else made
//! since it was read.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

/// Replace the file at `path` (the file a symlink points to, so that dotfile managers keep their
/// link) with `new`, if it still holds `old`; return where its previous text was copied.
///
/// The copy (`<file>.shoal-backup`, or `.shoal-backup.N` when that exists) and the new file are each written to a temporary file in the
/// same directory, flushed and renamed over, with the file's permission bits: a reader (the host,
/// starting) sees the old file or the new one, never a part. A host may still write the file
/// between the check and the rename; the window is a few system calls, and hosts write their
/// config rarely.
pub(crate) fn replace(path: &Path, old: &str, new: &str) -> anyhow::Result<PathBuf> {
    let shown = path.display();
    let target = std::fs::canonicalize(path).with_context(|| format!("write {shown}"))?;
    let mode = std::fs::metadata(&target)
        .with_context(|| format!("write {shown}"))?
        .permissions()
        .mode()
        & 0o7777;
    let now = std::fs::read_to_string(&target).with_context(|| format!("write {shown}"))?;
    if now != old {
        return Err(anyhow!(
            "write {shown}: it changed while shoal install ran (a host wrote it?); nothing was \
             written to it; run shoal install again"
        ));
    }
    let backup = free_backup_path(&target);
    atomic_write(&backup, old, mode).with_context(|| format!("back up {shown}"))?;
    atomic_write(&target, new, mode).with_context(|| format!("write {shown}"))?;
    Ok(backup)
}

/// `<file>.shoal-backup`, else the first free `<file>.shoal-backup.N`: a backup is never
/// overwritten, so the text from before the first `--write` stays however often it runs.
fn free_backup_path(target: &Path) -> PathBuf {
    let mut first = target.as_os_str().to_owned();
    first.push(".shoal-backup");
    let first = PathBuf::from(first);
    let taken = |path: &Path| path.symlink_metadata().is_ok();
    if !taken(&first) {
        return first;
    }
    (1..)
        .map(|n| {
            let mut numbered = first.clone().into_os_string();
            numbered.push(format!(".{n}"));
            PathBuf::from(numbered)
        })
        .find(|path| !taken(path))
        .unwrap_or(first) // `1..` is endless; `find` returns only once a name is free.
}

fn atomic_write(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = directory.join(format!(".{name}.shoal-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        // `mode` passed the umask on the way; the file must have exactly the original's bits.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    // The rename is durable once the directory is.
    std::fs::File::open(directory)?.sync_all()
}
