//! The host's stdin and stdout, read and written on the runtime's own thread when they are pipes or
//! sockets (which is what every MCP host gives a server).
//!
//! Why not `tokio::io::stdin()`/`stdout()`: they do every read and every write on a blocking-pool
//! thread, because a file descriptor tokio did not open may be anything. Each message then costs
//! two thread hand-offs per direction (spawn the blocking read or write, wake the runtime when it
//! is done), and the proxy's share of an echo round trip was dominated by them (`cargo xtask
//! bench session`: ~16 futex calls per round trip in the proxy, most of its added latency). A pipe
//! or a socket can instead be made non-blocking and polled by the runtime's reactor like the
//! daemon socket, so a message is one `read` and one `write` on one thread.
//!
//! Non-blocking mode is a property of the open file description, which the host (or a wrapper
//! shell that did not `exec`) may share with us. So it is only ever set on pipes and sockets, whose
//! other users are the host's own plumbing, never on a terminal or a file; and the original flags
//! are put back when the proxy is done with them ([`RestoreFlags`]), so that nothing after the
//! proxy finds its stdio changed. (A SIGKILLed proxy cannot restore them; a pipe or socket made for
//! the proxy has no later reader to mind.) Anything else (a terminal, a regular file, `/dev/null`)
//! keeps tokio's blocking-thread stdio: slower, but correct for every kind of file.
//!
//! The tokio objects own a duplicate (`F_DUPFD_CLOEXEC`) of descriptor 0 or 1, never 0 or 1
//! themselves, so dropping them does not close the host's stdio and let a later `open` take fd 0
//! or 1.

use std::io;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

use shoal_ipc::socket::{ReadHalf, WriteHalf};

/// The host's stdin.
pub(crate) struct HostInput {
    inner: Input,
    _restore: Option<RestoreFlags>,
}

enum Input {
    Pipe(pipe::Receiver),
    Socket(ReadHalf),
    Blocking(tokio::io::Stdin),
}

/// The host's stdout.
pub(crate) struct HostOutput {
    inner: Output,
    _restore: Option<RestoreFlags>,
}

enum Output {
    Pipe(pipe::Sender),
    Socket(WriteHalf),
    Blocking(tokio::io::Stdout),
}

impl HostInput {
    /// Stdin, polled by the runtime if it is a pipe or a socket. Must be called inside the runtime.
    pub(crate) fn open() -> HostInput {
        match Polled::open(Direction::Read) {
            Some((Polled::Pipe(fd), restore)) => match pipe::Receiver::from_owned_fd(fd) {
                Ok(receiver) => {
                    return HostInput {
                        inner: Input::Pipe(receiver),
                        _restore: Some(restore),
                    };
                }
                Err(error) => tracing::debug!(%error, "stdin: a pipe tokio cannot poll"),
            },
            Some((Polled::Socket(stream), restore)) => match ReadHalf::new(stream) {
                Ok(read) => {
                    return HostInput {
                        inner: Input::Socket(read),
                        _restore: Some(restore),
                    };
                }
                Err(error) => tracing::debug!(%error, "stdin: a socket tokio cannot poll"),
            },
            None => {}
        }
        HostInput {
            inner: Input::Blocking(tokio::io::stdin()),
            _restore: None,
        }
    }
}

