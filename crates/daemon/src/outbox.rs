//! Outboxes: unbounded in count, bounded in bytes, and never awaited by the hub.
//!
//! The hub is one task serving every client and the backend. If it ever awaited a full queue, one
//! client that stops reading (or a backend that stops reading its stdin while it blocks writing its
//! stdout) would stall everyone: a deadlock, not just a slowdown. So the hub only ever *pushes*:
//! a push that would take a queue over its byte budget fails at once, and the hub decides what that
//! means (a client is disconnected; a request to a backend that is not keeping up gets an error).
//! A writer task per queue does the awaiting and gives the bytes back to the budget as it writes.
//!
//! The backend's queue is the exception to "refuse beyond the budget": refusing there would mean
//! failing a request or restarting a server that is merely busy. Its bytes are counted in a
//! [`Room`] that session readers consult *before* they read their next message (see
//! `connection.rs`): while the backend is behind by more than the room's soft limit, no session
//! reads, so back-pressure reaches the sending hosts (their writes block, as they would on the
//! server's own stdin) and the queue stays within the soft limit plus one line per session.

use std::cell::RefCell;
use std::io::IoSlice;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use shoal_ipc::socket::TryWriter;
use shoal_wire::{FRAME_HEADER_LEN, Field, Kind, Line, LineCodec, Rewritten, frame_header};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::codec::Encoder;

/// One message on its way out: a line as received or built, or a rewritten envelope (boxed: it
/// carries its edits inline, and most messages are plain lines).
#[derive(Debug)]
pub(crate) enum Outgoing {
    Line(Line),
    Rewritten(Box<Rewritten>),
}

/// What a queue holds: a message, a message and the header of its routed frame, or the rest of
/// one that a direct write took only part of (newline included).
#[derive(Debug)]
enum Queued {
    Message(Outgoing),
    Framed([u8; FRAME_HEADER_LEN], Outgoing),
    Rest(Bytes),
}

impl Outgoing {
    /// Bytes on the wire, newline included.
    fn wire_len(&self) -> usize {
        match self {
            Outgoing::Line(line) => line.len() + 1,
            Outgoing::Rewritten(rewritten) => rewritten.len() + 1,
        }
    }

    /// The message's pieces without the newline, for a vectored write.
    fn slices<'a>(&'a self, slices: &mut Vec<IoSlice<'a>>) {
        match self {
            Outgoing::Line(line) => slices.push(IoSlice::new(line.as_bytes())),
            Outgoing::Rewritten(rewritten) => slices.extend(rewritten.pieces().map(IoSlice::new)),
        }
    }

    /// What a session's proxy is told of the message in its routed frame: the kind and where
    /// the id is, for a rewritten response or request (the answers and requests the host gets
    /// from its server: nearly every message, and every large one); anything else it reads.
    fn route(&self) -> Option<(Kind, Range<usize>)> {
        match self {
            Outgoing::Rewritten(rewritten) => match rewritten.kind() {
                kind @ (Kind::Response | Kind::ErrorResponse | Kind::Request) => {
                    rewritten.value_span(Field::Id).map(|span| (kind, span))
                }
                _ => None,
            },
            Outgoing::Line(_) => None,
        }
    }

    /// The message as it goes on the wire, newline included.
    fn encode(&self, codec: &mut LineCodec, buffer: &mut BytesMut) {
        let encoded = match self {
            Outgoing::Line(line) => codec.encode(line, buffer),
            Outgoing::Rewritten(rewritten) => codec.encode(&**rewritten, buffer),
        };
        debug_assert!(
            encoded.is_ok(),
            "lines and rewritten envelopes always encode"
        );
    }
}

impl Queued {
    fn wire_len(&self) -> usize {
        match self {
            Queued::Message(message) => message.wire_len(),
            Queued::Framed(header, message) => header.len() + message.wire_len(),
            Queued::Rest(rest) => rest.len(),
        }
    }

    fn encode(&self, codec: &mut LineCodec, buffer: &mut BytesMut) {
        match self {
            Queued::Message(message) => message.encode(codec, buffer),
            Queued::Framed(header, message) => {
                buffer.extend_from_slice(header);
                message.encode(codec, buffer);
            }
            Queued::Rest(rest) => buffer.extend_from_slice(rest),
        }
    }
}

