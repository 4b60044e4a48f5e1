//! Running a daemon: take ownership of the key, report readiness, serve, exit.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use shoal_wire::{DaemonHello, Readiness};
use tokio::sync::{mpsc, oneshot};

use crate::backend::BackendCommand;
use crate::config::{DaemonConfig, Outcome, StartError};
use crate::connection::{ConnectionContext, accept_loop};
use crate::hub::{Hub, HubSetup};
use crate::outbox::Room;
use crate::ownership::{Ownership, OwnershipError};
use crate::reaper::Reaper;
use crate::router::Router;
use crate::signals::Signals;
use shoal_ipc::DaemonMeta;

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
    // Before anything else (no thread, no lock, no socket exists yet): see `reaper.rs`.
    let reaper = match Reaper::start() {
        Ok(reaper) => Some(reaper),
        Err(error) => {
            tracing::warn!(%error, "could not start the reaper; a daemon crash would leave the server running");
            None
        }
    };
    match crate::limits::raise_open_files_limit() {
        Ok(Some((old, new))) => tracing::debug!(old, new, "raised the open files limit"),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
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
        exited: None,
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
        routed_frames: config.routed_frames,
        custody: config.routed_frames && config.custody && cfg!(target_os = "linux"),
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
        let backend_room = Room::new(config.tuning.backend_queue_soft_limit);
        let context = Arc::new(ConnectionContext {
            uid: nix::unistd::geteuid().as_raw(),
            hello: hello.to_line(),
            routed_frames: hello.routed_frames,
            custody: hello.custody,
            outbox_budget: config.tuning.outbox_budget,
            outbox_soft_limit: config.tuning.outbox_soft_limit,
            stall_timeout: config.tuning.stall_timeout,
            backend_room: Arc::clone(&backend_room),
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
                log: Arc::new(log),
                idle_timeout: config.idle_timeout,
                tuning: config.tuning.clone(),
                backend_room,
                reaper,
            },
            Router::new(
                config.key.root(),
                &version,
                &format!("{}-{:x}", meta.pid, meta.started_at_unix_ms),
            ),
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
        // The hub runs as a task, not as this `block_on` future: a task that wakes the
        // `block_on` future makes the scheduler poll the I/O driver once more before it polls
        // it (an `epoll_wait` with no timeout), while a woken task simply runs next. Every
        // message is handed to the hub by another task, so this saves two system calls per
        // round trip.
        let hub =
            tokio::spawn(async move { hub.run(events, signals, stop_accepting, acceptor).await });
        match hub.await {
            Ok(reason) => Ok(Outcome::Exited(reason)),
            // A bug in the hub is still a crash, as it would have been in `block_on`.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Nothing aborts the hub's task; if something did, the daemon cannot go on.
            Err(error) => Err(StartError::Runtime(std::io::Error::other(error))),
        }
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
