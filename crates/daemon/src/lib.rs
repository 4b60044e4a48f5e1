//! shoal's daemon: the long-lived process that owns one project's shared MCP server.
//!
//! One daemon runs per [`DaemonKey`](shoal_ipc::DaemonKey) (project root, server command, shoal version). It owns the
//! key's runtime directory, starts the backend server once, multiplexes every client session onto
//! it, and exits when the last session has been gone for the idle timeout, taking the backend's
//! whole process tree with it. See `docs/architecture.md` for the state machine and invariants.
//!
//! The entry point is [`run`]: the `shoal daemon` command (and tests) call it in a process of
//! its own, with a readiness pipe from whoever spawned it.

mod backend;
mod config;
mod connection;
mod detach;
mod hub;
mod idle;
mod limits;
mod logfile;
mod memory;
mod outbox;
mod own_keys;
mod ownership;
mod reaper;
mod router;
mod run;
#[cfg(test)]
mod scratch;
mod signals;

pub use backend::{BackendCommand, StopOutcome};
pub use config::{DEFAULT_IDLE_TIMEOUT, DaemonConfig, ExitReason, Outcome, StartError, Tuning};
pub use detach::detach;
pub use idle::{IdleTimeoutError, parse_idle_timeout};
pub use ownership::OwnershipError;
pub use run::run;
