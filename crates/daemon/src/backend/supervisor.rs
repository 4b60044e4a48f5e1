//! One backend process at a time: its stdin writer, stdout reader and exit watcher as tasks that
//! report to the hub as [`BackendEvent`]s tagged with a generation.
//!
//! The generation tells the hub which process an event is about: after a restart, a late line or
//! exit report from the previous process must not be mistaken for news about the new one.
//!
//! Ordering: the watcher reports `Exited` only after the reader has delivered every line the
//! process wrote (or a bound has passed, for a grandchild that keeps stdout open), so an answer
//! written just before a crash still reaches its client instead of being failed as lost.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsFd as _;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use shoal_wire::{Line, LineCodec, LineError};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::process::{BackendCommand, BackendProcess, StopOutcome, StopTimeouts};
use crate::outbox::{Outbox, Outgoing, PushError, Room, outbox_in};
use shoal_ipc::next_line;
use shoal_ipc::socket::TryWriter;

/// What the backend's tasks report.
#[derive(Debug)]
pub(crate) enum BackendEvent {
    /// A line (or an unreadable one) from the backend's stdout.
    Line {
        generation: u64,
        line: Result<Line, LineError>,
    },
    /// The process exited without being asked to; what was left of its group was stopped.
    Exited {
        generation: u64,
        status: io::Result<ExitStatus>,
    },
    /// The process was stopped on request.
    Stopped {
        generation: u64,
        outcome: StopOutcome,
    },
    /// The process closed one of its pipes but kept running, so it could never answer again:
    /// its group was stopped (`what` says which pipe, for the log and the clients' errors).
    HalfClosed { generation: u64, what: &'static str },
}

/// How long the watcher waits for the reader to reach EOF after the process exited. A grandchild
/// that inherited stdout can keep it open forever; its lines are not worth waiting longer for.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How long a process that closed its stdout (or stopped reading its stdin) has to exit before it
/// counts as half-closed. A process that is dying closes its pipes a moment before it is reaped;
/// one that is still alive after this will never answer on that pipe again.
const HALF_CLOSED_GRACE: Duration = Duration::from_secs(1);

/// The hub's handle on the running backend.
#[derive(Debug)]
pub(crate) struct Backend {
    generation: u64,
    pid: u32,
    stdin: Option<Outbox>,
    stop: Option<oneshot::Sender<()>>,
    watcher: JoinHandle<()>,
}

impl Backend {
    /// Spawn `command` (its stderr copied to `log`, timestamped) and the tasks around it,
    /// reporting to `events`. Bytes
    /// queued for its stdin are counted in `stdin_room` (see `outbox.rs`).
    ///
    /// Must run on the daemon's main thread: the parent-death signal fires when the *thread* that
    /// spawned the process exits.
    pub(crate) fn start<E>(
        command: &BackendCommand,
        log: &Arc<File>,
        generation: u64,
        timeouts: StopTimeouts,
        stdin_room: &Arc<Room>,
        events: mpsc::Sender<E>,
    ) -> io::Result<Backend>
    where
        E: From<BackendEvent> + Send + 'static,
    {
        let (mut process, stdout, stderr) = BackendProcess::spawn(command, Stdio::piped())?;
        if let Some(stderr) = stderr {
            tokio::spawn(super::stderr::copy_to_log(stderr, Arc::clone(log)));
        }
        let pid = process.pid();
        let (mut stdin_outbox, stdin_receiver) = outbox_in(Arc::clone(stdin_room));
        let (stdin_failed_sender, stdin_failed) = oneshot::channel();
        let mut stdin_closed: StdinClosed = Box::pin(std::future::pending());
        if let Some(stdin) = process.take_stdin() {
            // Requests go straight into the pipe while the writer has nothing (nearly always):
            // without, every request woke the writer task to write it. Without a duplicate
            // descriptor, the writer writes them all, as before.
            stdin_outbox =
                stdin_outbox.with_direct_writes(TryWriter::duplicate(stdin.as_fd()).ok());
            // A server that closes its stdin while nothing is being written to it would hold
            // what was already written (its pipe buffer) forever: the close is watched too, by
            // the watcher (a branch beside the writes here would be polled for every message).
            stdin_closed = Box::pin(reader_gone(&stdin));
            tokio::spawn(async move {
                // No stall bound: a busy server may leave its stdin unread for as long as it likes.
                if stdin_receiver.write_all_to(stdin, None).await.is_err() {
                    let _ = stdin_failed_sender.send(());
                }
            });
        }
        let (reader_done_sender, reader_done) = oneshot::channel();
        tokio::spawn(read_stdout(
            stdout,
            generation,
            events.clone(),
            reader_done_sender,
        ));
        let (stop, stop_requested) = oneshot::channel();
        let watcher = tokio::spawn(watch(
            process,
            generation,
            timeouts,
            Signals {
                stop_requested,
                reader_done,
                stdin_failed,
                stdin_closed,
            },
            events,
        ));
        Ok(Backend {
            generation,
            pid,
            stdin: Some(stdin_outbox),
            stop: Some(stop),
            watcher,
        })
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Queue a message for the backend's stdin.
    pub(crate) fn send(&self, message: Outgoing) -> Result<(), PushError> {
        match &self.stdin {
            Some(stdin) => stdin.push(message),
            None => Err(PushError::Closed),
        }
    }

    /// Begin the stop sequence: close stdin (once what is queued is written), then signal the
    /// group; a [`BackendEvent::Stopped`] follows. Returns the watcher to await when the hub
    /// will not read events any more.
    pub(crate) fn stop(mut self) -> JoinHandle<()> {
        self.stdin = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.watcher
    }
}

/// Resolves when the read end of the pipe `stdin` writes to is closed (the kernel reports an
/// error on the write end once no reader is left), or never if that cannot be watched.
fn reader_gone(stdin: &ChildStdin) -> impl Future<Output = ()> + use<> {
    let watched = stdin.as_fd().try_clone_to_owned().and_then(|duplicate| {
        // SAFETY: the `AsyncFd` owns `duplicate`, an open descriptor that nothing else can close
        // or replace, and `OwnedFd::as_raw_fd` returns the same number for as long as it lives.
        // (epoll keys registrations by descriptor, hence a duplicate of its own.)
        unsafe { AsyncFd::register_with_interest(duplicate, Interest::ERROR) }
            .map_err(io::Error::from)
    });
    async move {
        match watched {
            Ok(fd) => {
                let _ = fd.ready(Interest::ERROR).await;
            }
            Err(error) => {
                tracing::debug!(%error, "cannot watch the MCP server's stdin for its close");
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn read_stdout<E: From<BackendEvent>>(
    stdout: ChildStdout,
    generation: u64,
    events: mpsc::Sender<E>,
    done: oneshot::Sender<()>,
) {
    let mut reader = FramedRead::new(stdout, LineCodec::new());
    while let Some(item) = next_line(&mut reader).await {
        let line = match item {
            Ok(line) => line,
            // A read error on a pipe: the process is going away; the watcher reports it.
            Err(_) => break,
        };
        if events
            .send(BackendEvent::Line { generation, line }.into())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = done.send(());
}

/// What the watcher waits on besides the process itself.
struct Signals {
    /// The hub asked for a stop (or dropped its handle, which counts as asking).
    stop_requested: oneshot::Receiver<()>,
    /// The stdout reader ended: EOF, a read error, or nobody left to report to.
    reader_done: oneshot::Receiver<()>,
    /// A write to the process's stdin failed.
    stdin_failed: oneshot::Receiver<()>,
    /// The process closed its stdin (see [`reader_gone`]).
    stdin_closed: StdinClosed,
}

type StdinClosed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How the watcher's wait ended.
enum Ended {
    Exited(io::Result<ExitStatus>),
    StopRequested,
    /// A pipe closed while the process may still run.
    PipeClosed(&'static str),
}

/// Owns the process: reports its exit, stops it on request, and stops it when it closed a pipe
/// but kept running (a server that closed its stdout, or stopped reading its stdin, would
/// otherwise hold every request sent to it forever).
async fn watch<E: From<BackendEvent>>(
    mut process: BackendProcess,
    generation: u64,
    timeouts: StopTimeouts,
    mut signals: Signals,
    events: mpsc::Sender<E>,
) {
    let mut reader_done = signals.reader_done;
    let mut reader_finished = false;
    // Exits: the process exits, the hub asks for a stop, or a pipe closes (then the process gets
    // a short grace to exit on its own before it counts as half-closed).
    let ended = tokio::select! {
        status = process.wait() => Ended::Exited(status),
        _ = &mut signals.stop_requested => Ended::StopRequested,
        _ = &mut reader_done => {
            reader_finished = true;
            Ended::PipeClosed("closed its stdout")
        }
        Ok(()) = &mut signals.stdin_failed => Ended::PipeClosed("stopped reading its stdin"),
        () = &mut signals.stdin_closed => Ended::PipeClosed("stopped reading its stdin"),
    };
    // It holds a duplicate of the stdin pipe's write end: kept, the server would never see EOF
    // once the writer closed its end, and every stop would wait out its grace for a SIGTERM.
    drop(signals.stdin_closed);
    let ended = match ended {
        Ended::PipeClosed(what) => {
            match tokio::time::timeout(HALF_CLOSED_GRACE, process.wait()).await {
                Ok(status) => Ended::Exited(status),
                Err(_still_running) => Ended::PipeClosed(what),
            }
        }
        ended => ended,
    };
    let drained = async {
        if !reader_finished {
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, reader_done).await;
        }
    };
    let event = match ended {
        Ended::Exited(status) => {
            // The leader is gone; a wrapper's children may not be. Clean up the group now, not
            // when the daemon exits.
            let _ = process.stop(timeouts).await;
            drained.await;
            BackendEvent::Exited { generation, status }
        }
        Ended::StopRequested => {
            let outcome = process.stop(timeouts).await;
            drained.await;
            BackendEvent::Stopped {
                generation,
                outcome,
            }
        }
        Ended::PipeClosed(what) => {
            tracing::warn!(
                generation,
                "the MCP server {what} but kept running; stopping it"
            );
            let _ = process.stop(timeouts).await;
            drained.await;
            BackendEvent::HalfClosed { generation, what }
        }
    };
    let _ = events.send(event.into()).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// A server that exits on EOF is stopped by the close of its stdin alone, with no signal:
    /// nothing the backend's tasks keep (the close watch's duplicate of the pipe among them)
    /// holds its stdin open.
    #[tokio::test(flavor = "current_thread")]
    async fn a_server_that_exits_on_eof_is_stopped_without_a_signal() {
        let dir = crate::scratch::ScratchDir::new("shoal-daemon", "supervisor-eof");
        std::fs::create_dir_all(&dir).unwrap();
        let log = Arc::new(File::create(dir.join("daemon.log")).unwrap());
        let command = BackendCommand {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo ready; cat >/dev/null".into(),
            ],
            cwd: dir.to_path_buf(),
            env: vec![],
        };
        // Generous enough not to matter on a loaded machine, far beyond what an EOF exit takes.
        let timeouts = StopTimeouts {
            after_stdin_close: Duration::from_secs(5),
            after_sigterm: Duration::from_secs(5),
            after_sigkill: Duration::from_secs(5),
        };
        let (events, mut received) = mpsc::channel::<BackendEvent>(16);
        let backend = Backend::start(&command, &log, 1, timeouts, &Room::new(1 << 20), events)
            .expect("sh starts");
        let first = tokio::time::timeout(DEADLINE, received.recv())
            .await
            .expect("timed out waiting for the server's first line");
        assert!(
            matches!(first, Some(BackendEvent::Line { line: Ok(_), .. })),
            "{first:?}"
        );
        let _watcher = backend.stop();
        let stopped = tokio::time::timeout(DEADLINE, received.recv())
            .await
            .expect("timed out waiting for the stop");
        assert!(
            matches!(
                stopped,
                Some(BackendEvent::Stopped {
                    outcome: StopOutcome::ExitedOnEof,
                    ..
                })
            ),
            "{stopped:?}"
        );
    }
}
