//! Leaving the process that started us: a daemon must not be anyone's child.
//!
//! `shoal proxy` starts the daemon in a new session (`setsid` between fork and exec), but the
//! daemon is still the proxy's child, so a host that kills its server's process tree on exit
//! (opencode does, walking parent pids) takes every session's shared daemon with it. Forking once
//! more and letting the first process exit re-parents the daemon to init (or the nearest
//! subreaper); it stays in the session and process group the proxy created, of which it is then
//! the only member, and, not being a session leader, it can never acquire a controlling terminal.
//!
//! The proxy cannot do that second fork itself: forking inside the child of a multithreaded
//! process is not async-signal-safe. The daemon can, first thing in `main`, while it still has
//! one thread; [`detach`] checks that it does.

use std::io;

/// Fork; the parent exits at once with status 0 and the child returns, no longer the child of
/// whoever started this process. The readiness pipe and every other descriptor are inherited by
/// the child, so a spawner waiting for the readiness line is unaffected.
///
/// Refuses (with an error, forking nothing) when this process has more than one thread.
pub fn detach() -> io::Result<()> {
    let threads = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse::<u32>().ok());
    if threads != Some(1) {
        return Err(io::Error::other(format!(
            "detach from the starting process: it has {} threads, and fork is only safe with one",
            threads.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string())
        )));
    }
    // SAFETY: the process has one thread (checked above), so the child's memory, locks
    // included, is consistent, and it may do anything the parent could.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        // SAFETY: `_exit` ends the process without running destructors or atexit handlers, which
        // belong to the child now (buffered output must not be written twice).
        nix::unistd::ForkResult::Parent { .. } => unsafe { nix::libc::_exit(0) },
        nix::unistd::ForkResult::Child => Ok(()),
    }
}
