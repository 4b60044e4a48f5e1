//! How a daemon is configured and how its run ends: the types `run` takes and returns, shared by
//! the start sequence (`run.rs`) and the hub.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::ownership::OwnershipError;
use shoal_ipc::DaemonKey;
use shoal_ipc::DaemonPaths;

/// The default idle timeout: how long a daemon lingers after its last session left. Long enough
/// that closing and reopening an editor or agent reuses the warm server; short enough that a
/// forgotten project does not hold memory for the rest of the day.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How to run one daemon.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// What this daemon serves. Its root is the backend's working directory.
    pub key: DaemonKey,
    /// The runtime directory (see [`resolve_runtime_dir`](shoal_ipc::resolve_runtime_dir)).
    pub runtime_dir: PathBuf,
    /// How long to linger without sessions; `None` never exits on idle.
    pub idle_timeout: Option<Duration>,
    /// Extra environment for the backend, on top of the daemon's own.
    pub backend_env: Vec<(OsString, OsString)>,
    /// Whether the hello offers sessions routed frames ([`shoal_wire::FrameCodec`]); true but
    /// in tests of proxies talking to a daemon without them, as a shoal before them was.
    pub routed_frames: bool,
    /// Whether the hello offers sessions to read their host's input in custody
    /// ([`shoal_wire::ClientHello::custody`]); only with routed frames, and only on Linux.
    /// True but in tests of proxies talking to a daemon without it.
    pub custody: bool,
    /// Internal timings; tests shorten them.
    #[doc(hidden)]
    pub tuning: Tuning,
}

/// Internal timings, public for tests only.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Each polite step of the backend stop sequence (after closing stdin, after SIGTERM) and
    /// the wait after SIGKILL.
    pub stop_grace: Duration,
    /// How often ownership of the lock and socket is checked (self-fencing).
    pub fence_interval: Duration,
    /// How long a new backend may take to answer `initialize` before it counts as failed.
    pub init_timeout: Duration,
    /// The first restart delay after a crash; doubles per crash in the window.
    pub restart_backoff: Duration,
    /// This many failures within `crash_loop_window` is a crash loop.
    pub crash_loop_max: usize,
    /// The window for `crash_loop_max`.
    pub crash_loop_window: Duration,
    /// How long after a crash loop was declared a joining session gets the server one more try.
    pub fresh_try_after: Duration,
    /// Bytes a session's outbox may hold before the client counts as not reading.
    pub outbox_budget: usize,
    /// Bytes in a session's outbox beyond which the daemon stops reading its requests.
    pub outbox_soft_limit: usize,
    /// How long a write to a session may make no progress before it is cut off.
    pub stall_timeout: Duration,
    /// Bytes queued for the backend's stdin beyond which sessions' messages are not read.
    pub backend_queue_soft_limit: usize,
    /// Size past which `daemon.log` is rotated to `daemon.log.1` (checked every `fence_interval`).
    pub log_limit: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            // `docs/design/lifecycle.md`, "Backend supervision": 2 s per step.
            stop_grace: Duration::from_secs(2),
            // A fenced daemon must be gone within 5 s: a 1 s check leaves the rest for the drain.
            fence_interval: Duration::from_secs(1),
            // Hosts give up on a handshake after about a minute; a server slower than that to
            // initialize is treated as failed.
            init_timeout: Duration::from_secs(60),
            restart_backoff: Duration::from_millis(100),
            crash_loop_max: 5,
            crash_loop_window: Duration::from_secs(60),
            // The longest restart backoff: a user who fixed the cause and opens a new session a
            // few seconds later is served, and a loop of sessions cannot restart it faster
            // than the backoff would have.
            fresh_try_after: Duration::from_secs(5),
            // Two of the largest messages the codec accepts: a client that is behind by more
            // than that is not reading.
            outbox_budget: 2 * shoal_wire::DEFAULT_MAX_LINE_LEN,
            // A session this far behind on its answers asks for no more until it catches up; its
            // outbox then grows only by the answers to requests already made.
            outbox_soft_limit: 8 * 1024 * 1024,
            // Hosts read their server's stdout continuously; one that has not taken a byte for a
            // minute is stuck, and holds its queue (up to `outbox_budget`) until it is cut off.
            stall_timeout: Duration::from_secs(60),
            // A few large messages, or thousands of small ones, ahead of a busy server: enough to
            // keep it fed, small enough that back-pressure reaches the hosts soon. The queue can
            // exceed it by at most one line per session (each reader checks before it reads).
            backend_queue_soft_limit: 8 * 1024 * 1024,
            // Weeks of a daemon's own lines, or a chatty server's recent past; two files at most.
            log_limit: 8 * 1024 * 1024,
        }
    }
}

impl DaemonConfig {
    /// A configuration with the default idle timeout and no extra environment.
    ///
    /// ```
    /// use shoal_daemon::DaemonConfig;
    /// use shoal_ipc::DaemonKey;
    ///
    /// let key = DaemonKey::new("/work/project".into(), vec!["my-mcp-server".into()], "0.1.0", 1, vec![]);
    /// let config = DaemonConfig::new(key, "/tmp/shoal-1000".into());
    /// assert_eq!(config.idle_timeout, Some(shoal_daemon::DEFAULT_IDLE_TIMEOUT));
    /// ```
    pub fn new(key: DaemonKey, runtime_dir: PathBuf) -> DaemonConfig {
        DaemonConfig {
            key,
            runtime_dir,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            backend_env: Vec::new(),
            routed_frames: true,
            custody: true,
            tuning: Tuning::default(),
        }
    }

    /// The files of this daemon's key.
    pub fn paths(&self) -> DaemonPaths {
        DaemonPaths::new(&self.runtime_dir, &self.key.id())
    }
}

/// How a daemon run ended, when it started at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Another live daemon serves the key; this one left it untouched.
    Held {
        /// The live daemon's pid, when its lock record was readable.
        pid: Option<u32>,
    },
    /// The daemon served and then exited for this reason.
    Exited(ExitReason),
}

/// Why a daemon that served exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// No session for the idle timeout.
    Idle,
    /// A control `stop` request.
    Stopped,
    /// SIGTERM or SIGINT.
    Signal(&'static str),
    /// Its lock or socket stopped naming it (deleted, or taken over by another daemon).
    Fenced(String),
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Idle => f.write_str("idle timeout"),
            ExitReason::Stopped => f.write_str("stop requested"),
            ExitReason::Signal(name) => write!(f, "received {name}"),
            ExitReason::Fenced(why) => write!(f, "fenced: {why}"),
        }
    }
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime directory, the lock or the socket.
    #[error(transparent)]
    Ownership(OwnershipError),
    /// A file the daemon writes (its log, `meta.json`).
    #[error("write {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime or the signal handlers.
    #[error("set up the daemon's event loop")]
    Runtime(#[source] std::io::Error),
    /// The backend could not be spawned.
    #[error("start the MCP server `{program}`")]
    Backend {
        /// The backend's program, as given.
        program: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}
