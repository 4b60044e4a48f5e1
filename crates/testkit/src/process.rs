//! Process helpers for tests that check lifetimes: liveness that counts zombies as dead, pid files,
//! process groups, signals.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// How often [`wait_for_exit`] and [`read_pid_file`] look again.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Whether `pid` names a running process. A zombie (exited, not yet reaped: common for orphans in
/// containers whose init does not reap) counts as dead, unlike with a bare `kill(pid, 0)`.
pub fn is_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state is the first field after the command name, which is in parentheses and may
            // itself contain spaces or parentheses.
            Ok(stat) => {
                return stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state != "Z" && state != "X");
            }
            Err(_) => return false,
        }
    }
    match signal::kill(to_pid(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}

/// Waits until `pid` is no longer alive (see [`is_alive`]); `false` if it still is after `timeout`.
pub fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Reads a pid file written atomically (like the fixture's grandchild pid file), waiting up to
/// `timeout` for it to appear; an empty file (created, not yet written) counts as not there yet.
pub fn read_pid_file(path: &Path, timeout: Duration) -> io::Result<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::read_to_string(path) {
            // Created and not yet written, by a writer that does not publish atomically.
            Ok(text) if text.trim().is_empty() && Instant::now() < deadline => {
                std::thread::sleep(POLL_INTERVAL);
            }
            Ok(text) => {
                return text.trim().parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} holds {text:?}, not a pid", path.display()),
                    )
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(POLL_INTERVAL);
            }
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("failed to read pid file {}: {error}", path.display()),
                ));
            }
        }
    }
}

/// The process group of `pid`.
pub fn process_group(pid: u32) -> io::Result<u32> {
    let group = nix::unistd::getpgid(Some(to_pid(pid)))?;
    Ok(group.as_raw().unsigned_abs())
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) -> io::Result<()> {
    Ok(signal::kill(to_pid(pid), Signal::SIGTERM)?)
}

/// Sends SIGKILL to `pid`.
pub fn kill(pid: u32) -> io::Result<()> {
    Ok(signal::kill(to_pid(pid), Signal::SIGKILL)?)
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness() {
        assert!(is_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert_eq!(
            process_group(std::process::id()).unwrap(),
            nix::unistd::getpgrp().as_raw().unsigned_abs()
        );
    }
}