/// Messages up to this size are written by [`Outbox::push`] itself when nothing is queued;
/// larger ones always go through the writer (a direct write would copy them once more).
const DIRECT_MAX: usize = 16 * 1024;

/// The most room [`Outbox::push`] keeps in its scratch buffer between direct writes.
const SCRATCH_KEPT: usize = 4 * 1024;

impl From<Line> for Outgoing {
    fn from(line: Line) -> Self {
        Outgoing::Line(line)
    }
}

impl From<Rewritten> for Outgoing {
    fn from(rewritten: Rewritten) -> Self {
        Outgoing::Rewritten(Box::new(rewritten))
    }
}

/// Bytes on their way to one peer, shared by its queue, its writer and whoever waits for room.
#[derive(Debug)]
pub(crate) struct Room {
    queued: AtomicUsize,
    /// Waiters are let through while fewer bytes than this are queued.
    soft_limit: usize,
    made: Notify,
}

impl Room {
    pub(crate) fn new(soft_limit: usize) -> Arc<Room> {
        Arc::new(Room {
            queued: AtomicUsize::new(0),
            soft_limit,
            made: Notify::new(),
        })
    }

    /// Bytes queued (or reserved) now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Wait until fewer than the soft limit are queued.
    pub(crate) async fn wait(&self) {
        // Most of the time there is room: answer without registering a waiter (which takes the
        // `Notify`'s lock twice, about 500 instructions per line read, callgrind).
        if self.queued() < self.soft_limit {
            return;
        }
        loop {
            let made = self.made.notified();
            tokio::pin!(made);
            // Registered before the check, so a release between the check and the await wakes us.
            made.as_mut().enable();
            if self.queued() < self.soft_limit {
                return;
            }
            made.await;
        }
    }

    /// Count `bytes` more (a message queued, or a line read and not yet routed).
    pub(crate) fn reserve(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `bytes` are gone (written, dropped, or routed); wakes waiters when that made room.
    pub(crate) fn release(&self, bytes: usize) {
        let before = self.queued.fetch_sub(bytes, Ordering::AcqRel);
        if before >= self.soft_limit && before - bytes < self.soft_limit {
            self.made.notify_waiters();
        }
    }
}

/// The bytes of one queue, counted twice: in its [`Room`], which others may share and reserve
/// in (the backend's, see the module docs), and on their own, so that the queue knows when its
/// writer holds nothing.
#[derive(Debug, Clone)]
struct Count {
    room: Arc<Room>,
    /// Bytes handed to the writer and not yet written or dropped.
    unwritten: Arc<AtomicUsize>,
}

impl Count {
    fn reserve(&self, bytes: usize) {
        self.unwritten.fetch_add(bytes, Ordering::AcqRel);
        self.room.reserve(bytes);
    }

    fn release(&self, bytes: usize) {
        self.unwritten.fetch_sub(bytes, Ordering::AcqRel);
        self.room.release(bytes);
    }

    /// Whether the writer holds no byte: nothing queued, nothing being written.
    fn idle(&self) -> bool {
        self.unwritten.load(Ordering::Acquire) == 0
    }
}

/// The sending side, held by the hub.
#[derive(Debug)]
pub(crate) struct Outbox {
    sender: mpsc::UnboundedSender<Queued>,
    count: Count,
    /// `None`: never refuse (the backend's queue, bounded by back-pressure instead).
    budget: Option<usize>,
    /// The peer's socket or pipe, for writing a small message at once when the writer holds
    /// nothing: the hub and the writer task run on one thread, and the writer gives bytes back
    /// only once written ([`Count::idle`]), so a direct write never overtakes a queued one. It
    /// saves the hand-off to the writer task (a wake-up, a poll and a channel receive per
    /// message).
    direct: Option<TryWriter>,
    /// The bytes of a direct write, kept from one to the next: a message encoded into a fresh
    /// buffer cost an allocation and a free per message. Kept only up to [`SCRATCH_KEPT`]
    /// bytes' room, so that a session's one larger message does not stay allocated.
    scratch: RefCell<BytesMut>,
    /// Every message goes in a routed frame (the session asked for them in its hello).
    routed_frames: bool,
}

/// Custody notices for one session ([`shoal_wire::CUSTODY_NOTICE`]), sent beside its outbox
/// by the task that reads the session's host input: always queued behind what the outbox holds
/// (never written directly), so that they never split a message.
///
/// Weak: the session's writer ends once the hub lets go of the outbox, and a notice handle
/// must not keep it waiting.
#[derive(Debug, Clone)]
pub(crate) struct Notices {
    sender: mpsc::WeakUnboundedSender<Queued>,
    count: Count,
}

impl Notices {
    /// Queue a notice; a session whose writer is gone needs none.
    pub(crate) fn send(&self) {
        let Some(sender) = self.sender.upgrade() else {
            return;
        };
        let len = shoal_wire::CUSTODY_NOTICE.len();
        self.count.reserve(len);
        let notice = Queued::Rest(Bytes::from_static(&shoal_wire::CUSTODY_NOTICE));
        if sender.send(notice).is_err() {
            self.count.release(len);
        }
    }
}

/// Why a push failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue already holds `queued` bytes; this message would exceed the budget.
    Full { queued: usize },
    /// The writer is gone (the peer closed, or a write failed).
    Closed,
}

