//! Accepting connections: peer credentials, admission, the hello, then a session or control loop.
//!
//! Every connection runs in its own task and talks to the hub only through [`Event`]s. Each
//! session has one reader (this task) and one writer task draining its byte-bounded outbox, so a
//! client that stops reading never blocks anyone but itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shoal_wire::{
    CUSTODY_RELEASE, ClientHello, ControlRequest, ControlResponse, HELLO_TIMEOUT, Line, LineCodec,
    Role, read_client_hello,
};

use tokio::net::UnixListener;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

use crate::hub::{DrainGuard, Event, Joined, reserved_len};
use crate::outbox::{Room, outbox};
use crate::router::ClientId;
use shoal_ipc::socket::{self, ReadHalf, WriteHalf};
use shoal_ipc::{next_line, write_line};

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct ConnectionContext {
    /// Only peers with this uid are served.
    pub(crate) uid: u32,
    /// The daemon's hello, sent as is to every admitted connection.
    pub(crate) hello: Line,
    /// Whether the hello offers routed frames: a session that asks for them gets them.
    pub(crate) routed_frames: bool,
    /// Whether the hello offers custody of a session's host input (with routed frames only).
    pub(crate) custody: bool,
    /// Bytes a session's outbox may hold before the client counts as not reading.
    pub(crate) outbox_budget: usize,
    /// Bytes in a session's outbox beyond which its next message is not read.
    pub(crate) outbox_soft_limit: usize,
    /// How long a write to a session may make no progress before the client is cut off.
    pub(crate) stall_timeout: Duration,
    /// The backend's queue: no session reads its next message while it is over its soft limit.
    pub(crate) backend_room: Arc<Room>,
    pub(crate) next_client: AtomicU64,
}

/// Control messages are small; a control peer does not get the session limit.
const CONTROL_MAX_LINE: usize = 64 * 1024;

/// How long a failing `accept` (out of file descriptors, typically) waits before trying again,
/// so that the loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Accept connections until `stop` fires (or its sender is dropped); dropping the listener on
/// return makes later connects fail at once.
pub(crate) async fn accept_loop(
    listener: UnixListener,
    context: Arc<ConnectionContext>,
    events: mpsc::Sender<Event>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, Arc::clone(&context), events.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
}

async fn serve(stream: UnixStream, context: Arc<ConnectionContext>, events: mpsc::Sender<Event>) {
    // Sharing is only ever within one user. Where the platform cannot say who the peer is, the
    // connection is refused: failing open would share a user's server with anyone.
    match stream.peer_cred() {
        Ok(credentials) if credentials.uid() == context.uid => {}
        Ok(credentials) => {
            tracing::warn!(
                peer_uid = credentials.uid(),
                peer_pid = credentials.pid(),
                "refused a connection from another user"
            );
            return;
        }
        Err(error) => {
            tracing::warn!(%error, "refused a connection whose peer credentials are unknown");
            return;
        }
    }
    let (read, mut write) = match socket::split(stream) {
        Ok(halves) => halves,
        Err(error) => {
            tracing::warn!(%error, "could not register a connection");
            return;
        }
    };
    // A session that takes the custody offered passes its descriptors with its hello.
    #[cfg(target_os = "linux")]
    let mut read = read;
    #[cfg(target_os = "linux")]
    if context.custody {
        read.accept_fds();
    }
    let (admit, admitted) = oneshot::channel();
    if events.send(Event::Connected { admit }).await.is_err() {
        return;
    }
    // `None` or a dropped sender: the daemon is exiting. Close before the hello, so that the
    // client retries through the spawn lock and reaches the next daemon.
    let Ok(Some(drain_guard)) = admitted.await else {
        return;
    };
    // Admitted: the hub counts this as a handshake until it reports how it ended.
    let mut reader = FramedRead::new(read, LineCodec::new());
    let hello = async {
        write_line(&mut write, &context.hello).await?;
        read_client_hello(&mut reader, HELLO_TIMEOUT).await
    }
    .await;
    let hello = match hello {
        Ok(hello) => hello,
        Err(error) => {
            tracing::info!(%error, "closed a connection that did not complete the hello");
            let _ = events.send(Event::HandshakeEnded).await;
            return;
        }
    };
    let fds = reader.get_mut().take_fds();
    match hello.role {
        Role::Session => {
            let input = SessionInput::new(&hello, fds, &context);
            session(hello, reader, input, write, context, events, drain_guard).await;
        }
        Role::Control => {
            // A control connection is not a client and does not hold up the exit drain.
            drop(drain_guard);
            let _ = events.send(Event::HandshakeEnded).await;
            tracing::debug!(pid = hello.pid, label = %hello.label, "control connection");
            reader.decoder_mut().set_max_line_len(CONTROL_MAX_LINE);
            control(reader, write, events).await;
        }
    }
}

