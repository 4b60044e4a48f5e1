//! Starting a daemon, detached, and waiting for its readiness line (`docs/design/lifecycle.md`, "Finding or starting the daemon").
//!
//! # Detached
//!
//! The daemon outlives the proxy that starts it and must not share its fate:
//!
//! - `setsid()` in the child: a new session and process group, so the host's `killpg` of the
//!   proxy's group, or a terminal hang-up, does not reach it. (`PR_SET_PDEATHSIG` is cleared by
//!   `fork`, so the proxy's watchdog does not follow it either.)
//! - `shoal daemon --detach`: the started process forks once more and exits, so the daemon is not
//!   the proxy's child: a host that kills its server's process tree (walking parent pids) does
//!   not reach it. The daemon stays alone in the process group the child created, whose id is the
//!   child's pid (see `shoal_daemon::detach` for why the proxy cannot fork twice itself).
//! - stdin is `/dev/null`; stdout and stderr append to `daemon.log`.
//! - The working directory is the project root (where the daemon runs the backend anyway), never
//!   the proxy's, which may be a directory someone wants to unmount.
//! - Every descriptor but the readiness pipe is close-on-exec. Rust and tokio open everything
//!   close-on-exec, but the host may have leaked descriptors into the proxy, and a daemon that
//!   inherited, say, the write end of another pipe of the host's would hold it open for hours.
//!   The child marks every descriptor above [`READY_FD`] close-on-exec (`close_range(2)` with
//!   `CLOSE_RANGE_CLOEXEC`, else one `fcntl` per descriptor up to the limit).
//!
//! # Readiness
//!
//! The write end of a pipe is the daemon's [`READY_FD`]; the proxy keeps no copy of it, so EOF
//! means the daemon (and anything it could have leaked the descriptor to) is gone. The daemon
//! writes one [`Readiness`] line: `ready`, `held`, or `error` with the reason. On `error` or EOF the
//! proxy fails at once with the reason and the lines `daemon.log` gained since the spawn; only a
//! daemon that says nothing waits out [`Tuning::ready_wait`](crate::Tuning).
//!
//! # No zombies
//!
//! The proxy's child is the short-lived process that forks the daemon and exits at once; the
//! proxy reaps it (after a failed start before reporting, bounded; after `ready` or `held` in a
//! background task). The daemon itself is init's (or the nearest subreaper's) to reap.
//!
//! Until the proxy reaps its child, that child's pid cannot be reused, and so neither can the
//! process group id the daemon lives in: a daemon that never reports is killed through its group
//! before the child is reaped, so the signal cannot reach anyone else.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use shoal_wire::Readiness;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::Child;

use crate::{ProxyConfig, READY_FD, StartError};

/// What a started daemon reported.
#[derive(Debug)]
pub(crate) enum Started {
    /// It listens on the key's socket.
    Ready { pid: u32 },
    /// Another live daemon holds the key; this one exited.
    Held { pid: Option<u32> },
}

/// The longest readiness line read: an error reason with its whole cause chain fits many times.
const MAX_READINESS_LINE: u64 = 64 * 1024;

/// How long a daemon that reported an error (or closed the pipe) may take to exit before the
/// proxy reports without reaping it (the background task still will).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// How many lines of `daemon.log` a failure shows, and how many bytes at most are read for them.
const LOG_TAIL_LINES: usize = 20;
const LOG_TAIL_BYTES: u64 = 8 * 1024;

