//! Starting the backend in its own process group, and stopping its whole process tree.
//!
//! Servers are often launched through wrappers (`npx` → `node`, `uvx` → `python`, shell scripts)
//! that do not forward signals or wait for their children. Signalling only the process we started
//! leaves the real server running as an orphan, which is exactly the leak shoal exists to prevent.
//! So the backend gets its own process group and every stop signals the whole group:
//!
//! 1. close stdin (a well-behaved MCP server exits on EOF) and wait `after_stdin_close`;
//! 2. SIGTERM the group and wait `after_sigterm` for every member to go;
//! 3. SIGKILL the group and wait `after_sigkill`.
//!
//! The group is signalled even when the leader exited on its own at step 1: a wrapper that exits
//! on EOF may leave its children behind. A descendant that calls `setsid()` leaves the group and
//! escapes; catching those needs cgroups, which a user-level tool cannot count on.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::time::{Instant, sleep_until, timeout_at};

/// How to start the backend server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendCommand {
    /// The program and its arguments; `argv[0]` is looked up in `PATH` like a shell would.
    pub argv: Vec<OsString>,
    /// The working directory: the project root.
    pub cwd: PathBuf,
    /// Extra environment variables on top of the daemon's own environment.
    pub env: Vec<(OsString, OsString)>,
}

/// How a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// The whole group was gone after stdin was closed (or before the stop began).
    ExitedOnEof,
    /// The group needed SIGTERM.
    Terminated,
    /// The group needed SIGKILL.
    Killed,
    /// Something in the group survived SIGKILL for the whole grace period (a process stuck in
    /// uninterruptible sleep, typically on a dead network filesystem). Logged; nothing more can
    /// be done from user space.
    Unkillable,
}

/// The grace periods of [`BackendProcess::stop`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct StopTimeouts {
    pub(crate) after_stdin_close: Duration,
    pub(crate) after_sigterm: Duration,
    pub(crate) after_sigkill: Duration,
}

impl Default for StopTimeouts {
    /// 2 s for each polite step (`docs/design/lifecycle.md`, "Backend supervision"): long enough for a server to flush a database,
    /// short enough that `shoal stop` and idle exit feel immediate.
    fn default() -> Self {
        StopTimeouts {
            after_stdin_close: Duration::from_secs(2),
            after_sigterm: Duration::from_secs(2),
            after_sigkill: Duration::from_secs(2),
        }
    }
}

impl StopTimeouts {
    /// The same grace for every step.
    pub(crate) fn uniform(grace: Duration) -> StopTimeouts {
        StopTimeouts {
            after_stdin_close: grace,
            after_sigterm: grace,
            after_sigkill: grace,
        }
    }
}

/// Resident memory of process `pid`, where the platform reports it.
pub(crate) fn process_rss_bytes(pid: u32) -> Option<u64> {
    sys::rss_bytes(pid)
}

/// Resident memory of every live process in group `pgid` (a backend and its children), where the
/// platform reports it. Memory shared between them is counted once per process, like `ps`.
pub(crate) fn group_rss_bytes(pgid: u32) -> Option<u64> {
    sys::group_rss_bytes(i32::try_from(pgid).ok()?)
}

/// A running backend server: the leader of its own process group.
#[derive(Debug)]
pub(crate) struct BackendProcess {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
}

