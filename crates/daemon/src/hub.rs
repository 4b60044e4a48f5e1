//! The hub: the one task that owns the daemon's state and makes every decision.
//!
//! Connections, the backend's tasks, signals and timers all report here; the hub never awaits a
//! peer (it only pushes to byte-bounded [`Outbox`]es), so no client and no backend can stall it.
//!
//! # States
//!
//! ```text
//!             start-up: lock, socket, backend spawned, `ready` written
//!                                   │
//!                                   ▼
//!   ┌────────────── Serving (n_clients ≥ 0; idle timer armed while n_clients = 0) ─────────────┐
//!   │ idle timer fires ──► take spawn.lock (in the background, events keep flowing)            │
//!   │                      └─ still no client and no handshake? ── no ──► re-arm, keep serving │
//!   │                                   │ yes                                                  │
//!   │ SIGTERM / SIGINT / control `stop` │     lock or socket no longer ours (self-fencing)     │
//!   └───────────────┬───────────────────┴────────────────────┬─────────────────────────────────┘
//!                   ▼                                        ▼
//!                Exiting: refuse new connections before their hello; stop accepting;
//!                answer everything in flight with an error; close sessions; release the
//!                socket and daemon.lock (only if still ours); release spawn.lock; stop the
//!                backend's process group; exit.
//! ```
//!
//! The backend has its own cycle inside Serving: `Starting` (spawned, daemon's `initialize` in
//! flight) → `Running` → on a crash `Restarting` (backoff) → `Starting` ..., or `CrashLooped`
//! after too many crashes, until a control `restart` starts it again.
//!
//! # Why idle exit cannot strand a client
//!
//! A connection is admitted by the hub (an [`Event::Connected`] round trip) *before* the daemon
//! sends its hello, and the hub counts it as a handshake in progress. The idle exit commits only
//! while holding `spawn.lock` and seeing no client and no handshake; from then on connections are
//! closed before the hello. A proxy that sees no hello takes the slow path, which needs
//! `spawn.lock`, which the exiting daemon releases only after its socket and `daemon.lock` are
//! gone: so that proxy starts a new daemon, and is served.

use std::collections::HashMap;
use std::fs::File;
use std::time::{Duration, Instant};

use shoal_lockfile::{PersistentGuard, PersistentLock};
use shoal_wire::{
    BackendState, ClientHello, ControlRequest, ControlResponse, Line, LineError, StatusReport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::{
    Backend, BackendCommand, BackendEvent, CrashHistory, RestartDecision, RestartPolicy,
    StopTimeouts, group_rss_bytes, process_rss_bytes,
};
use crate::outbox::{Outbox, PushError};
use crate::ownership::Ownership;
use crate::paths::DaemonPaths;
use crate::router::{ClientId, Outputs, Router, Signal};
use crate::run::{ExitReason, Tuning};
use crate::signals::{SignalEvent, Signals};

/// Held by every session writer; the hub waits for all of them to drop before the process exits,
/// so that the last answers and errors are flushed to the sockets.
pub(crate) type DrainGuard = mpsc::Sender<()>;

/// Everything that reports to the hub.
#[derive(Debug)]
pub(crate) enum Event {
    /// A peer with our uid connected; the hub admits it (with a drain guard for its writer) or
    /// refuses it (`None`: the daemon is exiting) before the daemon's hello is sent.
    Connected {
        admit: oneshot::Sender<Option<DrainGuard>>,
    },
    /// An admitted connection failed its hello (or was a control connection that ended).
    HandshakeEnded,
    /// An admitted connection completed a `session` hello.
    SessionJoined {
        client: ClientId,
        hello: ClientHello,
        outbox: Outbox,
    },
    ClientLine {
        client: ClientId,
        line: Result<Line, LineError>,
    },
    ClientLeft {
        client: ClientId,
    },
    Control {
        request: ControlRequest,
        reply: oneshot::Sender<ControlResponse>,
    },
    Backend(BackendEvent),
    /// The background attempt to take `spawn.lock` for an idle exit finished.
    IdleLock(Option<PersistentGuard>),
}

impl From<BackendEvent> for Event {
    fn from(event: BackendEvent) -> Self {
        Event::Backend(event)
    }
}

/// What the hub needs to know about the daemon it runs in.
pub(crate) struct HubSetup {
    pub(crate) key: String,
    pub(crate) root: String,
    pub(crate) argv: Vec<String>,
    pub(crate) version: String,
    pub(crate) command: BackendCommand,
    pub(crate) paths: DaemonPaths,
    pub(crate) log: File,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) tuning: Tuning,
    pub(crate) router: Router,
}

