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
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use shoal_wire::{Line, LineCodec, LineError};
use tokio::process::ChildStdout;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::process::{BackendCommand, BackendProcess, StopOutcome, StopTimeouts};
use crate::outbox::{Outbox, Outgoing, PushError, outbox};
use crate::stream::next_line;

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
}

/// Bytes the daemon may queue for the backend's stdin. Beyond this the backend is not keeping up
/// (or not reading at all), and requests are answered with an error instead of growing memory.
const STDIN_BUDGET: usize = 64 * 1024 * 1024;

/// How long the watcher waits for the reader to reach EOF after the process exited. A grandchild
/// that inherited stdout can keep it open forever; its lines are not worth waiting longer for.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

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
    /// Spawn `command` (stderr to `log`) and the tasks around it, reporting to `events`.
    ///
    /// Must run on the daemon's main thread: the parent-death signal fires when the *thread* that
    /// spawned the process exits.
    pub(crate) fn start<E>(
        command: &BackendCommand,
        log: &File,
        generation: u64,
        timeouts: StopTimeouts,
        events: mpsc::Sender<E>,
    ) -> io::Result<Backend>
    where
        E: From<BackendEvent> + Send + 'static,
    {
        let (mut process, stdout) = BackendProcess::spawn(command, Stdio::from(log.try_clone()?))?;
        let pid = process.pid();
        let (stdin_outbox, stdin_receiver) = outbox(STDIN_BUDGET);
        if let Some(stdin) = process.take_stdin() {
            tokio::spawn(stdin_receiver.write_all_to(stdin));
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
            stop_requested,
            reader_done,
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

/// Owns the process: reports its exit, or stops it on request (or when the hub drops its handle).
async fn watch<E: From<BackendEvent>>(
    mut process: BackendProcess,
    generation: u64,
    timeouts: StopTimeouts,
    mut stop_requested: oneshot::Receiver<()>,
    reader_done: oneshot::Receiver<()>,
    events: mpsc::Sender<E>,
) {
    let exited = tokio::select! {
        // Either branch can win: the process exits, or the hub asks for a stop (or drops the
        // handle, which counts as asking).
        status = process.wait() => Some(status),
        _ = &mut stop_requested => None,
    };
    let event = match exited {
        Some(status) => {
            // The leader is gone; a wrapper's children may not be. Clean up the group now, not
            // when the daemon exits.
            let _ = process.stop(timeouts).await;
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, reader_done).await;
            BackendEvent::Exited { generation, status }
        }
        None => {
            let outcome = process.stop(timeouts).await;
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, reader_done).await;
            BackendEvent::Stopped {
                generation,
                outcome,
            }
        }
    };
    let _ = events.send(event.into()).await;
}
