//! `daemon.log` kept to a size: past [`Tuning::log_limit`](crate::Tuning) bytes it becomes
//! `daemon.log.1` (replacing the previous one) and a fresh `daemon.log` is started, so a daemon
//! that lives for weeks beside a chatty server holds at most about twice the limit on disk.
//!
//! Everything that writes the log writes through a descriptor the daemon owns: the daemon's own
//! stderr and stdout (the spawner pointed them at the log) and the one descriptor the server's
//! stderr copier writes to. Rotation points each of those that still names the old file at the
//! new one with `dup2`, which replaces what a descriptor number refers to atomically, so no line
//! is written to a file nobody reads and no writer has to be told.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, RawFd};
use std::path::Path;

use shoal_ipc::DaemonPaths;

/// If the log `log` (open on `paths.log`) is larger than `limit`, rotate it. Returns whether it
/// did. The path is renamed only while it still names the file `log` is open on: a log someone
/// else replaced is left alone.
pub(crate) fn rotate_if_over(paths: &DaemonPaths, log: &File, limit: u64) -> io::Result<bool> {
    let open = log.metadata()?;
    if open.len() <= limit {
        return Ok(false);
    }
    let identity = |metadata: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt as _;
        (metadata.dev(), metadata.ino())
    };
    let ours = identity(&open);
    match std::fs::symlink_metadata(&paths.log) {
        Ok(named) if identity(&named) == ours => {}
        _ => return Ok(false),
    }
    std::fs::rename(&paths.log, rotated(&paths.log))?;
    let fresh = paths.open_log()?;
    for fd in [log.as_raw_fd(), 1, 2] {
        if names(fd, ours) {
            // SAFETY: both descriptors are open (`fresh` is ours; `fd` was checked just now by
            // fstat); dup2 only makes `fd` refer to what `fresh` refers to.
            if unsafe { nix::libc::dup2(fresh.as_raw_fd(), fd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(true)
}

/// `daemon.log.1` beside `daemon.log`.
pub(crate) fn rotated(log: &Path) -> std::path::PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    name.into()
}

/// Whether descriptor `fd` is open on the file with this (device, inode).
#[allow(
    clippy::useless_conversion,
    reason = "st_dev is a u64 on Linux but not everywhere (an i32 on macOS)"
)]
fn names(fd: RawFd, file: (u64, u64)) -> bool {
    // SAFETY: the borrow lives for one fstat; fstat of a closed descriptor fails with EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(borrowed)
        .is_ok_and(|stat| (u64::try_from(stat.st_dev).unwrap_or(u64::MAX), stat.st_ino) == file)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn a_log_over_its_limit_moves_aside_and_its_writers_follow() {
        let dir = crate::scratch::ScratchDir::new("shoal-log", "rotate");
        std::fs::create_dir_all(&dir).unwrap();
        let paths = DaemonPaths::in_dir(dir.to_path_buf());
        let log = paths.open_log().unwrap();
        (&log).write_all(b"first part\n").unwrap();
        assert!(
            !rotate_if_over(&paths, &log, 1024).unwrap(),
            "under the limit"
        );
        (&log).write_all(&[b'x'; 2048]).unwrap();
        assert!(rotate_if_over(&paths, &log, 1024).unwrap());
        (&log).write_all(b"second part\n").unwrap();
        let old = std::fs::read_to_string(rotated(&paths.log)).unwrap();
        let new = std::fs::read_to_string(&paths.log).unwrap();
        assert!(
            old.starts_with("first part\n") && !old.contains("second"),
            "{old}"
        );
        assert_eq!(new, "second part\n");
        // A log replaced behind the daemon's back is not rotated again.
        std::fs::remove_file(&paths.log).unwrap();
        std::fs::write(&paths.log, "someone else's").unwrap();
        (&log).write_all(&[b'y'; 2048]).unwrap();
        assert!(!rotate_if_over(&paths, &log, 1024).unwrap());
    }
}