pub(crate) struct Hub {
    setup: HubSetup,
    /// `None` once released at exit.
    ownership: Option<Ownership>,
    events: mpsc::Sender<Event>,
    started: Instant,
    sessions: HashMap<ClientId, Session>,
    n_handshakes: usize,
    exiting: bool,
    drain: Option<DrainGuard>,
    backend: Slot,
    generation: u64,
    crashes: CrashHistory,
    crash_loop: Option<String>,
    backend_restarts: u32,
    restart_replies: Vec<oneshot::Sender<ControlResponse>>,
    idle_deadline: Option<tokio::time::Instant>,
    idle_lock_pending: bool,
    restart_at: Option<tokio::time::Instant>,
    init_deadline: Option<tokio::time::Instant>,
    stop_requested: bool,
}

#[derive(Debug)]
struct Session {
    outbox: Outbox,
    pid: u32,
    label: String,
}

/// The backend process slot.
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
enum AfterStop {
    /// `shoal restart`: start a new one at once.
    Restart,
    /// The backend failed (wedged, bad initialize): count it as a crash.
    Failed(String),
}

/// How long an exit waits for `spawn.lock` when it does not hold it yet (signal, stop, fencing).
/// Exiting without it is still safe (the socket and lock are released only if still ours); the
/// lock only makes the exit atomic for a proxy that is deciding to spawn.
const EXIT_SPAWN_LOCK_WAIT: Duration = Duration::from_secs(2);

/// How long the idle exit waits for `spawn.lock` before giving up and re-arming.
const IDLE_SPAWN_LOCK_WAIT: Duration = Duration::from_secs(10);

/// How soon an idle exit is retried when a handshake was in progress at the decisive moment.
const IDLE_RETRY: Duration = Duration::from_secs(1);

/// How long the exit waits for session writers to flush their last messages.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

impl Hub {
    pub(crate) fn new(setup: HubSetup, ownership: Ownership, events: mpsc::Sender<Event>) -> Hub {
        let crashes = CrashHistory::new(RestartPolicy {
            max_crashes: setup.tuning.crash_loop_max,
            window: setup.tuning.crash_loop_window,
            initial_backoff: setup.tuning.restart_backoff,
            max_backoff: RestartPolicy::default().max_backoff,
        });
        let idle_deadline = setup
            .idle_timeout
            .map(|timeout| tokio::time::Instant::now() + timeout);
        Hub {
            setup,
            ownership: Some(ownership),
            events,
            started: Instant::now(),
            sessions: HashMap::new(),
            n_handshakes: 0,
            exiting: false,
            // Set by `run`, which owns the receiving end.
            drain: None,
            backend: Slot::Down,
            generation: 0,
            crashes,
            crash_loop: None,
            backend_restarts: 0,
            restart_replies: Vec::new(),
            // Armed at start-up: a daemon nobody connects to must not live forever.
            idle_deadline,
            idle_lock_pending: false,
            restart_at: None,
            init_deadline: None,
            stop_requested: false,
        }
    }

    /// Spawn the first backend. An error here (command not found, say) fails the daemon's start,
    /// so the proxy that started it can show the reason at once.
    pub(crate) fn start_first_backend(&mut self) -> std::io::Result<u32> {
        self.spawn_backend()
    }

