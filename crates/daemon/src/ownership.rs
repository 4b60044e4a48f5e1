//! Owning a key's directory: `daemon.lock` for life, and `daemon.sock` published under it.
//!
//! # The problem
//!
//! Two daemons for one key would each start a backend, and sessions would split between them.
//! Worse, a daemon that unlinks and rebinds the socket path without holding the lock can orphan a
//! live daemon: its clients keep working, but nobody can reach it any more and it never idles out
//! while they stay (sccache shipped exactly this).
//!
//! # The fix
//!
//! 1. Make the runtime dir and the key dir private (0700, ours, no symlink), refusing otherwise.
//! 2. Take `daemon.lock` (a `shoal-lockfile` record naming our socket). On "held", stop: the live
//!    daemon is untouched.
//! 3. Bind the socket at a temporary name, `chmod 0600`, `listen`, then `rename` it over
//!    `daemon.sock`. Only the lock holder ever binds, renames or unlinks the socket path, so
//!    replacing a stale socket file here is safe, and a client never sees a socket that is not
//!    yet listening.
//! 4. Remember the socket's (dev, ino). [`Ownership::check`] compares the lock record and the
//!    socket inode with what we published (self-fencing); [`Ownership::release`] unlinks the socket
//!    only if it is still ours, then releases the lock.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use shoal_lockfile::{Guard, LockFile, Record};

use shoal_ipc::DaemonPaths;

