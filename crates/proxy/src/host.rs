//! The host's messages, as the proxy learns of them: from its stdin, or, while the daemon holds
//! that stdin in custody, from the custody pipe (`shoal_ipc::custody`,
//! [`ClientHello::custody`](shoal_wire::ClientHello::custody)).
//!
//! In custody the daemon reads the host's stdin itself and moves every byte it takes into the
//! custody pipe before it acts on it. What the proxy reads there was taken, and a line whose
//! newline came from the custody pipe counts as sent to the daemon (owed an answer). The proxy
//! reads the pipe when it has a reason to, not when it fills: before it handles anything from
//! the daemon (so that it knows of a request before its answer), when the daemon sends a custody
//! notice (the pipe is full, holds a line the daemon refused, or ended), and, watching it,
//! while it waits for the pipe's end (after it released custody or lost the daemon). So the
//! daemon's moves do not wake the proxy: a request costs it no wake-up of its own.
//!
//! When the custody pipe ends (the daemon closed its end, or died), what is left in the pipe's
//! decoder is the start of a line whose rest is still in the stdin: the stdin's reader takes
//! the decoder over, bytes and state, so that the line joins up, and nothing is read twice,
//! since nobody else reads the stdin any more.

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::task::{Context, Poll};

use shoal_wire::{Line, LineCodec, LineError};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder as _, FramedRead};

use shoal_ipc::next_line;

use crate::stdio::HostInput;

/// The most one read of the custody pipe takes: its capacity.
const CUSTODY_READ: usize = 64 * 1024;

/// The host's input; see the module docs.
pub(crate) struct HostReader {
    state: State,
}

enum State {
    Custody(CustodyPipe),
    Stdin(FramedRead<HostInput, LineCodec>),
    /// Only while switching from one to the other.
    Switching,
}

/// The reading end of the custody pipe (non-blocking), and the lines read from it.
struct CustodyPipe {
    fd: OwnedFd,
    /// While watched: a duplicate registered with the reactor, so that a read that finds the
    /// pipe empty waits for more. Unwatched, the pipe is read only when asked.
    watched: Option<AsyncFd<OwnedFd>>,
    watch: bool,
    /// A short read found the pipe empty since the last [`HostReader::catch_up`]: no other
    /// read until the next one (which the caller makes when it has a reason to).
    emptied: bool,
    /// The current catch-up reads until the pipe says it is empty (`EAGAIN`) or ended, not
    /// only until a short read.
    thorough: bool,
    buffer: BytesMut,
    codec: LineCodec,
}

/// What the host sent, or what became of its input.
pub(crate) enum HostItem {
    /// A line; `taken` when it came from the custody pipe (the daemon took and forwarded it).
    Line {
        line: Result<Line, LineError>,
        taken: bool,
    },
    /// The custody pipe ended: from now on the stdin is the proxy's to read.
    CustodyEnded,
    /// The stdin ended (or failed).
    Closed,
}

impl HostReader {
    /// The stdin, read by the proxy.
    pub(crate) fn stdin() -> HostReader {
        HostReader {
            state: State::Stdin(FramedRead::new(HostInput::open(), LineCodec::new())),
        }
    }

    /// The custody pipe's reading end (non-blocking), then the stdin.
    pub(crate) fn custody(fd: OwnedFd) -> HostReader {
        HostReader {
            state: State::Custody(CustodyPipe {
                fd,
                watched: None,
                watch: false,
                emptied: false,
                thorough: false,
                buffer: BytesMut::new(),
                codec: LineCodec::new(),
            }),
        }
    }

    /// Whether the daemon still holds the stdin.
    pub(crate) fn in_custody(&self) -> bool {
        matches!(self.state, State::Custody(_))
    }

    /// Wait for the custody pipe's end from now on (after a release, or losing the daemon):
    /// [`HostReader::next`] then reads it as it fills.
    pub(crate) fn watch_custody(&mut self) {
        if let State::Custody(pipe) = &mut self.state {
            pipe.watch = true;
        }
    }

    /// Start reading what the custody pipe holds now ([`HostReader::take_now`]): up to a short
    /// read (all there is to know before an answer), or, `thorough`, until the pipe is empty or
    /// ended (after a custody notice, which may announce its end).
    pub(crate) fn catch_up(&mut self, thorough: bool) {
        if let State::Custody(pipe) = &mut self.state {
            pipe.emptied = false;
            pipe.thorough = thorough;
        }
    }

    /// The next line the custody pipe held when [`HostReader::catch_up`] was called, without
    /// waiting: `None` once there is no whole line left of it (or no custody any more).
    pub(crate) fn take_now(&mut self) -> Option<HostItem> {
        let mut context = Context::from_waker(std::task::Waker::noop());
        match self.poll_custody(&mut context, false) {
            Poll::Ready(item) => Some(item),
            Poll::Pending => None,
        }
    }

