//! The daemon's descriptor limit: raised to the hard limit at start.
//!
//! Every session costs the daemon a descriptor, and the common soft limit (1024) is far below the
//! usual hard one. A daemon that runs out cannot accept sessions (they wait, see
//! `connection.rs`), so it takes what the system allows up front. The backend is spawned after
//! this and inherits the raised soft limit, like any child of a shell that raised it.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raise the soft `RLIMIT_NOFILE` to the hard one. Returns the (old, new) soft limits when it
/// changed; a failure leaves the limit as it was and is only worth a log line.
pub(crate) fn raise_open_files_limit() -> Result<Option<(u64, u64)>, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(None);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(Some((soft, hard)))
}