/// The receiving side, owned by a writer task. Dropping it gives back the bytes of whatever it
/// did not write, so that a room shared across backend processes never counts a dead one's queue.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    receiver: mpsc::UnboundedReceiver<Queued>,
    count: Count,
}

/// A queue that refuses pushes beyond `budget` queued bytes. One message is always accepted into
/// an empty queue, whatever its size (the line codec already bounds a message), so a large result
/// can never be undeliverable. Its [`Room`] lets waiters through below `soft_limit`.
pub(crate) fn outbox(budget: usize, soft_limit: usize) -> (Outbox, OutboxReceiver) {
    with_room(Room::new(soft_limit), Some(budget))
}

/// A queue that never refuses and counts its bytes in `room` (see the module docs).
pub(crate) fn outbox_in(room: Arc<Room>) -> (Outbox, OutboxReceiver) {
    with_room(room, None)
}

fn with_room(room: Arc<Room>, budget: Option<usize>) -> (Outbox, OutboxReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let count = Count {
        room,
        unwritten: Arc::default(),
    };
    (
        Outbox {
            sender,
            count: count.clone(),
            budget,
            direct: None,
            scratch: RefCell::default(),
            routed_frames: false,
        },
        OutboxReceiver { receiver, count },
    )
}

impl Outbox {
    /// The room its bytes are counted in.
    pub(crate) fn room(&self) -> &Arc<Room> {
        &self.count.room
    }

    /// Write small messages straight to `peer` while nothing is queued (see [`Outbox::direct`]).
    pub(crate) fn with_direct_writes(mut self, peer: Option<TryWriter>) -> Outbox {
        self.direct = peer;
        self
    }

    /// A handle for the custody notices of this outbox's session.
    pub(crate) fn notices(&self) -> Notices {
        Notices {
            sender: self.sender.downgrade(),
            count: self.count.clone(),
        }
    }

    /// Put every message in a routed frame ([`shoal_wire::FrameCodec`]) when `framed`.
    pub(crate) fn with_routed_frames(mut self, framed: bool) -> Outbox {
        self.routed_frames = framed;
        self
    }

    pub(crate) fn push(&self, message: impl Into<Outgoing>) -> Result<(), PushError> {
        let message = message.into();
        let mut message = if self.routed_frames {
            // Lines are at most `DEFAULT_MAX_LINE_LEN` (32 MiB) and a rewrite puts in at most
            // five ids from such lines: far below the header's 4 GiB.
            let header = frame_header(message.wire_len() - 1, message.route())
                .expect("a message is shorter than 4 GiB");
            Queued::Framed(header, message)
        } else {
            Queued::Message(message)
        };
        if let Some(direct) = &self.direct
            && message.wire_len() <= DIRECT_MAX
            && self.count.idle()
        {
            // The writer is gone (a failed or stalled write): it may have left a line cut
            // short on the socket, which nothing may follow.
            if self.sender.is_closed() {
                return Err(PushError::Closed);
            }
            let mut encoded = self.scratch.take();
            encoded.clear();
            message.encode(&mut LineCodec::new(), &mut encoded);
            // Full, or broken (nothing written): the writer waits for room, or meets the error
            // and ends.
            let written = direct.try_write(&encoded).unwrap_or(0);
            let whole = written == encoded.len();
            if !whole {
                // Rare (the socket's buffer is full): the rest gets a buffer of its own.
                message = Queued::Rest(Bytes::copy_from_slice(&encoded[written..]));
            }
            if encoded.capacity() <= SCRATCH_KEPT {
                self.scratch.replace(encoded);
            }
            if whole {
                return Ok(());
            }
        }
        let size = message.wire_len();
        let queued = self.count.room.queued();
        if let Some(budget) = self.budget
            && queued > 0
            && queued + size > budget
        {
            return Err(PushError::Full { queued });
        }
        self.count.reserve(size);
        self.sender.send(message).map_err(|_| {
            self.count.release(size);
            PushError::Closed
        })
    }

