//! Removing the key dirs of daemons that stopped cleanly more than [`PRUNE_AFTER`] ago, so that
//! they do not pile up (one per project, server command and shoal version ever used).
//!
//! `shoal status` prunes before it lists, and says how many it removed. A key dir is removed
//! only while holding its `spawn.lock`, which every start decision needs, and only if no daemon
//! runs there (a clean exit removes `daemon.lock` and `daemon.sock`; either still there means a
//! daemon, or a crash worth looking into) and `meta.json` still records the same old exit. It is
//! renamed out of the way before the lock is released, then deleted: a proxy that was waiting for
//! that `spawn.lock` finds, once it holds it, that the file is no longer at its path
//! (`shoal_lockfile::Error::Removed`) and starts over in a new key dir. Daemons that crashed
//! (`stale`) are never pruned: their logs say why.

use std::path::Path;
use std::time::{Duration, SystemTime};

use shoal_ipc::DaemonMeta;
use shoal_lockfile::PersistentLock;

use crate::select::{self, KeyDir};

/// How long the directory and log of a cleanly stopped daemon are kept.
pub(crate) const PRUNE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// What renamed key dirs are called until deleted; never a key id, so never listed.
const GRAVE_PREFIX: &str = ".pruned-";

/// Prune the runtime dir; return how many key dirs were removed. Best effort: a dir that cannot
/// be pruned now (busy, or an error) is left for the next time.
pub(crate) fn prune(runtime_dir: &Path, now: SystemTime) -> usize {
    remove_leftover_graves(runtime_dir);
    let Ok(dirs) = select::key_dirs(runtime_dir) else {
        return 0;
    };
    dirs.iter()
        .filter(|dir| stopped_before(dir, now))
        .filter(|dir| match prune_one(runtime_dir, dir) {
            Ok(pruned) => pruned,
            Err(error) => {
                tracing::debug!(%error, dir = %dir.paths.dir.display(), "not pruned");
                false
            }
        })
        .count()
}

/// Whether `meta.json` records a clean exit more than [`PRUNE_AFTER`] before `now`.
fn stopped_before(dir: &KeyDir, now: SystemTime) -> bool {
    let Some(exit) = dir.meta.as_ref().ok().and_then(|meta| meta.exited.as_ref()) else {
        return false;
    };
    let stopped = SystemTime::UNIX_EPOCH + Duration::from_millis(exit.at_unix_ms);
    now.duration_since(stopped)
        .is_ok_and(|since| since > PRUNE_AFTER)
}

fn prune_one(runtime_dir: &Path, dir: &KeyDir) -> std::io::Result<bool> {
    let lock = PersistentLock::new(&dir.paths.spawn_lock).map_err(std::io::Error::other)?;
    // Held: a proxy is deciding to start a daemon here right now. Not ours to wait for.
    let Ok(guard) = lock.try_lock() else {
        return Ok(false);
    };
    let present = |path: &Path| path.symlink_metadata().is_ok();
    if present(&dir.paths.daemon_lock) || present(&dir.paths.socket) {
        return Ok(false);
    }
    let recorded = dir.meta.as_ref().ok().and_then(|meta| meta.exited.as_ref());
    let now = DaemonMeta::read(&dir.paths.meta).ok();
    if now.as_ref().and_then(|meta| meta.exited.as_ref()) != recorded {
        return Ok(false);
    }
    let grave = runtime_dir.join(format!("{GRAVE_PREFIX}{}-{}", dir.key, std::process::id()));
    std::fs::rename(&dir.paths.dir, &grave)?;
    drop(guard);
    // Renamed is pruned. The deletion may fail: a proxy that waited for the lock may create its
    // file in the grave a moment (it then finds it removed and starts over), or another pruner
    // may be deleting leftover graves; what is left goes the next time.
    if let Err(error) = std::fs::remove_dir_all(&grave) {
        tracing::debug!(%error, grave = %grave.display(), "left a pruned dir for later");
    }
    Ok(true)
}

/// Graves a pruning process left behind (it died between the rename and the deletion).
fn remove_leftover_graves(runtime_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(runtime_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_grave = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(GRAVE_PREFIX));
        if is_grave && entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
