//! shoal's proxy: the process an MCP host spawns in place of the server, which pipes the host's stdio
//! to the shared daemon (see `docs/design/lifecycle.md` and the `crates/proxy` section of
//! `docs/architecture.md`).
//!
//! `shoal proxy` calls [`arm_parent_death_signal`] first thing in `main`, works out the daemon key
//! and its files, then calls [`run`], which:
//!
//! 1. finds the key's daemon, or starts one under `spawn.lock` (`connect.rs`, `spawn.rs`), without
//!    reading a byte of stdin, so that a failure here can still hand the host's stdio to the server
//!    itself ([`exec_directly`]);
//! 2. pipes host stdin ⇄ daemon ⇄ host stdout line by line, keeping a ledger of the host's
//!    unanswered requests and what to replay (`session.rs`, `ledger.rs`);
//! 3. when the daemon is lost, answers every unanswered request with an error at once, reconnects
//!    (starting a new daemon if needed) and replays the session; stdout stays open throughout;
//! 4. returns once stdin is closed and the owed answers arrived (bounded), the host is gone, or
//!    SIGTERM asked it to stop.

mod connect;
mod environment;
mod fallback;
mod host;
mod ledger;
mod memory;
mod session;
mod spawn;
mod stdio;
mod watchdog;

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

pub use fallback::exec_directly;
/// A process id, as the watchdog reports the host's (re-exported from `nix`).
pub use nix::unistd::Pid;
use shoal_ipc::DaemonPaths;
pub use watchdog::{ParentGone, ParentWatch, arm_parent_death_signal};
#[doc(hidden)]
pub use watchdog::{WatchdogConfig, arm_parent_death_signal_with};

/// The descriptor number the spawned daemon finds its readiness pipe on. [`DaemonCommand::args`]
/// must pass it (`--ready-fd 3` for `shoal daemon`).
pub const READY_FD: RawFd = 3;

/// Everything [`run`] needs: where the daemon lives, how to start one, and who we are.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The runtime directory (made private by the proxy before it takes `spawn.lock`).
    pub runtime_dir: PathBuf,
    /// The files of the daemon key, inside it.
    pub files: DaemonPaths,
    /// The daemon key's id (16 hex characters). The daemon's hello must name it: a daemon of
    /// another key at our socket path means the two sides disagree on the key.
    pub key: String,
    /// How to start a daemon for the key.
    pub daemon: DaemonCommand,
    /// A label for the daemon's logs and `shoal status` (e.g. the host's process name).
    pub label: String,
    /// Timings; tests shorten them.
    #[doc(hidden)]
    pub tuning: Tuning,
}

/// How to start a daemon: `program args...` with the readiness pipe on [`READY_FD`].
#[derive(Clone, Debug)]
pub struct DaemonCommand {
    /// The executable, resolved when the proxy started (see `shoal proxy`).
    pub program: PathBuf,
    /// Its arguments, including the readiness descriptor ([`READY_FD`]).
    pub args: Vec<OsString>,
    /// Variables set for it on top of the proxy's own environment.
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory.
    pub cwd: PathBuf,
}

/// Timings, public for tests only.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Tuning {
    /// How long to wait for `spawn.lock`.
    pub spawn_lock_wait: Duration,
    /// How long a starting daemon may take to write its readiness line.
    pub ready_wait: Duration,
    /// After stdin EOF or SIGTERM, how long owed answers may take before the proxy exits anyway.
    pub drain: Duration,
    /// How long to keep trying to reach a daemon after losing one before giving up.
    pub reconnect_budget: Duration,
    /// How long host requests wait in the queue while the proxy reconnects, before they are
    /// answered with an error.
    pub queue_patience: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            // A start takes tens of milliseconds; a 64-proxy cold start serialises one re-check
            // per proxy behind it. A holder for longer than this is wedged.
            spawn_lock_wait: Duration::from_secs(30),
            // `ready` is written once the daemon listens and its backend is spawned (not yet
            // initialized): a daemon that takes longer is not going to make it.
            ready_wait: Duration::from_secs(15),
            // Hosts that close stdin wait a few seconds before SIGTERM; a slow tool call still
            // running then is of no use to a host that is leaving.
            drain: Duration::from_secs(3),
            // A daemon restart takes milliseconds; minutes of failures mean something is broken
            // for good (runtime dir removed, binary deleted), and the host should hear of it.
            reconnect_budget: Duration::from_secs(120),
            // Long enough for a reconnect that has to start a daemon under load; short enough
            // that a host's own request timeout (often 60 s) does not fire first.
            queue_patience: Duration::from_secs(10),
        }
    }
}

