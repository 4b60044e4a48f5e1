//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::Record;

/// Everything that can go wrong, including "someone else holds the lock".
///
/// Not acquiring a lock is an error variant carrying the holder, never a `false`: a caller cannot
/// mistake it for success. Messages are lowercase fragments that read after "failed to", name the
/// path, and say what to do where a user can act.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), shoal_lockfile::Error> {
/// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-error-{}", std::process::id()));
/// # shoal_lockfile::ensure_private_dir(&dir)?;
/// use shoal_lockfile::LockFile;
///
/// let lock = LockFile::new(dir.join("app.lock"))?;
/// let _first = lock.try_acquire()?;
/// match lock.try_acquire() {
///     Ok(_) => unreachable!("flock conflicts between open files, even in one process"),
///     Err(error) if error.is_held() => {
///         let holder = error.holder().expect("our own record is readable");
///         assert_eq!(holder.pid(), std::process::id());
///         println!("failed to {error}");
///     }
///     Err(other) => return Err(other),
/// }
/// # drop(_first);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock is held by a live process (or, for [`LockFile::acquire`] and
    /// [`PersistentLock::lock`], still held when the deadline passed).
    ///
    /// `holder` is `None` when the holder's record is unreadable (being written, or written by
    /// another program) and always for a [`PersistentLock`], which has no record.
    ///
    /// [`LockFile::acquire`]: crate::LockFile::acquire
    /// [`PersistentLock`]: crate::PersistentLock
    /// [`PersistentLock::lock`]: crate::PersistentLock::lock
    #[error("acquire {}: held by {}", path.display(), describe_holder(holder.as_deref()))]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, if their record could be read.
        holder: Option<Box<Record>>,
    },

    /// The lock path no longer names this guard's lock file: it was deleted or replaced behind the
    /// holder's back. A holder that sees this should stop acting as the owner.
    #[error(
        "keep {}: the lock file was removed or replaced by another process; stop acting as its owner",
        path.display()
    )]
    Lost {
        /// The lock file.
        path: PathBuf,
    },

    /// A [`PersistentLock`] was locked, but its file was no longer at the path by then: its holder
    /// removed it (or moved its directory away) while this process waited. The lock decides
    /// nothing; make a new [`PersistentLock`] (and its directory) and lock that.
    ///
    /// [`PersistentLock`]: crate::PersistentLock
    #[error(
        "lock {}: the lock file was removed while this process waited for it; open it again",
        path.display()
    )]
    Removed {
        /// The lock path.
        path: PathBuf,
    },

    /// Something other than a regular file sits at the lock path (a symbolic link, a FIFO, a
    /// directory...). It is never followed, opened for blocking, or deleted.
    #[error(
        "use {} as a lock file: it is a {kind}, not a regular file; remove it if nothing uses it",
        path.display()
    )]
    NotALockFile {
        /// The lock path.
        path: PathBuf,
        /// What was found there, e.g. "symbolic link".
        kind: &'static str,
    },

    /// A directory that must be private is not: a symbolic link, not a directory, owned by another
    /// user, or writable by group or others.
    #[error("use {} as a private directory: {problem}", path.display())]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// The record would be larger than [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN).
    #[error(
        "write the lock record for {}: it would be {len} bytes, over the {} byte limit; shorten the data",
        path.display(),
        crate::MAX_RECORD_LEN
    )]
    RecordTooLarge {
        /// The lock file.
        path: PathBuf,
        /// The encoded size of the record.
        len: usize,
    },

    /// The filesystem does not support `flock(2)` and the operation has no fallback.
    #[error(
        "lock {}: the filesystem does not support flock(2); put the directory on a local filesystem",
        path.display()
    )]
    KernelLocksUnsupported {
        /// The lock file.
        path: PathBuf,
    },

    /// An operating-system call failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, e.g. "create a temporary lock file in".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether this is [`Error::Held`]: someone else holds the lock.
    pub fn is_held(&self) -> bool {
        matches!(self, Error::Held { .. })
    }

    /// Whether this is [`Error::Removed`]: the persistent lock's file went away while waiting.
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let base = std::env::temp_dir().join(format!("shoal-lockfile-doc-removed-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&base)?;
    /// use shoal_lockfile::PersistentLock;
    ///
    /// let dir = base.join("key");
    /// shoal_lockfile::ensure_private_dir(&dir)?;
    /// let pruner = PersistentLock::new(dir.join("spawn.lock"))?;
    /// let waiter = PersistentLock::new(dir.join("spawn.lock"))?; // opened before the removal
    /// let held = pruner.try_lock()?;
    /// std::fs::rename(&dir, base.join("gone")).unwrap(); // what it guarded is gone for good
    /// drop(held);
    /// assert!(waiter.try_lock().unwrap_err().is_removed());
    /// std::fs::remove_dir_all(base.join("gone")).unwrap(); // and then deleted
    /// assert!(waiter.try_lock().unwrap_err().is_removed());
    /// // Starting over finds (here: makes) the directory and lock that are at the path now.
    /// shoal_lockfile::ensure_private_dir(&dir)?;
    /// let _decides = PersistentLock::new(dir.join("spawn.lock"))?.try_lock()?;
    /// # drop(_decides);
    /// # std::fs::remove_dir_all(&base).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_removed(&self) -> bool {
        matches!(self, Error::Removed { .. })
    }

    /// The holder's record, if this is [`Error::Held`] and the record was readable.
    pub fn holder(&self) -> Option<&Record> {
        match self {
            Error::Held { holder, .. } => holder.as_deref(),
            _ => None,
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Held { path, .. }
            | Error::Lost { path }
            | Error::Removed { path }
            | Error::NotALockFile { path, .. }
            | Error::UnsafeDirectory { path, .. }
            | Error::RecordTooLarge { path, .. }
            | Error::KernelLocksUnsupported { path }
            | Error::Io { path, .. } => path,
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn held(path: &Path, holder: Option<crate::Record>) -> Error {
        Error::Held {
            path: path.to_path_buf(),
            holder: holder.map(Box::new),
        }
    }
}

fn describe_holder(holder: Option<&Record>) -> String {
    match holder {
        Some(record) => record.to_string(),
        // Being written, written by another program, or a lock without records (PersistentLock).
        None => "another process (no readable record)".to_owned(),
    }
}