/// Start a daemon and wait for its readiness line. The caller holds `spawn.lock`.
pub(crate) async fn start(config: &ProxyConfig) -> Result<Started, StartError> {
    let daemon = &config.daemon;
    let log_path = &config.files.log;
    let log_start = std::fs::metadata(log_path).map_or(0, |metadata| metadata.len());
    let failed = |reason: String| StartError::Daemon {
        reason,
        log_tail: Vec::new(),
    };
    let log = config
        .files
        .open_log()
        .map_err(|error| failed(format!("open {}: {error}", log_path.display())))?;
    let log_copy = log
        .try_clone()
        .map_err(|error| failed(format!("duplicate the descriptor of daemon.log: {error}")))?;
    let (reader, writer) =
        std::io::pipe().map_err(|error| failed(format!("create the readiness pipe: {error}")))?;

    let mut command = tokio::process::Command::new(&daemon.program);
    command
        .args(&daemon.args)
        .envs(daemon.env.iter().map(|(name, value)| (name, value)))
        .current_dir(&daemon.cwd)
        .stdin(Stdio::null())
        .stdout(log_copy)
        .stderr(log)
        .kill_on_drop(false);
    let ready_end = writer.as_raw_fd();
    // SAFETY: `detach` makes only async-signal-safe system calls (setsid, dup2, fcntl,
    // close_range, getrlimit) and allocates nothing, as required between fork and exec; the
    // descriptor number it captures stays open until after the spawn.
    unsafe {
        command.pre_exec(move || detach(ready_end));
    }
    let spawned = command.spawn();
    // Our copies of the pipe's write end and of the log go now: from here on only the daemon
    // holds the write end, so EOF means it is gone.
    drop(command);
    drop(writer);
    let mut child = spawned.map_err(|source| StartError::Spawn {
        program: daemon.program.clone(),
        source,
    })?;
    let child_pid = child.id();
    let readiness = read_readiness(OwnedFd::from(reader), config.tuning.ready_wait).await;
    let failure = match readiness {
        Ok(Some(Readiness::Ready { pid, .. })) => {
            tracing::debug!(
                pid,
                ?child_pid,
                "the daemon is ready, detached from its starter"
            );
            reap_in_background(child);
            return Ok(Started::Ready { pid });
        }
        Ok(Some(Readiness::Held { pid })) => {
            reap_in_background(child);
            return Ok(Started::Held { pid });
        }
        Ok(Some(Readiness::Error { reason })) => reason,
        Ok(Some(other)) => format!("the daemon reported {other:?}, which this proxy does not know"),
        Ok(None) => match tokio::time::timeout(EXIT_WAIT, child.wait()).await {
            // The child failed before it could detach (a bad argument, say).
            Ok(Ok(status)) if !status.success() => {
                format!("the daemon exited ({status}) before reporting ready")
            }
            _ => "the daemon exited before reporting ready".to_owned(),
        },
        Err(problem) => {
            // A daemon that cannot say whether it serves is of no use. It is alone in the process
            // group our unreaped child leads, whose id no one else can have yet.
            if let Some(group) = child_pid.and_then(|pid| i32::try_from(pid).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.start_kill();
            problem
        }
    };
    // Reap before reporting where it is quick (it usually is: the daemon exits right after its
    // error line); otherwise leave that to the background.
    if let Ok(Ok(_)) = tokio::time::timeout(EXIT_WAIT, child.wait()).await {
    } else {
        reap_in_background(child);
    }
    Err(StartError::Daemon {
        reason: failure,
        log_tail: log_tail(log_path, log_start),
    })
}

/// Await the daemon's exit in a background task, so that it never stays a zombie under us.
fn reap_in_background(mut child: Child) {
    tokio::spawn(async move {
        let status = child.wait().await;
        tracing::debug!(?status, "a daemon this proxy started exited");
    });
}

/// Read the one readiness line. `Ok(None)` is EOF without a line; `Err` says what went wrong.
async fn read_readiness(pipe: OwnedFd, wait: Duration) -> Result<Option<Readiness>, String> {
    let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe)
        .map_err(|error| format!("watch the readiness pipe: {error}"))?;
    let mut reader = BufReader::new(receiver.take(MAX_READINESS_LINE));
    let mut line = Vec::new();
    match tokio::time::timeout(wait, reader.read_until(b'\n', &mut line)).await {
        Err(_) => Err(format!(
            "the daemon said nothing within {}s",
            wait.as_secs_f32()
        )),
        Ok(Err(error)) => Err(format!("read the readiness pipe: {error}")),
        Ok(Ok(0)) => Ok(None),
        Ok(Ok(_)) => {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            Readiness::parse(&line)
                .map(Some)
                .map_err(|error| error.to_string())
        }
    }
}

