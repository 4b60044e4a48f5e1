//! A persistent lock file: locked with `flock` around short decisions (the `spawn.lock` pattern:
//! "is a server running? if not, start one" must be decided by one process at a time), and
//! normally never deleted.
//!
//! Only a holder may delete it (or move its directory away), when what it guards is gone for good:
//! a process that waited for the lock may then wake up holding a file that is no longer at the
//! path. So once it holds the lock, [`PersistentLock::try_lock`] checks that the path still names
//! the file it locked, and reports [`Error::Removed`] otherwise: the waiter starts over with a
//! new lock, and two processes never both believe they decide. Deleting the file by hand while
//! it is held, or without holding it, breaks that, which is why it lives in a private directory.
//!
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::Error;
use crate::dir::Directory;
use crate::lock::Backoff;
use crate::sys::{self, FileKind, LockFailure, LockedFile};

/// A lock file for holding a lock around a short decision, deleted only by a holder (see the
/// module docs).
///
/// Unlike [`LockFile`](crate::LockFile) it has no record and no stale state: its `flock` is the
/// whole lock, released when the [`PersistentGuard`] drops or the process dies.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), shoal_lockfile::Error> {
/// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-persistent-{}", std::process::id()));
/// use std::time::{Duration, Instant};
///
/// shoal_lockfile::ensure_private_dir(&dir)?;
/// let spawn_lock = shoal_lockfile::PersistentLock::new(dir.join("spawn.lock"))?;
/// {
///     let _decision = spawn_lock.lock(Instant::now() + Duration::from_secs(5))?;
///     // ... check whether a server runs; start one if not ...
/// } // unlocked here; the file stays
/// assert!(dir.join("spawn.lock").exists());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PersistentLock {
    directory: Directory,
    file_name: OsString,
    path: PathBuf,
}

/// Holds a [`PersistentLock`]; unlocks when dropped.
#[derive(Debug)]
pub struct PersistentGuard {
    _locked: LockedFile,
    path: PathBuf,
}

impl PersistentLock {
    /// A persistent lock at `path`. Opens and checks the parent directory as
    /// [`LockFile::new`](crate::LockFile::new) does; the file itself is created (mode 0600) on first
    /// lock.
    ///
    /// # Errors
    ///
    /// [`Error::UnsafeDirectory`] if the directory is not private; [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-persistent-new-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// let lock = shoal_lockfile::PersistentLock::new(dir.join("spawn.lock"))?;
    /// assert_eq!(lock.path(), dir.join("spawn.lock"));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(path: impl AsRef<Path>) -> Result<PersistentLock, Error> {
        let path = path.as_ref();
        let (directory, file_name) = Directory::open_parent_of(path)?;
        directory.check_private()?;
        Ok(PersistentLock {
            file_name: file_name.to_os_string(),
            directory,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the lock if it is free, without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Held`] (with no record) if another open file holds it; [`Error::Removed`] if the
    /// file it locked is no longer at the path (its holder removed it); [`Error::NotALockFile`] if
    /// the path is not a regular file; [`Error::KernelLocksUnsupported`]; [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-persistent-try-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// let lock = shoal_lockfile::PersistentLock::new(dir.join("spawn.lock"))?;
    /// let guard = lock.try_lock()?;
    /// assert!(lock.try_lock().unwrap_err().is_held());
    /// drop(guard);
    /// let _again = lock.try_lock()?;
    /// # drop(_again);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_lock(&self) -> Result<PersistentGuard, Error> {
        let (file, created) = sys::open_or_create_private(&self.directory.fd, &self.file_name)
            .map_err(|error| match error.raw_os_error() {
                Some(libc::ELOOP) => self.not_a_lock_file(FileKind::Symlink),
                Some(libc::EISDIR) => self.not_a_lock_file(FileKind::Directory),
                // The directory this lock opened was deleted (nothing can be created in it):
                // its holder removed what the lock guarded.
                Some(libc::ENOENT) => Error::Removed {
                    path: self.path.clone(),
                },
                _ => Error::io("open the lock file", &self.path, error),
            })?;
        let metadata = sys::metadata(&file)
            .map_err(|error| Error::io("inspect the lock file", &self.path, error))?;
        if metadata.kind != FileKind::Regular {
            return Err(self.not_a_lock_file(metadata.kind));
        }
        if !created && metadata.uid != sys::effective_uid() {
            return Err(Error::io(
                "use the lock file",
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "it is owned by uid {}, not by this user; remove it",
                        metadata.uid
                    ),
                ),
            ));
        }
        match sys::lock_exclusive_nonblocking(file) {
            // The previous holder may have removed the file, or moved the directory this lock
            // opened, before it unlocked: a lock on a file that is no longer at the path decides
            // nothing.
            Ok(locked) => match sys::metadata_of_path(&self.path) {
                Ok(now) if now.id == metadata.id => Ok(PersistentGuard {
                    _locked: locked,
                    path: self.path.clone(),
                }),
                Ok(_) => Err(Error::Removed {
                    path: self.path.clone(),
                }),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(Error::Removed {
                    path: self.path.clone(),
                }),
                Err(error) => Err(Error::io("check the lock file", &self.path, error)),
            },
            Err((_, LockFailure::WouldBlock)) => Err(Error::held(&self.path, None)),
            Err((_, LockFailure::Unsupported)) => Err(Error::KernelLocksUnsupported {
                path: self.path.clone(),
            }),
            Err((_, LockFailure::Io(error))) => Err(Error::io("lock", &self.path, error)),
        }
    }

    /// Take the lock, waiting with jittered backoff until `deadline`.
    ///
    /// # Errors
    ///
    /// [`Error::Held`] if it is still held at `deadline`; otherwise as
    /// [`try_lock`](PersistentLock::try_lock).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-persistent-lock-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = shoal_lockfile::PersistentLock::new(dir.join("spawn.lock"))?;
    /// let _held = lock.lock(Instant::now() + Duration::from_secs(1))?;
    /// let error = lock.lock(Instant::now() + Duration::from_millis(20)).unwrap_err();
    /// assert!(error.is_held());
    /// # drop(_held);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn lock(&self, deadline: Instant) -> Result<PersistentGuard, Error> {
        let mut backoff = Backoff::new();
        loop {
            match self.try_lock() {
                Err(error) if error.is_held() => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(error);
                    }
                    sys::sleep(backoff.next_delay().min(deadline - now));
                }
                other => return other,
            }
        }
    }

    fn not_a_lock_file(&self, kind: FileKind) -> Error {
        Error::NotALockFile {
            path: self.path.clone(),
            kind: kind.describe(),
        }
    }
}

impl PersistentGuard {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
