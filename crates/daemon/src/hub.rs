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

use std::collections::BTreeSet;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_lockfile::{PersistentGuard, PersistentLock};
use shoal_wire::{
    BackendState, ClientHello, ControlRequest, ControlResponse, Line, LineError, StatusReport,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::{
    AfterStop, BackendCommand, BackendEvent, Failure, Lifecycle, LifecycleConfig, RestartPolicy,
    Step, group_rss_bytes, process_rss_bytes,
};
use crate::config::{ExitReason, Tuning};
use crate::outbox::{Outbox, PushError, Room};
use crate::own_keys::OwnKeyMap;
use crate::ownership::Ownership;
use crate::reaper::Reaper;
use crate::router::{ClientId, Outputs, Router, Signal};
use crate::signals::{SignalEvent, Signals};
use shoal_ipc::DaemonPaths;

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
    /// An admitted connection completed a `session` hello. Boxed: it is rare and the largest,
    /// and every event moves through the channel at the size of the largest (a memcpy per move
    /// once that passes what the compiler moves inline).
    SessionJoined(Box<Joined>),
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
    /// Time for the periodic checks: ownership of the key (self-fencing), memory, log size.
    Fence,
}

// Every event moves through the hub's channel (and in and out of its queue blocks) at the size of
// the largest variant, and past a few words each move is a `memcpy` call: a 40-byte larger
// `Outbox` inside `SessionJoined` cost ~700 instructions per echo (callgrind) before it was boxed.
const _: () = assert!(std::mem::size_of::<Event>() <= 64);

/// What [`Event::SessionJoined`] carries.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) client: ClientId,
    pub(crate) hello: ClientHello,
    pub(crate) outbox: Outbox,
    /// Sent to cut the client off: its writer drops what is queued and closes at once.
    pub(crate) cut_off: oneshot::Sender<()>,
}

impl From<BackendEvent> for Event {
    fn from(event: BackendEvent) -> Self {
        Event::Backend(event)
    }
}

/// What the hub needs to know about the daemon it runs in; fixed for its life.
pub(crate) struct HubSetup {
    pub(crate) key: String,
    pub(crate) root: String,
    pub(crate) argv: Vec<String>,
    pub(crate) version: String,
    pub(crate) command: BackendCommand,
    pub(crate) paths: DaemonPaths,
    /// `daemon.log`, shared by everything that writes it (see `logfile.rs`).
    pub(crate) log: Arc<File>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) tuning: Tuning,
    /// The bytes queued for the backend's stdin; session readers wait on it (`outbox.rs`).
    pub(crate) backend_room: Arc<Room>,
    /// Stops the backend's group if this daemon dies without doing it (`reaper.rs`).
    pub(crate) reaper: Option<Reaper>,
}

/// The daemon's facts that do not change while it runs (the part of [`HubSetup`] that is not
/// handed to the backend's lifecycle).
struct Identity {
    key: String,
    root: String,
    argv: Vec<String>,
    version: String,
    paths: DaemonPaths,
    idle_timeout: Option<Duration>,
    fence_interval: Duration,
    log: Arc<File>,
    log_limit: u64,
}

pub(crate) struct Hub {
    identity: Identity,
    /// Lines read from sessions are reserved here until routed (see `connection.rs`).
    backend_room: Arc<Room>,
    /// The routing state: sessions' requests, subscriptions, levels; and whether the backend
    /// serves (its phase is the one answer to that question).
    router: Router,
    /// The backend process: running, stopping, due to restart, crash history.
    backend: Lifecycle<Event>,
    sessions: OwnKeyMap<ClientId, Session>,
    idle: IdleExit,
    /// `None` once released at exit.
    ownership: Option<Ownership>,
    events: mpsc::Sender<Event>,
    started: Instant,
    /// The daemon is on its way out: connections are refused before their hello.
    exiting: bool,
    stop_requested: bool,
    /// Why this daemon no longer owns its key, once a fence check found out.
    fenced: Option<String>,
    /// See [`Hub::take_outputs`].
    spare_outputs: Outputs,
    drain: Option<DrainGuard>,
    /// A session left since memory was last given back (see `memory.rs`).
    churned: bool,
    /// The variables sessions set otherwise than the server's environment (their hellos say
    /// which), each logged once; at most [`ENV_DIFFERS_KEPT`].
    env_differs: BTreeSet<String>,
}