/// `daemon.log`, opened for appending as the daemon opens it: created 0600, never through a
/// symlink.
/// The last lines `daemon.log` gained after `start` (its length before the spawn), at most
/// [`LOG_TAIL_LINES`] lines from the last [`LOG_TAIL_BYTES`] bytes.
pub(crate) fn log_tail(path: &Path, start: u64) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let length = file.metadata().map_or(0, |metadata| metadata.len());
    // A log shorter than before was truncated or replaced: show its end.
    let start = if start > length { 0 } else { start };
    let from = start.max(length.saturating_sub(LOG_TAIL_BYTES));
    if file.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    // A cut at `from` may have split the first line: drop it unless the cut is the start.
    if from > start && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines[skip..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

/// In the child, between fork and exec: new session, readiness pipe on [`READY_FD`] and
/// inheritable, everything else close-on-exec. Async-signal-safe, allocation-free.
fn detach(ready_end: RawFd) -> io::Result<()> {
    use nix::libc;
    // SAFETY: setsid takes no arguments and touches no memory of ours.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    // dup2 onto itself would keep close-on-exec set, so clear the flag instead.
    let result = if ready_end == READY_FD {
        // SAFETY: fcntl on a descriptor number; it reads and writes no memory of ours.
        unsafe { libc::fcntl(READY_FD, libc::F_SETFD, 0) }
    } else {
        // SAFETY: dup2 on two descriptor numbers; READY_FD is replaced in this child only.
        unsafe { libc::dup2(ready_end, READY_FD) }
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    let first = READY_FD + 1;
    #[cfg(target_os = "linux")]
    {
        // close_range(2) by number: glibc has a wrapper only since 2.34. All three arguments are
        // widened to `c_long`, the width `syscall(2)` reads them at.
        let first = libc::c_long::from(first);
        let last = libc::c_long::from(libc::c_uint::MAX);
        let flags = libc::c_long::from(libc::CLOSE_RANGE_CLOEXEC);
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) } == 0 {
            return Ok(());
        }
    }
    // Kernels before 5.11: one fcntl per descriptor up to the limit; EBADF for unused numbers.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` to the valid, exclusive reference it is given.
    let highest = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        RawFd::try_from(limit.rlim_cur).unwrap_or(RawFd::MAX)
    } else {
        1024
    };
    // A huge soft limit (some containers set 2^30) would take seconds; descriptors that high are
    // not something a host leaks by accident.
    for fd in first..highest.min(1 << 16) {
        // SAFETY: fcntl on a descriptor number (possibly unused: EBADF, ignored).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_shows_only_what_the_attempt_added() {
        let path = std::env::temp_dir().join(format!("shoal-proxy-tail-{}", std::process::id()));
        std::fs::write(&path, "old 1\nold 2\n").unwrap();
        let start = std::fs::metadata(&path).unwrap().len();
        let mut text = String::new();
        for n in 0..30 {
            text.push_str(&format!("new {n}\n"));
        }
        std::fs::write(&path, format!("old 1\nold 2\n{text}")).unwrap();
        let tail = log_tail(&path, start);
        assert_eq!(tail.len(), LOG_TAIL_LINES);
        assert_eq!(tail.first().unwrap(), "new 10");
        assert_eq!(tail.last().unwrap(), "new 29");
        assert!(log_tail(&path, std::fs::metadata(&path).unwrap().len()).is_empty());
        // Truncated since: the end of what is there.
        assert_eq!(log_tail(&path, 1 << 20).last().unwrap(), "new 29");
        // Longer than the byte bound: the cut line is dropped.
        std::fs::write(&path, "x".repeat(10_000) + "\nlast\n").unwrap();
        assert_eq!(log_tail(&path, 0), vec!["last".to_owned()]);
        std::fs::remove_file(&path).unwrap();
    }
}
