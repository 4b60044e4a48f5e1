#![allow(
    dead_code,
    reason = "shared by several test binaries, each using a part of it"
)]

//! Helpers for the daemon's real-process tests: a scratch project and runtime dir, a daemon
//! process (this test binary re-executed as `daemon ...`), session and control connections, and
//! waits that always have a deadline and a label.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test helpers: the daemon process logs on stderr, which is its daemon.log"
)]

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_daemon::{DaemonConfig, Tuning};
use shoal_ipc::{DaemonKey, DaemonPaths};
use shoal_testkit::client::Client;
use shoal_wire::{
    ClientHello, ControlRequest, ControlResponse, DaemonHello, PROTOCOL, Readiness, Role,
    StatusReport,
};

/// Bounds every wait for something that should happen promptly (a start, an answer, an exit).
/// Generous for a loaded 2-core machine: it catches hangs, not slowness.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// The version the test daemons claim; part of the key.
pub(crate) const VERSION: &str = "0.0.0-test";

/// A scratch area: a project root and a (short) runtime dir, removed on drop.
pub(crate) struct Scratch {
    pub(crate) base: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) runtime_dir: PathBuf,
}

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        // Short: socket paths live under it.
        let base = PathBuf::from(format!("/tmp/sd-{}-{nanos:x}", std::process::id()));
        let root = base.join(format!("project-{name}"));
        std::fs::create_dir_all(&root).expect("create the scratch project");
        Scratch {
            runtime_dir: base.join("rt"),
            root,
            base,
        }
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// What a test daemon runs and how.
#[derive(Clone, Debug)]
pub(crate) struct DaemonSpec {
    pub(crate) runtime_dir: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) version: String,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) argv: Vec<OsString>,
    /// The daemon's executable; `None` runs this test binary from where it is.
    pub(crate) daemon_program: Option<PathBuf>,
}

impl DaemonSpec {
    /// The fixture server with `args`, never idling out.
    pub(crate) fn fixture(scratch: &Scratch, args: &[&str]) -> DaemonSpec {
        let mut argv = vec![shoal_testkit::fixture_bin().into_os_string()];
        argv.extend(args.iter().map(OsString::from));
        DaemonSpec {
            runtime_dir: scratch.runtime_dir.clone(),
            root: scratch.root.clone(),
            version: VERSION.to_owned(),
            idle_timeout: None,
            argv,
            daemon_program: None,
        }
    }

    pub(crate) fn idle(mut self, timeout: Duration) -> DaemonSpec {
        self.idle_timeout = Some(timeout);
        self
    }

    pub(crate) fn key(&self) -> DaemonKey {
        DaemonKey::new(
            self.root.clone(),
            self.argv.clone(),
            self.version.clone(),
            PROTOCOL,
            vec![],
        )
    }

    pub(crate) fn paths(&self) -> DaemonPaths {
        DaemonPaths::new(&self.runtime_dir, &self.key().id())
    }

    /// The command line of `daemon` mode; see [`daemon_main`].
    fn args(&self) -> Vec<OsString> {
        let idle = self.idle_timeout.map_or("never".to_owned(), |timeout| {
            timeout.as_millis().to_string()
        });
        let mut args: Vec<OsString> = vec![
            "daemon".into(),
            self.runtime_dir.clone().into(),
            self.root.clone().into(),
            self.version.clone().into(),
            idle.into(),
            "--".into(),
        ];
        args.extend(self.argv.iter().cloned());
        args
    }
}

/// A daemon process started by a test.
pub(crate) struct DaemonProcess {
    pub(crate) child: Child,
    pub(crate) paths: DaemonPaths,
    readiness: mpsc::Receiver<Option<String>>,
    label: String,
}

impl DaemonProcess {
    /// Start a daemon (stderr appended to its `daemon.log`, as a spawner does); do not wait.
    pub(crate) fn spawn(spec: &DaemonSpec) -> DaemonProcess {
        Self::spawn_with(spec, |_| {})
    }