    /// Bytes waiting to be written.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.count.room.queued()
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.receiver.close();
        while let Ok(message) = self.receiver.try_recv() {
            self.count.release(message.wire_len());
        }
    }
}

impl OutboxReceiver {
    /// Write every message to `writer` until the [`Outbox`] is dropped and drained (`Ok`), or a
    /// write fails (`Err`), or one write makes no progress for `stall` (`Err` of kind
    /// `TimedOut`: the peer stopped reading). Messages already queued are batched into one write.
    pub(crate) async fn write_all_to(
        mut self,
        mut writer: impl AsyncWrite + Unpin,
        stall: Option<std::time::Duration>,
    ) -> std::io::Result<()> {
        let mut codec = LineCodec::new();
        let mut buffer = BytesMut::new();
        while let Some(first) = self.receiver.recv().await {
            let mut next = Some(first);
            let mut batched = 0;
            let mut in_place = None;
            // Batch what is already queued, up to a bound so that one write does not grow huge;
            // a large message ends the batch and is written from its own bytes.
            while let Some(message) = next.take() {
                batched += message.wire_len();
                match message {
                    Queued::Message(large) if large.wire_len() >= IN_PLACE_MIN => {
                        in_place = Some(large);
                        break;
                    }
                    Queued::Framed(header, large) if large.wire_len() >= IN_PLACE_MIN => {
                        buffer.extend_from_slice(&header);
                        in_place = Some(large);
                        break;
                    }
                    message => message.encode(&mut codec, &mut buffer),
                }
                if buffer.len() < WRITE_BATCH {
                    next = self.receiver.try_recv().ok();
                }
            }
            let write = write_batch(&mut writer, &buffer, in_place.as_ref());
            let written = match stall {
                Some(stall) => tokio::time::timeout(stall, write)
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                None => write.await,
            };
            drop(in_place); // its memory goes before its bytes leave the room
            buffer.clear();
            if buffer.capacity() > 4 * WRITE_BATCH {
                // Give back the memory of one huge message.
                buffer = BytesMut::new();
            }
            self.count.release(batched);
            written?;
            writer.flush().await?;
        }
        let _ = writer.shutdown().await;
        Ok(())
    }
}

/// Stop batching once this much is buffered: large enough to amortise syscalls for small
/// messages, small enough not to double the memory of a burst.
const WRITE_BATCH: usize = 256 * 1024;

/// Messages at least this large (newline included) are not copied into the write buffer: a
/// vectored write sends their pieces from where they are. Copying a 1 MiB result into a buffer
/// freshly allocated for it cost the daemon a `memcpy` of the whole result and the page faults
/// of the new buffer, per result; below this size a copy costs less than the extra `iovec`s.
const IN_PLACE_MIN: usize = 64 * 1024;

