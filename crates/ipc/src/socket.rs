//! Unix sockets (and pipes' non-blocking descriptors) registered with the reactor for readability
//! only: the daemon's side of every connection, and the proxy's side of its daemon connection and
//! of a host's stdio socket.
//!
//! Why not `tokio::net::UnixStream`'s halves: tokio registers a socket for reading and writing at
//! once, edge-triggered, and a Unix stream socket signals "writable" again every time its peer
//! reads: each message one side read woke the other for nothing (an `EPOLLOUT` edge, then
//! back to sleep) while the daemon, the server or the host were working on the answer. On a small machine
//! that wake-up competes with them for a CPU: one spurious context switch per message, measured by
//! `cargo xtask bench session` and seen in `strace` as an `epoll_wait` returning only `EPOLLOUT`.
//!
//! So the connection is registered for readability only, and writes go straight to the
//! (non-blocking) socket. Only a write that finds the socket's buffer full (a peer not reading)
//! waits for room, through a second registration of a duplicate descriptor with writability
//! interest, made at that moment and dropped once the write went through. Registering reports a
//! socket that already has room at once, so the wake-up cannot be missed between the failed write
//! and the registration.

use std::io::{self, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// The most one read asks for.
const READ_CHUNK: usize = 64 * 1024;

/// Split a connected (tokio) socket into halves registered as described in the module docs.
pub fn split(stream: tokio::net::UnixStream) -> io::Result<(ReadHalf, WriteHalf)> {
    // `into_std` deregisters it and leaves it non-blocking.
    let read = ReadHalf::new(stream.into_std()?)?;
    let write = WriteHalf {
        stream: Socket::Shared(Arc::clone(&read.stream)),
        room: None,
        shutdown_on_drop: true,
    };
    Ok((read, write))
}

/// The reading half.
#[derive(Debug)]
pub struct ReadHalf {
    stream: Arc<AsyncFd<UnixStream>>,
    /// While `Some`: reads take descriptors passed with the bytes (see
    /// [`ReadHalf::accept_fds`]), kept here.
    fds: Option<Vec<OwnedFd>>,
}

/// The most descriptors a [`ReadHalf`] keeps from what a peer passes; any beyond are closed.
pub const MAX_PASSED_FDS: usize = 2;

impl ReadHalf {
    /// Reads from `stream`, which must be non-blocking.
    pub fn new(stream: UnixStream) -> io::Result<ReadHalf> {
        // SAFETY: the `AsyncFd` owns the socket, an open descriptor that nothing else can close
        // or replace, and `UnixStream::as_raw_fd` returns the same number for as long as it
        // lives.
        let stream = unsafe { AsyncFd::register_with_interest(stream, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(ReadHalf {
            stream: Arc::new(stream),
            fds: None,
        })
    }

    /// From now on, reads also take the descriptors a peer passes with its bytes
    /// (`SCM_RIGHTS`), up to [`MAX_PASSED_FDS`], until [`ReadHalf::take_fds`]. A plain read
    /// would close them: the daemon reads a client's hello this way, since a session hands over
    /// its host's stdin with it.
    #[cfg(target_os = "linux")]
    pub fn accept_fds(&mut self) {
        self.fds.get_or_insert_with(Vec::new);
    }

    /// The descriptors passed since [`ReadHalf::accept_fds`], in order; reads are plain again.
    pub fn take_fds(&mut self) -> Vec<OwnedFd> {
        self.fds.take().unwrap_or_default()
    }
}

/// Linux's limit on descriptors in one message (`SCM_MAX_FD`): with room for that many, a
/// message's descriptors are never cut short (which would leave some installed and unnamed).
#[cfg(target_os = "linux")]
const SCM_MAX_FD: usize = 253;

/// `recvmsg(2)` into `target`, keeping passed descriptors in `kept` (at most
/// [`MAX_PASSED_FDS`]; the others are closed). One call takes the descriptors of one message at
/// most: the kernel ends a read after the bytes that came with descriptors.
#[cfg(target_os = "linux")]
fn receive_with_fds(
    stream: &UnixStream,
    target: &mut [u8],
    kept: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    let mut iov = [io::IoSliceMut::new(target)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; SCM_MAX_FD]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let read = message.bytes;
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = control {
            for fd in received {
                // SAFETY: the kernel just installed this descriptor in this process, for this
                // call; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                if kept.len() < MAX_PASSED_FDS {
                    kept.push(fd);
                }
            }
        }
    }
    Ok(read)
}

/// The writing half.
#[derive(Debug)]
pub struct WriteHalf {
    stream: Socket,
    /// While a write waits for room: a duplicate of the socket registered for writability.
    room: Option<AsyncFd<OwnedFd>>,
    shutdown_on_drop: bool,
}

#[derive(Debug)]
enum Socket {
    /// Shared with the [`ReadHalf`] of [`split`].
    Shared(Arc<AsyncFd<UnixStream>>),
    /// Written only, and registered with the reactor only while a write waits for room.
    Unregistered(UnixStream),
}

impl Socket {
    fn get(&self) -> &UnixStream {
        match self {
            Socket::Shared(stream) => stream.get_ref(),
            Socket::Unregistered(stream) => stream,
        }
    }
}

/// Writes that never wait, beside another writer of the same socket or pipe (a [`WriteHalf`], a
/// child's stdin): for the one that queues messages to skip its writer when nothing is queued
/// (the daemon's outboxes). The caller must keep the order of what it writes here and what the
/// other writer writes.
#[derive(Debug, Clone)]
pub struct TryWriter(Target);

#[derive(Debug, Clone)]
enum Target {
    Socket(Arc<AsyncFd<UnixStream>>),
    /// A duplicate descriptor of its own.
    Descriptor(Arc<OwnedFd>),
}

impl TryWriter {
    /// Writes to the pipe or socket that `writer` writes to, which must be non-blocking (a
    /// tokio child's stdin is), through a duplicate of its descriptor. The duplicate keeps the
    /// write end open: the reader sees its end only once this writer is dropped too.
    ///
    /// # Errors
    ///
    /// The descriptor cannot be duplicated (the process is out of descriptors).
    pub fn duplicate(writer: std::os::fd::BorrowedFd<'_>) -> io::Result<TryWriter> {
        Ok(TryWriter(Target::Descriptor(Arc::new(
            writer.try_clone_to_owned()?,
        ))))
    }

    /// Write what the socket or pipe takes now: `Ok(n)` for the first `n` bytes, `WouldBlock`
    /// when it takes nothing.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            let written = match &self.0 {
                Target::Socket(stream) => stream.get_ref().write(bytes),
                Target::Descriptor(fd) => nix::unistd::write(fd, bytes).map_err(io::Error::from),
            };
            match written {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                written => return written,
            }
        }
    }
}

