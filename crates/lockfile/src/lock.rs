//! The lock: publish a complete record with `link()`, judge holders by their kernel lock, break stale
//! locks by compare-and-delete, release only what is still ours.
//!
//! # The races, and how each is closed
//!
//! **Readers seeing half a record.** A record written in place can be read empty or cut short, and a
//! 0-byte file left by a crash has locked tools out for hours. Here the record is written in full to a
//! private temporary file first, and the lock name appears only by `link(temp, lock)`, which is
//! atomic and never replaces an existing name. So the lock name, whenever it exists, names a complete
//! record.
//!
//! **PID reuse.** "Is pid 4242 alive?" is the wrong question: after a crash the pid is soon another
//! process's. The holder takes an exclusive `flock` on the file *before* publishing it and keeps the
//! descriptor open (`CLOEXEC`) for the whole hold; the kernel drops that lock when the holder dies,
//! however it dies. A judge that can take the lock itself knows the holder is gone. Only where the
//! filesystem has no kernel locks does the record decide (pid, start token, host, pid namespace),
//! and then it fails closed.
//!
//! **Many breakers, one stale lock.** Sixty-four processes see the same dead holder. If each
//! unlinks the lock after judging it, a late breaker deletes the lock a fast one has just published,
//! and several "win". Here:
//!
//! 1. A judge opens the lock file and takes its `flock` (non-blocking). Getting it proves the holder
//!    is dead *and* makes this judge the only breaker: the others get `EWOULDBLOCK`.
//! 2. Still holding it, the breaker checks that the lock name still names that inode (it may have
//!    been released and replaced between the open and the lock).
//! 3. It renames the lock name to a private grave name, re-checks that the grave is the very file
//!    judged stale — same (device, inode) **and** same nonce, because inode numbers are recycled —
//!    and unlinks it. If it is anything else, it is put back with `link` (which never replaces) and
//!    the grave name removed.
//! 4. It retries `link(temp, lock)`. Exactly one contender's link succeeds.
//!
//! A contender that found the lock busy while a breaker held the dead holder's file retries a few
//! times with jittered backoff before reporting [`Error::Held`], so that it reports the new holder.
//!
//! **Release deleting a successor.** The holder checks that the lock name still names its inode and
//! nonce, unlinks it *while still holding the kernel lock* (so no breaker can act in between), and
//! only then closes the descriptor.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::Error;
use crate::dir::Directory;
use crate::record::{self, MAX_RECORD_LEN, Record};
use crate::sys::{self, FileId, FileKind, LockFailure, LockedFile, ProcessProbe};

/// How often one [`LockFile::try_acquire`] call goes round judge → break → link before giving up.
/// Each round needs another process to change the lock under us, so a handful is plenty.
const MAX_ROUNDS: u32 = 16;

/// How many times a contender re-judges a lock whose kernel lock is taken but whose recorded holder
/// is gone (a breaker is probably at work) before reporting it as held.
const MAX_BUSY_RETRIES: u32 = 6;

/// The default [`LockFile::grace_period`].
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A lock file: where the lock lives and what its holder will record.
///
/// Creating a `LockFile` opens and checks its directory but takes no lock. Acquiring returns a
/// [`Guard`]; not acquiring returns [`Error::Held`] with the holder's [`Record`].
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), shoal_lockfile::Error> {
/// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-lockfile-{}", std::process::id()));
/// use shoal_lockfile::LockFile;
///
/// shoal_lockfile::ensure_private_dir(&dir)?;
/// let lock = LockFile::new(dir.join("daemon.lock"))?
///     .program_version(env!("CARGO_PKG_VERSION"))
///     .data("/run/user/1000/app/daemon.sock");
///
/// match lock.try_acquire() {
///     Ok(guard) => {
///         // ... serve, calling `guard.verify()` now and then ...
///         guard.release()?;
///     }
///     Err(error) if error.is_held() => println!("already running: {error}"),
///     Err(error) => return Err(error),
/// }
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LockFile {
    directory: Arc<Directory>,
    file_name: OsString,
    path: PathBuf,
    program_version: String,
    data: String,
    grace_period: Duration,
    host: String,
    pid_namespace: Option<String>,
    hooks: TestHooks,
}

/// What [`LockFile::inspect`] found at the lock path.
#[derive(Debug)]
#[non_exhaustive]
pub enum LockState {
    /// No lock file: the lock is free.
    Free,
    /// A live process holds the lock (its kernel lock is taken; or, on a filesystem without kernel
    /// locks, its record says so).
    Held {
        /// The holder's record; `None` if it is unreadable (being written, or not written by this
        /// crate).
        holder: Option<Record>,
    },
    /// A lock file nobody holds: its holder died. [`LockFile::break_stale`] removes it, and
    /// [`LockFile::try_acquire`] breaks it by itself.
    Stale(StaleLock),
}

/// A lock file judged stale, identified precisely enough that [`LockFile::break_stale`] removes that
/// file and nothing else: by (device, inode) and the record's nonce (none for an empty or garbage
/// file).
#[derive(Clone, Debug)]
pub struct StaleLock {
    id: FileId,
    record: Option<Record>,
}

impl StaleLock {
    /// The dead holder's record; `None` for an empty, truncated or garbage file.
    pub fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }

    fn nonce(&self) -> Option<&str> {
        self.record.as_ref().map(Record::nonce)
    }
}

