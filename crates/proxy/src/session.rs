//! The proxy's event loop: host stdin → daemon, daemon → host stdout, and what happens when the
//! daemon is lost (`docs/design/lifecycle.md`, "The proxy's life").
//!
//! One task owns everything: the host's stdio, the daemon connection (or the reconnect in
//! progress), the [`Ledger`], and the queue of host messages that arrived while reconnecting.
//!
//! ```text
//!  Up ──socket EOF / error / failed write──▶ lost: every owed request answered -32081 at once
//!   ▲                                            │
//!   │                                            ▼
//!   └── replay (initialize, initialized,    Reconnecting: find_or_start with backoff; host
//!       level, subscriptions), then the     messages queue (bounded, `queue_patience`, then
//!       queue, in order                     answered with errors); gives up after
//!                                           `reconnect_budget` → exit 1
//! ```
//!
//! The host's stdout is only ever written whole lines, and never closed for a daemon fault: the
//! host cannot tell a reconnect from a slow answer, except by the errors for what was in flight.
//! Exits: stdin EOF (or SIGTERM) → stop reading, wait for owed answers up to `drain`, exit 0;
//! host gone (watchdog, or a broken stdout) → exit 0 at once.
//!
//! Signals and the host's death are watched by a task of their own ([`watch_for_stops`]), which
//! publishes each [`Stop`] to the event loop and as the current state on a `watch` channel
//! ([`Stops`]), so that they are seen even while the loop waits on a write to a host that stopped
//! reading: such a write gives up at the drain bound after a SIGTERM, and at once on a second
//! SIGTERM or the host's death.

use std::collections::VecDeque;
use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use shoal_ipc::write_line;
use shoal_wire::{Envelope, ErrorCode, Frame, Kind, Line, LineError, Validation, error_response};
use tokio::io::AsyncWriteExt as _;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::connect::{Connection, FromDaemon, find_or_start};
use crate::host::{HostItem, HostReader};
use crate::ledger::{DAEMON_LOST_MESSAGE, Ledger};
use crate::stdio::HostOutput;
use crate::{Error, Outcome, ParentWatch, ProxyConfig, StartError};

/// Host messages held while reconnecting, at most: beyond this, requests are answered with an
/// error at once. A host does not pipeline thousands of requests; this bounds a runaway one.
const MAX_QUEUED: usize = 1024;
const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// After a reconnect, a loss within this window counts as a repeat: the next reconnect waits a
/// little longer (doubling up to [`MAX_LOSS_BACKOFF`]), so that a daemon that dies at once after
/// every start is not restarted in a tight loop.
const REPEAT_LOSS_WINDOW: Duration = Duration::from_secs(10);
const FIRST_LOSS_BACKOFF: Duration = Duration::from_millis(100);
const MAX_LOSS_BACKOFF: Duration = Duration::from_secs(5);

/// The first and the longest pause between reconnect attempts.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

const RECONNECTING_MESSAGE: &str = "shoal is reconnecting to the shared MCP server and could not \
    send this request in time; retry it";
const EXITING_MESSAGE: &str = "the shoal proxy is exiting (its input was closed) before this \
    request was answered";

/// The host cannot be written to any more: it is gone, or the proxy must stop waiting for it.
struct HostGone;

/// What the signals and the watchdog ask of the event loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Running,
    /// SIGTERM: stop reading, deliver what is owed until `until`, then exit.
    Draining {
        until: Instant,
    },
    /// Exit now: the host is gone, or a second SIGTERM.
    Now(Outcome),
}

type Reconnect = Pin<Box<dyn Future<Output = Result<Connection, StartError>>>>;