    /// Serve until an exit condition, then shut down; see the module docs.
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut signals: Signals,
        stop_accepting: oneshot::Sender<()>,
        acceptor: JoinHandle<()>,
    ) -> ExitReason {
        // The drain guard's receiver: every session writer holds a clone of the sender.
        let (drain, mut drained) = mpsc::channel::<()>(1);
        self.drain = Some(drain);
        let mut fence = tokio::time::interval(self.setup.tuning.fence_interval);
        fence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut spawn_lock = None;
        let reason = loop {
            // Exits: a stop signal, a control `stop` (seen after handling its event), the idle
            // exit committing under spawn.lock, or self-fencing. Every other branch changes
            // state and loops. Timers are optional: `sleep_until_some` never fires for `None`.
            tokio::select! {
                Some(event) = events.recv() => {
                    if let Some(guard) = self.handle(event) {
                        spawn_lock = Some(guard);
                        break ExitReason::Idle;
                    }
                    if self.stop_requested {
                        break ExitReason::Stopped;
                    }
                }
                signal = signals.recv() => {
                    let SignalEvent::Stop(name) = signal;
                    break ExitReason::Signal(name);
                }
                () = sleep_until_some(self.setup.router.deadline().map(tokio::time::Instant::from_std)) => {
                    let mut out = Outputs::default();
                    self.setup.router.tick(Instant::now(), &mut out);
                    self.apply(out);
                }
                () = sleep_until_some(self.idle_deadline) => self.idle_timer_fired(),
                () = sleep_until_some(self.restart_at) => {
                    self.restart_at = None;
                    if let Err(error) = self.spawn_backend() {
                        tracing::error!(%error, "could not restart the MCP server");
                    }
                }
                () = sleep_until_some(self.init_deadline) => {
                    self.init_deadline = None;
                    let timeout = self.setup.tuning.init_timeout;
                    self.stop_backend(AfterStop::Failed(format!(
                        "it did not answer `initialize` within {}s",
                        timeout.as_secs_f64()
                    )));
                }
                _ = fence.tick() => {
                    if let Some(Err(fenced)) = self.ownership.as_ref().map(Ownership::check) {
                        tracing::error!(error = %fenced, "this daemon no longer owns its key; exiting");
                        break ExitReason::Fenced(fenced.to_string());
                    }
                }
            }
        };
        tracing::info!(reason = %reason, "daemon exiting");
        self.shutdown(&reason, spawn_lock, stop_accepting, acceptor, &mut drained)
            .await;
        reason
    }

    /// Handle one event. Returns `spawn.lock` when the idle exit committed.
    fn handle(&mut self, event: Event) -> Option<PersistentGuard> {
        match event {
            Event::Connected { admit } => {
                if self.exiting {
                    let _ = admit.send(None);
                } else if admit.send(self.drain.clone()).is_ok() {
                    self.n_handshakes += 1;
                }
            }
            Event::HandshakeEnded => self.n_handshakes = self.n_handshakes.saturating_sub(1),
            Event::SessionJoined {
                client,
                hello,
                outbox,
            } => {
                self.n_handshakes = self.n_handshakes.saturating_sub(1);
                tracing::info!(
                    client,
                    pid = hello.pid,
                    host_pid = hello.host_pid,
                    label = %hello.label,
                    n_clients = self.sessions.len() + 1,
                    "session joined"
                );
                self.sessions.insert(
                    client,
                    Session {
                        outbox,
                        pid: hello.pid,
                        label: hello.label,
                    },
                );
                self.setup.router.client_joined(client);
                self.idle_deadline = None;
            }
            Event::ClientLine { client, line } => {
                if self.sessions.contains_key(&client) {
                    let mut out = Outputs::default();
                    self.setup.router.client_line(client, line, &mut out);
                    self.apply(out);
                }
            }
            Event::ClientLeft { client } => {
                if let Some(session) = self.sessions.remove(&client) {
                    tracing::info!(
                        client,
                        pid = session.pid,
                        label = %session.label,
                        n_clients = self.sessions.len(),
                        "session left"
                    );
                    self.client_gone(client);
                }
            }
            Event::Control { request, reply } => self.control(request, reply),
            Event::Backend(event) => self.backend_event(event),
            Event::IdleLock(guard) => {
                self.idle_lock_pending = false;
                return self.idle_lock_acquired(guard);
            }
        }
        None
    }

    /// Deliver what the router produced. A client whose outbox is over budget is disconnected;
    /// a backend that stopped reading its stdin is restarted (which answers what it held).
    fn apply(&mut self, out: Outputs) {
        let mut pending = vec![out];
        while let Some(out) = pending.pop() {
            let mut backend_wedged = false;
            for message in out.to_backend {
                let Slot::Running(backend) = &self.backend else {
                    break;
                };
                match backend.send(message) {
                    Ok(()) => {}
                    Err(PushError::Full { queued }) => {
                        tracing::error!(
                            queued_bytes = queued,
                            "the MCP server is not reading its input; restarting it"
                        );
                        backend_wedged = true;
                        break;
                    }
                    // The process is going; its exit event answers what it held.
                    Err(PushError::Closed) => break,
                }
            }
            let mut slow_clients = Vec::new();
            for (client, message) in out.to_clients {
                let Some(session) = self.sessions.get(&client) else {
                    continue;
                };
                if let Err(PushError::Full { queued }) = session.outbox.push(message) {
                    tracing::warn!(
                        client,
                        pid = session.pid,
                        label = %session.label,
                        queued_bytes = queued,
                        "disconnected a client that stopped reading its messages"
                    );
                    slow_clients.push(client);
                }
            }
            for client in slow_clients {
                if self.sessions.remove(&client).is_some() {
                    let mut out = Outputs::default();
                    self.setup.router.client_left(client, &mut out);
                    pending.push(out);
                    self.arm_idle_if_unused();
                }
            }
            match out.signal {
                Some(Signal::Initialized) => {
                    self.init_deadline = None;
                    let pid = match &self.backend {
                        Slot::Running(backend) => Some(backend.pid()),
                        _ => None,
                    };
                    for reply in self.restart_replies.drain(..) {
                        let _ = reply.send(ControlResponse::Restarted { backend_pid: pid });
                    }
                }
                Some(Signal::InitializeFailed(detail)) => {
                    self.stop_backend(AfterStop::Failed(format!(
                        "it answered `initialize` with an error: {detail}"
                    )));
                }
                None => {}
            }
            if backend_wedged {
                self.stop_backend(AfterStop::Failed("it stopped reading its input".to_owned()));
            }
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        let mut out = Outputs::default();
        self.setup.router.client_left(client, &mut out);
        self.apply(out);
        self.arm_idle_if_unused();
    }

    fn arm_idle_if_unused(&mut self) {
        if self.sessions.is_empty() && self.idle_deadline.is_none() {
            self.idle_deadline = self
                .setup
                .idle_timeout
                .map(|timeout| tokio::time::Instant::now() + timeout);
        }
    }

    fn idle_timer_fired(&mut self) {
        self.idle_deadline = None;
        if !self.sessions.is_empty() || self.idle_lock_pending {
            return;
        }
        // Take spawn.lock off the event loop: a proxy may hold it while it connects to us, and
        // that connection needs the hub to admit it.
        self.idle_lock_pending = true;
        let path = self.setup.paths.spawn_lock.clone();
        let events = self.events.clone();
        tokio::task::spawn_blocking(move || {
            let guard = take_spawn_lock(&path, IDLE_SPAWN_LOCK_WAIT);
            if let Err(error) = &guard {
                tracing::warn!(%error, "could not take the spawn lock for the idle exit");
            }
            let _ = events.blocking_send(Event::IdleLock(guard.ok()));
        });
    }

    fn idle_lock_acquired(&mut self, guard: Option<PersistentGuard>) -> Option<PersistentGuard> {
        let Some(guard) = guard else {
            self.arm_idle_if_unused();
            return None;
        };
        if !self.sessions.is_empty() {
            tracing::info!("idle exit cancelled: a session joined");
            return None;
        }
        if self.n_handshakes > 0 {
            tracing::info!(
                n_handshakes = self.n_handshakes,
                "idle exit postponed: a connection is completing its hello"
            );
            drop(guard);
            self.idle_deadline = Some(tokio::time::Instant::now() + IDLE_RETRY);
            return None;
        }
        // Committed: from here on, connections are closed before their hello.
        self.exiting = true;
        Some(guard)
    }

    fn control(&mut self, request: ControlRequest, reply: oneshot::Sender<ControlResponse>) {
        match request {
            ControlRequest::Status => {
                let _ = reply.send(ControlResponse::Status(self.status()));
            }
            ControlRequest::Stop => {
                tracing::info!("stop requested");
                let _ = reply.send(ControlResponse::Stopping);
                self.stop_requested = true;
            }
            ControlRequest::Restart => {
                tracing::info!("backend restart requested");
                self.restart_replies.push(reply);
                self.crashes.reset();
                self.crash_loop = None;
                self.restart_at = None;
                match &mut self.backend {
                    Slot::Stopping { then, .. } => *then = AfterStop::Restart,
                    Slot::Running(_) => self.stop_backend(AfterStop::Restart),
                    Slot::Down => {
                        if let Err(error) = self.spawn_backend() {
                            tracing::error!(%error, "could not restart the MCP server");
                        }
                    }
                }
            }
            // `ControlRequest` is non-exhaustive: a variant added to wire but not handled here
            // is refused, not a build break.
            _ => {
                let _ = reply.send(ControlResponse::Error {
                    message: "this daemon does not support that request".to_owned(),
                });
            }
        }
    }

    fn status(&self) -> StatusReport {
        let backend_pid = match &self.backend {
            Slot::Running(backend) => Some(backend.pid()),
            _ => None,
        };
        let backend_state = if self.exiting {
            BackendState::Stopped
        } else if self.crash_loop.is_some() {
            BackendState::CrashLooped
        } else {
            match &self.backend {
                Slot::Running(_) if self.setup.router.is_ready() => BackendState::Running,
                Slot::Running(_) if self.generation == 1 => BackendState::Starting,
                _ => BackendState::Restarting,
            }
        };
        let rss_bytes = process_rss_bytes(std::process::id())
            .map(|own| own + backend_pid.and_then(group_rss_bytes).unwrap_or(0));
        StatusReport {
            pid: std::process::id(),
            version: self.setup.version.clone(),
            key: self.setup.key.clone(),
            root: self.setup.root.clone(),
            backend_argv: self.setup.argv.clone(),
            backend_pid,
            backend_state,
            backend_restarts: self.backend_restarts,
            n_clients: u32::try_from(self.sessions.len()).unwrap_or(u32::MAX),
            uptime: self.started.elapsed(),
            requests_served: self.setup.router.requests_served(),
            rss_bytes,
        }
    }

    fn spawn_backend(&mut self) -> std::io::Result<u32> {
        self.generation += 1;
        if self.generation > 1 {
            self.backend_restarts += 1;
        }
        let timeouts = StopTimeouts::uniform(self.setup.tuning.stop_grace);
        match Backend::start(
            &self.setup.command,
            &self.setup.log,
            self.generation,
            timeouts,
            self.events.clone(),
        ) {
            Ok(backend) => {
                let pid = backend.pid();
                tracing::info!(pid, generation = self.generation, "started the MCP server");
                self.backend = Slot::Running(backend);
                self.init_deadline =
                    Some(tokio::time::Instant::now() + self.setup.tuning.init_timeout);
                let mut out = Outputs::default();
                self.setup.router.backend_started(&mut out);
                self.apply(out);
                Ok(pid)
            }
            Err(error) => {
                let program = self
                    .setup
                    .argv
                    .first()
                    .map_or("", String::as_str)
                    .to_owned();
                self.backend_failed(format!("it could not be started (`{program}`: {error})"));
                Err(error)
            }
        }
    }

    fn stop_backend(&mut self, then: AfterStop) {
        let Slot::Running(backend) = std::mem::replace(&mut self.backend, Slot::Down) else {
            return;
        };
        self.init_deadline = None;
        let generation = backend.generation();
        let reason = match &then {
            AfterStop::Restart => {
                "the MCP server is being restarted (`shoal restart`); retry the request".to_owned()
            }
            AfterStop::Failed(why) => {
                format!(
                    "the MCP server was stopped because {why}; shoal is restarting it, retry the request"
                )
            }
        };
        let mut out = Outputs::default();
        self.setup.router.backend_lost(&reason, &mut out);
        self.backend = Slot::Stopping {
            generation,
            watcher: backend.stop(),
            then,
        };
        self.apply(out);
    }

    fn backend_event(&mut self, event: BackendEvent) {
        match event {
            BackendEvent::Line { generation, line } => {
                if matches!(&self.backend, Slot::Running(backend) if backend.generation() == generation)
                {
                    let mut out = Outputs::default();
                    self.setup.router.backend_line(line, &mut out);
                    self.apply(out);
                }
            }
            BackendEvent::Exited { generation, status } => {
                if !matches!(&self.backend, Slot::Running(backend) if backend.generation() == generation)
                {
                    return;
                }
                self.backend = Slot::Down;
                self.init_deadline = None;
                let how = match status {
                    Ok(status) => describe_exit(status),
                    Err(error) => format!("its exit status could not be read: {error}"),
                };
                tracing::warn!(generation, "the MCP server exited unexpectedly: {how}");
                self.backend_failed(format!("it exited unexpectedly ({how})"));
            }
            BackendEvent::Stopped {
                generation,
                outcome,
            } => {
                let Slot::Stopping {
                    generation: stopping,
                    ..
                } = &self.backend
                else {
                    return;
                };
                if *stopping != generation {
                    return;
                }
                tracing::info!(generation, ?outcome, "stopped the MCP server");
                let Slot::Stopping { then, .. } = std::mem::replace(&mut self.backend, Slot::Down)
                else {
                    return;
                };
                match then {
                    AfterStop::Restart => {
                        if let Err(error) = self.spawn_backend() {
                            tracing::error!(%error, "could not restart the MCP server");
                        }
                    }
                    AfterStop::Failed(why) => self.backend_failed(why),
                }
            }
        }
    }

    /// The backend is gone and was not asked to go: answer what it held, then restart it after
    /// a backoff, or declare a crash loop.
    fn backend_failed(&mut self, why: String) {
        let mut out = Outputs::default();
        self.setup.router.backend_lost(
            &format!("the MCP server stopped: {why}; shoal is restarting it, retry the request"),
            &mut out,
        );
        match self.crashes.on_crash(Instant::now()) {
            RestartDecision::RestartAfter(delay) => {
                tracing::info!(delay_ms = delay.as_millis(), "restarting the MCP server");
                self.restart_at = Some(tokio::time::Instant::now() + delay);
            }
            RestartDecision::CrashLoop => {
                let tuning = &self.setup.tuning;
                let reason = format!(
                    "the MCP server failed {} times within {}s, so shoal stopped restarting it \
                     (last failure: {why}); see `shoal logs` for its output and run \
                     `shoal restart` once it is fixed",
                    tuning.crash_loop_max,
                    tuning.crash_loop_window.as_secs()
                );
                tracing::error!("{reason}");
                self.setup
                    .router
                    .backend_unavailable(reason.clone(), &mut out);
                for reply in self.restart_replies.drain(..) {
                    let _ = reply.send(ControlResponse::Error {
                        message: reason.clone(),
                    });
                }
                self.crash_loop = Some(reason);
            }
        }
        self.apply(out);
    }

    async fn shutdown(
        &mut self,
        reason: &ExitReason,
        spawn_lock: Option<PersistentGuard>,
        stop_accepting: oneshot::Sender<()>,
        acceptor: JoinHandle<()>,
        drained: &mut mpsc::Receiver<()>,
    ) {
        self.exiting = true;
        let spawn_lock = match spawn_lock {
            Some(guard) => Some(guard),
            None => {
                let path = self.setup.paths.spawn_lock.clone();
                tokio::task::spawn_blocking(move || {
                    take_spawn_lock(&path, EXIT_SPAWN_LOCK_WAIT).ok()
                })
                .await
                .ok()
                .flatten()
            }
        };
        let _ = stop_accepting.send(());
        let _ = acceptor.await;

        let mut out = Outputs::default();
        self.setup.router.backend_unavailable(
            format!("the shoal daemon is shutting down ({reason}); retry the request"),
            &mut out,
        );
        self.restart_at = None;
        self.apply(out);
        for reply in self.restart_replies.drain(..) {
            let _ = reply.send(ControlResponse::Error {
                message: "the daemon is shutting down".to_owned(),
            });
        }
        // Dropping the outboxes ends the writers once they flushed what is queued.
        self.sessions.clear();

        if let Some(ownership) = self.ownership.take()
            && let Err(error) = ownership.release()
        {
            tracing::warn!(%error, "left the socket and lock alone: they are no longer ours");
        }
        drop(spawn_lock);

        let watcher = match std::mem::replace(&mut self.backend, Slot::Down) {
            Slot::Running(backend) => Some(backend.stop()),
            Slot::Stopping { watcher, .. } => Some(watcher),
            Slot::Down => None,
        };
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }

        self.drain = None;
        let _ = tokio::time::timeout(DRAIN_WAIT, drained.recv()).await;
    }
}

/// Take `spawn.lock`, waiting at most `wait`. Blocks: call it from a blocking thread.
fn take_spawn_lock(
    path: &std::path::Path,
    wait: Duration,
) -> Result<PersistentGuard, shoal_lockfile::Error> {
    PersistentLock::new(path).and_then(|lock| lock.lock(Instant::now() + wait))
}

/// Sleep until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