/// What [`LockFile::break_stale`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakOutcome {
    /// The stale file was removed.
    Removed,
    /// There was no lock file any more (someone else broke or released it).
    AlreadyGone,
    /// The lock path names another file now, or the file is held again: nothing was removed.
    Changed,
}

/// Proof of holding a lock. Dropping it releases the lock (best effort; call [`Guard::release`] to
/// see errors).
///
/// The guard keeps the locked file open for the whole hold. The descriptor is close-on-exec, so a
/// child process started with `exec` does not inherit the lock. (A child made with a bare `fork`
/// and no `exec` does share it, as with any `flock`.)
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), shoal_lockfile::Error> {
/// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-guard-{}", std::process::id()));
/// # shoal_lockfile::ensure_private_dir(&dir)?;
/// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?;
/// let guard = lock.try_acquire()?;
/// assert!(guard.verify().is_ok());
///
/// // Someone deletes the lock file behind our back: the guard notices, and release leaves the
/// // path alone.
/// std::fs::remove_file(guard.path()).unwrap();
/// assert!(guard.verify().is_err());
/// assert!(guard.release().is_err());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Guard {
    file: Option<HeldFile>,
    directory: Arc<Directory>,
    file_name: OsString,
    path: PathBuf,
    id: FileId,
    record: Record,
}

/// A step of [`LockFile::try_acquire`] at which a test can have the acquiring process SIGKILL
/// itself, to prove that a crash at any step leaves no empty lock file and nothing that blocks the
/// next acquirer. Not part of the stable API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillPoint {
    /// The temporary file exists, empty and unlocked.
    TempCreated,
    /// The temporary file is locked, still empty.
    TempLocked,
    /// Half the record is written.
    TempHalfWritten,
    /// The whole record is written, not yet published.
    TempWritten,
    /// The record is published under the lock name; the temporary name still exists.
    Linked,
    /// The temporary name is removed: the lock is held.
    TempUnlinked,
}

impl KillPoint {
    /// Every step, in order.
    pub const ALL: [KillPoint; 6] = [
        KillPoint::TempCreated,
        KillPoint::TempLocked,
        KillPoint::TempHalfWritten,
        KillPoint::TempWritten,
        KillPoint::Linked,
        KillPoint::TempUnlinked,
    ];

    /// A stable name for the step, for passing it to a child process.
    pub fn name(self) -> &'static str {
        match self {
            KillPoint::TempCreated => "temp-created",
            KillPoint::TempLocked => "temp-locked",
            KillPoint::TempHalfWritten => "temp-half-written",
            KillPoint::TempWritten => "temp-written",
            KillPoint::Linked => "linked",
            KillPoint::TempUnlinked => "temp-unlinked",
        }
    }

    /// The step called `name`.
    pub fn from_name(name: &str) -> Option<KillPoint> {
        KillPoint::ALL
            .into_iter()
            .find(|point| point.name() == name)
    }
}

