//! Helpers for the real-process tests: scratch directories, contender processes (this test binary
//! re-executed as `child <role> ...`), a start barrier, and waits that always have a deadline and a
//! label.

#![allow(
    dead_code,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test helpers: not every scenario uses every helper, and the runner reports on stdout"
)]

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any single wait in these tests may take before it is a failure.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A private directory under the system temp dir, removed when dropped.
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
}

impl Scratch {
    pub(crate) fn new(label: &str) -> Scratch {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "shoal-lockfile-test-{}-{n}-{label}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        shoal_lockfile::ensure_private_dir(&path).expect("create the scratch directory");
        Scratch { path }
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The names in the directory, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .expect("list the scratch directory")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process running `child <role> <args>`, whose stdout lines arrive on a channel.
pub(crate) struct Contender {
    pub(crate) child: Child,
    lines: mpsc::Receiver<Option<String>>,
    stdin: Option<std::process::ChildStdin>,
    label: String,
}

/// Start `child <role> <args>` with its own stdin pipe (closed by [`Contender::close_stdin`]).
pub(crate) fn spawn(role: &str, args: &[&str]) -> Contender {
    let mut command = child_command(role, args);
    command.stdin(Stdio::piped());
    let mut contender = start(command, format!("{role} {args:?}"));
    contender.stdin = contender.child.stdin.take();
    contender
}

/// The environment variable naming the exit barrier's FIFO for contenders behind a [`Barrier`].
pub(crate) const EXIT_FIFO: &str = "SHOAL_LOCKFILE_TEST_EXIT_FIFO";

/// Start `count` contenders behind two barriers.
///
/// - Go: one stdin pipe shared by all. Each child prints `ready`, then blocks reading exactly one
///   byte; [`Barrier::release`] writes all the bytes in one `write`, so they wake together.
/// - Exit: a FIFO (named in [`EXIT_FIFO`]) that each child opens at start-up and reads until EOF.
///   We hold it open read-write from before the spawn (so the children's opens never block), and
///   closing it ([`Barrier::close`]) is EOF for everyone at once. It is a separate channel so that
///   a fast child waiting for EOF cannot swallow the go bytes meant for the others.
pub(crate) fn spawn_behind_barrier(
    count: usize,
    role: &str,
    args: &[&str],
) -> (Barrier, Vec<Contender>) {
    let fifo_dir = Scratch::new("barrier");
    let fifo = fifo_dir.join("exit");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("create the exit FIFO");
    let exit = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("hold the exit FIFO open");
    let (reader, writer) = std::io::pipe().expect("create the barrier pipe");
    let contenders = (0..count)
        .map(|index| {
            let mut command = child_command(role, args);
            command.env(EXIT_FIFO, &fifo);
            command.stdin(Stdio::from(
                reader.try_clone().expect("share the barrier pipe"),
            ));
            start(command, format!("{role} #{index}"))
        })
        .collect();
    drop(reader);
    (
        Barrier {
            go: writer,
            exit: Some(exit),
            _fifo_dir: fifo_dir,
            count,
        },
        contenders,
    )
}

pub(crate) struct Barrier {
    go: std::io::PipeWriter,
    exit: Option<File>,
    _fifo_dir: Scratch,
    count: usize,
}

impl Barrier {
    /// Let everyone past the go barrier at once.
    pub(crate) fn release(&mut self) {
        let bytes = vec![b'g'; self.count];
        assert!(
            bytes.len() <= 4096,
            "one write of at most PIPE_BUF bytes is atomic"
        );
        self.go.write_all(&bytes).expect("release the barrier");
    }

    /// EOF on the exit FIFO for everyone.
    pub(crate) fn close(&mut self) {
        self.exit = None;
    }
}

/// In a child behind a [`Barrier`]: open the exit FIFO (before reporting ready).
pub(crate) fn open_exit_barrier() -> File {
    let fifo = std::env::var_os(EXIT_FIFO).expect("the exit FIFO is named in the environment");
    File::open(fifo).expect("open the exit FIFO")
}

/// In a child: block until `file` reaches EOF.
pub(crate) fn read_to_eof(mut file: File) {
    let mut sink = [0u8; 64];
    loop {
        match file.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => panic!("read to EOF: {error}"),
        }
    }
}

impl Contender {
    /// The next stdout line, or a failure naming `what` we waited for.
    pub(crate) fn line(&self, what: &str) -> String {
        self.line_before(what, Instant::now() + WAIT)
    }

    pub(crate) fn line_before(&self, what: &str, deadline: Instant) -> String {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(timeout) {
            Ok(Some(line)) => line,
            Ok(None) => panic!("{}: exited before printing {what}", self.label),
            Err(_) => panic!("{}: no {what} within {timeout:?}", self.label),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// SIGKILL the child and reap it.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("kill the child");
        self.wait("exit after SIGKILL");
    }

    /// Wait for the child to exit; returns its status.
    pub(crate) fn wait(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {WAIT:?}",
                self.label
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        // A failed assertion must not leave contenders behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: print a line for the parent (stdout is its channel).
pub(crate) fn report(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").expect("report to the parent");
    stdout.flush().expect("report to the parent");
}

/// In a child: block until one byte arrives on stdin (the first barrier).
pub(crate) fn wait_for_go() {
    let mut stdin = raw_stdin();
    let mut byte = [0u8; 1];
    loop {
        match stdin.read(&mut byte) {
            Ok(1) => return,
            Ok(_) => panic!("stdin closed before the barrier opened"),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => panic!("read the barrier: {error}"),
        }
    }
}

/// In a child: block until stdin reaches EOF (the parent says "exit").
pub(crate) fn wait_for_eof() {
    read_to_eof(raw_stdin());
}

/// Stdin without std's buffering, so that a child takes exactly the bytes it reads.
fn raw_stdin() -> File {
    File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .expect("duplicate stdin"),
    )
}

fn child_command(role: &str, args: &[&str]) -> Command {
    let exe = std::env::current_exe().expect("find the test binary");
    let mut command = Command::new(exe);
    command.arg("child").arg(role).args(args);
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    command
}

fn start(mut command: Command, label: String) -> Contender {
    let mut child = command.spawn().expect("spawn a contender");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || forward_lines(stdout, &sender));
    Contender {
        child,
        lines,
        stdin: None,
        label,
    }
}

fn forward_lines(stdout: ChildStdout, sender: &mpsc::Sender<Option<String>>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if sender.send(Some(line)).is_err() {
            return;
        }
    }
    let _ = sender.send(None);
}

/// Whether a process with this pid exists (`kill(pid, 0)` succeeds or says EPERM).
pub(crate) fn process_exists(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid fits in pid_t"));
    !matches!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    )
}