/// Find or start the daemon, then serve until an exit; see the module docs.
pub(crate) async fn run(
    config: ProxyConfig,
    watch: &'static ParentWatch,
) -> Result<Outcome, Error> {
    let sigterm = signal(SignalKind::terminate()).map_err(Error::Runtime)?;
    // SIGTERM is handled now, and the host's death is watched by `parent_gone` below: from here
    // on a SIGTERM always means "stop" (see `ParentWatch::disarm_death_signal`).
    watch.disarm_death_signal();
    let host_pid = Some(watch.original_parent().as_raw())
        .filter(|pid| *pid > 0)
        .and_then(|pid| u32::try_from(pid).ok());
    let config = Arc::new(config);
    // Only the first daemon is handed the stdin: after a reconnect the proxy reads it itself
    // (see `host.rs`).
    let first = find_or_start(&config, host_pid, custody_possible()).await?;
    tracing::debug!(daemon_pid = first.pid, "connected");
    if !first.env_differs.is_empty() {
        tracing::warn!("{}", environment_warning(&first.env_differs));
    }
    let (state, stop) = watch::channel(Stop::Running);
    let events = Arc::new(StopEvents::default());
    let mut session = Session {
        stop,
        drain_deadline: None,
        config: Arc::clone(&config),
        host_pid,
        ledger: Ledger::new(),
        stdout: HostOutput::open(),
        queue: VecDeque::new(),
        queued_bytes: 0,
        queued_since: None,
        impatient: false,
        last_restored: None,
        loss_backoff: FIRST_LOSS_BACKOFF,
        startup_pages_dropped: false,
    };
    // A task of its own, so that the event loop's wake-ups (every message) do not poll the signal
    // and pidfd futures too, and theirs (rare) do not poll the loop: in one task, a `select!`
    // over both polled all of them on every message. It ends with the runtime.
    let stops = Stops {
        state,
        events: Arc::clone(&events),
    };
    tokio::spawn(watch_for_stops(sigterm, watch, config.tuning.drain, stops));
    session.serve(first, &events).await
}

/// Where [`watch_for_stops`] publishes: the current [`Stop`] for whoever asks (a write to the
/// host racing it), and each change as an event for the event loop ([`StopEvents`]).
struct Stops {
    state: watch::Sender<Stop>,
    events: Arc<StopEvents>,
}

impl Stops {
    fn current(&self) -> Stop {
        *self.state.borrow()
    }

    fn publish(&self, stop: Stop) {
        self.state.send_replace(stop);
        self.events.send(stop);
    }
}

/// The stops the event loop has not seen yet, oldest first, and the loop's waker.
///
/// The loop polls this wait on every turn (that is, for every message), and almost always finds
/// nothing: here that costs an uncontended lock and a `will_wake`, where a pending `watch`
/// change takes its `Notify`'s lock and a pending `mpsc` receive tries its queue twice (each
/// about 700 instructions per echo, callgrind). At most a few stops are ever queued:
/// `watch_for_stops` publishes nothing after a `Stop::Now`.
#[derive(Default)]
struct StopEvents {
    inner: std::sync::Mutex<StopInbox>,
}

#[derive(Default)]
struct StopInbox {
    queue: VecDeque<Stop>,
    waker: Option<Waker>,
}

