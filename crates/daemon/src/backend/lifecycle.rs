//! The backend's lifecycle: which process is running, stopping or due to restart, and what a
//! failure means. One owner for that state; the hub asks it and acts on what it answers.
//!
//! ```text
//!  spawn ──▶ Running (initialize in flight, deadline armed) ── initialized ──▶ Running (serving)
//!   ▲          │ exits unasked / init deadline / wedged stdin / bad initialize
//!   │          ▼
//!   │        failure recorded ──▶ RestartAfter(backoff): `restart_at` armed ──┐
//!   │          │ too many in the window                                      │
//!   │          ▼                                                             │
//!   │        CrashLoop: down until a control `restart`                       │
//!   └───────────────────────────────────────────────────────────────────────┘
//!  control `restart` (any state): Running → Stopping(then Restart) → spawn; Down → spawn.
//! ```
//!
//! Whether the backend can *serve* is not decided here: that is the router's phase (it knows
//! whether `initialize` was answered). This module knows processes: generations, stop sequences,
//! backoff and the crash history. Events of an earlier generation are ignored, so a late line or
//! exit of a replaced process never touches its successor.

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_wire::{ControlResponse, Line, LineError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::policy::{CrashHistory, RestartDecision, RestartPolicy};
use super::process::{BackendCommand, StopTimeouts};
use super::supervisor::{Backend, BackendEvent};
use crate::outbox::{Outgoing, PushError, Room};
use crate::reaper::Reaper;

/// What the lifecycle needs to start and stop processes.
#[derive(Debug)]
pub(crate) struct LifecycleConfig {
    pub(crate) command: BackendCommand,
    /// Where the backend's stderr goes (`daemon.log`, shared with the hub, which rotates it).
    pub(crate) log: Arc<File>,
    /// Each polite step of the stop sequence.
    pub(crate) stop_grace: Duration,
    /// How long a new process may take to answer `initialize`.
    pub(crate) init_timeout: Duration,
    /// After a crash loop, how long until a joining session gets one more try.
    pub(crate) fresh_try_after: Duration,
    /// Where the bytes queued for every process's stdin are counted; session readers wait on it.
    pub(crate) stdin_room: Arc<Room>,
    /// Told each process group, so that it can stop it if the daemon dies (`reaper.rs`).
    pub(crate) reaper: Option<Reaper>,
    pub(crate) policy: RestartPolicy,
}

/// Why a running process is being stopped, and what happens once it is gone.
#[derive(Debug)]
pub(crate) enum AfterStop {
    /// `shoal restart`: start a new one at once.
    Restart,
    /// The backend failed (wedged, bad or late initialize): count it as a crash.
    Failed(String),
}

/// What an event from the backend's tasks means to the hub.
#[derive(Debug)]
pub(crate) enum Step {
    /// Nothing to do (an event of an earlier process).
    None,
    /// A line from the running process, for the router.
    Line(Result<Line, LineError>),
    /// The process went without being asked to, or a stop for a failure finished: the hub
    /// answers what it held and calls [`Lifecycle::failed`].
    Failed(String),
    /// A stop for `shoal restart` finished: start the next process.
    Restart,
}

/// What a recorded failure leads to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A restart is scheduled ([`Lifecycle::restart_at`]).
    RestartScheduled(Duration),
    /// Too many failures: down until a control `restart`. The reason says so, for clients.
    CrashLoop(String),
}

#[derive(Debug)]
enum Slot {
    Running(Backend),
    /// A stop was asked for; `then` runs when its `Stopped` event arrives.
    Stopping {
        generation: u64,
        watcher: JoinHandle<()>,
        then: AfterStop,
    },
    Down,
}

#[derive(Debug)]
pub(crate) struct Lifecycle<E> {
    config: LifecycleConfig,
    events: mpsc::Sender<E>,
    slot: Slot,
    /// The number of the latest process; 0 before the first.
    generation: u64,
    crashes: CrashHistory,
    restart_at: Option<tokio::time::Instant>,
    init_deadline: Option<tokio::time::Instant>,
    /// `shoal restart` requests waiting for the new process to be initialized.
    restart_replies: Vec<oneshot::Sender<ControlResponse>>,
    /// The running (or last) process answered `initialize`.
    initialized: bool,
    /// When the crash loop was declared; `None` when not crash-looped.
    crash_looped_at: Option<Instant>,
}