impl HostOutput {
    /// Stdout, polled by the runtime if it is a pipe or a socket. Must be called inside the
    /// runtime.
    pub(crate) fn open() -> HostOutput {
        match Polled::open(Direction::Write) {
            Some((Polled::Pipe(fd), restore)) => match pipe::Sender::from_owned_fd(fd) {
                Ok(sender) => {
                    return HostOutput {
                        inner: Output::Pipe(sender),
                        _restore: Some(restore),
                    };
                }
                Err(error) => tracing::debug!(%error, "stdout: a pipe tokio cannot poll"),
            },
            Some((Polled::Socket(stream), restore)) => {
                return HostOutput {
                    inner: Output::Socket(WriteHalf::unregistered(stream)),
                    _restore: Some(restore),
                };
            }
            None => {}
        }
        HostOutput {
            inner: Output::Blocking(tokio::io::stdout()),
            _restore: None,
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Direction {
    /// Run `f` on descriptor 0 or 1.
    fn with_fd<R>(self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> R {
        match self {
            Direction::Read => f(io::stdin().as_fd()),
            Direction::Write => f(io::stdout().as_fd()),
        }
    }
}

/// A duplicate of a stdio descriptor that the runtime can poll.
enum Polled {
    /// Not yet non-blocking: `pipe::{Receiver, Sender}::from_owned_fd` check and set that.
    Pipe(OwnedFd),
    /// Already non-blocking. Registered by [`ReadHalf::new`] for reading (readability only), and
    /// never for writing until a write finds it full ([`WriteHalf`]): tokio's `UnixStream` would
    /// register both, and wake the proxy each time the host reads (see `socket.rs`).
    Socket(UnixStream),
}

impl Polled {
    /// A pollable duplicate of stdin or stdout if it is a pipe or a socket, with the guard that
    /// puts its flags back. `None` (after a debug line) for anything else, or if any step fails:
    /// the caller then uses the blocking-thread stdio, which works for everything.
    fn open(direction: Direction) -> Option<(Polled, RestoreFlags)> {
        direction.with_fd(|fd| Polled::open_fd(fd, direction))
    }

    fn open_fd(fd: BorrowedFd<'_>, direction: Direction) -> Option<(Polled, RestoreFlags)> {
        let kind = fstat(fd)
            .map(|stat| SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT)
            .inspect_err(|error| tracing::debug!(%error, ?direction, "fstat on stdio"))
            .ok()?;
        if kind != SFlag::S_IFIFO && kind != SFlag::S_IFSOCK {
            return None;
        }
        let flags = fcntl(fd, FcntlArg::F_GETFL)
            .inspect_err(|error| tracing::debug!(%error, ?direction, "F_GETFL on stdio"))
            .ok()?;
        let restore = RestoreFlags {
            direction,
            flags: OFlag::from_bits_retain(flags),
        };
        let duplicate = fd
            .try_clone_to_owned()
            .inspect_err(|error| tracing::debug!(%error, ?direction, "dup of stdio"))
            .ok()?;
        if kind == SFlag::S_IFIFO {
            return Some((Polled::Pipe(duplicate), restore));
        }
        let stream = UnixStream::from(duplicate);
        // Non-blocking from here on; `restore` puts the flags back if the caller fails.
        if let Err(error) = stream.set_nonblocking(true) {
            tracing::debug!(%error, ?direction, "non-blocking stdio socket");
            return None;
        }
        Some((Polled::Socket(stream), restore))
    }
}

impl std::fmt::Debug for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Read => "stdin",
            Direction::Write => "stdout",
        })
    }
}

/// Puts a stdio descriptor's file status flags (`O_NONBLOCK`) back as they were, on drop.
struct RestoreFlags {
    direction: Direction,
    flags: OFlag,
}

impl Drop for RestoreFlags {
    fn drop(&mut self) {
        let flags = self.flags;
        let restored = self
            .direction
            .with_fd(|fd| fcntl(fd, FcntlArg::F_SETFL(flags)));
        if let Err(error) = restored {
            tracing::debug!(%error, direction = ?self.direction, "could not restore stdio's flags");
        }
    }
}

impl AsyncRead for HostInput {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Input::Pipe(pipe) => Pin::new(pipe).poll_read(cx, buf),
            Input::Socket(stream) => Pin::new(stream).poll_read(cx, buf),
            Input::Blocking(stdin) => Pin::new(stdin).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HostOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Output::Pipe(pipe) => Pin::new(pipe).poll_write(cx, buf),
            Output::Socket(stream) => Pin::new(stream).poll_write(cx, buf),
            Output::Blocking(stdout) => Pin::new(stdout).poll_write(cx, buf),
        }
    }

    /// One `writev(2)` for a line and its newline where the output can take it (a pipe or a
    /// socket); the default would write them in two system calls.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Output::Pipe(pipe) => Pin::new(pipe).poll_write_vectored(cx, bufs),
            Output::Socket(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Output::Blocking(stdout) => Pin::new(stdout).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Output::Pipe(pipe) => pipe.is_write_vectored(),
            Output::Socket(stream) => stream.is_write_vectored(),
            Output::Blocking(stdout) => stdout.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Output::Pipe(pipe) => Pin::new(pipe).poll_flush(cx),
            Output::Socket(stream) => Pin::new(stream).poll_flush(cx),
            Output::Blocking(stdout) => Pin::new(stdout).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Output::Pipe(pipe) => Pin::new(pipe).poll_shutdown(cx),
            Output::Socket(stream) => Pin::new(stream).poll_shutdown(cx),
            Output::Blocking(stdout) => Pin::new(stdout).poll_shutdown(cx),
        }
    }
}