/// What stopped a daemon from taking ownership of its key.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// Another live daemon holds the key: this one must exit and leave it alone.
    #[error("start the daemon: another daemon (pid {}) already serves this key", holder_pid(.holder))]
    Held {
        /// The live daemon's lock record, if readable.
        holder: Option<Box<Record>>,
    },
    /// The runtime or key directory is unsafe, or the lock could not be taken.
    #[error("take the daemon lock")]
    Lock(#[source] shoal_lockfile::Error),
    /// The socket could not be created.
    #[error("listen on {}", path.display())]
    Socket {
        /// The socket path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Why [`Ownership::check`] says this daemon no longer owns its key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Fenced {
    /// `daemon.lock` was removed or now names someone else.
    #[error("the daemon lock was removed or taken over")]
    LockLost(#[source] shoal_lockfile::Error),
    /// `daemon.sock` was removed or replaced: new clients can no longer reach this daemon.
    #[error("the socket {} was removed or replaced", path.display())]
    SocketLost {
        /// The socket path.
        path: PathBuf,
    },
}

/// This daemon's hold on its key: the lock guard and the identity of the socket it published.
#[derive(Debug)]
pub(crate) struct Ownership {
    lock: Guard,
    socket_path: PathBuf,
    socket_identity: SocketIdentity,
}

/// What tells our socket file from a later one at the same path. Inode numbers are recycled as
/// soon as a file is deleted (a socket unlinked and re-bound often gets the same number back), so
/// the change time is compared too. A socket has no content to hold a nonce the way the lock
/// record does; see [`Ownership::release`] for why this is enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SocketIdentity {
    device: u64,
    inode: u64,
    changed_seconds: i64,
    changed_nanoseconds: i64,
}

impl Ownership {
    /// Take ownership of the key whose files are `paths`; see the module docs for the steps.
    ///
    /// `runtime_dir` is made private too (it is the parent of `paths.dir`). Returns the listening
    /// socket in blocking mode; the caller converts it for its runtime.
    pub(crate) fn take(
        runtime_dir: &Path,
        paths: &DaemonPaths,
        shoal_version: &str,
    ) -> Result<(Ownership, UnixListener), OwnershipError> {
        shoal_lockfile::ensure_private_dir(runtime_dir).map_err(OwnershipError::Lock)?;
        shoal_lockfile::ensure_private_dir(&paths.dir).map_err(OwnershipError::Lock)?;

        let lock = LockFile::new(&paths.daemon_lock)
            .and_then(|lock| {
                lock.program_version(shoal_version)
                    .data(paths.socket.to_string_lossy().into_owned())
                    .try_acquire()
            })
            .map_err(|error| match error {
                shoal_lockfile::Error::Held { holder, .. } => OwnershipError::Held { holder },
                other => OwnershipError::Lock(other),
            })?;

        let temporary = paths
            .dir
            .join(format!("daemon.sock.{}.tmp", std::process::id()));
        let socket_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OwnershipError::Socket { path, source }
        };
        // A leftover from a dead daemon that had our pid: we hold the lock, so it is no one's.
        match std::fs::remove_file(&temporary) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(socket_error(&temporary)(error));
            }
            _ => {}
        }
        let listener = UnixListener::bind(&temporary).map_err(socket_error(&temporary))?;
        // The key dir is 0700, so nobody could reach the socket between bind and chmod anyway;
        // 0600 keeps it private even if someone loosens the directory later.
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
            .map_err(socket_error(&temporary))?;
        if let Err(error) = std::fs::rename(&temporary, &paths.socket) {
            let _ = std::fs::remove_file(&temporary);
            return Err(socket_error(&paths.socket)(error));
        }
        // After the rename, which updates ctime; no one else binds this path while we hold the
        // lock, so what we stat is what we bound.
        let socket_identity = identity(&paths.socket).map_err(socket_error(&paths.socket))?;
        Ok((
            Ownership {
                lock,
                socket_path: paths.socket.clone(),
                socket_identity,
            },
            listener,
        ))
    }

    /// Whether this daemon still owns its key: the lock file still holds our record and the
    /// socket path still names the socket we bound.
    pub(crate) fn check(&self) -> Result<(), Fenced> {
        // Only proof that the lock or the socket is gone or someone else's fences. An I/O error
        // while looking (no descriptor left to open the lock file with, EMFILE) proves nothing:
        // the kernel lock this daemon holds is still its own, and exiting would take the shared
        // server from every session because of a flood of connections.
        match self.lock.verify() {
            Ok(()) => {}
            Err(shoal_lockfile::Error::Io { source, .. }) => {
                tracing::warn!(error = %source, "could not check the daemon lock; still serving");
            }
            Err(error) => return Err(Fenced::LockLost(error)),
        }
        match identity(&self.socket_path) {
            Ok(found) if found == self.socket_identity => Ok(()),
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(%error, "could not check the daemon socket; still serving");
                Ok(())
            }
            _ => Err(Fenced::SocketLost {
                path: self.socket_path.clone(),
            }),
        }
    }

    /// The lock record this daemon published.
    pub(crate) fn record(&self) -> &Record {
        self.lock.record()
    }

    /// Give up the key: unlink the socket if it is still ours, then release the lock.
    ///
    /// The socket is touched only while the lock still verifies as ours: a successor binds the
    /// socket path only after taking the lock, so if the lock is ours, any socket at the path is
    /// ours or a stray from a process that broke the protocol, and the identity check (inode and
    /// change time) is a second line of defence. If the lock is lost, the socket at the path
    /// belongs to whoever took over and is left alone.
    pub(crate) fn release(self) -> Result<(), shoal_lockfile::Error> {
        if self.lock.verify().is_ok() && self.socket_is_ours() {
            let _ = std::fs::remove_file(&self.socket_path);
        }
        self.lock.release()
    }

    fn socket_is_ours(&self) -> bool {
        identity(&self.socket_path).is_ok_and(|found| found == self.socket_identity)
    }
}

fn identity(path: &Path) -> io::Result<SocketIdentity> {
    let metadata = std::fs::symlink_metadata(path)?;
    Ok(SocketIdentity {
        device: metadata.dev(),
        inode: metadata.ino(),
        changed_seconds: metadata.ctime(),
        changed_nanoseconds: metadata.ctime_nsec(),
    })
}