impl BackendProcess {
    /// Start `command` with piped stdin/stdout and `stderr` (normally a pipe the daemon copies to
    /// its log).
    ///
    /// Returns the process, its stdout, which the caller must always drain (a server whose
    /// stdout is not read blocks on a full pipe), and its stderr if `stderr` was a pipe (the same
    /// holds for it).
    pub(crate) fn spawn(
        command: &BackendCommand,
        stderr: Stdio,
    ) -> io::Result<(BackendProcess, ChildStdout, Option<ChildStderr>)> {
        let Some((program, args)) = command.argv.split_first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the backend command is empty",
            ));
        };
        let mut process = Command::new(program);
        process
            .args(args)
            .current_dir(&command.cwd)
            .envs(command.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Its own group, so that a stop reaches grandchildren and so that a terminal's
            // ^C or a signal to the daemon's group never reaches it behind the daemon's back.
            .process_group(0)
            .kill_on_drop(false);
        crate::backend::process::sys::set_parent_death_signal(&mut process);
        let mut child = process.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the backend exited before its pid could be read"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("the backend's stdout was not captured"))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        Ok((BackendProcess { child, pid, stdin }, stdout, stderr))
    }

    /// The leader's pid, which is also the process group id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Hand stdin to the task that writes to the backend. Dropping it is what closes stdin.
    pub(crate) fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Wait for the leader to exit (a crash, or the end of a stop).
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Stop the whole process group; see the module docs for the steps.
    ///
    /// The caller must already have dropped the stdin it took with [`Self::take_stdin`]; the
    /// stdin still held here is closed first.
    pub(crate) async fn stop(mut self, timeouts: StopTimeouts) -> StopOutcome {
        drop(self.stdin.take());
        let pgid = Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));

        let deadline = Instant::now() + timeouts.after_stdin_close;
        // Reap the leader first: a zombie still counts as a group member.
        let _ = timeout_at(deadline, self.child.wait()).await;
        if !group_alive(pgid) {
            return StopOutcome::ExitedOnEof;
        }

        for (signal, grace, outcome) in [
            (
                Signal::SIGTERM,
                timeouts.after_sigterm,
                StopOutcome::Terminated,
            ),
            (Signal::SIGKILL, timeouts.after_sigkill, StopOutcome::Killed),
        ] {
            // ESRCH: the last member went between the check and the signal; that is success.
            let _ = killpg(pgid, signal);
            let deadline = Instant::now() + grace;
            let _ = timeout_at(deadline, self.child.wait()).await;
            if wait_group_gone(pgid, deadline).await {
                return outcome;
            }
        }
        StopOutcome::Unkillable
    }
}

/// Whether any live process is still in group `pgid`.
///
/// Reuse of the number is not a concern while we look: the kernel does not hand out a pid that
/// is still some group's id, and we stop looking as soon as the group is empty.
fn group_alive(pgid: Pid) -> bool {
    sys::group_has_live_member(pgid)
}

/// Poll until group `pgid` is empty or `deadline` passes. The kernel offers no notification
/// for the death of processes that are not our children (grandchildren were re-parented to init),
/// so this polls, with a short interval and a deadline.
async fn wait_group_gone(pgid: Pid, deadline: Instant) -> bool {
    const POLL_INTERVAL: Duration = Duration::from_millis(10);
    loop {
        if !group_alive(pgid) {
            return true;
        }
        let next = Instant::now() + POLL_INTERVAL;
        if next >= deadline {
            return !group_alive(pgid);
        }
        sleep_until(next).await;
    }
}

mod sys {
    //! The platform-specific parts: the parent-death signal and seeing who is left in a group.

    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    use tokio::process::Command;

