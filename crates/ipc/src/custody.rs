//! Taking bytes from a pipe or socket someone else may have to read after us, with exact custody
//! (Linux only): every byte is, at every instant, either still in the source or in a *custody
//! pipe* whose other end another process holds, never in neither and never in both.
//!
//! This is what lets the daemon read a host's requests straight from the host's stdin (which the
//! proxy handed it) and still die at any moment without losing or doubling one: the proxy reads
//! the custody pipe, so it learns exactly which bytes the daemon took, and reads its stdin itself
//! again from where the daemon stopped. Reading into memory cannot give that: a byte read is
//! gone from the source, and the record of having read it is a second event the death can fall
//! before.
//!
//! The kernel can. For a pipe, `tee(2)` copies what is in it into a private pipe *without taking
//! it*, the copy is read from there, and `splice(2)` then moves that many bytes from the source
//! into the custody pipe, page references and all, in one step. For a socket (a Node host gives
//! its server socket pairs, not pipes), `recv(MSG_PEEK)` reads without taking and the same
//! `splice` moves. Only what the move took is handed to the caller, so the caller acts on bytes
//! that are already in custody. A death before the move leaves them in the source; after it,
//! in the custody pipe. The reader must be the only one taking from the source while it runs,
//! so that what it moves is what it copied: the proxy does not read its stdin while the daemon
//! holds it.
//!
//! [`Custody`] is an [`AsyncRead`]: each read returns bytes already moved. When the custody pipe
//! is full (its reader is behind), the read waits for room, and what it had copied stays in the
//! source, to be copied again.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nix::errno::Errno;
use nix::fcntl::{OFlag, SpliceFFlags};
use nix::sys::stat::SFlag;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// The most one read copies: a pipe's default capacity, and so the most a private pipe holds.
const CHUNK: usize = 64 * 1024;

/// A step of a read, for fault tests that stop the process between two of them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `n` bytes were copied from the source without being taken.
    Copied(usize),
    /// `n` bytes were moved into the custody pipe; the caller gets them next.
    Moved(usize),
}

/// Reads a source (a pipe or a socket) through a custody pipe; see the module docs.
pub struct Custody {
    source: AsyncFd<OwnedFd>,
    /// For a pipe: the private pipe `tee` copies into. `None` for a socket.
    private: Option<(OwnedFd, OwnedFd)>,
    custody: AsyncFd<OwnedFd>,
    hook: Option<fn(Step)>,
    /// Called each time a move finds the custody pipe full, before the read waits for room.
    on_full: Option<Box<dyn FnMut() + Send>>,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custody")
            .field("source", &self.source)
            .field("custody", &self.custody)
            .finish_non_exhaustive()
    }
}

/// Why [`Custody::new`] refused a source.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    /// The source is neither a pipe nor a socket (a terminal, a file): it cannot be copied
    /// without taking.
    #[error("the descriptor is not a pipe or a socket, so its bytes cannot be held in custody")]
    Unsupported,
    /// A system call failed while setting up.
    #[error("set up custody of a descriptor: {0}")]
    Io(#[from] io::Error),
}