/// Where a session's host messages come from: its socket, and its host's stdin held in custody
/// when it handed that over ([`ClientHello::custody`]).
struct SessionInput {
    /// False for a session that asked for custody until its first line on the socket, which
    /// is [`shoal_wire::CUSTODY_RELEASE`] (whether or not custody is still held then).
    released: bool,
    #[cfg(target_os = "linux")]
    custody: Option<FramedRead<shoal_ipc::custody::Custody, LineCodec>>,
}

impl SessionInput {
    fn new(
        hello: &ClientHello,
        fds: Vec<std::os::fd::OwnedFd>,
        context: &ConnectionContext,
    ) -> SessionInput {
        let custody_session = hello.custody && hello.routed_frames && context.custody;
        if hello.custody && !custody_session {
            // Not offered: the proxy does not ask then. Its descriptors close here, so that its
            // custody pipe ends and it reads its stdin itself.
            tracing::warn!(
                pid = hello.pid,
                "a session asked for custody, which was not offered"
            );
        }
        #[cfg(target_os = "linux")]
        {
            let custody = match (custody_session, <[_; 2]>::try_from(fds)) {
                (true, Ok([host, pipe])) => match shoal_ipc::custody::Custody::new(host, pipe) {
                    Ok(custody) => {
                        let custody = match failpoint::armed() {
                            Some(hook) => custody.with_hook(hook),
                            None => custody,
                        };
                        let mut lines = LineCodec::new();
                        // A line the host has not ended is not taken: the proxy's decoder holds
                        // the same bytes and joins them with the rest it reads itself.
                        lines.set_keep_partial_last_line(false);
                        Some(FramedRead::new(custody, lines))
                    }
                    Err(error) => {
                        tracing::warn!(%error, pid = hello.pid, "cannot hold a session's input in custody");
                        None
                    }
                },
                (true, Err(fds)) => {
                    tracing::warn!(
                        pid = hello.pid,
                        descriptors = fds.len(),
                        "a session asked for custody without passing its two descriptors"
                    );
                    None
                }
                (false, _) => None,
            };
            SessionInput {
                released: !custody_session,
                custody,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            drop(fds);
            SessionInput {
                released: !custody_session,
            }
        }
    }
}

/// A fault test's kill point in the custody of a session's input: with
/// `SHOAL_TEST_CUSTODY_KILL=copied:K` (or `moved:K`) in its environment, the daemon SIGKILLs
/// itself at the K-th such step of its sessions' custody reads (`shoal_ipc::custody::Step`), so
/// that a test can stop it between copying a host's bytes and moving them, or between moving
/// them and forwarding them. Unset, as outside those tests, it costs one look at the
/// environment per session.
#[cfg(target_os = "linux")]
mod failpoint {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    use shoal_ipc::custody::Step;

    const VARIABLE: &str = "SHOAL_TEST_CUSTODY_KILL";

    fn target() -> Option<(bool, u32)> {
        static TARGET: OnceLock<Option<(bool, u32)>> = OnceLock::new();
        *TARGET.get_or_init(|| {
            let value = std::env::var(VARIABLE).ok()?;
            let (step, count) = value.split_once(':')?;
            Some((step == "moved", count.parse().ok()?))
        })
    }