impl StopEvents {
    fn inbox(&self) -> std::sync::MutexGuard<'_, StopInbox> {
        // Nothing panics while holding it; a poisoned inbox is still a consistent queue.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, stop: Stop) {
        let waker = {
            let mut inbox = self.inbox();
            inbox.queue.push_back(stop);
            inbox.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Stop> {
        let mut inbox = self.inbox();
        if let Some(stop) = inbox.queue.pop_front() {
            return Poll::Ready(stop);
        }
        if !inbox
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            inbox.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    async fn next(&self) -> Stop {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// What to tell the user when the shared server was started from an environment that differs
/// from this session's in `names`.
fn environment_warning(names: &[String]) -> String {
    format!(
        "this session sets {} otherwise than the environment the shared MCP server was started \
         with (another session's): the server does not see this session's values; if it must, \
         give sessions their own server by value with `shoal proxy --key-env NAME`",
        names.join(", ")
    )
}

/// Turn SIGTERM and the host's death into [`Stop`]s, for as long as the proxy runs.
async fn watch_for_stops(
    mut sigterm: Signal,
    watch: &'static ParentWatch,
    drain: Duration,
    stops: Stops,
) -> std::convert::Infallible {
    let parent_gone = watch.parent_gone();
    tokio::pin!(parent_gone);
    let mut signals_open = true;
    loop {
        tokio::select! {
            gone = &mut parent_gone => {
                tracing::info!(?gone, "the host is gone; exiting");
                stops.publish(Stop::Now(Outcome::HostGone));
                // Nothing later can change that; the event loop ends on it.
                return pending().await;
            }
            received = sigterm.recv(), if signals_open => {
                if received.is_none() {
                    // No more signals can arrive; only the host's death is left to watch.
                    signals_open = false;
                    continue;
                }
                let next = if watch.parent_is_gone() {
                    tracing::info!("SIGTERM: the host is gone; exiting");
                    Stop::Now(Outcome::HostGone)
                } else if stops.current() == Stop::Running {
                    tracing::info!("SIGTERM: finishing the requests in flight, then exiting");
                    Stop::Draining { until: Instant::now() + drain }
                } else {
                    tracing::info!("second SIGTERM: exiting without waiting for answers");
                    Stop::Now(Outcome::Terminated)
                };
                if !matches!(stops.current(), Stop::Now(_)) {
                    stops.publish(next);
                }
            }
        }
    }
}

struct Session {
    /// The current stop, for a blocked host write to race and for the loop's outcome (the loop
    /// itself waits on [`StopEvents`]).
    stop: watch::Receiver<Stop>,
    /// When the proxy stops waiting for owed answers (after stdin EOF or SIGTERM).
    drain_deadline: Option<Instant>,
    config: Arc<ProxyConfig>,
    host_pid: Option<u32>,
    ledger: Ledger,
    stdout: HostOutput,
    /// Host messages that arrived while reconnecting, in order.
    queue: VecDeque<Envelope>,
    queued_bytes: usize,
    /// When the oldest queued message arrived.
    queued_since: Option<Instant>,
    /// The queue's patience ran out during this reconnect: requests are answered at once.
    impatient: bool,
    last_restored: Option<Instant>,
    loss_backoff: Duration,
    /// The start-up code's pages were given back (after the first answer, see `memory.rs`).
    startup_pages_dropped: bool,
}

impl Session {
    async fn serve(
        &mut self,
        first: Connection,
        stop_events: &StopEvents,
    ) -> Result<Outcome, Error> {
        let mut first = first;
        let mut host = match first.custody.take() {
            Some(pipe) => HostReader::custody(pipe),
            None => HostReader::stdin(),
        };
        let mut connection = Some(first);
        let mut reconnect: Option<Reconnect> = None;
        let mut reading = true;
        let mut terminated = false;
        loop {
            if connection.is_none() && reconnect.is_none() {
                if host.in_custody() {
                    // What the daemon took is known only once its custody pipe has ended.
                    host.watch_custody();
                } else {
                    if self.lost().await.is_err() {
                        return Ok(Outcome::HostGone);
                    }
                    reconnect = Some(self.reconnect());
                }
            }
            if !reading
                && !self.ledger.owes_answers()
                && self.queue.is_empty()
                && !host.in_custody()
            {
                return Ok(if terminated {
                    Outcome::Terminated
                } else {
                    Outcome::InputClosed
                });
            }
            let patience = self
                .queued_since
                .map(|since| since + self.config.tuning.queue_patience);
            let drain_deadline = self.drain_deadline;
            // One arm for both timers: a `select!` builds and polls every branch's future on
            // every turn, that is, for every message.
            let timer = patience.into_iter().chain(drain_deadline).min();
            let step = tokio::select! {
                stop = stop_events.next() => {
                    match stop {
                        Stop::Now(outcome) => return Ok(outcome),
                        Stop::Draining { until } => {
                            terminated = true;
                            reading = false;
                            self.drain_at(until);
                            if host.in_custody() {
                                // The daemon stops taking, and what it took is owed.
                                release(&mut connection).await;
                                host.watch_custody();
                            }
                        }
                        Stop::Running => {}
                    }
                    Ok(())
                }
                item = host.next(reading) => match item {
                    HostItem::Line { line: Ok(line), taken: true } => {
                        self.on_taken_line(line);
                        Ok(())
                    }
                    HostItem::Line { line: Ok(line), taken: false } => {
                        self.on_host_line(line, &mut connection).await
                    }
                    HostItem::Line { line: Err(error), .. } => self.bad_host_line(&error).await,
                    HostItem::CustodyEnded => Ok(()),
                    HostItem::Closed => {
                        tracing::debug!("stdin closed; finishing the requests in flight");
                        reading = false;
                        self.drain_at(Instant::now() + self.config.tuning.drain);
                        Ok(())
                    }
                },
                item = from_daemon(connection.as_mut()) => match self.catch_up(&mut host, is_notice(&item)).await {
                    // Whatever the daemon sends, the host's requests it took before are known
                    // first (a request before its answer), and a custody notice asks for
                    // nothing else.
                    Err(gone) => Err(gone),
                    Ok(()) => match item {
                    Some(Ok(Ok(FromDaemon::Frame(frame)))) if frame.is_custody_notice() => Ok(()),
                    Some(Ok(Ok(FromDaemon::Line(line)))) => self.on_daemon_line(line).await,
                    Some(Ok(Ok(FromDaemon::Frame(frame)))) => self.on_daemon_frame(frame).await,
                    Some(Ok(Err(error))) => {
                        // The daemon writes nothing longer than the codec's limit; drop it.
                        tracing::warn!(%error, "dropped a message from the daemon");
                        Ok(())
                    }
                    Some(Err(error @ shoal_wire::Error::BadFrame { .. })) => {
                        // A daemon of this protocol never sends one: say so, then go on as
                        // for a daemon lost.
                        tracing::warn!(%error, "closed the connection to the daemon");
                        connection = None;
                        Ok(())
                    }
                    None | Some(Err(_)) => {
                        connection = None;
                        Ok(())
                    }
                    },
                },
                result = reconnecting(reconnect.as_mut()) => {
                    reconnect = None;
                    match result {
                        Ok(new) => {
                            connection = Some(new);
                            self.restored(&mut connection).await
                        }
                        Err(source) => {
                            let _ = self.answer_all(RECONNECTING_MESSAGE).await;
                            return Err(Error::Reconnect {
                                budget: self.config.tuning.reconnect_budget,
                                source,
                            });
                        }
                    }
                }
                () = sleep_until(timer) => {
                    let due = |deadline: Option<Instant>| deadline.is_some() && deadline <= timer;
                    if due(drain_deadline) {
                        tracing::info!("answers still owed after the drain bound; exiting");
                        let _ = self.answer_all(EXITING_MESSAGE).await;
                        return Ok(if terminated { Outcome::Terminated } else { Outcome::InputClosed });
                    }
                    if due(patience) {
                        self.expire_queue().await
                    } else {
                        Ok(())
                    }
                }
            };
            if step.is_err() {
                return Ok(match *self.stop.borrow() {
                    Stop::Now(outcome) => outcome,
                    _ if terminated => Outcome::Terminated,
                    _ => Outcome::HostGone,
                });
            }
        }
    }

    /// Stop waiting for owed answers at `until`, or earlier if already set so.
    fn drain_at(&mut self, until: Instant) {
        self.drain_deadline = Some(self.drain_deadline.map_or(until, |set| set.min(until)));
    }

    /// A line from the host: to the daemon, or to the queue while reconnecting.
    async fn on_host_line(
        &mut self,
        line: Line,
        connection: &mut Option<Connection>,
    ) -> Result<(), HostGone> {
        let message = Envelope::parse(line, Validation::Envelope);
        if connection.is_some() {
            if self.ledger.sent(&message) {
                write_daemon(connection, message.line()).await;
            }
            return Ok(());
        }
        let full = self.queue.len() >= MAX_QUEUED
            || self.queued_bytes + message.line().len() > MAX_QUEUED_BYTES;
        if self.impatient || full {
            return self.refuse(&message, RECONNECTING_MESSAGE).await;
        }
        self.queued_bytes += message.line().len();
        self.queued_since.get_or_insert_with(Instant::now);
        self.queue.push_back(message);
        Ok(())
    }

    /// A line the daemon took from the host's stdin in custody and forwarded: what sending it
    /// would have meant for the ledger. (A host's answer to a request of a daemon that is gone
    /// cannot be among them: custody is held by the first daemon only.)
    fn on_taken_line(&mut self, line: Line) {
        let message = Envelope::parse(line, Validation::Envelope);
        self.ledger.sent(&message);
    }

    /// Read what the daemon took from the host's stdin and the proxy has not seen yet.
    async fn catch_up(&mut self, host: &mut HostReader, thorough: bool) -> Result<(), HostGone> {
        host.catch_up(thorough);
        while let Some(item) = host.take_now() {
            match item {
                HostItem::Line {
                    line: Ok(line),
                    taken: true,
                } => self.on_taken_line(line),
                HostItem::Line {
                    line: Err(error), ..
                } => self.bad_host_line(&error).await?,
                HostItem::Line { .. } | HostItem::CustodyEnded | HostItem::Closed => break,
            }
        }
        Ok(())
    }

    /// A line the codec rejected (too long, not UTF-8): nothing of it can be forwarded, and its
    /// id is unknown, so the host gets the JSON-RPC error for an unreadable message.
    async fn bad_host_line(&mut self, error: &LineError) -> Result<(), HostGone> {
        tracing::warn!(%error, "dropped a line from the host");
        let (code, message) = match error {
            LineError::TooLong { .. } => (
                ErrorCode::INVALID_REQUEST,
                format!("{error}: the message was dropped"),
            ),
            _ => (ErrorCode::PARSE_ERROR, format!("Parse error: {error}")),
        };
        self.write_host(ToHost::Line(&error_response(None, code, &message)))
            .await
    }

    /// A line from the daemon: to the host, unless it answers a replayed request.
    async fn on_daemon_line(&mut self, line: Line) -> Result<(), HostGone> {
        let message = Envelope::parse(line, Validation::Envelope);
        if self.ledger.received(&message) {
            self.write_host(ToHost::Line(message.line())).await?;
        }
        self.passed_on();
        Ok(())
    }

    /// A routed frame from the daemon: a response or request whose kind and id it gave goes to
    /// the host as it is, without being read; anything else is read as a line.
    async fn on_daemon_frame(&mut self, frame: Frame) -> Result<(), HostGone> {
        let Some((kind, id)) = frame.routed() else {
            return match frame.into_line() {
                Ok(line) => self.on_daemon_line(line).await,
                Err(error) => {
                    tracing::warn!(%error, "dropped a message from the daemon");
                    Ok(())
                }
            };
        };
        if self.ledger.received_routed(*kind, id) {
            self.write_host(ToHost::Framed(frame.with_newline()))
                .await?;
        }
        self.passed_on();
        Ok(())
    }

    /// After the first message from the daemon (the answer to the host's `initialize`, on the
    /// attach's critical path), the start-up code is done with: its pages go (see `memory.rs`).
    fn passed_on(&mut self) {
        if !self.startup_pages_dropped {
            self.startup_pages_dropped = true;
            crate::memory::drop_startup_pages();
        }
    }

    /// The daemon connection is gone: answer what it owed, now.
    async fn lost(&mut self) -> Result<(), HostGone> {
        let withdrawn = self.ledger.asked();
        let lines = self.ledger.lost(DAEMON_LOST_MESSAGE);
        tracing::warn!(
            requests_in_flight = lines.len().saturating_sub(withdrawn),
            requests_withdrawn = withdrawn,
            "lost the shared daemon; answering the requests in flight with errors, withdrawing \
             its requests to the host, and reconnecting"
        );
        for line in &lines {
            self.write_host(ToHost::Line(line)).await?;
        }
        self.tell_host(&format!(
            "shoal lost the shared MCP server's daemon: {} request(s) in flight were answered \
             with errors and may be retried; reconnecting",
            lines.len().saturating_sub(withdrawn)
        ))
        .await
    }

    /// A warning for the host's own log, as MCP carries it (`notifications/message`), when the
    /// host asked for log messages at that level: hosts keep a server's stderr only until the
    /// connection is up, so this is the one way a warning after that reaches their user. Also
    /// on stderr, always (the callers log it).
    async fn tell_host(&mut self, text: &str) -> Result<(), HostGone> {
        if !self
            .ledger
            .host_wants_log(shoal_ipc::session::LogLevel::Warning)
        {
            return Ok(());
        }
        let message = shoal_wire::notification_value(
            "notifications/message",
            Some(&serde_json::json!({ "level": "warning", "logger": "shoal", "data": text })),
        );
        self.write_host(ToHost::Line(&message)).await
    }

    /// The reconnect: find or start a daemon until one answers or the budget is spent.
    fn reconnect(&mut self) -> Reconnect {
        let repeat = self
            .last_restored
            .is_some_and(|at| at.elapsed() < REPEAT_LOSS_WINDOW);
        let pause = if repeat {
            let pause = self.loss_backoff;
            self.loss_backoff = (self.loss_backoff * 2).min(MAX_LOSS_BACKOFF);
            pause
        } else {
            self.loss_backoff = FIRST_LOSS_BACKOFF;
            Duration::ZERO
        };
        let config = Arc::clone(&self.config);
        let host_pid = self.host_pid;
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            let deadline = Instant::now() + config.tuning.reconnect_budget;
            let mut delay = FIRST_RETRY_DELAY;
            loop {
                match find_or_start(&config, host_pid, false).await {
                    Ok(connection) => return Ok(connection),
                    Err(error) if Instant::now() + delay < deadline => {
                        tracing::warn!(
                            error = %error,
                            retry_in = ?delay,
                            "could not reach a shared daemon"
                        );
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(MAX_RETRY_DELAY);
                    }
                    Err(error) => return Err(error),
                }
            }
        })
    }

    /// Connected again: replay the session, then send what queued meanwhile.
    async fn restored(&mut self, connection: &mut Option<Connection>) -> Result<(), HostGone> {
        self.last_restored = Some(Instant::now());
        let replay = self.ledger.replay();
        tracing::warn!(
            daemon_pid = connection.as_ref().map(|connection| connection.pid),
            replayed = replay.len(),
            queued = self.queue.len(),
            "reconnected to the shared daemon; replaying the session"
        );
        for line in &replay {
            write_daemon(connection, line).await;
        }
        while connection.is_some()
            && let Some(message) = self.queue.pop_front()
        {
            self.queued_bytes -= message.line().len();
            if self.ledger.sent(&message) {
                write_daemon(connection, message.line()).await;
            }
        }
        if self.queue.is_empty() {
            self.queued_since = None;
        }
        self.impatient = false;
        self.tell_host(
            "shoal reconnected to the shared MCP server: the session was restored (its \
             initialization, log level and subscriptions replayed)",
        )
        .await?;
        let differs = connection
            .as_ref()
            .map(|connection| connection.env_differs.clone())
            .unwrap_or_default();
        if differs.is_empty() {
            return Ok(());
        }
        let warning = environment_warning(&differs);
        tracing::warn!("{warning}");
        self.tell_host(&warning).await
    }

    /// The queue waited `queue_patience`: answer its requests with errors, and every later one at
    /// once until connected again.
    async fn expire_queue(&mut self) -> Result<(), HostGone> {
        tracing::warn!(
            queued = self.queue.len(),
            "still reconnecting; answering the queued requests with errors"
        );
        self.impatient = true;
        self.queued_since = None;
        self.queued_bytes = 0;
        while let Some(message) = self.queue.pop_front() {
            self.refuse(&message, RECONNECTING_MESSAGE).await?;
        }
        Ok(())
    }

    /// Answer everything still owed or queued with `message` (the proxy is about to exit).
    async fn answer_all(&mut self, message: &str) -> Result<(), HostGone> {
        for answer in self.ledger.lost(message) {
            self.write_host(ToHost::Line(&answer)).await?;
        }
        self.queued_bytes = 0;
        self.queued_since = None;
        while let Some(queued) = self.queue.pop_front() {
            self.refuse(&queued, message).await?;
        }
        Ok(())
    }

    /// Answer the requests in a host message that will not be sent with an error.
    async fn refuse(&mut self, message: &Envelope, text: &str) -> Result<(), HostGone> {
        let mut ids = Vec::new();
        if message.kind() == Kind::Batch {
            for element in message.batch() {
                let element = Envelope::parse(element, Validation::Envelope);
                if element.kind() == Kind::Request {
                    ids.extend(element.id());
                }
            }
        } else if message.kind() == Kind::Request {
            ids.extend(message.id());
        }
        for id in ids {
            self.write_host(ToHost::Line(&error_response(
                Some(&id),
                ErrorCode::DAEMON_LOST,
                text,
            )))
            .await?;
        }
        Ok(())
    }

    /// Write one whole line to the host. A failure means the host is gone (EPIPE), or that the
    /// proxy must stop waiting for a host that does not read: its death, a second SIGTERM, or
    /// the drain bound passing while the write is blocked. A line abandoned then may be torn;
    /// the proxy exits right after, so the host sees it end at EOF.
    async fn write_host(&mut self, message: ToHost<'_>) -> Result<(), HostGone> {
        let write = message.write_to(&mut self.stdout);
        tokio::pin!(write);
        // Nearly every line goes out at once: try before building the arms that wait for a stop
        // or the drain bound (the watch's lock, two futures), which only a blocked write needs.
        let first = std::future::poll_fn(|context| Poll::Ready(write.as_mut().poll(context))).await;
        if let Poll::Ready(written) = first {
            return written.map_err(host_gone);
        }
        // False once the watcher is gone (it never returns; only a panic would end it): no stop
        // can come any more, and a closed channel's `changed()` is ready at once, every turn.
        let mut watching = true;
        loop {
            let give_up_at = match *self.stop.borrow_and_update() {
                Stop::Now(_) => return Err(HostGone),
                Stop::Draining { until } => Some(
                    self.drain_deadline
                        .map_or(until, |deadline| deadline.min(until)),
                ),
                Stop::Running => self.drain_deadline,
            };
            tokio::select! {
                biased;
                written = &mut write => return written.map_err(host_gone),
                changed = self.stop.changed(), if watching => watching = changed.is_ok(),
                () = sleep_until(give_up_at) => {
                    tracing::info!(
                        "the host has not read its output within the drain bound; exiting"
                    );
                    return Err(HostGone);
                }
            }
        }
    }
}

/// One message for the host's stdout.
#[derive(Clone, Copy)]
enum ToHost<'a> {
    /// A line: its newline is written after it.
    Line(&'a Line),
    /// A routed frame's message and newline.
    Framed(&'a [u8]),
}

impl ToHost<'_> {
    async fn write_to(self, stdout: &mut HostOutput) -> std::io::Result<()> {
        match self {
            ToHost::Line(line) => write_line(stdout, line).await,
            ToHost::Framed(bytes) => {
                stdout.write_all(bytes).await?;
                stdout.flush().await
            }
        }
    }
}

/// A write to the host failed: it is gone (EPIPE, or its end of the pipe closed).
fn host_gone(error: std::io::Error) -> HostGone {
    tracing::info!(%error, "cannot write to the host; it is gone");
    HostGone
}

/// Tell a daemon that holds the host's stdin in custody to stop taking from it
/// ([`shoal_wire::CUSTODY_RELEASE`]), unless already told; on failure the connection is dropped.
async fn release(connection: &mut Option<Connection>) {
    let Some(open) = connection else {
        return;
    };
    if !std::mem::take(&mut open.release_owed) {
        return;
    }
    // A constant without a newline: always a line.
    let Ok(line) = Line::new(shoal_wire::CUSTODY_RELEASE) else {
        return;
    };
    if let Err(error) = write_line(&mut open.writer, &line).await {
        tracing::debug!(%error, "writing to the daemon failed");
        *connection = None;
    }
}

/// Whether the first daemon may be handed the host's stdin in custody: on Linux, for a pipe or
/// a socket.
fn custody_possible() -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd as _;
        shoal_ipc::custody::supports(std::io::stdin().as_fd())
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Write one line to the daemon; on failure the connection is dropped (and the loop reconnects).
/// The first line to a daemon that was handed the stdin releases it first.
async fn write_daemon(connection: &mut Option<Connection>, line: &Line) {
    release(connection).await;
    let Some(open) = connection else {
        return;
    };
    if let Err(error) = write_line(&mut open.writer, line).await {
        tracing::debug!(%error, "writing to the daemon failed");
        *connection = None;
    }
}

/// The daemon's next message; never resolves without a connection.
async fn from_daemon(
    connection: Option<&mut Connection>,
) -> Option<Result<Result<FromDaemon, LineError>, shoal_wire::Error>> {
    match connection {
        Some(connection) => connection.reader.next().await,
        None => pending().await,
    }
}

/// Whether the daemon's message is a custody notice.
fn is_notice(item: &Option<Result<Result<FromDaemon, LineError>, shoal_wire::Error>>) -> bool {
    matches!(item, Some(Ok(Ok(FromDaemon::Frame(frame)))) if frame.is_custody_notice())
}

/// The reconnect's result; never resolves when none is in progress.
async fn reconnecting(reconnect: Option<&mut Reconnect>) -> Result<Connection, StartError> {
    match reconnect {
        Some(reconnect) => reconnect.await,
        None => pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn stop_events_arrive_in_order_and_wake_a_waiting_loop() {
        let events = Arc::new(StopEvents::default());
        let next = |events: Arc<StopEvents>| async move {
            tokio::time::timeout(DEADLINE, events.next())
                .await
                .expect("a sent stop is received")
        };
        events.send(Stop::Draining {
            until: Instant::now(),
        });
        assert!(matches!(
            next(Arc::clone(&events)).await,
            Stop::Draining { .. }
        ));
        // Nothing queued: the waiter parks until a stop is sent, then is woken with it.
        let waiter = tokio::spawn(next(Arc::clone(&events)));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "nothing was sent: the waiter waits");
        events.send(Stop::Now(Outcome::Terminated));
        events.send(Stop::Now(Outcome::HostGone));
        assert_eq!(waiter.await.unwrap(), Stop::Now(Outcome::Terminated));
        assert_eq!(next(events).await, Stop::Now(Outcome::HostGone));
    }
}
