//! shoal's daemon: the long-lived process that owns one project's shared MCP server.
//!
//! One daemon runs per [`DaemonKey`] (project root, server command, shoal version). It owns the
//! key's runtime directory, starts the backend server once, multiplexes every client session onto
//! it, and exits when the last session has been gone for the idle timeout, taking the backend's
//! whole process tree with it. See `docs/architecture.md` for the state machine and invariants.

#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "process control and restart policy are driven by the supervisor, which lands with \
                  the daemon's main loop (issue #4); until then only their tests use them"
    )
)]
mod backend;
mod key;
mod ownership;
mod paths;

pub use backend::{BackendCommand, StopOutcome};
pub use key::{DaemonKey, KeyId};
pub use ownership::{Fenced, Ownership, OwnershipError};
pub use paths::{DaemonPaths, MAX_SOCKET_PATH, RuntimeDirSource, resolve_runtime_dir};