    /// Ask the kernel to SIGTERM the backend if the daemon dies without stopping it (SIGKILL,
    /// OOM killer), so that a crashed daemon does not leave its server running forever.
    ///
    /// Linux delivers the signal when the *thread* that forked exits, not the process. The
    /// daemon forks from its runtime's long-lived threads, never from a short-lived blocking
    /// thread, so this matches the daemon's life.
    #[cfg(target_os = "linux")]
    pub(super) fn set_parent_death_signal(command: &mut Command) {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs between fork and exec, and calls only async-signal-safe
        // functions (prctl, getppid, kill) without allocating.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)?;
                // The daemon may have died between fork and prctl, in which case the death
                // signal will never come: act on it now.
                if nix::unistd::getppid() != parent {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::getpid(),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                Ok(())
            });
        }
    }

    /// Whether group `pgid` has a member that is not a zombie.
    ///
    /// `killpg(pgid, 0)` alone is not enough: it succeeds for zombies, and orphaned grandchildren
    /// stay zombies forever where pid 1 does not reap (minimal container inits do not), which
    /// would make every stop end in a bogus "unkillable". So on Linux, look at the members' states
    /// in /proc; a member that vanishes while we read counts as gone.
    #[cfg(target_os = "linux")]
    pub(super) fn group_has_live_member(pgid: Pid) -> bool {
        if matches!(killpg(pgid, None), Err(nix::errno::Errno::ESRCH)) {
            return false;
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            // No /proc: trust kill(2), zombies included.
            return true;
        };
        entries
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .as_encoded_bytes()
                    .iter()
                    .all(u8::is_ascii_digit)
            })
            .filter_map(|entry| std::fs::read(entry.path().join("stat")).ok())
            .filter_map(|stat| parse_state_and_group(&stat))
            .any(|(state, group)| group == pgid.as_raw() && state != b'Z' && state != b'X')
    }

    /// The state letter and process group of a `/proc/<pid>/stat` line. The command name is in
    /// parentheses and may itself contain spaces and parentheses, so fields are counted from the
    /// last `)`.
    #[cfg(target_os = "linux")]
    pub(super) fn parse_state_and_group(stat: &[u8]) -> Option<(u8, i32)> {
        let after_name = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
        let mut fields = std::str::from_utf8(after_name)
            .ok()?
            .split_ascii_whitespace();
        let state = *fields.next()?.as_bytes().first()?;
        let _ppid = fields.next()?;
        let group = fields.next()?.parse().ok()?;
        Some((state, group))
    }

    /// `VmRSS` from `/proc/<pid>/status`, in bytes.
    #[cfg(target_os = "linux")]
    pub(super) fn rss_bytes(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// The sum of [`rss_bytes`] over the live members of group `pgid`.
    #[cfg(target_os = "linux")]
    pub(super) fn group_rss_bytes(pgid: i32) -> Option<u64> {
        let entries = std::fs::read_dir("/proc").ok()?;
        let total = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| parse_state_and_group(&stat))
                    .is_some_and(|(state, group)| group == pgid && state != b'Z' && state != b'X')
            })
            .filter_map(rss_bytes)
            .sum();
        Some(total)
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn rss_bytes(_pid: u32) -> Option<u64> {
        None
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn group_rss_bytes(_pgid: i32) -> Option<u64> {
        None
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn group_has_live_member(pgid: Pid) -> bool {
        !matches!(killpg(pgid, None), Err(nix::errno::Errno::ESRCH))
    }

    /// No parent-death signal outside Linux: the daemon's orderly stops still take the whole
    /// group down, but a SIGKILLed daemon leaves its backend running until stdin EOF reaches it.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn set_parent_death_signal(_command: &mut Command) {}
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn sh(script: &str, cwd: &Path) -> BackendCommand {
        BackendCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd: cwd.to_path_buf(),
            env: vec![],
        }
    }

    fn scratch_dir(name: &str) -> crate::scratch::ScratchDir {
        let dir = crate::scratch::ScratchDir::new("shoal-daemon", name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Short polite steps keep the suite fast; the SIGKILL step keeps a generous grace so that a
    /// loaded machine does not turn "killed" into "unkillable".
    fn quick() -> StopTimeouts {
        StopTimeouts {
            after_stdin_close: Duration::from_millis(300),
            after_sigterm: Duration::from_millis(300),
            after_sigkill: Duration::from_secs(5),
        }
    }

    /// Start `script`, wait (with a deadline) for its first stdout line, and return both.
    async fn start(script: &str, cwd: &Path) -> (BackendProcess, String) {
        let (process, stdout, _) = BackendProcess::spawn(&sh(script, cwd), Stdio::null()).unwrap();
        let mut first_line = String::new();
        tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut first_line))
            .await
            .expect("timed out waiting for the backend's first line")
            .unwrap();
        (process, first_line.trim_end().to_owned())
    }

    fn pid_from(file: &Path) -> Pid {
        Pid::from_raw(
            std::fs::read_to_string(file)
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
        )
    }

    /// Gone, or a zombie nobody will reap (pid 1 of some containers does not): either way it
    /// no longer runs.
    fn is_gone(pid: Pid) -> bool {
        match std::fs::read(format!("/proc/{pid}/stat")) {
            Ok(stat) => sys::parse_state_and_group(&stat).is_some_and(|(state, _)| state == b'Z'),
            Err(_) => true,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_server_that_exits_on_eof_is_stopped_by_closing_stdin() {
        let dir = scratch_dir("eof");
        let (process, line) = start("echo ready; cat >/dev/null", &dir).await;
        assert_eq!(line, "ready");
        assert_eq!(process.stop(quick()).await, StopOutcome::ExitedOnEof);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stdin_and_stdout_carry_lines_and_a_crash_is_seen_by_wait() {
        use tokio::io::AsyncWriteExt;
        let dir = scratch_dir("pipes");
        let (mut process, stdout, _) = BackendProcess::spawn(
            &sh("read line; echo \"got $line\"; exit 3", &dir),
            Stdio::null(),
        )
        .unwrap();
        let mut stdin = process.take_stdin().expect("stdin is piped");
        stdin.write_all(b"hello\n").await.unwrap();
        let mut reply = String::new();
        tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut reply))
            .await
            .expect("timed out waiting for the backend's reply")
            .unwrap();
        assert_eq!(reply, "got hello\n");
        let status = tokio::time::timeout(DEADLINE, process.wait())
            .await
            .expect("timed out waiting for the backend to exit")
            .unwrap();
        assert_eq!(status.code(), Some(3));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn grandchildren_left_behind_after_eof_are_terminated() {
        let dir = scratch_dir("grandchild");
        let pid_file = dir.join("grandchild.pid");
        let script = format!(
            "sleep 300 & echo $! > '{}'; echo ready; cat >/dev/null",
            pid_file.display()
        );
        let (process, _) = start(&script, &dir).await;
        let grandchild = pid_from(&pid_file);
        assert!(
            !is_gone(grandchild),
            "the grandchild should be running before the stop"
        );
        assert_eq!(process.stop(quick()).await, StopOutcome::Terminated);
        assert!(
            is_gone(grandchild),
            "grandchild {grandchild} survived the stop"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_tree_that_ignores_eof_and_sigterm_is_killed() {
        let dir = scratch_dir("stubborn");
        let pid_file = dir.join("grandchild.pid");
        // `trap '' TERM` makes the shell and everything it starts afterwards ignore SIGTERM.
        let script = format!(
            "trap '' TERM; sleep 300 & echo $! > '{}'; echo ready; while :; do sleep 1; done",
            pid_file.display()
        );
        let (process, _) = start(&script, &dir).await;
        let leader = Pid::from_raw(i32::try_from(process.pid()).unwrap());
        let grandchild = pid_from(&pid_file);
        assert_eq!(process.stop(quick()).await, StopOutcome::Killed);
        assert!(is_gone(leader), "leader {leader} survived SIGKILL");
        assert!(
            is_gone(grandchild),
            "grandchild {grandchild} survived SIGKILL"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn runs_in_the_project_root_in_its_own_group() {
        let dir = scratch_dir("cwd");
        let (process, line) = start(
            "echo \"$(cut -d' ' -f5 /proc/$$/stat) $(pwd)\"; cat >/dev/null",
            &dir,
        )
        .await;
        let (pgid, cwd) = line.split_once(' ').unwrap();
        assert_eq!(
            Path::new(cwd).canonicalize().unwrap(),
            dir.canonicalize().unwrap()
        );
        assert_eq!(pgid.trim().parse::<u32>().unwrap(), process.pid());
        process.stop(quick()).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_empty_or_missing_command_is_an_error() {
        let dir = scratch_dir("missing");
        let empty = BackendCommand {
            argv: vec![],
            cwd: dir.to_path_buf(),
            env: vec![],
        };
        assert_eq!(
            BackendProcess::spawn(&empty, Stdio::null())
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        let missing = BackendCommand {
            argv: vec!["shoal-no-such-server".into()],
            cwd: dir.to_path_buf(),
            env: vec![],
        };
        assert_eq!(
            BackendProcess::spawn(&missing, Stdio::null())
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn stat_lines_with_awkward_names() {
        let check = |line: &str, expected| {
            assert_eq!(
                sys::parse_state_and_group(line.as_bytes()),
                expected,
                "{line}"
            );
        };
        check("42 (cat) S 1 42 42 0 -1", Some((b'S', 42)));
        check("42 (a) b) (c) Z 1 77 77 0", Some((b'Z', 77)));
        check("42 (sp ace) R 1 -1 0", Some((b'R', -1)));
        check("42 (trunc", None);
        check("", None);
    }
}