impl LockFile {
    /// A lock at `path`. Opens the parent directory (`O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`) once and
    /// checks that it is private (owned by the effective user, not writable by group or others; see
    /// [`ensure_private_dir`](crate::ensure_private_dir), which also creates it). All later
    /// operations are relative to that directory descriptor.
    ///
    /// # Errors
    ///
    /// [`Error::UnsafeDirectory`] if the directory is not private, [`Error::Io`] if it cannot be
    /// opened (for example, it does not exist).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-new-{}", std::process::id()));
    /// shoal_lockfile::ensure_private_dir(&dir)?;
    /// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?;
    /// assert_eq!(lock.path(), dir.join("app.lock"));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(path: impl AsRef<Path>) -> Result<LockFile, Error> {
        let path = path.as_ref();
        let (directory, file_name) = Directory::open_parent_of(path)?;
        directory.check_private()?;
        Ok(LockFile {
            file_name: file_name.to_os_string(),
            directory: Arc::new(directory),
            path: path.to_path_buf(),
            program_version: String::new(),
            data: String::new(),
            grace_period: DEFAULT_GRACE_PERIOD,
            host: sys::host_name(),
            pid_namespace: sys::pid_namespace(),
            hooks: TestHooks::default(),
        })
    }

    /// Record `version` as the holder's program version (shown in [`Error::Held`] messages and
    /// status output). Empty by default.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-version-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?.program_version("2.1.0");
    /// assert_eq!(lock.try_acquire()?.record().program_version(), "2.1.0");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn program_version(mut self, version: impl Into<String>) -> LockFile {
        self.program_version = version.into();
        self
    }

    /// Record `data` for whoever finds the lock held: typically how to reach the holder (a socket
    /// path, a port). Any string; it is escaped in the file. The whole record must stay within
    /// [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN) bytes, so keep it to a few hundred bytes
    /// (acquiring fails with [`Error::RecordTooLarge`] otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-data-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// use shoal_lockfile::{LockFile, LockState};
    ///
    /// let lock = LockFile::new(dir.join("app.lock"))?.data("socket=/tmp/app.sock\nsecond line");
    /// let _guard = lock.try_acquire()?;
    /// let LockState::Held { holder: Some(holder) } = lock.inspect()? else { panic!() };
    /// assert_eq!(holder.data(), "socket=/tmp/app.sock\nsecond line");
    /// # drop(_guard);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn data(mut self, data: impl Into<String>) -> LockFile {
        self.data = data.into();
        self
    }

    /// How old an unreadable lock file, or a leftover temporary file, must be before it is treated
    /// as abandoned rather than "being written". Default: 5 seconds, far longer than writing 4 KiB
    /// takes, yet short enough that a crash costs a human little.
    ///
    /// It matters in two places only: leftover temporary files of crashed acquirers are swept once
    /// they are this old, and on filesystems without kernel locks an unreadable lock file younger
    /// than this counts as held.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-grace-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// use std::time::Duration;
    ///
    /// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?
    ///     .grace_period(Duration::from_secs(30));
    /// # drop(lock);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn grace_period(mut self, grace_period: Duration) -> LockFile {
        self.grace_period = grace_period;
        self
    }

    /// Test hook: SIGKILL this process when [`try_acquire`](LockFile::try_acquire) reaches `point`.
    #[doc(hidden)]
    pub fn kill_at(mut self, point: KillPoint) -> LockFile {
        self.hooks.kill_at = Some(point);
        self
    }

    /// Test hook: behave as on a filesystem without kernel locks (judge holders by their records).
    #[doc(hidden)]
    pub fn without_kernel_locks(mut self) -> LockFile {
        self.hooks.without_kernel_locks = true;
        self
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Try once to acquire the lock, without waiting for a live holder.
    ///
    /// A stale lock (its holder died) is broken on the way, safely even when many processes do so
    /// at once. Interrupted system calls are retried, never reported.
    ///
    /// # Errors
    ///
    /// [`Error::Held`] with the holder's record if a live process holds the lock;
    /// [`Error::NotALockFile`] if something other than a regular file (a symbolic link, a FIFO...)
    /// sits at the path; [`Error::RecordTooLarge`]; [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-try-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?;
    /// let guard = lock.try_acquire()?;
    /// let error = lock.try_acquire().unwrap_err();
    /// assert!(error.is_held());
    /// drop(guard);
    /// let _again = lock.try_acquire()?;
    /// # drop(_again);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_acquire(&self) -> Result<Guard, Error> {
        let record =
            Record::for_this_process(&self.program_version, &self.data, new_nonce(&self.path)?);
        let text = record.encode();
        if text.len() > MAX_RECORD_LEN {
            return Err(Error::RecordTooLarge {
                path: self.path.clone(),
                len: text.len(),
            });
        }
        let mut temp = self.write_temp(&record, &text)?;
        let mut backoff = Backoff::new();
        let mut busy_retries = 0;
        let mut last_holder = None;
        let mut rounds = 0;
        loop {
            if self.publish(&temp)? {
                break;
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(Error::held(&self.path, last_holder));
            }
            match self.judge()? {
                Judgement::Free | Judgement::Moved => {}
                Judgement::Held {
                    holder,
                    holder_looks_gone,
                } => {
                    if holder_looks_gone && busy_retries < MAX_BUSY_RETRIES {
                        // Probably another contender holding the dead holder's file while it breaks
                        // it: look again shortly, to report the new holder rather than the dead one.
                        busy_retries += 1;
                        last_holder = holder;
                        sys::sleep(backoff.next_delay());
                        continue;
                    }
                    return Err(Error::held(&self.path, holder));
                }
                Judgement::Stale { stale, claim } => {
                    self.break_claimed(&stale, claim)?;
                }
            }
        }
        self.kill_point(KillPoint::Linked);
        // The lock is ours from here. Dropping the temporary name is tidiness, not correctness: a
        // leftover second name of a held lock file is swept once its holder is gone.
        let _ = sys::unlink(&self.directory.fd, &temp.name);
        temp.published = true;
        self.kill_point(KillPoint::TempUnlinked);
        self.sweep_leftovers();
        Ok(Guard {
            file: temp.file.take(),
            directory: Arc::clone(&self.directory),
            file_name: self.file_name.clone(),
            path: self.path.clone(),
            id: temp.id,
            record,
        })
    }

    /// Acquire the lock, waiting with jittered backoff while a live process holds it, until
    /// `deadline`.
    ///
    /// # Errors
    ///
    /// [`Error::Held`] (with the last holder seen) if the lock is still held at `deadline`; otherwise
    /// as [`try_acquire`](LockFile::try_acquire).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-acquire-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?;
    /// let guard = lock.acquire(Instant::now() + Duration::from_secs(2))?;
    /// // A second acquirer gives up at its deadline, with the holder in the error.
    /// let error = lock.acquire(Instant::now() + Duration::from_millis(50)).unwrap_err();
    /// assert_eq!(error.holder().map(|holder| holder.pid()), Some(std::process::id()));
    /// # drop(guard);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire(&self, deadline: Instant) -> Result<Guard, Error> {
        let mut backoff = Backoff::new();
        loop {
            match self.try_acquire() {
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

    /// Look at the lock without changing anything: free, held (by whom), or stale.
    ///
    /// Inspecting briefly takes the file's kernel lock to test it, exactly as an acquirer would; a
    /// contender racing with the inspection may see the lock as busy for that instant and look
    /// again.
    ///
    /// # Errors
    ///
    /// [`Error::NotALockFile`] if something other than a regular file sits at the path;
    /// [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-inspect-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// use shoal_lockfile::{LockFile, LockState};
    ///
    /// let lock = LockFile::new(dir.join("app.lock"))?;
    /// assert!(matches!(lock.inspect()?, LockState::Free));
    /// let guard = lock.try_acquire()?;
    /// match lock.inspect()? {
    ///     LockState::Held { holder: Some(holder) } => assert_eq!(holder.pid(), std::process::id()),
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # drop(guard);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn inspect(&self) -> Result<LockState, Error> {
        for _ in 0..MAX_ROUNDS {
            match self.judge()? {
                Judgement::Free => return Ok(LockState::Free),
                Judgement::Moved => continue,
                Judgement::Held { holder, .. } => return Ok(LockState::Held { holder }),
                Judgement::Stale { stale, claim } => {
                    drop(claim);
                    return Ok(LockState::Stale(stale));
                }
            }
        }
        // The file kept changing under us: someone is busy with it.
        Ok(LockState::Held { holder: None })
    }

    /// Remove the stale lock `expected` (from [`inspect`](LockFile::inspect)), and nothing else.
    ///
    /// Compare-and-delete: the file is removed only if the lock path still names the same file
    /// (device, inode **and** record nonce) and nobody holds its kernel lock. Safe to call from many
    /// processes at once: one removes it, the others get [`BreakOutcome::AlreadyGone`] or
    /// [`BreakOutcome::Changed`].
    ///
    /// [`try_acquire`](LockFile::try_acquire) breaks stale locks by itself; this is for tools that
    /// show the stale lock to a user before removing it.
    ///
    /// # Errors
    ///
    /// [`Error::NotALockFile`] if something other than a regular file sits at the path;
    /// [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-break-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// use shoal_lockfile::{BreakOutcome, LockFile, LockState};
    ///
    /// // An empty file, as a crashed program that wrote records in place might leave.
    /// std::fs::write(dir.join("app.lock"), "").unwrap();
    /// let lock = LockFile::new(dir.join("app.lock"))?;
    /// let LockState::Stale(stale) = lock.inspect()? else { panic!("nobody holds it") };
    /// assert!(stale.record().is_none());
    /// assert_eq!(lock.break_stale(&stale)?, BreakOutcome::Removed);
    /// assert_eq!(lock.break_stale(&stale)?, BreakOutcome::AlreadyGone);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn break_stale(&self, expected: &StaleLock) -> Result<BreakOutcome, Error> {
        let file = match sys::open_existing(&self.directory.fd, &self.file_name) {
            Ok(file) => file,
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(BreakOutcome::AlreadyGone);
            }
            Err(error) => return Err(self.open_error(error)),
        };
        let (metadata, record) = self.read_open(
            file.try_clone()
                .map_err(|error| Error::io("inspect the lock file", &self.path, error))?,
        )?;
        if metadata.id != expected.id || record.as_ref().map(Record::nonce) != expected.nonce() {
            return Ok(BreakOutcome::Changed);
        }
        let claim = if self.hooks.without_kernel_locks {
            Claim::Unlocked(file)
        } else {
            match sys::lock_exclusive_nonblocking(file) {
                Ok(locked) => Claim::Locked(locked),
                Err((_, LockFailure::WouldBlock)) => return Ok(BreakOutcome::Changed),
                Err((file, LockFailure::Unsupported)) => Claim::Unlocked(file),
                Err((_, LockFailure::Io(error))) => {
                    return Err(Error::io("lock", &self.path, error));
                }
            }
        };
        if !self.path_names(expected.id)? {
            return Ok(BreakOutcome::Changed);
        }
        self.break_claimed(expected, claim)
    }

    /// Write the record to a new private temporary file, locked, ready to publish.
    fn write_temp(&self, record: &Record, text: &str) -> Result<TempFile<'_>, Error> {
        let name = self.private_name(record.nonce(), "tmp");
        let file = sys::create_private_file(&self.directory.fd, &name).map_err(|error| {
            Error::io(
                "create a temporary lock file in",
                &self.directory.path,
                error,
            )
        })?;
        let mut temp = TempFile {
            directory: &self.directory,
            name,
            file: None,
            id: FileId { dev: 0, ino: 0 },
            published: false,
        };
        self.kill_point(KillPoint::TempCreated);
        // Lock before writing, so that the temporary file is unlocked only for the instant between
        // create and lock: the sweep of crashed acquirers' leftovers relies on that.
        let held = if self.hooks.without_kernel_locks {
            HeldFile::Unlocked(file)
        } else {
            match sys::lock_exclusive_nonblocking(file) {
                Ok(locked) => HeldFile::Locked(locked),
                Err((file, LockFailure::Unsupported)) => HeldFile::Unlocked(file),
                Err((_, LockFailure::WouldBlock)) => {
                    return Err(Error::io(
                        "lock a new temporary lock file in",
                        &self.directory.path,
                        std::io::Error::new(
                            std::io::ErrorKind::WouldBlock,
                            "another process locked our private temporary file",
                        ),
                    ));
                }
                Err((_, LockFailure::Io(error))) => {
                    return Err(Error::io(
                        "lock a new temporary lock file in",
                        &self.directory.path,
                        error,
                    ));
                }
            }
        };
        let file = temp.file.insert(held).file();
        self.kill_point(KillPoint::TempLocked);
        let write_error = |error| {
            Error::io(
                "write a temporary lock file in",
                &self.directory.path,
                error,
            )
        };
        if self.hooks.kill_at == Some(KillPoint::TempHalfWritten) {
            (&*file)
                .write_all(&text.as_bytes()[..text.len() / 2])
                .map_err(write_error)?;
            sys::kill_self();
        }
        // No fsync: a record describes a running process and means nothing after the machine
        // crashes; readers on this machine see the complete contents through the page cache.
        (&*file).write_all(text.as_bytes()).map_err(write_error)?;
        temp.id = sys::metadata(file).map_err(write_error)?.id;
        self.kill_point(KillPoint::TempWritten);
        Ok(temp)
    }

    /// `link(temp, lock)`. `Ok(true)`: published; `Ok(false)`: the lock name exists.
    fn publish(&self, temp: &TempFile<'_>) -> Result<bool, Error> {
        match sys::link(&self.directory.fd, &temp.name, &self.file_name) {
            Ok(()) => Ok(true),
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(error) => {
                // NFS: the server may have made the link and lost the reply. Our temporary file
                // then has two names, and the lock name is one of them.
                let file = temp.file.as_ref().map(HeldFile::file);
                let linked = file
                    .and_then(|file| sys::metadata(file).ok())
                    .is_some_and(|metadata| metadata.nlink == 2);
                if linked && self.path_names(temp.id)? {
                    return Ok(true);
                }
                Err(Error::io("publish the lock file", &self.path, error))
            }
        }
    }

    /// Judge whatever the lock name names now.
    fn judge(&self) -> Result<Judgement, Error> {
        let directory = &self.directory.fd;
        // Look before opening: never open a device node, never follow a link.
        match sys::metadata_at(directory, &self.file_name) {
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(Judgement::Free),
            Err(error) => return Err(Error::io("inspect the lock file", &self.path, error)),
            Ok(metadata) if metadata.kind != FileKind::Regular => {
                return Err(self.not_a_lock_file(metadata.kind));
            }
            Ok(_) => {}
        }
        let file = match sys::open_existing(directory, &self.file_name) {
            Ok(file) => file,
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(Judgement::Free),
            Err(error) => return Err(self.open_error(error)),
        };
        let read_from = file
            .try_clone()
            .map_err(|error| Error::io("inspect the lock file", &self.path, error))?;
        let (metadata, record) = self.read_open(read_from)?;
        if self.hooks.without_kernel_locks {
            return Ok(self.judge_by_record(file, metadata, record));
        }
        match sys::lock_exclusive_nonblocking(file) {
            Ok(locked) => {
                // Nobody holds it, so its holder is gone. But we may have opened it just before its
                // holder released it, or a breaker removed it: the path must still name it.
                if !self.path_names(metadata.id)? {
                    return Ok(Judgement::Moved);
                }
                Ok(Judgement::Stale {
                    stale: StaleLock {
                        id: metadata.id,
                        record,
                    },
                    claim: Claim::Locked(locked),
                })
            }
            Err((_, LockFailure::WouldBlock)) => {
                let holder_looks_gone = record
                    .as_ref()
                    .is_some_and(|record| self.record_says_dead(record));
                Ok(Judgement::Held {
                    holder: record,
                    holder_looks_gone,
                })
            }
            Err((file, LockFailure::Unsupported)) => {
                Ok(self.judge_by_record(file, metadata, record))
            }
            Err((_, LockFailure::Io(error))) => Err(Error::io("lock", &self.path, error)),
        }
    }

    /// The fallback where kernel locks are unsupported. Fails closed: anything unknowable is held.
    fn judge_by_record(
        &self,
        file: File,
        metadata: sys::Metadata,
        record: Option<Record>,
    ) -> Judgement {
        let dead = match &record {
            // Unreadable: being written if young, abandoned if old.
            None => age(metadata.modified) >= self.grace_period,
            Some(record) => self.record_says_dead(record),
        };
        if dead {
            Judgement::Stale {
                stale: StaleLock {
                    id: metadata.id,
                    record,
                },
                claim: Claim::Unlocked(file),
            }
        } else {
            Judgement::Held {
                holder: record,
                holder_looks_gone: false,
            }
        }
    }

    /// Whether the record proves its holder dead: same host and pid namespace, and the pid is gone
    /// or now belongs to a process with another start token (the pid was reused).
    fn record_says_dead(&self, record: &Record) -> bool {
        let local =
            record.host() == self.host && record.pid_namespace() == self.pid_namespace.as_deref();
        if !local {
            // Another machine or container: its pids mean nothing here. Never break it on a guess.
            return false;
        }
        match sys::probe_process(record.pid()) {
            ProcessProbe::Gone => true,
            // Exists (or EPERM: exists under another user). Alive unless its start token proves
            // the pid now belongs to someone else.
            ProcessProbe::Exists => match (record.start_token(), sys::start_token(record.pid())) {
                (Some(recorded), Some(current)) => recorded != current,
                _ => false,
            },
        }
    }

    /// Compare-and-delete, with `claim` on the file judged stale (step 3 of the module write-up).
    fn break_claimed(&self, stale: &StaleLock, claim: Claim) -> Result<BreakOutcome, Error> {
        let directory = &self.directory.fd;
        let grave = self.private_name(&new_nonce(&self.path)?, "grave");
        match sys::rename(directory, &self.file_name, &grave) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(BreakOutcome::AlreadyGone);
            }
            Err(error) => {
                return Err(Error::io(
                    "move aside the stale lock file",
                    &self.path,
                    error,
                ));
            }
        }
        let is_the_stale_one = self.grave_matches(&grave, stale, &claim);
        if is_the_stale_one {
            let result = sys::unlink(directory, &grave);
            drop(claim);
            return match result {
                Ok(()) => Ok(BreakOutcome::Removed),
                Err(error) => Err(Error::io("remove the stale lock file", &self.path, error)),
            };
        }
        // Not what we judged: put it back. `link` never replaces, so if a new lock appeared in the
        // meantime it stays, and the moved file's holder finds out through `Guard::verify`.
        let _ = sys::link(directory, &grave, &self.file_name);
        let _ = sys::unlink(directory, &grave);
        drop(claim);
        Ok(BreakOutcome::Changed)
    }

    /// Whether the file now at `grave` is the one judged stale: same (device, inode), same nonce,
    /// and (unless we already hold its kernel lock) not locked by anyone.
    fn grave_matches(&self, grave: &OsStr, stale: &StaleLock, claim: &Claim) -> bool {
        let Ok(file) = sys::open_existing(&self.directory.fd, grave) else {
            return false;
        };
        let Ok(reader) = file.try_clone() else {
            return false;
        };
        let Ok((metadata, record)) = self.read_open(reader) else {
            return false;
        };
        if metadata.id != stale.id || record.as_ref().map(Record::nonce) != stale.nonce() {
            return false;
        }
        match claim {
            // We hold its kernel lock: nobody else can.
            Claim::Locked(_) => true,
            Claim::Unlocked(_) => !matches!(
                sys::lock_exclusive_nonblocking(file),
                Err((_, LockFailure::WouldBlock))
            ),
        }
    }

    /// Remove temporary and grave files of crashed acquirers and breakers: older than the grace
    /// period and not locked by anyone. Best effort; only runs with kernel locks, which are the only
    /// proof that nobody is still using such a file.
    fn sweep_leftovers(&self) {
        if self.hooks.without_kernel_locks {
            return;
        }
        let directory = &self.directory.fd;
        let Ok(names) = sys::list_directory(directory) else {
            return;
        };
        let mut prefix = b".".to_vec();
        prefix.extend_from_slice(self.file_name.as_bytes());
        prefix.push(b'.');
        for name in names {
            let bytes = name.as_bytes();
            if !bytes.starts_with(&prefix)
                || !(bytes.ends_with(b".tmp") || bytes.ends_with(b".grave"))
            {
                continue;
            }
            let Ok(metadata) = sys::metadata_at(directory, &name) else {
                continue;
            };
            if metadata.kind != FileKind::Regular || age(metadata.modified) < self.grace_period {
                continue;
            }
            let Ok(file) = sys::open_existing(directory, &name) else {
                continue;
            };
            if let Ok(locked) = sys::lock_exclusive_nonblocking(file) {
                let still_there = sys::metadata_at(directory, &name)
                    .is_ok_and(|now| Some(now.id) == sys::metadata(&*locked).ok().map(|m| m.id));
                if still_there {
                    let _ = sys::unlink(directory, &name);
                }
            }
        }
    }

    /// Whether the lock name names the file `id` right now.
    fn path_names(&self, id: FileId) -> Result<bool, Error> {
        match sys::metadata_at(&self.directory.fd, &self.file_name) {
            Ok(metadata) => Ok(metadata.id == id),
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(error) => Err(Error::io("inspect the lock file", &self.path, error)),
        }
    }

    /// `fstat` an open lock file and read its record (unless it is too big to be one).
    fn read_open(&self, file: File) -> Result<(sys::Metadata, Option<Record>), Error> {
        read_open(file, &self.path)
    }

    /// `.<name>.<nonce>.<kind>`: hidden, unique, and recognisable by the sweep.
    fn private_name(&self, nonce: &str, kind: &str) -> OsString {
        let mut name = b".".to_vec();
        name.extend_from_slice(self.file_name.as_bytes());
        name.extend_from_slice(format!(".{nonce}.{kind}").as_bytes());
        OsString::from_vec(name)
    }

    fn open_error(&self, error: std::io::Error) -> Error {
        match error.raw_os_error() {
            Some(libc::ELOOP) => self.not_a_lock_file(FileKind::Symlink),
            _ => Error::io("open the lock file", &self.path, error),
        }
    }

    fn not_a_lock_file(&self, kind: FileKind) -> Error {
        Error::NotALockFile {
            path: self.path.clone(),
            kind: kind.describe(),
        }
    }

    fn kill_point(&self, point: KillPoint) {
        if self.hooks.kill_at == Some(point) {
            sys::kill_self();
        }
    }
}