impl Custody {
    /// Take from `source` through the writing end `custody` of a pipe. Both are registered with
    /// the current runtime's reactor, so this must be called inside one.
    pub fn new(source: OwnedFd, custody: OwnedFd) -> Result<Custody, CustodyError> {
        let kind = nix::sys::stat::fstat(&source)
            .map(|stat| SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT)
            .map_err(io::Error::from)?;
        let private = match kind {
            SFlag::S_IFIFO => Some(
                nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
                    .map_err(io::Error::from)?,
            ),
            SFlag::S_IFSOCK => None,
            _ => return Err(CustodyError::Unsupported),
        };
        // SAFETY: each `AsyncFd` owns its descriptor, which nothing else can close or replace
        // while it lives.
        let source = unsafe { AsyncFd::register_with_interest(source, Interest::READABLE) }
            .map_err(io::Error::from)?;
        // SAFETY: as above.
        let custody = unsafe { AsyncFd::register_with_interest(custody, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        Ok(Custody {
            source,
            private,
            custody,
            hook: None,
            on_full: None,
        })
    }

    /// Call `hook` at every [`Step`] (fault tests only).
    #[doc(hidden)]
    pub fn with_hook(mut self, hook: fn(Step)) -> Custody {
        self.hook = Some(hook);
        self
    }

    /// Call `on_full` each time a move finds the custody pipe full (its reader is behind, and
    /// may be waiting to be told to read), before the read waits for room.
    pub fn set_on_full(&mut self, on_full: impl FnMut() + Send + 'static) {
        self.on_full = Some(Box::new(on_full));
    }

    /// Copy what the source holds into the `len` bytes at `target` without taking it: `Ok(0)`
    /// at its end.
    ///
    /// # Safety
    ///
    /// `target` must point at `len` writable bytes (which need not be initialised).
    unsafe fn copy(&self, target: *mut u8, len: usize) -> Result<usize, Errno> {
        let len = len.min(CHUNK);
        // The read buffer's spare capacity is handed in as it is: zeroing it first (the safe
        // `ReadBuf` way) cost more than the three system calls of a small message (callgrind).
        let copied = match &self.private {
            None => {
                // SAFETY: the caller's promise; the kernel writes at most `len` bytes.
                unsafe {
                    nix::libc::recv(
                        self.source.get_ref().as_raw_fd(),
                        target.cast(),
                        len,
                        nix::libc::MSG_PEEK | nix::libc::MSG_DONTWAIT,
                    )
                }
            }
            Some((read, write)) => {
                let copied = nix::fcntl::tee(
                    self.source.get_ref(),
                    write,
                    len,
                    SpliceFFlags::SPLICE_F_NONBLOCK,
                )?;
                // The private pipe was empty and now holds exactly `copied` bytes, which one read
                // returns whole; anything else would leave the two out of step for good.
                // SAFETY: the caller's promise, and `copied <= len`.
                let read = unsafe { nix::libc::read(read.as_raw_fd(), target.cast(), copied) };
                if usize::try_from(read).ok() != Some(copied) {
                    return Err(if read < 0 { Errno::last() } else { Errno::EIO });
                }
                return Ok(copied);
            }
        };
        usize::try_from(copied).map_err(|_| Errno::last())
    }

    /// Move up to `copied` bytes from the source into the custody pipe: how many it took, or
    /// `EAGAIN` when the custody pipe has no room.
    fn transfer(&self, copied: usize) -> Result<usize, Errno> {
        nix::fcntl::splice(
            self.source.get_ref(),
            None,
            self.custody.get_ref(),
            None,
            copied,
            SpliceFFlags::SPLICE_F_NONBLOCK,
        )
    }

    fn step(&self, step: Step) {
        if let Some(hook) = self.hook {
            hook(step);
        }
    }
}

impl AsyncRead for Custody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut ready = ready!(this.source.poll_read_ready(cx))?;
            let room = buf.remaining().min(CHUNK);
            // SAFETY: only the kernel writes to these bytes (`copy`), and only the `moved` it
            // reports, which it did write, are marked initialised below.
            let target = unsafe { buf.unfilled_mut() }.as_mut_ptr().cast::<u8>();
            // SAFETY: `room` bytes of unfilled buffer at `target`.
            let copied = match unsafe { this.copy(target, room) } {
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(copied) => copied,
                Err(Errno::EAGAIN) => {
                    ready.clear_ready();
                    continue;
                }
                Err(Errno::EINTR) => continue,
                Err(error) => return Poll::Ready(Err(error.into())),
            };
            this.step(Step::Copied(copied));
            loop {
                match this.transfer(copied) {
                    // The source cannot have less than was just copied from it: only this reader
                    // takes from it.
                    Ok(0) => return Poll::Ready(Err(io::Error::from(Errno::EIO))),
                    Ok(moved) => {
                        this.step(Step::Moved(moved));
                        if moved == copied && copied < room && this.private.is_none() {
                            // A short copy took all the socket held, and it all moved: wait for
                            // the next edge rather than learn that from another copy (as the
                            // socket halves do). Readiness that came meanwhile is kept: a
                            // socket wakes its reader on every write.
                            //
                            // Not for a pipe: Linux wakes a pipe's readers in the middle of a
                            // blocking write only when the writer finds the pipe empty, and
                            // the writer can add bytes between the copy and the move, which
                            // then leave them behind in a pipe the writer never found empty.
                            // The next copy finds them, or finds the pipe empty (`EAGAIN`),
                            // after which the writer's next bytes do wake us.
                            ready.clear_ready();
                        }
                        // Only what moved is the caller's; the rest is still in the source.
                        // SAFETY: `copy` wrote `copied >= moved` bytes there.
                        unsafe { buf.assume_init(moved) };
                        buf.advance(moved);
                        return Poll::Ready(Ok(()));
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => {
                        drop(ready);
                        if let Some(on_full) = &mut this.on_full {
                            on_full();
                        }
                        // What was copied is dropped; it is still in the source. Wait for room,
                        // then copy again (the source may hold more by then).
                        let mut room = ready!(this.custody.poll_write_ready(cx))?;
                        room.clear_ready();
                        break;
                    }
                    Err(error) => return Poll::Ready(Err(error.into())),
                }
            }
        }
    }
}

/// Whether `fd` is something [`Custody`] can take from (a pipe or a socket).
pub fn supports(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd.as_fd())
        .map(|stat| {
            let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
            kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK
        })
        .unwrap_or(false)
}
