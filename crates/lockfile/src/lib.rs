//! Atomic, PID-reuse-proof lock files for Unix.
//!
//! A [`LockFile`] makes sure at most one process at a time holds a lock, and tells everyone else who
//! holds it. It is built for the failures that lock files usually get wrong:
//!
//! - **No partial records.** The holder's [`Record`] (pid, process start token, host, uid, program
//!   version, your data, a random nonce) is written in full to a private temporary file and
//!   published with `link(2)`, which is atomic and never replaces. Readers never see an empty or
//!   half-written lock file.
//! - **PID reuse cannot fool it.** Liveness is the holder's `flock(2)` on the file, which the kernel
//!   drops when the holder dies, however it dies. The pid in the record is for humans and for the
//!   fallback on filesystems without kernel locks (where it is checked against the process start
//!   token, never trusted alone).
//! - **Stale locks are broken safely,** by compare-and-delete, even by 64 processes at once: exactly
//!   one of them ends up holding the lock.
//! - **Release never deletes a successor's lock,** and [`Guard::verify`] tells a long-lived holder
//!   whether the lock is still its own.
//! - **Not acquiring is an error carrying the holder** ([`Error::Held`]), never a `false` that a
//!   caller can ignore.
//!
//! Also here: [`ensure_private_dir`] (create and check the directory lock files live in) and
//! [`PersistentLock`] (a never-deleted lock file held around short decisions, such as "start a
//! server unless one runs").
//!
//! # Quick start
//!
//! ```
//! # fn main() -> Result<(), shoal_lockfile::Error> {
//! # let runtime_dir = std::env::temp_dir().join(format!("shoal-lockfile-doc-quickstart-{}", std::process::id()));
//! use shoal_lockfile::{LockFile, ensure_private_dir};
//!
//! // Lock files belong in a directory only you can write to.
//! ensure_private_dir(&runtime_dir)?;
//!
//! let lock = LockFile::new(runtime_dir.join("myapp.lock"))?
//!     .program_version(env!("CARGO_PKG_VERSION"))
//!     .data("listening on /run/user/1000/myapp.sock");
//!
//! match lock.try_acquire() {
//!     Ok(guard) => {
//!         // We are the only instance until `guard` is dropped (or the process dies).
//!         println!("running as {}", guard.record());
//!     }
//!     Err(error) if error.is_held() => {
//!         let holder = error.holder().map(|holder| holder.data().to_owned());
//!         println!("another instance runs: {error} (it says: {holder:?})");
//!     }
//!     Err(error) => return Err(error),
//! }
//! # std::fs::remove_dir_all(&runtime_dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # Platforms
//!
//! Linux is the main target. macOS and the BSDs build and work, in a degraded mode for the one
//! fallback that needs a process start token (which there is `None`): on a filesystem without kernel
//! locks, a live process that reused a dead holder's pid keeps the lock looking held. Windows is not
//! supported.
//!
//! # What this crate does not do
//!
//! It does not log (errors are returned), spawn threads, or install signal handlers, and it does not
//! protect against another user who can write to the lock directory: that is what
//! [`ensure_private_dir`] refuses.

#![deny(missing_docs)]

#[cfg(not(unix))]
compile_error!(
    "shoal-lockfile supports Unix only (Linux, macOS, the BSDs): it is built on flock(2), link(2) \
     and O_NOFOLLOW, which Windows does not have"
);

mod dir;
mod error;
mod lock;
mod persistent;
mod record;
mod sys;

pub use dir::{check_private_dir, ensure_private_dir};
pub use error::Error;
#[doc(hidden)]
pub use lock::KillPoint;
pub use lock::{BreakOutcome, Guard, LockFile, LockState, StaleLock};
pub use persistent::{PersistentGuard, PersistentLock};
pub use record::{MAX_RECORD_LEN, Record};