/// How many names [`Hub::env_differs`] keeps: enough for any real mismatch, bounded against a
/// stream of sessions with ever new variables.
const ENV_DIFFERS_KEPT: usize = 64;

#[derive(Debug)]
struct Session {
    outbox: Outbox,
    cut_off: oneshot::Sender<()>,
    /// `session{client pid label}`: what the hub logs about this session is logged inside it.
    span: tracing::Span,
}

/// The idle exit: armed whenever no session is connected, committed only under `spawn.lock`
/// with no session and no hello in progress (see the module docs).
#[derive(Debug)]
struct IdleExit {
    /// When to try; `None` while sessions are connected (or the timeout is "never").
    deadline: Option<tokio::time::Instant>,
    /// `spawn.lock` is being taken in the background.
    lock_pending: bool,
    /// Admitted connections that have not finished their hello.
    n_handshakes: usize,
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
    pub(crate) fn new(
        setup: HubSetup,
        router: Router,
        ownership: Ownership,
        events: mpsc::Sender<Event>,
    ) -> Hub {
        let tuning = setup.tuning;
        let backend = Lifecycle::new(
            LifecycleConfig {
                command: setup.command,
                log: Arc::clone(&setup.log),
                stop_grace: tuning.stop_grace,
                init_timeout: tuning.init_timeout,
                fresh_try_after: tuning.fresh_try_after,
                stdin_room: Arc::clone(&setup.backend_room),
                reaper: setup.reaper,
                policy: RestartPolicy {
                    max_crashes: tuning.crash_loop_max,
                    window: tuning.crash_loop_window,
                    initial_backoff: tuning.restart_backoff,
                    max_backoff: RestartPolicy::default().max_backoff,
                },
            },
            events.clone(),
        );
        Hub {
            identity: Identity {
                key: setup.key,
                root: setup.root,
                argv: setup.argv,
                version: setup.version,
                paths: setup.paths,
                idle_timeout: setup.idle_timeout,
                fence_interval: tuning.fence_interval,
                log: setup.log,
                log_limit: tuning.log_limit,
            },
            router,
            backend,
            backend_room: setup.backend_room,
            sessions: OwnKeyMap::default(),
            churned: false,
            env_differs: BTreeSet::new(),
            idle: IdleExit {
                // Armed at start-up: a daemon nobody connects to must not live forever.
                deadline: setup
                    .idle_timeout
                    .map(|timeout| tokio::time::Instant::now() + timeout),
                lock_pending: false,
                n_handshakes: 0,
            },
            ownership: Some(ownership),
            events,
            started: Instant::now(),
            exiting: false,
            stop_requested: false,
            fenced: None,
            spare_outputs: Outputs::default(),
            // Set by `run`, which owns the receiving end.
            drain: None,
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
        signals: Signals,
        stop_accepting: oneshot::Sender<()>,
        acceptor: JoinHandle<()>,
    ) -> ExitReason {
        // The drain guard's receiver: every session writer holds a clone of the sender.
        let (drain, mut drained) = mpsc::channel::<()>(1);
        self.drain = Some(drain);
        // The stop signals and the fence's clock run in tasks of their own and report here. In the
        // loop's `select!` they were polled on every wake-up of the hub, that is, on every message
        // (about 2,000 instructions per echo, callgrind); a task is polled only when its own
        // event comes.
        let mut stop_signal = spawn_signal_watch(signals);
        let fence = spawn_fence_clock(self.events.clone(), self.identity.fence_interval);
        let mut spawn_lock = None;
        let reason = loop {
            // Exits: a stop signal, a control `stop` (seen after handling its event), the idle
            // exit committing under spawn.lock, or self-fencing. Every other branch changes
            // state and loops. The timers share one arm, armed for the earliest of them: a
            // `select!` builds and polls every branch's future on every turn, that is, on every
            // message, and four timers cost four futures where one does.
            let timer = self.next_timer();
            // Biased, the rare arms first: an unbiased `select!` draws a random starting arm on
            // every turn (~80 instructions per turn, four turns per echo, callgrind), and this
            // order is fair by construction: the signal fires once, a due timer is handled and
            // re-armed for a later instant, so neither can keep the events from being read, and
            // a flood of events cannot hold up a timer.
            tokio::select! {
                biased;
                Ok(name) = &mut stop_signal => break ExitReason::Signal(name),
                () = sleep_until_some(timer) => {
                    // `sleep_until_some` never fires for `None`.
                    if let Some(at) = timer {
                        self.timers_due(at);
                    }
                }
                Some(event) = events.recv() => {
                    if let Some(guard) = self.handle(event) {
                        spawn_lock = Some(guard);
                        break ExitReason::Idle;
                    }
                    if let Some(fenced) = self.fenced.take() {
                        break ExitReason::Fenced(fenced);
                    }
                    if self.stop_requested {
                        break ExitReason::Stopped;
                    }
                }
            }
        };
        fence.abort();
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
                    self.idle.n_handshakes += 1;
                }
            }
            Event::HandshakeEnded => {
                self.idle.n_handshakes = self.idle.n_handshakes.saturating_sub(1);
            }
            Event::SessionJoined(joined) => {
                let Joined {
                    client,
                    hello,
                    outbox,
                    cut_off,
                } = *joined;
                self.idle.n_handshakes = self.idle.n_handshakes.saturating_sub(1);
                let span = tracing::info_span!(
                    "session",
                    client,
                    pid = hello.pid,
                    label = %hello.label
                );
                span.in_scope(|| {
                    tracing::info!(
                        host_pid = hello.host_pid,
                        n_clients = self.sessions.len() + 1,
                        "session joined"
                    );
                    self.note_env_differs(&hello.env_differs);
                });
                self.sessions.insert(
                    client,
                    Session {
                        outbox,
                        cut_off,
                        span,
                    },
                );
                self.router.client_joined(client);
                self.idle.deadline = None;
                if self.backend.fresh_try_due()
                    && let Err(error) = self.spawn_backend()
                {
                    tracing::error!(%error, "could not start the MCP server again");
                }
            }
            Event::ClientLine { client, line } => {
                let reserved = reserved_len(&line);
                if self.sessions.contains_key(&client) {
                    let mut out = self.take_outputs();
                    self.router.client_line(client, line, &mut out);
                    self.apply(out);
                }
                // Routed: what it became is counted by the queues it went to.
                self.backend_room.release(reserved);
            }
            Event::ClientLeft { client } => {
                if let Some(session) = self.sessions.remove(&client) {
                    session.span.in_scope(|| {
                        tracing::info!(n_clients = self.sessions.len(), "session left");
                    });
                    self.client_gone(client);
                }
            }
            Event::Control { request, reply } => self.control(request, reply),
            Event::Backend(event) => self.backend_event(event),
            Event::IdleLock(guard) => {
                self.idle.lock_pending = false;
                return self.idle_lock_acquired(guard);
            }
            Event::Fence => self.fence(),
        }
        None
    }

    /// The periodic checks. Losing the key sets `fenced`, which ends the event loop.
    fn fence(&mut self) {
        if let Some(Err(fenced)) = self.ownership.as_ref().map(Ownership::check) {
            tracing::error!(error = %fenced, "this daemon no longer owns its key; exiting");
            self.fenced = Some(fenced.to_string());
            return;
        }
        if std::mem::take(&mut self.churned) {
            crate::memory::release_free_memory();
        }
        match crate::logfile::rotate_if_over(
            &self.identity.paths,
            &self.identity.log,
            self.identity.log_limit,
        ) {
            Ok(true) => tracing::info!("rotated daemon.log; the previous part is daemon.log.1"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "could not rotate daemon.log"),
        }
    }

    /// The earliest of the hub's timers: the router's (`list_changed` windows), the idle exit,
    /// the backend's restart and its `initialize` deadline.
    fn next_timer(&self) -> Option<tokio::time::Instant> {
        [
            self.router.deadline().map(tokio::time::Instant::from_std),
            self.idle.deadline,
            self.backend.restart_at(),
            self.backend.init_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The timer armed for `at` fired: run every timer due by then, each as its own event would.
    /// A timer one of them re-arms (a restart arming the `initialize` deadline) is later than
    /// `at`, so it waits for its own turn.
    ///
    /// Every timer due by `at` must be cleared or moved past it here: the loop's `select!` is
    /// biased with the timer before the events, so one that stayed due would starve them.
    fn timers_due(&mut self, at: tokio::time::Instant) {
        let due = |deadline: Option<tokio::time::Instant>| {
            deadline.is_some_and(|deadline| deadline <= at)
        };
        if due(self.router.deadline().map(tokio::time::Instant::from_std)) {
            let mut out = Outputs::default();
            self.router.tick(Instant::now(), &mut out);
            self.apply(out);
        }
        if due(self.idle.deadline) {
            self.idle_timer_fired();
        }
        if due(self.backend.restart_at())
            && let Err(error) = self.spawn_backend()
        {
            tracing::error!(%error, "could not restart the MCP server");
        }
        if due(self.backend.init_deadline()) {
            let then = self.backend.init_timed_out();
            if let AfterStop::Failed(why) = &then {
                // Held requests have waited a whole start-up: answer them now.
                let mut out = Outputs::default();
                self.router.fail_pending(
                    &format!("the MCP server did not start: {why}; shoal is restarting it, retry the request"),
                    &mut out,
                );
                self.apply(out);
            }
            self.stop_backend(then);
        }
    }

    /// Deliver what the router produced. A client whose outbox is over budget is disconnected.
    /// The backend's queue never refuses: a busy backend slows its senders down instead (see
    /// `outbox.rs`).
    fn apply(&mut self, out: Outputs) {
        let mut pending = Vec::new();
        let mut next = Some(out);
        while let Some(mut out) = next.take().or_else(|| pending.pop()) {
            for message in out.to_backend.drain(..) {
                // Closed: no process, or it is going; its exit event answers what it held.
                if self.backend.send(message).is_err() {
                    break;
                }
            }
            let mut slow_clients = Vec::new();
            for (client, message) in out.to_clients.drain(..) {
                let Some(session) = self.sessions.get(&client) else {
                    continue;
                };
                if let Err(PushError::Full { queued }) = session.outbox.push(message) {
                    session.span.in_scope(|| {
                        tracing::warn!(
                            queued_bytes = queued,
                            "disconnected a client that stopped reading its messages"
                        );
                    });
                    slow_clients.push(client);
                }
            }
            for client in slow_clients {
                if let Some(session) = self.sessions.remove(&client) {
                    // Its queue is dropped now, not when (if ever) its host reads again.
                    let _ = session.cut_off.send(());
                    let mut out = Outputs::default();
                    self.router.client_left(client, &mut out);
                    pending.push(out);
                    self.churned = true;
                    self.arm_idle_if_unused();
                }
            }
            match out.signal.take() {
                Some(Signal::Initialized) => self.backend.initialized(),
                Some(Signal::InitializeFailed(detail)) => {
                    self.stop_backend(AfterStop::Failed(format!(
                        "it answered `initialize` with an error: {detail}"
                    )));
                }
                None => {}
            }
            self.recycle(out);
        }
    }

    /// An empty [`Outputs`], with the vectors of an earlier one when there is one: an
    /// allocation and a free fewer per message each way.
    fn take_outputs(&mut self) -> Outputs {
        std::mem::take(&mut self.spare_outputs)
    }

    /// Keep `out`'s (emptied) vectors for [`Hub::take_outputs`], unless they grew large.
    fn recycle(&mut self, out: Outputs) {
        const KEPT_CAPACITY: usize = 64;
        if out.to_backend.capacity() <= KEPT_CAPACITY && out.to_clients.capacity() <= KEPT_CAPACITY
        {
            debug_assert!(out.to_backend.is_empty() && out.to_clients.is_empty());
            self.spare_outputs = out;
        }
    }

    /// Rewrite `meta.json` with how this daemon exited.
    fn record_exit(&self, reason: &ExitReason) {
        let path = &self.identity.paths.meta;
        let written = shoal_ipc::DaemonMeta::read(path).and_then(|mut meta| {
            meta.exited = Some(shoal_ipc::DaemonExit {
                at_unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| {
                        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                    }),
                reason: reason.to_string(),
            });
            meta.write(path)
        });
        if let Err(error) = written {
            tracing::debug!(%error, "could not record the exit in meta.json");
        }
    }

    fn client_gone(&mut self, client: ClientId) {
        self.churned = true;
        let mut out = Outputs::default();
        self.router.client_left(client, &mut out);
        self.apply(out);
        self.arm_idle_if_unused();
    }

    fn arm_idle_if_unused(&mut self) {
        if self.sessions.is_empty() && self.idle.deadline.is_none() {
            self.idle.deadline = self
                .identity
                .idle_timeout
                .map(|timeout| tokio::time::Instant::now() + timeout);
        }
    }

    fn idle_timer_fired(&mut self) {
        self.idle.deadline = None;
        if !self.sessions.is_empty() || self.idle.lock_pending {
            return;
        }
        // Take spawn.lock off the event loop: a proxy may hold it while it connects to us, and
        // that connection needs the hub to admit it.
        self.idle.lock_pending = true;
        let path = self.identity.paths.spawn_lock.clone();
        let events = self.events.clone();
        tokio::task::spawn_blocking(move || {
            let guard = take_spawn_lock(&path, IDLE_SPAWN_LOCK_WAIT);
            if let Err(error) = &guard {
                tracing::warn!(%error, "could not take the spawn lock for the idle exit");
            }
            let _ = events.blocking_send(Event::IdleLock(guard.ok()));
        });
    }

    /// Where the daemon decides to exit on idle: holding `spawn.lock`, with no session and no
    /// hello in progress. Returns the lock when it commits.
    fn idle_lock_acquired(&mut self, guard: Option<PersistentGuard>) -> Option<PersistentGuard> {
        let Some(guard) = guard else {
            self.arm_idle_if_unused();
            return None;
        };
        if !self.sessions.is_empty() {
            tracing::info!("idle exit cancelled: a session joined");
            return None;
        }
        if self.idle.n_handshakes > 0 {
            tracing::info!(
                n_handshakes = self.idle.n_handshakes,
                "idle exit postponed: a connection is completing its hello"
            );
            drop(guard);
            self.idle.deadline = Some(tokio::time::Instant::now() + IDLE_RETRY);
            return None;
        }
        // Committed: from here on, connections are closed before their hello.
        self.exiting = true;
        Some(guard)
    }

    fn control(&mut self, request: ControlRequest, reply: oneshot::Sender<ControlResponse>) {
        match request {
            ControlRequest::Status => {
                // The memory figure is what the daemon needs now, not what the allocator kept.
                crate::memory::release_free_memory();
                let _ = reply.send(ControlResponse::Status(self.status()));
            }
            ControlRequest::Stop => {
                tracing::info!("stop requested");
                let _ = reply.send(ControlResponse::Stopping);
                self.stop_requested = true;
            }
            ControlRequest::Restart => {
                tracing::info!("backend restart requested");
                let spawn_now = self.backend.restart_requested(reply);
                if self.backend.is_running() {
                    self.stop_backend(AfterStop::Restart);
                } else if spawn_now && let Err(error) = self.spawn_backend() {
                    tracing::error!(%error, "could not restart the MCP server");
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

    /// Log the variables a joining session sets otherwise than the server's environment, those
    /// not logged before, and keep them for `status`.
    fn note_env_differs(&mut self, names: &[String]) {
        // Full: the names kept are plenty to act on; logging past them would log every
        // session again.
        if self.env_differs.len() >= ENV_DIFFERS_KEPT {
            return;
        }
        let new: Vec<&str> = names
            .iter()
            .filter(|name| !self.env_differs.contains(*name))
            .map(String::as_str)
            .collect();
        if new.is_empty() {
            return;
        }
        tracing::warn!(
            variables = new.join(","),
            "this session sets environment variables otherwise than the environment the server \
             was started with; the server does not see its values (`--key-env NAME` gives \
             sessions their own server by value)"
        );
        for name in new {
            if self.env_differs.len() < ENV_DIFFERS_KEPT {
                self.env_differs.insert(name.to_owned());
            }
        }
    }

    fn status(&self) -> StatusReport {
        let backend_pid = self.backend.pid();
        let backend_state = if self.exiting {
            BackendState::Stopped
        } else if self.router.unavailable().is_some() {
            BackendState::CrashLooped
        } else if self.router.is_ready() {
            BackendState::Running
        } else if backend_pid.is_some() && self.backend.is_first() {
            BackendState::Starting
        } else {
            BackendState::Restarting
        };
        let rss_bytes = process_rss_bytes(std::process::id())
            .map(|own| own + backend_pid.and_then(group_rss_bytes).unwrap_or(0));
        StatusReport {
            pid: std::process::id(),
            version: self.identity.version.clone(),
            key: self.identity.key.clone(),
            root: self.identity.root.clone(),
            backend_argv: self.identity.argv.clone(),
            backend_pid,
            backend_state,
            backend_restarts: self.backend.restarts(),
            n_clients: u32::try_from(self.sessions.len()).unwrap_or(u32::MAX),
            uptime: self.started.elapsed(),
            requests_served: self.router.requests_served(),
            rss_bytes,
            env_differs: self.env_differs.iter().cloned().collect(),
        }
    }

    fn spawn_backend(&mut self) -> std::io::Result<u32> {
        match self.backend.spawn() {
            Ok(pid) => {
                let mut out = Outputs::default();
                self.router.backend_started(&mut out);
                self.apply(out);
                Ok(pid)
            }
            Err(error) => {
                let program = self.backend.program();
                self.backend_failed(format!("it could not be started (`{program}`: {error})"));
                Err(error)
            }
        }
    }

    fn stop_backend(&mut self, then: AfterStop) {
        let Some(reason) = self.backend.stop(then) else {
            return;
        };
        let mut out = Outputs::default();
        self.router.backend_lost(&reason, &mut out);
        self.apply(out);
    }

    fn backend_event(&mut self, event: BackendEvent) {
        match self.backend.on_event(event) {
            Step::None => {}
            Step::Line(line) => {
                let mut out = self.take_outputs();
                self.router.backend_line(line, &mut out);
                self.apply(out);
            }
            Step::Failed(why) => self.backend_failed(why),
            Step::Restart => {
                if let Err(error) = self.spawn_backend() {
                    tracing::error!(%error, "could not restart the MCP server");
                }
            }
        }
    }

    /// The backend is gone and was not asked to go: answer what it held, then restart it after
    /// a backoff, or declare a crash loop.
    fn backend_failed(&mut self, why: String) {
        let mut out = Outputs::default();
        self.router.backend_lost(
            &format!("the MCP server stopped: {why}; shoal is restarting it, retry the request"),
            &mut out,
        );
        if let Failure::CrashLoop(reason) = self.backend.failed(&why) {
            self.router.backend_unavailable(reason, &mut out);
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
                let path = self.identity.paths.spawn_lock.clone();
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
        self.router.backend_unavailable(
            format!("the shoal daemon is shutting down ({reason}); retry the request"),
            &mut out,
        );
        self.apply(out);
        self.backend
            .refuse_restart_replies("the daemon is shutting down");
        // Dropping the outboxes ends the writers once they flushed what is queued.
        self.sessions.clear();

        // Still ours: say in meta.json that this was a clean exit, so that `shoal status` does
        // not list this daemon as crashed. A fenced daemon's files are not its own any more.
        if !matches!(reason, ExitReason::Fenced(_)) && self.ownership.is_some() {
            self.record_exit(reason);
        }
        if let Some(ownership) = self.ownership.take()
            && let Err(error) = ownership.release()
        {
            tracing::warn!(%error, "left the socket and lock alone: they are no longer ours");
        }
        drop(spawn_lock);

        if let Some(watcher) = self.backend.shut_down() {
            let _ = watcher.await;
        }
        self.backend.finished();

        self.drain = None;
        let _ = tokio::time::timeout(DRAIN_WAIT, drained.recv()).await;
    }
}

/// What a session reader reserved in the backend's room for this line (`connection.rs`).
pub(crate) fn reserved_len(line: &Result<Line, LineError>) -> usize {
    line.as_ref().map_or(0, Line::len)
}

/// Take `spawn.lock`, waiting at most `wait`. Blocks: call it from a blocking thread.
fn take_spawn_lock(
    path: &std::path::Path,
    wait: Duration,
) -> Result<PersistentGuard, shoal_lockfile::Error> {
    PersistentLock::new(path).and_then(|lock| lock.lock(Instant::now() + wait))
}

/// Wait for a stop signal in a task of its own; the receiver gets the signal's name.
fn spawn_signal_watch(mut signals: Signals) -> oneshot::Receiver<&'static str> {
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(async move {
        let SignalEvent::Stop(name) = signals.recv().await;
        let _ = stop.send(name);
    });
    stopped
}

/// Send [`Event::Fence`] every `period`, the first at once; after a stall, one (not a burst).
fn spawn_fence_clock(events: mpsc::Sender<Event>, period: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut clock = tokio::time::interval(period);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            clock.tick().await;
            // Waits while the hub is busy: the checks are due, not urgent. Closed: the hub is gone.
            if events.send(Event::Fence).await.is_err() {
                return;
            }
        }
    })
}

/// Sleep until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