    /// The hook to give a session's custody, if a kill point is set.
    pub(super) fn armed() -> Option<fn(Step)> {
        target().map(|_| hook as fn(Step))
    }

    fn hook(step: Step) {
        static COPIED: AtomicU32 = AtomicU32::new(0);
        static MOVED: AtomicU32 = AtomicU32::new(0);
        let Some((moved, count)) = target() else {
            return;
        };
        let (this, counter) = match step {
            Step::Copied(_) => (false, &COPIED),
            Step::Moved(_) => (true, &MOVED),
        };
        if this == moved && counter.fetch_add(1, Ordering::Relaxed) + 1 == count {
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::SIGKILL);
        }
    }
}

/// What a session's custody input gave.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
enum Taken {
    Line(Line),
    /// A line the codec refused: dropped here; the proxy answers it from the custody pipe.
    Refused,
    /// Custody ended: the host closed its stdin, or reading it failed.
    Ended,
}

impl SessionInput {
    /// The next line taken from the host's stdin in custody; never resolves without custody.
    async fn next(&mut self) -> Taken {
        #[cfg(target_os = "linux")]
        if let Some(custody) = &mut self.custody {
            return match next_line(custody).await {
                Some(Ok(Ok(line))) => Taken::Line(line),
                Some(Ok(Err(_))) => Taken::Refused,
                Some(Err(error)) => {
                    tracing::warn!(%error, "stopped reading a session's input in custody");
                    self.custody = None;
                    Taken::Ended
                }
                None => {
                    tracing::debug!("the host closed its stdin, held in custody");
                    self.custody = None;
                    Taken::Ended
                }
            };
        }
        std::future::pending().await
    }

    /// Stop taking from the host's stdin (the session released it): the whole lines already
    /// taken and not yet routed, which the proxy counts as sent. What follows the last of them
    /// is the start of a line the proxy completes from the stdin itself.
    fn release(&mut self) -> Vec<Line> {
        let mut lines = Vec::new();
        #[cfg(target_os = "linux")]
        if let Some(custody) = self.custody.take() {
            use tokio_util::codec::Decoder as _;
            let mut parts = custody.into_parts();
            while let Ok(Some(item)) = parts.codec.decode(&mut parts.read_buf) {
                lines.extend(item.ok());
            }
        }
        lines
    }

    /// Whether custody is still held.
    fn holding(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.custody.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }
}