impl WriteHalf {
    /// A [`TryWriter`] on this half's socket, for a half from [`split`].
    pub fn try_writer(&self) -> Option<TryWriter> {
        match &self.stream {
            Socket::Shared(stream) => Some(TryWriter(Target::Socket(Arc::clone(stream)))),
            Socket::Unregistered(_) => None,
        }
    }

    /// Writes to `stream`, which must be non-blocking, and leaves the socket as it is when
    /// dropped (for a socket the proxy does not own alone, such as its stdout).
    pub fn unregistered(stream: UnixStream) -> WriteHalf {
        WriteHalf {
            stream: Socket::Unregistered(stream),
            room: None,
            shutdown_on_drop: false,
        }
    }
}

impl Drop for WriteHalf {
    /// Like tokio's `OwnedWriteHalf`, for the daemon connection: the peer sees EOF as soon as the
    /// writing half is gone, even while the reading half lives on.
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.stream.get().shutdown(std::net::Shutdown::Write);
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let ReadHalf { stream, fds } = self.get_mut();
        loop {
            let mut guard = ready!(stream.poll_read_ready(cx))?;
            // The codec hands in uninitialised spare capacity, fresh for every read: the kernel
            // writes into it directly. Zeroing it first (`initialize_unfilled_to`, the safe way)
            // cost more than everything else the proxy does per small message (a 64 KiB memset
            // per read: 17 % of its instructions, measured with callgrind).
            // SAFETY: only `read(2)` writes to these bytes, and only the `n` it reports are
            // marked initialised below.
            let unfilled = unsafe { buf.unfilled_mut() };
            let len = unfilled.len().min(READ_CHUNK);
            let target = unfilled.as_mut_ptr().cast::<std::ffi::c_void>();
            let read = guard.try_io(|stream| {
                use std::os::fd::AsRawFd as _;
                #[cfg(target_os = "linux")]
                if let Some(kept) = fds {
                    // SAFETY: as for `read(2)` below: the kernel writes at most `len` bytes
                    // there, and only the `n` it reports are marked initialised.
                    let target =
                        unsafe { std::slice::from_raw_parts_mut(target.cast::<u8>(), len) };
                    return receive_with_fds(stream.get_ref(), target, kept);
                }
                #[cfg(not(target_os = "linux"))]
                let _ = &fds;
                // SAFETY: `target` points at `len` writable bytes that outlive the call, and
                // the descriptor is the open socket the `AsyncFd` owns.
                let n = unsafe { nix::libc::read(stream.get_ref().as_raw_fd(), target, len) };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            match read {
                Ok(Ok(n)) => {
                    if n > 0 && n < len {
                        // A short read emptied the socket: wait for the next edge instead of
                        // finding that out with another `read` (as tokio's own sockets do). A
                        // readiness event that arrived meanwhile is not lost: `clear_ready` keeps
                        // it.
                        guard.clear_ready();
                    }
                    // SAFETY: `read(2)` initialised the first `n` bytes of `unfilled`.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(error)) => return Poll::Ready(Err(error)),
                // Not readable after all: readiness was cleared, wait for the next edge.
                Err(_would_block) => {}
            }
        }
    }
}

impl WriteHalf {
    /// Run `write` on the socket until it is not interrupted, waiting for room when it is full.
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match write(self.stream.get()) {
                Ok(n) => {
                    self.room = None;
                    return Poll::Ready(Ok(n));
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let room = match self.room.take() {
                        Some(room) => room,
                        None => {
                            let duplicate = self.stream.get().as_fd().try_clone_to_owned()?;
                            // SAFETY: the `AsyncFd` owns `duplicate`, an open descriptor that
                            // nothing else can close or replace, and `OwnedFd::as_raw_fd`
                            // returns the same number for as long as it lives. (epoll keys
                            // registrations by descriptor, hence a duplicate of its own.)
                            unsafe {
                                AsyncFd::register_with_interest(duplicate, Interest::WRITABLE)
                            }
                            .map_err(io::Error::from)?
                        }
                    };
                    let room = self.room.insert(room);
                    let mut guard = ready!(room.poll_write_ready(cx))?;
                    // The write is retried right away; a still-full socket waits for the next
                    // edge.
                    guard.clear_ready();
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl WriteHalf {
    /// Send `bytes` with `fds` passed alongside (`SCM_RIGHTS`), all at once or not at all: for
    /// a hello on a connection with nothing else queued, which a fresh socket's buffer takes
    /// whole. `WouldBlock` or a short send is an error.
    #[cfg(target_os = "linux")]
    pub fn send_with_fds(
        &self,
        bytes: &[u8],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> io::Result<()> {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        use std::os::fd::AsRawFd as _;
        let raw: Vec<std::os::fd::RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let sent = sendmsg::<()>(
            self.stream.get().as_raw_fd(),
            &[io::IoSlice::new(bytes)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if sent != bytes.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes with the descriptors",
                bytes.len()
            )));
        }
        Ok(())
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(cx, |mut stream| stream.write(buf))
    }

    /// One `writev(2)` for a line and its newline (`write_line`), where the default would send
    /// them in two system calls.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, |mut stream| stream.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.get().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsFd as _;

    use tokio::io::AsyncReadExt as _;

    use super::*;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (read.into(), write.into())
    }

    async fn pair() -> (ReadHalf, WriteHalf, ReadHalf, WriteHalf) {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (a_read, a_write) = split(a).unwrap();
        let (b_read, b_write) = split(b).unwrap();
        (a_read, a_write, b_read, b_write)
    }

    #[tokio::test]
    async fn descriptors_passed_with_bytes_are_kept_only_while_accepted() {
        let (mut reader, _keep, _other, writer) = pair().await;
        let (first_read, first_write) = pipe();
        let (second_read, second_write) = pipe();
        reader.accept_fds();
        writer
            .send_with_fds(b"hello\n", &[first_write.as_fd(), second_write.as_fd()])
            .unwrap();
        drop((first_write, second_write));
        let mut bytes = [0u8; 6];
        reader.read_exact(&mut bytes).await.unwrap();
        assert_eq!(&bytes, b"hello\n");
        let fds = reader.take_fds();
        assert_eq!(fds.len(), 2, "both descriptors arrive with the bytes");
        // They are the pipes' writing ends: what is written there comes out of the pipes.
        for (fd, mut read) in fds.into_iter().zip([first_read, second_read]) {
            std::fs::File::from(fd).write_all(b"x").unwrap();
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut read, &mut byte).unwrap();
            assert_eq!(&byte, b"x");
        }
        // No longer accepted: a plain read takes the bytes, and the kernel closes what came
        // with them (the pipe then has no writer left).
        let (third_read, third_write) = pipe();
        writer
            .send_with_fds(b"more\n", &[third_write.as_fd()])
            .unwrap();
        drop(third_write);
        let mut bytes = [0u8; 5];
        reader.read_exact(&mut bytes).await.unwrap();
        assert_eq!(&bytes, b"more\n");
        assert!(reader.take_fds().is_empty());
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut &third_read, &mut rest).unwrap();
        assert!(rest.is_empty(), "the passed end was closed");
    }

    #[tokio::test]
    async fn descriptors_beyond_the_limit_are_closed() {
        let (mut reader, _keep, _other, writer) = pair().await;
        let pipes: Vec<_> = (0..MAX_PASSED_FDS + 2).map(|_| pipe()).collect();
        let ends: Vec<_> = pipes.iter().map(|(_, write)| write.as_fd()).collect();
        reader.accept_fds();
        writer.send_with_fds(b"!", &ends).unwrap();
        drop(ends);
        let (reads, writes): (Vec<_>, Vec<_>) = pipes.into_iter().unzip();
        drop(writes);
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).await.unwrap();
        let kept = reader.take_fds();
        assert_eq!(kept.len(), MAX_PASSED_FDS);
        drop(kept);
        // Every writing end is closed now: each pipe reads as ended.
        for read in reads {
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut &read, &mut rest).unwrap();
        }
    }
}
