//! The reaper: a small process that stops the backend's process group if the daemon dies without
//! doing it.
//!
//! # The problem
//!
//! The daemon stops its backend's group itself on every exit it lives through. If it is
//! SIGKILLed (or crashes), only the parent-death signal is left, and that is SIGTERM to the
//! backend's leader alone: a server that ignores SIGTERM survives, and so does every other member
//! of its group (an `npx` wrapper's `node`, a helper it started), each holding memory and file
//! watchers for nobody.
//!
//! # The fix
//!
//! 1. First thing at start, before any thread or lock exists, the daemon forks the reaper. The
//!    reaper closes every descriptor but stderr (`daemon.log`) and its end of a pipe, moves to a
//!    process group of its own (a kill of the daemon's group does not take it along) and blocks
//!    reading the pipe.
//! 2. The daemon tells it each backend's process group when it starts one (`group <pgid>`), that
//!    there is none when it was stopped (`none`), and that it exits cleanly (`done`).
//! 3. If the pipe closes without `done`, the daemon died: the reaper sends SIGTERM to the last
//!    group it was told about, waits up to [`GRACE`] for it to empty, sends SIGKILL, and exits.
//!
//! What still escapes: a descendant that left the group with `setsid()` (catching it would need
//! cgroups). A group id reused by another process group in the moment between a backend's own
//! death and the daemon's is not guarded against beyond `none` being sent as soon as the daemon
//! sees the exit.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{ForkResult, Pid};

/// How long the backend's group gets between SIGTERM and SIGKILL after the daemon died.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// The daemon's end of the pipe to its reaper.
#[derive(Debug)]
pub(crate) struct Reaper {
    pipe: Option<File>,
}

impl Reaper {
    /// Fork the reaper. Must be called while the process has a single thread.
    pub(crate) fn start() -> nix::Result<Reaper> {
        let (read, write) = nix::unistd::pipe()?;
        // SAFETY: the caller guarantees a single thread, so the child is a faithful copy in
        // which any code may run; it only ever runs `serve`, then exits.
        match unsafe { nix::unistd::fork() }? {
            ForkResult::Child => {
                drop(write);
                serve(read);
            }
            ForkResult::Parent { .. } => {
                drop(read);
                let pipe = File::from(write);
                // The backend must not inherit the pipe: a surviving backend holding it would
                // keep the reaper waiting after the daemon died.
                nix::fcntl::fcntl(
                    &pipe,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                )?;
                Ok(Reaper { pipe: Some(pipe) })
            }
        }
    }

    /// The backend now runs in process group `pgid`.
    pub(crate) fn watch(&mut self, pgid: u32) {
        self.say(&format!("group {pgid}"));
    }

    /// No backend group is left to stop.
    pub(crate) fn release(&mut self) {
        self.say("none");
    }

    /// The daemon exits having stopped its backend itself: the reaper leaves.
    pub(crate) fn done(mut self) {
        self.say("done");
        self.pipe = None;
    }

    fn say(&mut self, message: &str) {
        if let Some(pipe) = &mut self.pipe
            && writeln!(pipe, "{message}").is_err()
        {
            // The reaper is gone (killed by hand): there is nothing to tell any more.
            tracing::warn!("the reaper process is gone; a daemon crash would leave the server");
            self.pipe = None;
        }
    }
}

/// The reaper's whole life; never returns.
fn serve(pipe: OwnedFd) -> ! {
    close_other_descriptors(pipe.as_raw_fd());
    // Its own group: a kill of the daemon's group must not take the reaper with it.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let mut group: Option<i32> = None;
    let mut clean = false;
    for line in BufReader::new(File::from(pipe)).lines() {
        let Ok(line) = line else { break };
        match line.as_str() {
            "done" => {
                clean = true;
                break;
            }
            "none" => group = None,
            other => {
                group = other
                    .strip_prefix("group ")
                    .and_then(|pgid| pgid.parse().ok())
                    .filter(|&pgid| pgid > 1);
            }
        }
    }
    if !clean && let Some(pgid) = group {
        stop_group(Pid::from_raw(pgid));
    }
    std::process::exit(0);
}

/// SIGTERM the group, wait up to [`GRACE`] for it to empty, then SIGKILL it.
fn stop_group(pgid: Pid) {
    if killpg(pgid, Signal::SIGTERM) == Err(Errno::ESRCH) {
        return;
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        // Signal 0 checks that some member is left (zombies count until reaped by init).
        if killpg(pgid, None) == Err(Errno::ESRCH) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// Close every descriptor above stderr but `keep`: the reaper must not hold the daemon's
/// readiness pipe (a spawner waits for its EOF) or anything else of the daemon's.
fn close_other_descriptors(keep: i32) {
    let keep = u32::try_from(keep).unwrap_or(u32::MAX);
    let close = |first: u32, last: u32| {
        if first > last {
            return;
        }
        // SAFETY: close_range(2) only closes descriptors; nothing in this process uses the ones
        // closed (the reaper owns only `keep` and stdio).
        let closed = unsafe { nix::libc::close_range(first, last, 0) };
        if closed != 0 {
            // Kernels before 5.9: close one by one up to the descriptor limit.
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(1024, |(soft, _)| soft.min(65_536));
            let limit = u32::try_from(limit).unwrap_or(u32::MAX).min(last);
            for fd in first..=limit {
                // SAFETY: as above; closing an unused number is harmless (EBADF).
                unsafe {
                    nix::libc::close(i32::try_from(fd).unwrap_or(i32::MAX));
                }
            }
        }
    };
    close(3, keep.saturating_sub(1));
    close(keep.saturating_add(1), u32::MAX);
}
