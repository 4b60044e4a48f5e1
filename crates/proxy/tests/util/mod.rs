//! Helpers for the parent-death tests: a "host" process (this test binary re-executed as
//! `host ...`) that spawns a "proxy" (re-executed as `proxy ...`), the proxy's reports on a pipe, and
//! waits that always have a deadline and a label.
//!
//! Plumbing: the test creates the report pipe and gives its write end to the host as stdout; the
//! proxy inherits it from the host. The test keeps no write end, so EOF on the pipe means both are
//! gone, and once the host is reaped, EOF means the proxy has exited. The proxy's stdin is the
//! host's stdin, a pipe the test writes to: it carries the cues of the scenarios that need one, and
//! it stays open when the host dies, so the proxy never sees the stdin-EOF layer (not under test here).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test helpers: the helper processes report on stdout, which is their channel"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// How long a helper process may take to start and report. Generous: a loaded 2-core CI machine
/// starting two processes can be slow, and this bound catches hangs, not slowness.
pub(crate) const START_WAIT: Duration = Duration::from_secs(20);

/// How long the proxy may take to notice the host's death and exit before the test fails. The
/// requirement is 1 s (`docs/design/lifecycle.md`, "The proxy's life"); the assertion is looser so that a loaded machine does not
/// make the suite flaky. The measured latencies are printed; benchmarks hold the 1 s line.
pub(crate) const DEATH_WAIT: Duration = Duration::from_secs(5);

/// A host process and the proxy it spawned, seen from the test.
pub(crate) struct HostAndProxy {
    /// `None` once killed and reaped, so that `Drop` never signals a pid that may have been reused.
    host: Option<Child>,
    host_pid: Pid,
    /// The host's stdin, inherited by the proxy: the cue channel.
    cues: Option<ChildStdin>,
    reports: mpsc::Receiver<Option<String>>,
    label: String,
}

/// Start `host <spawn_from> <proxy_args>`: a host that spawns the proxy from its main thread
/// (`spawn_from = "main"`) or from a thread that exits on the first cue (`"thread"`).
pub(crate) fn spawn_host(spawn_from: &str, proxy_args: &[&str]) -> HostAndProxy {
    let label = format!("host {spawn_from} {proxy_args:?}");
    let (report_reader, report_writer) = std::io::pipe().expect("create the report pipe");
    let mut host = {
        // The command holds the pipe's write end until it is dropped: keep it in this scope so
        // that only the host and the proxy hold one afterwards.
        let mut command = Command::new(std::env::current_exe().expect("find the test binary"));
        command
            .arg("host")
            .arg(spawn_from)
            .args(proxy_args)
            .stdin(Stdio::piped())
            .stdout(report_writer)
            .stderr(Stdio::inherit());
        command.spawn().expect("spawn the host")
    };
    let cues = host.stdin.take();
    let (sender, reports) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(report_reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = sender.send(None);
    });
    HostAndProxy {
        host_pid: Pid::from_raw(i32::try_from(host.id()).expect("a pid fits in i32")),
        host: Some(host),
        cues,
        reports,
        label,
    }
}

impl HostAndProxy {
    pub(crate) fn host_pid(&self) -> Pid {
        self.host_pid
    }

    /// The proxy's next report, which must arrive before `deadline`.
    pub(crate) fn report(&self, what: &str, deadline: Instant) -> String {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.reports.recv_timeout(timeout) {
            Ok(Some(line)) => line,
            Ok(None) => panic!("{}: the proxy exited before reporting {what}", self.label),
            Err(_) => panic!("{}: no {what} within {timeout:?}", self.label),
        }
    }

    /// The proxy's reports until it exits (EOF on the report pipe), which must happen before
    /// `deadline`. Only meaningful once the host is reaped: until then, the host holds the pipe too.
    pub(crate) fn reports_until_exit(&self, what: &str, deadline: Instant) -> Vec<String> {
        assert!(self.host.is_none(), "{}: reap the host first", self.label);
        let mut lines = Vec::new();
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(timeout) {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return lines,
                Err(_) => panic!(
                    "{}: the proxy did not exit ({what}) within {timeout:?}; it reported {lines:?}",
                    self.label
                ),
            }
        }
    }

    /// Write a cue line on the host's stdin, which the proxy shares.
    pub(crate) fn cue(&mut self, line: &str) {
        let cues = self.cues.as_mut().expect("the cue pipe is open");
        writeln!(cues, "{line}").expect("write a cue");
        cues.flush().expect("write a cue");
    }

    /// SIGKILL the host and reap it. Returns, once the host is gone (so the proxy has been
    /// reparented), the instant just before the SIGKILL, from which the proxy's latency counts.
    pub(crate) fn kill_host(&mut self) -> Instant {
        let mut host = self.host.take().expect("the host is still ours");
        let killed = Instant::now();
        host.kill().expect("SIGKILL the host");
        let status = within(
            "the SIGKILLed host's exit",
            Instant::now() + START_WAIT,
            move || host.wait(),
        )
        .expect("reap the host");
        assert_eq!(
            status.signal(),
            Some(nix::sys::signal::Signal::SIGKILL as i32),
            "{}: {status:?}",
            self.label
        );
        killed
    }
}

impl Drop for HostAndProxy {
    fn drop(&mut self) {
        // A failed assertion must not leave processes behind. Killing the host is enough: every
        // scenario's proxy watches it and exits; closing the cues ends a proxy still waiting for
        // one.
        if let Some(mut host) = self.host.take() {
            let _ = host.kill();
            let _ = host.wait();
        }
        self.cues = None;
    }
}

/// Reap `pid` (an orphan reparented to us as subreaper), which must exit before `deadline`.
pub(crate) fn wait_for(pid: Pid, what: &str, deadline: Instant) -> WaitStatus {
    within(what, deadline, move || nix::sys::wait::waitpid(pid, None))
        .unwrap_or_else(|error| panic!("wait for {what} ({pid}): {error}"))
}

/// Run the blocking `wait` (which has no timeout of its own) on a thread, and fail if it has not
/// finished before `deadline`. A late thread is left behind, blocked, when the test fails.
pub(crate) fn within<T: Send + 'static>(
    what: &str,
    deadline: Instant,
    wait: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(wait());
    });
    let timeout = deadline.saturating_duration_since(Instant::now());
    receiver
        .recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no {what} within {timeout:?}"))
}

/// In a helper process: one line for the test on stdout, the report pipe.
pub(crate) fn report(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // The test is gone; nobody is listening.
        std::process::exit(2);
    }
}

/// In a helper process: the next cue line on stdin, or `None` at EOF (the test is gone).
pub(crate) fn read_cue() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_owned()),
    }
}