impl<E> Lifecycle<E>
where
    E: From<BackendEvent> + Send + 'static,
{
    pub(crate) fn new(config: LifecycleConfig, events: mpsc::Sender<E>) -> Lifecycle<E> {
        Lifecycle {
            crashes: CrashHistory::new(config.policy.clone()),
            config,
            events,
            slot: Slot::Down,
            generation: 0,
            restart_at: None,
            init_deadline: None,
            restart_replies: Vec::new(),
            initialized: false,
            crash_looped_at: None,
        }
    }

    /// Start the next process. On success the router must initialize it; on failure the caller
    /// treats it as a failure of the backend ([`Lifecycle::failed`]).
    pub(crate) fn spawn(&mut self) -> std::io::Result<u32> {
        self.restart_at = None;
        self.crash_looped_at = None;
        self.initialized = false;
        self.generation += 1;
        let backend = Backend::start(
            &self.config.command,
            &self.config.log,
            self.generation,
            StopTimeouts::uniform(self.config.stop_grace),
            &self.config.stdin_room,
            self.events.clone(),
        )?;
        let pid = backend.pid();
        tracing::info!(pid, generation = self.generation, "started the MCP server");
        // Its own process group: the group id is its pid.
        if let Some(reaper) = &mut self.config.reaper {
            reaper.watch(pid);
        }
        self.slot = Slot::Running(backend);
        self.init_deadline = Some(tokio::time::Instant::now() + self.config.init_timeout);
        Ok(pid)
    }

    /// The program the backend runs, for messages.
    pub(crate) fn program(&self) -> String {
        self.config
            .command
            .argv
            .first()
            .map(|program| program.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Queue a message for the running process's stdin.
    pub(crate) fn send(&self, message: Outgoing) -> Result<(), PushError> {
        match &self.slot {
            Slot::Running(backend) => backend.send(message),
            _ => Err(PushError::Closed),
        }
    }

    /// The running process's pid.
    pub(crate) fn pid(&self) -> Option<u32> {
        match &self.slot {
            Slot::Running(backend) => Some(backend.pid()),
            _ => None,
        }
    }

    /// How many processes were started after the first.
    pub(crate) fn restarts(&self) -> u32 {
        u32::try_from(self.generation.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Whether the running process is the first one (for status: starting vs restarting).
    pub(crate) fn is_first(&self) -> bool {
        self.generation <= 1
    }

    pub(crate) fn restart_at(&self) -> Option<tokio::time::Instant> {
        self.restart_at
    }

    pub(crate) fn init_deadline(&self) -> Option<tokio::time::Instant> {
        self.init_deadline
    }

    /// The init deadline passed: the caller stops the process as failed.
    pub(crate) fn init_timed_out(&mut self) -> AfterStop {
        self.init_deadline = None;
        AfterStop::Failed(format!(
            "it did not answer `initialize` within {}s",
            self.config.init_timeout.as_secs_f64()
        ))
    }

    /// The router saw the process answer `initialize`: disarm the deadline and answer waiting
    /// `shoal restart` requests.
    pub(crate) fn initialized(&mut self) {
        self.init_deadline = None;
        self.initialized = true;
        let pid = self.pid();
        for reply in self.restart_replies.drain(..) {
            let _ = reply.send(ControlResponse::Restarted { backend_pid: pid });
        }
    }

    /// Begin stopping the running process. Returns the reason its held requests are answered
    /// with, or `None` if no process was running.
    pub(crate) fn stop(&mut self, then: AfterStop) -> Option<String> {
        let Slot::Running(backend) = std::mem::replace(&mut self.slot, Slot::Down) else {
            return None;
        };
        self.init_deadline = None;
        let reason = match &then {
            AfterStop::Restart => {
                "the MCP server is being restarted (`shoal restart`); retry the request".to_owned()
            }
            AfterStop::Failed(why) => format!(
                "the MCP server was stopped because {why}; shoal is restarting it, retry the request"
            ),
        };
        self.slot = Slot::Stopping {
            generation: backend.generation(),
            watcher: backend.stop(),
            then,
        };
        Some(reason)
    }

    /// A control `restart`: forget the crash history; stop the running process first, or start
    /// one now (`true`: the caller spawns).
    pub(crate) fn restart_requested(&mut self, reply: oneshot::Sender<ControlResponse>) -> bool {
        self.restart_replies.push(reply);
        self.crashes.reset();
        self.restart_at = None;
        self.crash_looped_at = None;
        match &mut self.slot {
            Slot::Stopping { then, .. } => {
                *then = AfterStop::Restart;
                false
            }
            Slot::Running(_) => false,
            Slot::Down => true,
        }
    }

    /// Whether a process is running (a control `restart` must stop it first).
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.slot, Slot::Running(_))
    }

    /// An event from the backend's tasks.
    pub(crate) fn on_event(&mut self, event: BackendEvent) -> Step {
        match event {
            BackendEvent::Line { generation, line } => {
                if self.is_current(generation) {
                    Step::Line(line)
                } else {
                    Step::None
                }
            }
            BackendEvent::Exited { generation, status } => {
                if !self.is_current(generation) {
                    return Step::None;
                }
                self.group_gone();
                self.slot = Slot::Down;
                self.init_deadline = None;
                let how = match status {
                    Ok(status) => describe_exit(status),
                    Err(error) => format!("its exit status could not be read: {error}"),
                };
                tracing::warn!(generation, "the MCP server exited unexpectedly: {how}");
                Step::Failed(format!("it exited unexpectedly ({how})"))
            }
            BackendEvent::HalfClosed { generation, what } => {
                if !self.is_current(generation) {
                    return Step::None;
                }
                self.group_gone();
                self.slot = Slot::Down;
                self.init_deadline = None;
                Step::Failed(format!("it {what} but kept running"))
            }
            BackendEvent::Stopped {
                generation,
                outcome,
            } => {
                if !matches!(&self.slot, Slot::Stopping { generation: stopping, .. } if *stopping == generation)
                {
                    return Step::None;
                }
                tracing::info!(generation, ?outcome, "stopped the MCP server");
                self.group_gone();
                match std::mem::replace(&mut self.slot, Slot::Down) {
                    Slot::Stopping {
                        then: AfterStop::Restart,
                        ..
                    } => Step::Restart,
                    Slot::Stopping {
                        then: AfterStop::Failed(why),
                        ..
                    } => Step::Failed(why),
                    _ => Step::None,
                }
            }
        }
    }

    /// The backend failed (`why` says how): restart it after a backoff, or declare a crash loop.
    pub(crate) fn failed(&mut self, why: &str) -> Failure {
        match self.crashes.on_crash(Instant::now(), self.initialized) {
            RestartDecision::RestartAfter(delay) => {
                tracing::info!(delay_ms = delay.as_millis(), "restarting the MCP server");
                self.restart_at = Some(tokio::time::Instant::now() + delay);
                Failure::RestartScheduled(delay)
            }
            RestartDecision::CrashLoop => {
                let policy = &self.config.policy;
                let reason = format!(
                    "the MCP server failed {} times within {}s, so shoal stopped restarting it \
                     (last failure: {why}); see `shoal logs` for its output and run \
                     `shoal restart` once it is fixed",
                    policy.max_crashes,
                    policy.window.as_secs()
                );
                tracing::error!("{reason}");
                self.refuse_restart_replies(&reason);
                self.crash_looped_at = Some(Instant::now());
                Failure::CrashLoop(reason)
            }
        }
    }

    /// A session joined: if the backend is crash-looped and the loop was declared at least
    /// `fresh_try_after` ago, its cause may have been fixed since; give it exactly one more try
    /// (`true`: the caller spawns). A failure of that try declares the loop again at once.
    pub(crate) fn fresh_try_due(&mut self) -> bool {
        let due = self
            .crash_looped_at
            .is_some_and(|at| at.elapsed() >= self.config.fresh_try_after);
        if due {
            tracing::info!(
                "a session joined a crash-looped MCP server: trying to start it once more"
            );
            self.crashes.one_more_try();
            self.crash_looped_at = None;
        }
        due
    }

    /// Answer waiting `shoal restart` requests with an error.
    pub(crate) fn refuse_restart_replies(&mut self, message: &str) {
        for reply in self.restart_replies.drain(..) {
            let _ = reply.send(ControlResponse::Error {
                message: message.to_owned(),
            });
        }
    }

    /// The daemon stopped its backend itself and exits: the reaper is not needed.
    pub(crate) fn finished(&mut self) {
        if let Some(reaper) = self.config.reaper.take() {
            reaper.done();
        }
    }

    /// The daemon exits: no more restarts; stop what runs. Returns the stop to wait for.
    pub(crate) fn shut_down(&mut self) -> Option<JoinHandle<()>> {
        self.restart_at = None;
        self.init_deadline = None;
        match std::mem::replace(&mut self.slot, Slot::Down) {
            Slot::Running(backend) => Some(backend.stop()),
            Slot::Stopping { watcher, .. } => Some(watcher),
            Slot::Down => None,
        }
    }

    /// The watcher reports an exit or a stop only after it stopped the process's whole group.
    fn group_gone(&mut self) {
        if let Some(reaper) = &mut self.config.reaper {
            reaper.release();
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        matches!(&self.slot, Slot::Running(backend) if backend.generation() == generation)
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => "unknown exit status".to_owned(),
    }
}
