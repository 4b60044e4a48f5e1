//! The watchdog's operating-system calls: every `nix` and `libc` call and every `unsafe` block of the
//! watchdog lives here, so there is one file to audit and one file to port.
//!
//! None of these calls blocks, so none can fail with `EINTR`.

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

#[cfg(target_os = "linux")]
use nix::libc;
#[cfg(target_os = "linux")]
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The calling process's parent, as `getppid(2)` tells it: after the parent's exit, the process it
/// was reparented to (a subreaper or init), or 0 if that one is outside our PID namespace.
pub(super) fn parent_pid() -> Pid {
    nix::unistd::getppid()
}

/// Have the kernel send `signal` to this process when its parent *thread* exits
/// (`PR_SET_PDEATHSIG`).
#[cfg(target_os = "linux")]
pub(super) fn set_parent_death_signal(signal: Signal) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(signal).map_err(io::Error::from)
}

/// Stop the parent-death signal (`PR_SET_PDEATHSIG` 0).
#[cfg(target_os = "linux")]
pub(super) fn clear_parent_death_signal() -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(None).map_err(io::Error::from)
}

/// A pidfd for `pid` (`pidfd_open(2)`, Linux ≥ 5.3): it becomes readable when that process exits,
/// zombie or not.
///
/// Fails with `ENOSYS` on older kernels and `EPERM`/`ENOSYS` under some seccomp sandboxes (gVisor,
/// container runtimes with old profiles); with `ESRCH` if no such process exists, and `EINVAL` for a
/// pid of 0 (a parent outside our PID namespace).
#[cfg(target_os = "linux")]
pub(super) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // nix 0.31 does not wrap pidfd_open(2) and glibc has a wrapper only since 2.36, so call it by
    // number. Both arguments are widened to `c_long`, the width `syscall(2)` reads its arguments at.
    let pid = libc::c_long::from(pid.as_raw());
    let flags: libc::c_long = 0;
    // SAFETY: pidfd_open takes a pid and a flags word by value and reads or writes no memory of ours.
    let result = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(result).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel has just returned this descriptor to us and nothing else owns it. pidfds are
    // always close-on-exec, so no child the proxy spawns (the daemon) inherits it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resolves when the process behind `pidfd` has exited. Needs a tokio runtime with IO enabled.
#[cfg(target_os = "linux")]
pub(super) async fn wait_for_exit(pidfd: &OwnedFd) -> io::Result<()> {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    // A duplicate per call, so that concurrent or repeated calls each register a descriptor of their
    // own with the reactor (epoll keys its registrations by descriptor number).
    let pidfd = pidfd.try_clone()?;
    // SAFETY: the `AsyncFd` owns `pidfd`, an open descriptor that nothing else can close or replace,
    // and `OwnedFd::as_raw_fd` returns the same number for as long as it lives.
    let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(io::Error::from)?;
    // A pidfd stays readable once its process has exited, so there is nothing to clear or retry.
    let _ready = pidfd.readable().await?;
    Ok(())
}