impl Guard {
    /// The record this guard published.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the holder's liveness is backed by a kernel lock. `false` only on filesystems without
    /// `flock` support, where others judge this holder by its record (pid, start token).
    pub fn has_kernel_lock(&self) -> bool {
        matches!(self.file, Some(HeldFile::Locked(_)))
    }

    /// Check that the lock is still ours: the lock path names our file (inode) with our record
    /// (nonce). Call it now and then in a long-lived holder, and stop acting as the owner when it
    /// fails (self-fencing).
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the path was removed or now names another file or record; [`Error::Io`]
    /// if it cannot be checked.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-verify-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?;
    /// let guard = lock.try_acquire()?;
    /// guard.verify()?;
    /// # drop(guard);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn verify(&self) -> Result<(), Error> {
        let lost = || Error::Lost {
            path: self.path.clone(),
        };
        // Opening and closing our own lock file does not drop the lock: `flock` locks belong to
        // the open file description the guard keeps.
        let file = match sys::open_existing(&self.directory.fd, &self.file_name) {
            Ok(file) => file,
            Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => {
                return Err(lost());
            }
            Err(error) => return Err(Error::io("open the lock file", &self.path, error)),
        };
        let (metadata, record) = read_open(file, &self.path)?;
        let nonce = record.as_ref().map(Record::nonce);
        if metadata.id != self.id || nonce != Some(self.record.nonce()) {
            return Err(lost());
        }
        Ok(())
    }

    /// Release the lock: check it is still ours, remove the lock file while still holding the
    /// kernel lock, then close it.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] if the lock path no longer names our lock (it is then left alone: it may be
    /// a successor's); [`Error::Io`]. The kernel lock is released in every case.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), shoal_lockfile::Error> {
    /// # let dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-release-{}", std::process::id()));
    /// # shoal_lockfile::ensure_private_dir(&dir)?;
    /// let lock = shoal_lockfile::LockFile::new(dir.join("app.lock"))?;
    /// lock.try_acquire()?.release()?;
    /// assert!(!dir.join("app.lock").exists());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn release(mut self) -> Result<(), Error> {
        self.release_now()
    }

    fn release_now(&mut self) -> Result<(), Error> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        self.verify()?;
        // While we hold the kernel lock no breaker can judge the file stale, so between `verify`
        // and this unlink the name cannot have changed hands.
        let result = sys::unlink(&self.directory.fd, &self.file_name);
        drop(file);
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Err(Error::Lost {
                path: self.path.clone(),
            }),
            Err(error) => Err(Error::io("remove the lock file", &self.path, error)),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Best effort: errors here have nowhere to go. A file left behind is stale once our
        // descriptor closes, and the next acquirer breaks it.
        let _ = self.release_now();
    }
}