    /// The next item. The stdin is read only while `reading`; the custody pipe, only when
    /// watched (see [`HostReader::watch_custody`]), or else never resolves.
    pub(crate) async fn next(&mut self, reading: bool) -> HostItem {
        if let State::Custody(pipe) = &self.state {
            if !pipe.watch {
                // Read only when there is a reason to (see the module docs).
                return std::future::pending().await;
            }
            return std::future::poll_fn(|context| self.poll_custody(context, true)).await;
        }
        let State::Stdin(stdin) = &mut self.state else {
            return std::future::pending().await;
        };
        if !reading {
            return std::future::pending().await;
        }
        match next_line(stdin).await {
            Some(Ok(line)) => HostItem::Line { line, taken: false },
            None | Some(Err(_)) => HostItem::Closed,
        }
    }

    /// Decode the next line of the custody pipe, reading it when the buffer holds none. With
    /// `may_wait` and the pipe watched, an empty pipe registers `context` for more; otherwise
    /// it is `Pending` without a wake-up to come (the caller reads again when it has a reason).
    fn poll_custody(&mut self, context: &mut Context<'_>, may_wait: bool) -> Poll<HostItem> {
        let State::Custody(pipe) = &mut self.state else {
            return Poll::Pending;
        };
        loop {
            match pipe.codec.decode(&mut pipe.buffer) {
                Ok(Some(line)) => return Poll::Ready(HostItem::Line { line, taken: true }),
                Ok(None) => {}
                // The line codec's errors are for the stream, which a pipe's bytes never are.
                Err(error) => {
                    tracing::warn!(%error, "reading the custody pipe");
                    return Poll::Ready(self.switch_to_stdin());
                }
            }
            if pipe.emptied && !(may_wait && pipe.watch) {
                return Poll::Pending;
            }
            pipe.buffer.reserve(CUSTODY_READ);
            let spare = pipe.buffer.spare_capacity_mut();
            let len = spare.len().min(CUSTODY_READ);
            // SAFETY: `read(2)` writes at most `len` bytes at `spare`'s start, which is that
            // many bytes of writable spare capacity; only the `n` it reports are then marked
            // initialised.
            let read =
                unsafe { nix::libc::read(pipe.fd.as_raw_fd(), spare.as_mut_ptr().cast(), len) };
            match usize::try_from(read) {
                Ok(0) => return Poll::Ready(self.switch_to_stdin()),
                Ok(n) => {
                    // SAFETY: see above.
                    unsafe { pipe.buffer.set_len(pipe.buffer.len() + n) };
                    // A short read emptied the pipe (a thorough catch-up reads on, to find its
                    // end).
                    pipe.emptied = n < len && !pipe.thorough;
                }
                Err(_) => {
                    let error = std::io::Error::last_os_error();
                    match error.kind() {
                        std::io::ErrorKind::Interrupted => {}
                        std::io::ErrorKind::WouldBlock => {
                            if !(may_wait && pipe.watch) {
                                return Poll::Pending;
                            }
                            if pipe.watched.is_none() {
                                match register(&pipe.fd) {
                                    Ok(watched) => pipe.watched = Some(watched),
                                    Err(error) => {
                                        tracing::warn!(%error, "cannot watch the custody pipe");
                                        return Poll::Ready(self.switch_to_stdin());
                                    }
                                }
                            }
                            let Some(watched) = &pipe.watched else {
                                return Poll::Pending;
                            };
                            match watched.poll_read_ready(context) {
                                Poll::Ready(Ok(mut ready)) => ready.clear_ready(),
                                Poll::Ready(Err(error)) => {
                                    tracing::warn!(%error, "watching the custody pipe");
                                    return Poll::Ready(self.switch_to_stdin());
                                }
                                Poll::Pending => return Poll::Pending,
                            }
                        }
                        _ => {
                            tracing::warn!(%error, "reading the custody pipe");
                            return Poll::Ready(self.switch_to_stdin());
                        }
                    }
                }
            }
        }
    }

    /// The custody pipe ended: the stdin's reader takes over the decoder, bytes and state.
    fn switch_to_stdin(&mut self) -> HostItem {
        if let State::Custody(pipe) = std::mem::replace(&mut self.state, State::Switching) {
            let mut stdin = FramedRead::new(HostInput::open(), pipe.codec);
            *stdin.read_buffer_mut() = pipe.buffer;
            self.state = State::Stdin(stdin);
        }
        HostItem::CustodyEnded
    }
}

/// A duplicate of `fd` registered with the reactor for readability.
fn register(fd: &OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    let duplicate = fd.try_clone()?;
    // SAFETY: the `AsyncFd` owns `duplicate`, an open descriptor nothing else can close or
    // replace while it lives.
    unsafe { AsyncFd::register_with_interest(duplicate, Interest::READABLE) }
        .map_err(std::io::Error::from)
}