/// Write `buffered` (encoded messages), then `in_place` (a large message, from its own bytes)
/// and its newline, with as few system calls as the writer allows.
async fn write_batch(
    writer: &mut (impl AsyncWrite + Unpin),
    buffered: &[u8],
    in_place: Option<&Outgoing>,
) -> std::io::Result<()> {
    let Some(message) = in_place else {
        return writer.write_all(buffered).await;
    };
    let mut slices = Vec::with_capacity(MAX_SLICES);
    if !buffered.is_empty() {
        slices.push(IoSlice::new(buffered));
    }
    message.slices(&mut slices);
    slices.push(IoSlice::new(b"\n"));
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let written = writer.write_vectored(slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// The buffer, a rewritten message's pieces (at most five edits: eleven) and the newline.
const MAX_SLICES: usize = 13;

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line::new(text.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn refuses_pushes_beyond_the_budget_but_always_takes_one() {
        let (outbox, _receiver) = outbox(10, 10);
        outbox.push(line("0123456789abcdef")).unwrap();
        assert_eq!(
            outbox.push(line("x")),
            Err(PushError::Full { queued: 17 }),
            "a second message must not go over the budget"
        );
    }

    #[tokio::test]
    async fn writes_lines_and_gives_the_budget_back() {
        let (outbox, receiver) = outbox(64, 64);
        outbox.push(line("{\"a\":1}")).unwrap();
        outbox.push(line("{\"b\":2}")).unwrap();
        let mut written = Vec::new();
        let room = Arc::clone(outbox.room());
        drop(outbox);
        receiver.write_all_to(&mut written, None).await.unwrap();
        assert_eq!(written, b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(room.queued(), 0);
    }

    #[tokio::test]
    async fn a_shared_room_makes_waiters_wait_until_the_queue_drains() {
        let room = Room::new(8);
        let (outbox, receiver) = outbox_in(Arc::clone(&room));
        outbox.push(line("0123456789")).unwrap();
        outbox
            .push(line("x"))
            .expect("the backend's queue never refuses");
        assert_eq!(room.queued(), 13);
        let waiter = tokio::spawn({
            let room = Arc::clone(&room);
            async move { room.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "over the soft limit: the waiter waits"
        );
        let mut written = Vec::new();
        drop(outbox);
        receiver.write_all_to(&mut written, None).await.unwrap();
        waiter
            .await
            .expect("the drained queue lets the waiter through");
        assert_eq!(room.queued(), 0);
    }

    #[tokio::test]
    async fn a_dropped_writer_gives_its_unwritten_bytes_back() {
        let room = Room::new(8);
        let (outbox, receiver) = outbox_in(Arc::clone(&room));
        outbox.push(line("0123456789")).unwrap();
        drop(receiver);
        assert_eq!(room.queued(), 0);
        assert_eq!(outbox.push(line("x")), Err(PushError::Closed));
        assert_eq!(room.queued(), 0);
    }

    /// A connected pair: the far end as a std socket (blocking, for the test to read), and our
    /// end split as the daemon splits a session's socket.
    fn socket_pair() -> (
        std::os::unix::net::UnixStream,
        shoal_ipc::socket::ReadHalf,
        shoal_ipc::socket::WriteHalf,
    ) {
        let (ours, far) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let ours = tokio::net::UnixStream::from_std(ours).unwrap();
        let (read, write) = shoal_ipc::socket::split(ours).unwrap();
        (far, read, write)
    }

    fn read_exactly(far: &mut impl std::io::Read, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        far.read_exact(&mut bytes).unwrap();
        bytes
    }

    /// Fill the peer with messages small enough to go direct, until one is queued (the last is
    /// cut short, its rest queued, or refused whole), push one more behind them, write them all,
    /// and check that `far` got every message whole and in order.
    async fn fill_then_drain(
        outbox: Outbox,
        receiver: OutboxReceiver,
        writer: impl AsyncWrite + Unpin + Send + 'static,
        mut far: impl std::io::Read + Send + 'static,
    ) {
        let message = format!("{{\"x\":\"{}\"}}", "y".repeat(4000));
        let mut pushed = 0;
        while outbox.count.idle() {
            outbox.push(line(&message)).unwrap();
            pushed += 1;
            assert!(pushed < 10_000, "the peer never filled");
        }
        // Queued from now on, behind the rest: order is kept.
        outbox.push(line("{\"last\":true}")).unwrap();
        let expected_len = pushed * (message.len() + 1) + 14;
        let writer = tokio::spawn(receiver.write_all_to(writer, None));
        let reading = std::thread::spawn(move || read_exactly(&mut far, expected_len));
        drop(outbox);
        writer.await.unwrap().unwrap();
        let text = String::from_utf8(reading.join().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), pushed + 1);
        assert!(
            lines[..pushed].iter().all(|got| *got == message),
            "a message was torn"
        );
        assert_eq!(lines[pushed], "{\"last\":true}");
    }

    #[tokio::test]
    async fn small_messages_go_straight_to_an_idle_socket_in_order() {
        let (mut far, _read, write) = socket_pair();
        let (outbox, receiver) = outbox(1 << 20, 1 << 20);
        let outbox = outbox.with_direct_writes(write.try_writer());
        outbox.push(line("{\"a\":1}")).unwrap();
        outbox.push(line("{\"b\":2}")).unwrap();
        assert_eq!(outbox.queued_bytes(), 0, "written, not queued");
        assert_eq!(read_exactly(&mut far, 16), b"{\"a\":1}\n{\"b\":2}\n");
        drop(outbox);
        receiver.write_all_to(write, None).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_socket_queues_the_rest_and_nothing_overtakes_it() {
        let (far, _read, write) = socket_pair();
        let (outbox, receiver) = outbox(64 << 20, 64 << 20);
        let outbox = outbox.with_direct_writes(write.try_writer());
        fill_then_drain(outbox, receiver, write, far).await;
    }

    /// A pipe as the backend's stdin is one: the far (read) end blocking, for the test to read;
    /// our (write) end non-blocking, as tokio makes a child's stdin.
    fn pipe_pair() -> (std::fs::File, tokio::net::unix::pipe::Sender) {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let write = tokio::net::unix::pipe::Sender::from_owned_fd(write).unwrap();
        (std::fs::File::from(read), write)
    }

    /// The backend's queue writes straight into its stdin pipe while its writer holds nothing,
    /// even though lines the sessions read but the hub has not routed are counted in the same
    /// room; once the pipe is full, everything queues behind the rest of the cut message.
    #[tokio::test]
    async fn the_backends_queue_writes_straight_into_an_idle_pipe_and_keeps_order_when_full() {
        use std::os::fd::AsFd as _;
        let (mut far, write) = pipe_pair();
        let room = Room::new(1 << 20);
        let (outbox, receiver) = outbox_in(Arc::clone(&room));
        let direct = TryWriter::duplicate(write.as_fd()).unwrap();
        let outbox = outbox.with_direct_writes(Some(direct));
        room.reserve(100); // a session's line on its way to the hub
        outbox.push(line("{\"a\":1}")).unwrap();
        assert_eq!(room.queued(), 100, "written, not queued");
        assert_eq!(read_exactly(&mut far, 8), b"{\"a\":1}\n");
        fill_then_drain(outbox, receiver, write, far).await;
        assert_eq!(room.queued(), 100, "only the session's reservation is left");
    }

    #[tokio::test]
    async fn no_direct_write_after_the_writer_is_gone() {
        let (mut far, _read, write) = socket_pair();
        let (outbox, receiver) = outbox(64, 64);
        let outbox = outbox.with_direct_writes(write.try_writer());
        drop(receiver);
        assert_eq!(outbox.push(line("{}")), Err(PushError::Closed));
        far.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert!(
            std::io::Read::read(&mut far, &mut byte).is_err(),
            "nothing was written"
        );
    }

    /// A writer that takes at most `most` bytes per call, across the slices of a vectored
    /// write, and notes where the bytes it was given live.
    struct Trickle {
        written: Vec<u8>,
        most: usize,
        seen: Vec<std::ops::Range<usize>>,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bytes: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(bytes)])
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            slices: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut taken = 0;
            for slice in slices {
                let start = slice.as_ptr() as usize;
                self.seen.push(start..start + slice.len());
                let take = slice.len().min(self.most - taken);
                self.written.extend_from_slice(&slice[..take]);
                taken += take;
                if taken == self.most {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(taken))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_large_message_is_written_from_its_own_bytes_in_order() {
        use shoal_wire::{Envelope, Id, Validation};
        let text = "y".repeat(IN_PLACE_MIN);
        let large = line(&format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"text":"{text}"}}}}"#
        ));
        let start = large.as_bytes().as_ptr() as usize;
        let original = start..start + large.len();
        let rewritten = Envelope::parse(large, Validation::Envelope)
            .rewrite_id(&Id::string("client-7"))
            .unwrap();
        let (outbox, receiver) = outbox(4 << 20, 4 << 20);
        let room = Arc::clone(outbox.room());
        outbox.push(line("{\"a\":1}")).unwrap();
        outbox.push(rewritten).unwrap();
        outbox.push(line("{\"b\":2}")).unwrap();
        drop(outbox);
        // Seven bytes per write: the writes end inside and between every piece.
        let mut trickle = Trickle {
            written: Vec::new(),
            most: 7,
            seen: Vec::new(),
        };
        receiver.write_all_to(&mut trickle, None).await.unwrap();
        let expected = format!(
            "{{\"a\":1}}\n{{\"jsonrpc\":\"2.0\",\"id\":\"client-7\",\"result\":{{\"text\":\"{text}\"}}}}\n{{\"b\":2}}\n"
        );
        assert!(
            trickle.written == expected.as_bytes(),
            "bytes lost or reordered"
        );
        assert!(
            trickle.seen.iter().any(|seen| seen.start >= original.start
                && seen.end <= original.end
                && seen.len() > IN_PLACE_MIN / 2),
            "the large message was copied, not written from the line it came in"
        );
        assert_eq!(room.queued(), 0);
    }

    #[tokio::test]
    async fn routed_frames_give_the_kind_and_id_of_rewritten_answers_and_requests() {
        use shoal_wire::{Envelope, FrameCodec, Id, Validation};
        use tokio_util::codec::Decoder as _;
        let rewritten = |text: &str, id: Id| {
            Envelope::parse(line(text), Validation::Envelope)
                .rewrite_id(&id)
                .unwrap()
        };
        let large_text = format!(
            r#"{{"jsonrpc":"2.0","id":9,"result":{{"text":"{}"}}}}"#,
            "z".repeat(IN_PLACE_MIN)
        );
        let (mut far, _read, write) = socket_pair();
        let (outbox, receiver) = outbox(4 << 20, 4 << 20);
        let outbox = outbox
            .with_direct_writes(write.try_writer())
            .with_routed_frames(true);
        // Small ones go straight to the socket; the large one, and all after it, are queued.
        outbox
            .push(line(
                r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            ))
            .unwrap();
        outbox
            .push(rewritten(
                r#"{"result":{},"jsonrpc":"2.0","id":1}"#,
                Id::string("host-1"),
            ))
            .unwrap();
        outbox
            .push(rewritten(
                r#"{"jsonrpc":"2.0","id":5,"method":"roots/list"}"#,
                Id::string("shoal-1-2-3"),
            ))
            .unwrap();
        outbox
            .push(rewritten(&large_text, Id::from_u64(12345)))
            .unwrap();
        outbox
            .push(rewritten(
                r#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}"#,
                Id::from_u64(42),
            ))
            .unwrap();
        // A rewritten notification: the proxy reads it (a cancellation's `requestId` matters).
        let progress =
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3}}"#;
        outbox
            .push(
                Envelope::parse(line(progress), Validation::Envelope)
                    .rewrite(&[(shoal_wire::Field::ProgressToken, &Id::from_u64(0))])
                    .unwrap(),
            )
            .unwrap();
        drop(outbox);
        let writer = tokio::spawn(receiver.write_all_to(write, None));
        let reading = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut far, &mut bytes).unwrap();
            bytes
        });
        writer.await.unwrap().unwrap();
        let mut input = BytesMut::from(&reading.join().unwrap()[..]);
        let mut codec = FrameCodec::new();
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode_eof(&mut input).unwrap() {
            let frame = frame.unwrap();
            let route = frame
                .routed()
                .map(|(kind, id)| format!("{kind:?} {}", id.as_str()));
            frames.push((route, frame.message().len(), frame.message()[..20].to_vec()));
        }
        let routes: Vec<Option<&str>> = frames.iter().map(|(route, ..)| route.as_deref()).collect();
        assert_eq!(
            routes,
            [
                None,
                Some(r#"Response "host-1""#),
                Some(r#"Request "shoal-1-2-3""#),
                Some("Response 12345"),
                Some("ErrorResponse 42"),
                None,
            ]
        );
        assert_eq!(frames[3].1, large_text.len() + 4, "the large result, whole");
    }

    #[tokio::test]
    async fn a_closed_writer_refuses_pushes() {
        let (outbox, receiver) = outbox(64, 64);
        drop(receiver);
        assert_eq!(outbox.push(line("{}")), Err(PushError::Closed));
        assert_eq!(outbox.queued_bytes(), 0);
    }
}