/// A temporary record file, removed on drop unless published.
struct TempFile<'a> {
    directory: &'a Directory,
    name: OsString,
    file: Option<HeldFile>,
    id: FileId,
    published: bool,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.published {
            let _ = sys::unlink(&self.directory.fd, &self.name);
        }
    }
}

/// The holder's open lock file: kernel-locked, or plain where the filesystem has no kernel locks.
#[derive(Debug)]
enum HeldFile {
    Locked(LockedFile),
    Unlocked(File),
}

impl HeldFile {
    fn file(&self) -> &File {
        match self {
            HeldFile::Locked(locked) => locked,
            HeldFile::Unlocked(file) => file,
        }
    }
}

/// What a judge holds on a stale lock file while breaking it.
#[expect(
    dead_code,
    reason = "the fields are held for what dropping them does: unlock, and let the inode be recycled"
)]
enum Claim {
    /// Its kernel lock: this judge is the only breaker.
    Locked(LockedFile),
    /// Only a descriptor (no kernel locks on this filesystem): the nonce and inode re-check after
    /// the rename are the only protection.
    Unlocked(File),
}

enum Judgement {
    /// No lock file.
    Free,
    /// The file we opened is no longer at the lock path: judge again.
    Moved,
    Held {
        holder: Option<Record>,
        /// The kernel lock is taken, yet the record says the holder is dead: a breaker is
        /// probably holding the file (or a child forked without exec inherited the lock).
        holder_looks_gone: bool,
    },
    Stale {
        stale: StaleLock,
        claim: Claim,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct TestHooks {
    kill_at: Option<KillPoint>,
    without_kernel_locks: bool,
}

/// Exponential backoff with jitter, so that contenders that collided once do not collide again in
/// lockstep.
pub(crate) struct Backoff {
    next: Duration,
    state: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(1);
    const MAX: Duration = Duration::from_millis(100);

    pub(crate) fn new() -> Backoff {
        let mut seed = [0u8; 8];
        // Jitter only needs to differ between processes; the pid and clock will do if the kernel's
        // randomness is somehow unavailable.
        if sys::random_bytes(&mut seed).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
            seed = (u64::from(nanos) ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
        }
        Backoff {
            next: Backoff::FIRST,
            state: u64::from_le_bytes(seed) | 1,
        }
    }

    /// A delay between half and all of the current step; the step doubles up to 100 ms.
    pub(crate) fn next_delay(&mut self) -> Duration {
        // xorshift64: plenty for jitter.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let step = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        let half = step / 2;
        let jitter_nanos = self.state % (u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1));
        half + Duration::from_nanos(jitter_nanos)
    }
}

fn read_open(mut file: File, path: &Path) -> Result<(sys::Metadata, Option<Record>), Error> {
    let metadata =
        sys::metadata(&file).map_err(|error| Error::io("inspect the lock file", path, error))?;
    if metadata.kind != FileKind::Regular {
        return Err(Error::NotALockFile {
            path: path.to_path_buf(),
            kind: metadata.kind.describe(),
        });
    }
    // Decide "too big" from the size first; the bounded read below would reach the same verdict.
    let record = if metadata.size > MAX_RECORD_LEN as u64 {
        None
    } else {
        record::read_record(&mut file)
            .map_err(|error| Error::io("read the lock file", path, error))?
    };
    Ok((metadata, record))
}

fn new_nonce(path: &Path) -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    sys::random_bytes(&mut bytes).map_err(|error| Error::io("make a nonce for", path, error))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

fn age(time: SystemTime) -> Duration {
    SystemTime::now().duration_since(time).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_its_step() {
        let mut backoff = Backoff::new();
        let mut step = Backoff::FIRST;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} for step {step:?}"
            );
            step = (step * 2).min(Backoff::MAX);
        }
    }

    #[test]
    fn kill_points_round_trip_by_name() {
        for point in KillPoint::ALL {
            assert_eq!(KillPoint::from_name(point.name()), Some(point));
        }
        assert_eq!(KillPoint::from_name("nope"), None);
    }
}