fn holder_pid(holder: &Option<Box<Record>>) -> String {
    holder
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |record| record.pid().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: &str) -> (crate::scratch::ScratchDir, DaemonPaths) {
        let runtime_dir = crate::scratch::ScratchDir::new("shoal-own", name);
        let paths = DaemonPaths::in_dir(runtime_dir.join("00112233aabbccdd"));
        (runtime_dir, paths)
    }

    #[test]
    fn a_second_owner_is_refused_and_the_first_stays_reachable() {
        let (runtime_dir, paths) = setup("held");
        let (first, _listener) = Ownership::take(&runtime_dir, &paths, "1.0").unwrap();
        let error = Ownership::take(&runtime_dir, &paths, "1.0").unwrap_err();
        match &error {
            OwnershipError::Held {
                holder: Some(record),
            } => {
                assert_eq!(record.pid(), std::process::id());
                assert_eq!(record.data(), paths.socket.to_str().unwrap());
            }
            other => panic!("expected Held, got {other:?}"),
        }
        first.check().expect("the first owner must be untouched");
        std::os::unix::net::UnixStream::connect(&paths.socket).expect("first owner reachable");
        first.release().unwrap();
        assert!(!paths.socket.exists(), "release must remove our socket");
    }

    #[test]
    fn files_are_private_whatever_the_umask() {
        let (runtime_dir, paths) = setup("modes");
        let (ownership, _listener) = Ownership::take(&runtime_dir, &paths, "1.0").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&runtime_dir), 0o700);
        assert_eq!(mode(&paths.dir), 0o700);
        assert_eq!(mode(&paths.socket), 0o600);
        ownership.release().unwrap();
    }

    #[test]
    fn a_replaced_socket_fences_the_daemon_and_is_not_unlinked() {
        let (runtime_dir, paths) = setup("socket");
        let (ownership, listener) = Ownership::take(&runtime_dir, &paths, "1.0").unwrap();
        drop(listener);
        std::fs::remove_file(&paths.socket).unwrap();
        assert!(matches!(ownership.check(), Err(Fenced::SocketLost { .. })));
        // Someone else's socket now sits at the path: release must leave it alone.
        let _theirs = UnixListener::bind(&paths.socket).unwrap();
        assert!(matches!(ownership.check(), Err(Fenced::SocketLost { .. })));
        ownership.release().unwrap();
        assert!(
            paths.socket.exists(),
            "release removed a socket that was not ours"
        );
    }

    #[test]
    fn after_a_takeover_release_leaves_the_successors_files_alone() {
        let (runtime_dir, paths) = setup("takeover");
        let (ownership, _listener) = Ownership::take(&runtime_dir, &paths, "1.0").unwrap();
        // Someone deletes both files and a second daemon takes the key.
        std::fs::remove_file(&paths.daemon_lock).unwrap();
        std::fs::remove_file(&paths.socket).unwrap();
        let (successor, _successor_listener) =
            Ownership::take(&runtime_dir, &paths, "1.0").unwrap();
        assert!(ownership.check().is_err());
        assert!(
            matches!(ownership.release(), Err(shoal_lockfile::Error::Lost { .. })),
            "releasing a lock that was taken over must report it lost"
        );
        successor
            .check()
            .expect("the old owner's release touched the successor's files");
        std::os::unix::net::UnixStream::connect(&paths.socket).expect("successor reachable");
        successor.release().unwrap();
    }

    #[test]
    fn a_removed_lock_fences_the_daemon() {
        let (runtime_dir, paths) = setup("lock");
        let (ownership, _listener) = Ownership::take(&runtime_dir, &paths, "1.0").unwrap();
        std::fs::remove_file(&paths.daemon_lock).unwrap();
        assert!(matches!(ownership.check(), Err(Fenced::LockLost(_))));
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let (runtime_dir, paths) = setup("stale");
        shoal_lockfile::ensure_private_dir(&runtime_dir).unwrap();
        shoal_lockfile::ensure_private_dir(&paths.dir).unwrap();
        // A socket file with nobody listening, as a SIGKILLed daemon leaves behind.
        drop(UnixListener::bind(&paths.socket).unwrap());
        let (ownership, _listener) = Ownership::take(&runtime_dir, &paths, "1.0").unwrap();
        ownership.check().unwrap();
        std::os::unix::net::UnixStream::connect(&paths.socket).expect("new socket reachable");
        ownership.release().unwrap();
    }
}
