//! Running a daemon: take ownership of the key, report readiness, serve, exit.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use shoal_wire::{DaemonHello, Readiness};
use tokio::sync::{mpsc, oneshot};

use crate::backend::BackendCommand;
use crate::connection::{ConnectionContext, accept_loop};
use crate::hub::{Hub, HubSetup};
use crate::key::DaemonKey;
use crate::meta::DaemonMeta;
use crate::ownership::{Ownership, OwnershipError};
use crate::paths::DaemonPaths;
use crate::router::Router;
use crate::signals::Signals;

/// The default idle timeout: how long a daemon lingers after its last session left. Long enough
/// that closing and reopening an editor or agent reuses the warm server; short enough that a
/// forgotten project does not hold memory for the rest of the day.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How to run one daemon.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// What this daemon serves. Its root is the backend's working directory.
    pub key: DaemonKey,
    /// The runtime directory (see [`resolve_runtime_dir`](crate::resolve_runtime_dir)).
    pub runtime_dir: PathBuf,
    /// How long to linger without sessions; `None` never exits on idle.
    pub idle_timeout: Option<Duration>,
    /// Extra environment for the backend, on top of the daemon's own.
    pub backend_env: Vec<(OsString, OsString)>,
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
    /// Bytes a session's outbox may hold before the client counts as not reading.
    pub outbox_budget: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            // LIFECYCLE §5: 2 s per step.
            stop_grace: Duration::from_secs(2),
            // A fenced daemon must be gone within 5 s: a 1 s check leaves the rest for the drain.
            fence_interval: Duration::from_secs(1),
            // Hosts give up on a handshake after about a minute; a server slower than that to
            // initialize is treated as failed.
            init_timeout: Duration::from_secs(60),
            restart_backoff: Duration::from_millis(100),
            crash_loop_max: 5,
            crash_loop_window: Duration::from_secs(60),
            // Two of the largest messages the codec accepts: a client that is behind by more
            // than that is not reading.
            outbox_budget: 2 * shoal_wire::DEFAULT_MAX_LINE_LEN,
        }
    }
}