    /// Like [`DaemonProcess::spawn`], adjusting the command first (e.g. to run as another user).
    pub(crate) fn spawn_with(
        spec: &DaemonSpec,
        adjust: impl FnOnce(&mut Command),
    ) -> DaemonProcess {
        let paths = spec.paths();
        shoal_lockfile::ensure_private_dir(&spec.runtime_dir).expect("create the runtime dir");
        shoal_lockfile::ensure_private_dir(&paths.dir).expect("create the key dir");
        let log = paths.open_log().expect("open daemon.log");
        let program = match &spec.daemon_program {
            Some(program) => program.clone(),
            None => std::env::current_exe().expect("find the test binary"),
        };
        let mut command = Command::new(program);
        command
            .args(spec.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        adjust(&mut command);
        let mut child = command.spawn().expect("spawn a daemon");
        let label = format!("daemon[{}] for {}", child.id(), spec.root.display());
        let stdout = child.stdout.take().expect("stdout is piped");
        DaemonProcess {
            readiness: lines(stdout),
            child,
            paths,
            label,
        }
    }

    /// Start a daemon and wait for `ready`.
    pub(crate) fn start(spec: &DaemonSpec) -> DaemonProcess {
        let mut daemon = DaemonProcess::spawn(spec);
        match daemon.readiness() {
            Readiness::Ready { pid, .. } => assert_eq!(pid, daemon.pid(), "{}", daemon.label),
            other => panic!(
                "{}: expected ready, got {other:?}\n{}",
                daemon.label,
                daemon.log()
            ),
        }
        daemon
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The one readiness line, within [`WAIT`].
    pub(crate) fn readiness(&mut self) -> Readiness {
        let label = format!("{}: readiness line", self.label);
        match self.readiness.recv_timeout(WAIT) {
            Ok(Some(line)) => {
                Readiness::parse(line.as_bytes()).unwrap_or_else(|error| panic!("{label}: {error}"))
            }
            Ok(None) => panic!("{label}: EOF (the daemon died)\n{}", self.log()),
            Err(_) => panic!("{label}: nothing within {WAIT:?}\n{}", self.log()),
        }
    }

    /// Wait for the process to exit; returns its exit code.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the daemon") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running after {within:?}\n{}",
                self.label,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    pub(crate) fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = shoal_testkit::process::terminate(self.child.id());
            let deadline = Instant::now() + WAIT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lines(stdout: ChildStdout) -> mpsc::Receiver<Option<String>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = sender.send(None);
    });
    receiver
}

/// How a connection attempt went.
#[derive(Debug)]
pub(crate) enum Connect {
    /// Got the daemon's hello.
    Hello(UnixStream, DaemonHello),
    /// `connect` failed (no socket, nobody listening).
    Refused(#[expect(dead_code, reason = "shown by Debug in failures")] std::io::Error),
    /// Connected, but the daemon closed before its hello.
    ClosedBeforeHello,
}

/// Connect and read the daemon's hello (bounded).
pub(crate) fn connect(socket: &Path) -> Connect {
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) => return Connect::Refused(error),
    };
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the hello is consumed here.
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Connect::ClosedBeforeHello,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return Connect::ClosedBeforeHello;
            }
            Err(error) => panic!("read the daemon hello from {}: {error}", socket.display()),
        }
        assert!(line.len() <= shoal_wire::HELLO_MAX_LEN, "hello too long");
    }
    stream
        .set_read_timeout(None)
        .expect("clear the read timeout");
    let hello = DaemonHello::parse(&line).expect("a valid daemon hello");
    Connect::Hello(stream, hello)
}

/// Connect as `role`, answering the hello.
pub(crate) fn connect_as(socket: &Path, role: Role) -> (UnixStream, DaemonHello) {
    let (mut stream, hello) = match connect(socket) {
        Connect::Hello(stream, hello) => (stream, hello),
        other => panic!("connect to {}: {other:?}", socket.display()),
    };
    send_client_hello(&mut stream, role);
    (stream, hello)
}

/// Answer the daemon's hello on `stream`.
pub(crate) fn send_client_hello(stream: &mut UnixStream, role: Role) {
    let mut line = ClientHello {
        role,
        pid: std::process::id(),
        host_pid: None,
        label: "daemon-test".into(),
        env_differs: Vec::new(),
        routed_frames: false,
        custody: false,
    }
    .to_line()
    .as_bytes()
    .to_vec();
    line.push(b'\n');
    stream.write_all(&line).expect("send the client hello");
}

/// An MCP client on a session connection whose hellos are done; not yet initialized.
pub(crate) fn client_on(stream: UnixStream, name: &str) -> Client {
    let mut client = Client::from_unix_stream(stream)
        .expect("wrap the socket")
        .with_name(name);
    client.set_timeout(WAIT);
    client
}

/// A session, initialized.
pub(crate) fn session(socket: &Path, name: &str) -> Client {
    let (stream, _) = connect_as(socket, Role::Session);
    let mut client = client_on(stream, name);
    client
        .initialize(json!({}))
        .unwrap_or_else(|error| panic!("{name}: initialize: {error}"));
    client
}