/// Why [`run`] returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The host closed stdin; the answers owed were delivered (or the drain bound passed).
    InputClosed,
    /// The host is gone (the watchdog noticed, or stdout broke).
    HostGone,
    /// SIGTERM while the host lived: the proxy drained and stopped.
    Terminated,
}

/// Why [`run`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No daemon could be found or started, before any of the host's input was read: the caller
    /// may still run the server directly ([`exec_directly`]).
    #[error(transparent)]
    Start(#[from] StartError),
    /// The daemon was lost and none could be reached again within the reconnect budget.
    #[error(
        "reach the shared daemon again after losing it (gave up after {}s)",
        budget.as_secs()
    )]
    Reconnect {
        /// How long the proxy kept trying.
        budget: Duration,
        /// The last attempt's error.
        #[source]
        source: StartError,
    },
    /// The proxy's own event loop could not be set up.
    #[error("set up the proxy's event loop")]
    Runtime(#[source] std::io::Error),
}

/// Why no daemon could be found or started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime or key directory is refused (not ours, writable by others, a symlink...).
    #[error("use the runtime directory")]
    RuntimeDir(#[source] shoal_lockfile::Error),
    /// `spawn.lock` could not be taken (in time).
    #[error("take the spawn lock")]
    SpawnLock(#[source] shoal_lockfile::Error),
    /// A directory the daemon's files live in belongs to another user, who created it first.
    #[error(
        "use {}: it belongs to uid {owner}, not to you (uid {uid}), so no daemon of yours can \
         live there; remove it (as its owner or root) or set SHOAL_RUNTIME_DIR to a directory of \
         your own",
        path.display()
    )]
    NotOurs {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        uid: u32,
    },
    /// The socket cannot be used here (a sandbox forbids Unix sockets, permission denied).
    #[error(
        "connect to {} (Unix sockets seem forbidden here: a sandbox?)",
        path.display()
    )]
    SocketForbidden {
        /// The socket path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon could not be spawned at all.
    #[error("start `{}`", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The daemon started but reported an error, died, or said nothing in time.
    #[error("start the shared daemon: {reason}{}", log_tail_text(log_tail))]
    Daemon {
        /// What the daemon said, or what happened to it.
        reason: String,
        /// The last lines `daemon.log` gained during the attempt.
        log_tail: Vec<String>,
    },
    /// Something answers at the socket but is not a usable daemon for this key (wrong key, pid
    /// or uid, or no hello in time), or a live daemon holds the key but never answered.
    #[error("connect to the daemon at {}: {detail}", path.display())]
    Unusable {
        /// The socket path.
        path: PathBuf,
        /// What was wrong, and what to do.
        detail: String,
    },
}

fn log_tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n  last lines of daemon.log:");
    for line in tail {
        text.push_str("\n    ");
        text.push_str(line);
    }
    text
}

/// Run the proxy until stdin closes, the host goes away, or SIGTERM; see the crate docs.
///
/// `watch` is the watchdog `main` armed first thing (kept for the process's life, as the
/// signal-watching task holds it). Nothing is read from stdin before a daemon
/// answered, so on [`Error::Start`] the caller may still [`exec_directly`] the server with the
/// host's stdio intact.
pub fn run(config: ProxyConfig, watch: &'static ParentWatch) -> Result<Outcome, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let outcome = runtime.block_on(session::run(config, watch));
    // When stdin is neither a pipe nor a socket, tokio reads it on a blocking thread that cannot
    // be interrupted (`stdio.rs`): waiting for it would hang the exit until the host writes again.
    runtime.shutdown_background();
    outcome
}