async fn session(
    hello: ClientHello,
    mut reader: FramedRead<ReadHalf, LineCodec>,
    mut input: SessionInput,
    write: WriteHalf,
    context: Arc<ConnectionContext>,
    events: mpsc::Sender<Event>,
    drain_guard: DrainGuard,
) {
    let client: ClientId = context.next_client.fetch_add(1, Ordering::Relaxed);
    let (outbox, receiver) = outbox(context.outbox_budget, context.outbox_soft_limit);
    let outbox = outbox
        .with_direct_writes(write.try_writer())
        .with_routed_frames(context.routed_frames && hello.routed_frames);
    let own_room = Arc::clone(outbox.room());
    let notices = outbox.notices();
    #[cfg(target_os = "linux")]
    if let Some(custody) = &mut input.custody {
        // A full custody pipe: the proxy reads it only when told, or when an answer comes.
        let full = notices.clone();
        custody.get_mut().set_on_full(move || full.send());
    }
    let (writer_gone, mut writer_gone_signal) = oneshot::channel::<()>();
    let (cut_off, was_cut_off) = oneshot::channel::<()>();
    let context_for_writer = Arc::clone(&context);
    tokio::spawn(async move {
        let context = context_for_writer;
        // Exits: the queue was drained after the hub let go of it (the session left, or the
        // daemon stops); a write failed (the client is gone; its reader sees that too); or the
        // hub cut the client off for not reading (its outbox went over budget), or a write made
        // no progress for `stall_timeout`: everything still queued is dropped at once rather
        // than held until a host that stopped reading reads again. A message cut
        // short then is dropped by the proxy (`LineCodec::set_keep_partial_last_line`).
        let stall = context.stall_timeout;
        tokio::select! {
            written = receiver.write_all_to(write, Some(stall)) => {
                if written.is_err_and(|error| error.kind() == std::io::ErrorKind::TimedOut) {
                    tracing::warn!(
                        client,
                        stalled_for = ?stall,
                        "disconnected a client that stopped reading its messages"
                    );
                }
            }
            Ok(()) = was_cut_off => {}
        }
        drop(writer_gone);
        drop(drain_guard);
    });
    if events
        .send(Event::SessionJoined(Box::new(Joined {
            client,
            hello,
            outbox,
            cut_off,
        })))
        .await
        .is_err()
    {
        return;
    }
    loop {
        // Exits: the client closes or its socket fails (EOF / error), or the writer is gone
        // (the hub dropped the outbox: slow client or shutdown; or a write failed). The next
        // message is read only once the backend's queue and the session's own outbox have room:
        // a busy backend pushes back on the hosts that send to it, and a host that stops reading
        // its answers stops being read, through their sockets, instead of growing the daemon.
        // Biased, the writer's end first: it fires once, so it cannot keep the client's lines
        // from being read, and an unbiased `select!` draws a random starting arm every turn.
        let line = tokio::select! {
            biased;
            _ = &mut writer_gone_signal => break,
            item = async {
                context.backend_room.wait().await;
                // A client that does not read its answers gets no more of them.
                own_room.wait().await;
                next_line(&mut reader).await
            } => match item {
                Some(Ok(line)) if !input.released => {
                    input.released = true;
                    let release = line
                        .as_ref()
                        .is_ok_and(|line| line.as_bytes() == CUSTODY_RELEASE.as_bytes());
                    if !release {
                        tracing::warn!(
                            client,
                            "a session that handed over its input in custody did not release it first"
                        );
                    }
                    let held = input.holding();
                    for taken in input.release() {
                        if !route(&context, &events, client, Ok(taken)).await {
                            return;
                        }
                    }
                    if held {
                        // The custody pipe's end is closed: the proxy reads its stdin now.
                        notices.send();
                    }
                    if release {
                        continue;
                    }
                    line
                }
                Some(Ok(line)) => line,
                Some(Err(_)) | None => break,
            },
            taken = async {
                context.backend_room.wait().await;
                own_room.wait().await;
                input.next().await
            } => match taken {
                Taken::Line(line) => Ok(line),
                Taken::Refused | Taken::Ended => {
                    // The proxy answers a refused line from the custody pipe, and reads its stdin
                    // itself once the pipe ends; it is told to look now.
                    notices.send();
                    continue;
                }
            },
        };
        if !route(&context, &events, client, line).await {
            return;
        }
    }
    let _ = events.send(Event::ClientLeft { client }).await;
}

/// Hand a client's line to the hub: false if the daemon is going away.
async fn route(
    context: &ConnectionContext,
    events: &mpsc::Sender<Event>,
    client: ClientId,
    line: Result<Line, shoal_wire::LineError>,
) -> bool {
    // Counted until the hub has routed it (`Hub::handle`), so that lines read but not yet
    // routed count against the room too.
    context.backend_room.reserve(reserved_len(&line));
    events
        .send(Event::ClientLine { client, line })
        .await
        .is_ok()
}

async fn control(
    mut reader: FramedRead<ReadHalf, LineCodec>,
    mut write: WriteHalf,
    events: mpsc::Sender<Event>,
) {
    while let Some(Ok(line)) = next_line(&mut reader).await {
        let response = match line {
            Err(error) => ControlResponse::Error {
                message: error.to_string(),
            },
            Ok(line) => match ControlRequest::parse(line.as_bytes()) {
                Err(error) => ControlResponse::Error {
                    message: error.to_string(),
                },
                Ok(request) => {
                    let (reply, answer) = oneshot::channel();
                    if events
                        .send(Event::Control { request, reply })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    answer.await.unwrap_or_else(|_| ControlResponse::Error {
                        message: "the daemon is shutting down".to_owned(),
                    })
                }
            },
        };
        if write_line(&mut write, &response.to_line()).await.is_err() {
            return;
        }
    }
}