impl DaemonConfig {
    /// A configuration with the default idle timeout and no extra environment.
    ///
    /// ```
    /// use shoal_daemon::{DaemonConfig, DaemonKey};
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

/// Run a daemon for `config` until it exits.
///
/// `readiness` is the write end of the pipe the spawner waits on: it receives exactly one
/// [`Readiness`] line (ready, held, or error) and is closed. The caller installs logging first;
/// the daemon's stderr is expected to be `daemon.log`.
pub fn run(config: DaemonConfig, readiness: Option<File>) -> Result<Outcome, StartError> {
    let mut readiness = ReadinessPipe(readiness);
    let result = start_and_serve(config, &mut readiness);
    match &result {
        Ok(Outcome::Held { pid }) => readiness.send(&Readiness::Held { pid: *pid }),
        Err(error) => readiness.send(&Readiness::Error {
            reason: error_chain(error),
        }),
        Ok(Outcome::Exited(_)) => {}
    }
    result
}

fn start_and_serve(
    config: DaemonConfig,
    readiness: &mut ReadinessPipe,
) -> Result<Outcome, StartError> {
    let paths = config.paths();
    let key_id = config.key.id();
    let version = config.key.shoal_version().to_owned();
    let (ownership, listener) = match Ownership::take(&config.runtime_dir, &paths, &version) {
        Ok(owned) => owned,
        Err(OwnershipError::Held { holder }) => {
            let pid = holder.as_ref().map(|record| record.pid());
            tracing::info!(holder_pid = pid, "another daemon already serves this key");
            return Ok(Outcome::Held { pid });
        }
        Err(error) => return Err(StartError::Ownership(error)),
    };
    let file_error = |path: &PathBuf| {
        let path = path.clone();
        move |source| StartError::File { path, source }
    };
    let log = paths.open_log().map_err(file_error(&paths.log))?;
    let text = |value: &std::ffi::OsStr| value.to_string_lossy().into_owned();
    let argv: Vec<String> = config.key.argv().iter().map(|arg| text(arg)).collect();
    let root = text(config.key.root().as_os_str());
    let meta = DaemonMeta {
        pid: std::process::id(),
        version: version.clone(),
        protocol: config.key.protocol(),
        key: key_id.as_str().to_owned(),
        root: root.clone(),
        argv: argv.clone(),
        socket: text(paths.socket.as_os_str()),
        started_at_unix_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            }),
        idle_timeout_ms: config
            .idle_timeout
            .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
    };
    meta.write(&paths.meta).map_err(file_error(&paths.meta))?;

    // One thread: the backend's parent-death signal is tied to the thread that spawned it, and
    // one thread is plenty for a daemon whose work is moving bytes between sockets and pipes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let hello = DaemonHello {
        version: version.clone(),
        pid: std::process::id(),
        nonce: ownership.record().nonce().to_owned(),
        key: key_id.as_str().to_owned(),
    };
    let command = BackendCommand {
        argv: config.key.argv().to_vec(),
        cwd: config.key.root().to_path_buf(),
        env: config.backend_env.clone(),
    };
    runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .map_err(StartError::Runtime)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(StartError::Runtime)?;
        let signals = Signals::install().map_err(StartError::Runtime)?;
        let (events_sender, events) = mpsc::channel(EVENT_QUEUE);
        let context = Arc::new(ConnectionContext {
            uid: nix::unistd::geteuid().as_raw(),
            hello: {
                let mut line = hello.to_line().into_bytes().to_vec();
                line.push(b'\n');
                line
            },
            outbox_budget: config.tuning.outbox_budget,
            next_client: AtomicU64::new(1),
        });
        let mut hub = Hub::new(
            HubSetup {
                key: key_id.as_str().to_owned(),
                root,
                argv,
                version: version.clone(),
                command,
                paths: paths.clone(),
                log,
                idle_timeout: config.idle_timeout,
                tuning: config.tuning.clone(),
                router: Router::new(
                    config.key.root(),
                    &version,
                    &format!("{}-{:x}", meta.pid, meta.started_at_unix_ms),
                ),
            },
            ownership,
            events_sender.clone(),
        );
        let program = config
            .key
            .argv()
            .first()
            .map(|program| program.to_string_lossy().into_owned())
            .unwrap_or_default();
        let backend_pid = hub
            .start_first_backend()
            .map_err(|source| StartError::Backend { program, source })?;
        let (stop_accepting, stop_signal) = oneshot::channel();
        let acceptor = tokio::spawn(accept_loop(listener, context, events_sender, stop_signal));
        tracing::info!(
            pid = std::process::id(),
            backend_pid,
            key = key_id.as_str(),
            "daemon ready"
        );
        readiness.send(&Readiness::Ready {
            pid: std::process::id(),
            socket: paths.socket.to_string_lossy().into_owned(),
        });
        let reason = hub.run(events, signals, stop_accepting, acceptor).await;
        Ok(Outcome::Exited(reason))
    })
}

/// Events queued for the hub before senders wait. Senders are connection readers and the
/// backend's stdout reader, so a full queue throttles input, never output.
const EVENT_QUEUE: usize = 1024;

/// The readiness pipe: written once, then closed.
struct ReadinessPipe(Option<File>);

impl ReadinessPipe {
    fn send(&mut self, readiness: &Readiness) {
        if let Some(mut pipe) = self.0.take() {
            let mut line = readiness.to_line().as_bytes().to_vec();
            line.push(b'\n');
            // The spawner may have given up and gone (EPIPE): nobody is left to tell.
            let _ = pipe.write_all(&line);
        }
    }
}

/// An error and its sources, joined with ": ", for the one-line readiness reason.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
