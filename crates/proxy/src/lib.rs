//! shoal's proxy: the process an MCP host spawns in place of the server, which pipes the host's stdio
//! to the shared daemon (see `LIFECYCLE.md` §4).
//!
//! So far it holds the parent-death watchdog: `main` calls [`arm_parent_death_signal`] first thing,
//! and the proxy's main loop awaits [`ParentWatch::parent_gone`] next to stdin EOF.

mod watchdog;

/// A process id, as the watchdog reports the host's (re-exported from `nix`).
pub use nix::unistd::Pid;
pub use watchdog::{ParentGone, ParentWatch, arm_parent_death_signal};
#[doc(hidden)]
pub use watchdog::{WatchdogConfig, arm_parent_death_signal_with};