/// One control exchange on a fresh connection.
pub(crate) fn control(socket: &Path, request: ControlRequest) -> ControlResponse {
    let (stream, _) = connect_as(socket, Role::Control);
    control_on(&stream, &request)
}

pub(crate) fn control_on(mut stream: &UnixStream, request: &ControlRequest) -> ControlResponse {
    let mut line = request.to_line().as_bytes().to_vec();
    line.push(b'\n');
    stream.write_all(&line).expect("send a control request");
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    let mut reader = BufReader::new(stream);
    let mut response = String::new();
    reader
        .read_line(&mut response)
        .expect("read the control response");
    ControlResponse::parse(response.trim_end().as_bytes()).expect("a valid control response")
}

pub(crate) fn status(socket: &Path) -> StatusReport {
    match control(socket, ControlRequest::Status) {
        ControlResponse::Status(report) => report,
        other => panic!("status: {other:?}"),
    }
}

/// Poll `condition` until it holds or `within` passes (then panic with `label`).
pub(crate) fn wait_until(label: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {label}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Echo through `client` and check the answer.
pub(crate) fn echo(client: &mut Client, text: &str) {
    let result = client
        .call_tool("echo", json!({ "text": text }))
        .unwrap_or_else(|error| panic!("echo {text:?}: {error}"));
    assert_eq!(result["content"][0]["text"], Value::from(text), "{result}");
}

/// Lines of a spawn-counter file: one per backend start.
pub(crate) fn spawn_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

// ---------------------------------------------------------------------------------------------
// Helper processes

/// `hold <socket>`: attach an initialized session, say `holding` on stdout, and wait to be killed.
pub(crate) fn hold_main(args: &[String]) -> std::process::ExitCode {
    let client = session(Path::new(&args[0]), "holder");
    println!("holding");
    std::thread::sleep(Duration::from_secs(600));
    drop(client);
    std::process::ExitCode::SUCCESS
}

/// `daemon <runtime dir> <root> <version> <idle ms|never> -- <argv...>`: run a daemon with test
/// timings, the readiness pipe on stdout, logs on stderr.
pub(crate) fn daemon_main(args: &[String]) -> std::process::ExitCode {
    use std::os::fd::AsFd as _;

    let (runtime_dir, root, version, idle) = (&args[0], &args[1], &args[2], &args[3]);
    assert_eq!(args[4], "--");
    let argv: Vec<OsString> = args[5..].iter().map(OsString::from).collect();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    // The readiness pipe is stdout; keep a descriptor of it and point stdout at /dev/null so
    // that nothing else can write there.
    let readiness = std::fs::File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .expect("dup the readiness pipe"),
    );
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    nix::unistd::dup2_stdout(null.as_fd()).expect("point stdout at /dev/null");

    let key = DaemonKey::new(root.into(), argv, version.clone(), PROTOCOL, vec![]);
    let mut config = DaemonConfig::new(key, runtime_dir.into());
    config.idle_timeout = match idle.as_str() {
        "never" => None,
        millis => Some(Duration::from_millis(millis.parse().expect("idle ms"))),
    };
    config.tuning = Tuning {
        stop_grace: Duration::from_millis(500),
        fence_interval: Duration::from_millis(200),
        // A scenario about start-up timeouts shortens it.
        init_timeout: std::env::var("SHOAL_TEST_INIT_TIMEOUT_MS")
            .ok()
            .and_then(|millis| millis.parse().ok())
            .map_or(Duration::from_secs(20), Duration::from_millis),
        restart_backoff: Duration::from_millis(50),
        crash_loop_max: 3,
        crash_loop_window: Duration::from_secs(60),
        fresh_try_after: Duration::from_millis(300),
        stall_timeout: Duration::from_secs(1),
        // A scenario about log rotation shrinks it.
        log_limit: std::env::var("SHOAL_TEST_LOG_LIMIT")
            .ok()
            .and_then(|bytes| bytes.parse().ok())
            .unwrap_or(Tuning::default().log_limit),
        ..Tuning::default()
    };
    match shoal_daemon::run(config, Some(readiness)) {
        Ok(shoal_daemon::Outcome::Exited(reason)) => {
            eprintln!("daemon exited: {reason}");
            std::process::ExitCode::SUCCESS
        }
        Ok(shoal_daemon::Outcome::Held { pid }) => {
            eprintln!("daemon not started: held by {pid:?}");
            std::process::ExitCode::from(3)
        }
        Err(error) => {
            eprintln!("daemon failed: {error}");
            std::process::ExitCode::from(2)
        }
    }
}
