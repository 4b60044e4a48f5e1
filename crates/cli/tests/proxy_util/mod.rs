//! Helpers for the `shoal proxy` tests: a scratch project and runtime dir (whose daemons are stopped
//! on drop), proxies driven by a test MCP client, a host process (this test binary re-executed as
//! `host ...`), control requests to the daemon, and waits that always have a deadline and a label.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test helpers: the host process reports on stdout, the runner prints figures"
)]

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_ipc::{DaemonKey, DaemonPaths};
use shoal_testkit::client::Client;
use shoal_wire::{
    ClientHello, ControlRequest, ControlResponse, DaemonHello, PROTOCOL, Role, StatusReport,
};

/// Bounds every wait for something that should happen promptly. Generous for a loaded 2-core
/// machine: it catches hangs, not slowness.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// What `SHOAL_CONFIG` is set to for every `shoal` the tests start (see `main`): no file, so that
/// the user's own config cannot change what the tests see.
pub(crate) const NO_CONFIG: &str = "/nonexistent/shoal-tests/config.toml";

/// A scratch area: a project root, a short runtime dir, files for stderr and spawn counters.
/// On drop, every daemon in the runtime dir is asked to stop, then everything is removed.
pub(crate) struct Scratch {
    pub(crate) base: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) runtime_dir: PathBuf,
    next_log: std::cell::Cell<u32>,
}

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        // Short: socket paths live under it.
        let base = PathBuf::from(format!("/tmp/sp-{name}-{}-{nanos:x}", std::process::id()));
        let root = base.join("project");
        std::fs::create_dir_all(&root).expect("create the scratch project");
        Scratch {
            runtime_dir: base.join("rt"),
            root: std::fs::canonicalize(&root).expect("canonicalise the project"),
            base,
            next_log: std::cell::Cell::new(0),
        }
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }

    /// The fixture server's command line with `args`, counting its starts in `spawns`.
    pub(crate) fn server(&self, args: &[&str]) -> Vec<OsString> {
        let mut argv = vec![
            shoal_testkit::fixture_bin().into_os_string(),
            "--spawn-counter".into(),
            self.file("spawns").into_os_string(),
        ];
        argv.extend(args.iter().map(OsString::from));
        argv
    }

    /// The daemon files for `server` (as `shoal proxy --root <root>` computes them).
    pub(crate) fn paths(&self, server: &[OsString]) -> DaemonPaths {
        let key = DaemonKey::new(
            self.root.clone(),
            server.to_vec(),
            env!("CARGO_PKG_VERSION"),
            PROTOCOL,
            vec![],
        );
        DaemonPaths::new(&self.runtime_dir, &key.id())
    }

    /// Backend starts so far.
    pub(crate) fn spawns(&self) -> usize {
        std::fs::read_to_string(self.file("spawns")).map_or(0, |text| text.lines().count())
    }

    /// `shoal proxy --root <root> --idle-timeout 60 <extra> -- <server>`, with this runtime dir,
    /// stderr to a file of its own (see [`Scratch::stderr_of`]).
    pub(crate) fn proxy(&self, extra: &[&str], server: &[OsString]) -> (Command, PathBuf) {
        let mut command = Command::new(SHOAL);
        command.args(self.proxy_args(extra, server));
        command.env("SHOAL_RUNTIME_DIR", &self.runtime_dir);
        command.env_remove("SHOAL_IDLE_TIMEOUT");
        command.env_remove("SHOAL_LOG");
        let n = self.next_log.get();
        self.next_log.set(n + 1);
        let stderr = self.file(&format!("proxy-{n}.stderr"));
        command.stderr(File::create(&stderr).expect("create a stderr file"));
        (command, stderr)
    }

    pub(crate) fn proxy_args(&self, extra: &[&str], server: &[OsString]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "proxy".into(),
            "--root".into(),
            self.root.clone().into(),
            "--idle-timeout".into(),
            "60".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        args.push("--".into());
        args.extend(server.iter().cloned());
        args
    }

    /// A proxy driven by a test client (the test is its host).
    pub(crate) fn client(&self, name: &str, server: &[OsString]) -> Session {
        let (command, stderr) = self.proxy(&[], server);
        Session::spawn(name, command, stderr)
    }
}

/// Ask every daemon under `runtime_dir` to stop.
pub(crate) fn stop_daemons_in(runtime_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(runtime_dir) {
        for entry in entries.flatten() {
            let socket = entry.path().join("daemon.sock");
            if let Some(stream) = connect_as(&socket, Role::Control) {
                let _ = control_on(&stream, &ControlRequest::Stop);
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        stop_daemons_in(&self.runtime_dir);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A proxy and the test client acting as its host.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) stderr: PathBuf,
}

impl Session {
    /// A proxy started by `command` (stderr to `stderr`), driven by a test client named `name`.
    pub(crate) fn spawn(name: &str, command: Command, stderr: PathBuf) -> Session {
        let client = Client::spawn(command)
            .unwrap_or_else(|error| panic!("{name}: spawn shoal proxy: {error}"))
            .with_name(name);
        let mut session = Session { client, stderr };
        session.client.set_timeout(WAIT);
        session
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.client.pid().expect("a spawned proxy")
    }

    pub(crate) fn initialize(&mut self) {
        let name = self.client.name().to_owned();
        if let Err(error) = self.client.initialize(json!({})) {
            panic!("{name}: initialize: {error}\nstderr:\n{}", self.stderr());
        }
    }

    /// Echo `text` and check the answer.
    /// An echo after its daemon was killed: a request written before the proxy saw the loss is
    /// answered -32081 (retry it), as the proxy promises; any other error fails.
    pub(crate) fn echo_after_loss(&mut self, text: &str) {
        let name = self.client.name().to_owned();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match self.client.call_tool("echo", json!({ "text": text })) {
                Ok(result) => {
                    assert_eq!(result["content"][0]["text"], Value::from(text), "{result}");
                    return;
                }
                Err(shoal_testkit::client::Error::Rpc { error, .. })
                    if error.code == -32081 && std::time::Instant::now() < deadline => {}
                Err(error) => panic!("{name}: echo {text:?}: {error}\nstderr:\n{}", self.stderr()),
            }
        }
    }

    pub(crate) fn echo(&mut self, text: &str) {
        let name = self.client.name().to_owned();
        match self.client.call_tool("echo", json!({ "text": text })) {
            Ok(result) => assert_eq!(result["content"][0]["text"], Value::from(text), "{result}"),
            Err(error) => panic!("{name}: echo {text:?}: {error}\nstderr:\n{}", self.stderr()),
        }
    }
}

/// The hello of the daemon at `socket` (then the connection is closed, before ours).
pub(crate) fn daemon_hello(socket: &Path) -> DaemonHello {
    let stream = UnixStream::connect(socket).expect("connect to the daemon");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    DaemonHello::parse(line.trim_end().as_bytes()).expect("a daemon hello")
}

/// Connect to a daemon socket and do the hellos as `role`; `None` if nobody answers.
pub(crate) fn connect_as(socket: &Path, role: Role) -> Option<UnixStream> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the hello is consumed here.
    loop {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) if line.len() < shoal_wire::HELLO_MAX_LEN => line.push(byte[0]),
            _ => return None,
        }
    }
    DaemonHello::parse(&line).ok()?;
    let mut hello = ClientHello {
        role,
        pid: std::process::id(),
        host_pid: None,
        label: "proxy-test".into(),
        env_differs: Vec::new(),
        routed_frames: false,
        custody: false,
    }
    .to_line()
    .as_bytes()
    .to_vec();
    hello.push(b'\n');
    stream.write_all(&hello).ok()?;
    Some(stream)
}

pub(crate) fn control_on(
    mut stream: &UnixStream,
    request: &ControlRequest,
) -> Option<ControlResponse> {
    let mut line = request.to_line().as_bytes().to_vec();
    line.push(b'\n');
    stream.write_all(&line).ok()?;
    let mut response = String::new();
    BufReader::new(stream).read_line(&mut response).ok()?;
    ControlResponse::parse(response.trim_end().as_bytes()).ok()
}

/// The daemon's status, or `None` if no daemon answers at `socket`.
pub(crate) fn status(socket: &Path) -> Option<StatusReport> {
    let stream = connect_as(socket, Role::Control)?;
    match control_on(&stream, &ControlRequest::Status)? {
        ControlResponse::Status(report) => Some(report),
        _ => None,
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

/// Whether `/proc/<pid>` is gone: the process exited *and* was reaped (a zombie still has one).
pub(crate) fn reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Wait for a child to exit; its exit code.
pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "pid {} still running after {within:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// The host process

/// A host (this binary as `host <shoal args>`) and the proxy it spawned, seen from the test. The
/// proxy's stdin is the host's stdin, a pipe the test writes to and keeps open when the host dies,
/// so that only the watchdog can tell the proxy its host is gone.
pub(crate) struct Host {
    pub(crate) child: Child,
    pub(crate) input: ChildStdin,
    lines: mpsc::Receiver<Option<String>>,
    pub(crate) proxy_pid: u32,
}

impl Host {
    pub(crate) fn spawn(scratch: &Scratch, args: &[OsString]) -> Host {
        let mut child = Command::new(std::env::current_exe().expect("find the test binary"))
            .arg("host")
            .args(args)
            .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
            .env_remove("SHOAL_IDLE_TIMEOUT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(scratch.file("host.stderr")).expect("create host.stderr"))
            .spawn()
            .expect("spawn the host");
        let input = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = sender.send(None);
        });
        let mut host = Host {
            child,
            input,
            lines,
            proxy_pid: 0,
        };
        let first = host.line("the proxy's pid");
        host.proxy_pid = first
            .strip_prefix("proxy ")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("expected `proxy <pid>`, got {first:?}"));
        host
    }

    /// Write one JSON-RPC message to the proxy's stdin.
    pub(crate) fn send(&mut self, message: &Value) {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        self.input.write_all(&line).expect("write to the proxy");
    }

    /// The next line the proxy wrote (relayed by the host).
    pub(crate) fn line(&mut self, what: &str) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(Some(line)) => line,
            Ok(None) => panic!("{what}: the host's output closed"),
            Err(_) => panic!("{what}: nothing within {WAIT:?}"),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = shoal_testkit::process::kill(self.proxy_pid);
    }
}

/// `host-inherit <pid file> <shoal args...>`: spawn `shoal <args>` with our stdin and stdout (so
/// that whoever holds our stdout decides whether the proxy's writes go anywhere), write its pid
/// to the file, then wait to be killed.
pub(crate) fn host_inherit_main(args: &[String]) -> ExitCode {
    let (pid_file, args) = args.split_first().expect("host-inherit <pid file> <args>");
    let mut proxy = Command::new(SHOAL)
        .args(args)
        .spawn()
        .expect("spawn shoal proxy");
    // Temp + rename: `read_pid_file` must never see the file created but not yet written.
    let temporary = format!("{pid_file}.tmp");
    std::fs::write(&temporary, format!("{}\n", proxy.id())).expect("write the pid file");
    std::fs::rename(&temporary, pid_file).expect("publish the pid file");
    // Reap the proxy when it exits (so that it is not a zombie), then wait to be killed.
    let _ = proxy.wait();
    std::thread::sleep(Duration::from_secs(600));
    ExitCode::SUCCESS
}

/// `host <shoal args...>`: spawn `shoal <args>` with our stdin, relay its stdout to ours after a
/// `proxy <pid>` line, then wait to be killed.
pub(crate) fn host_main(args: &[String]) -> ExitCode {
    let mut proxy = Command::new(SHOAL)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn shoal proxy");
    println!("proxy {}", proxy.id());
    let stdout = proxy.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        println!("{line}");
    }
    // Stay alive (the test kills us); reap the proxy if it exits first.
    let _ = proxy.wait();
    std::thread::sleep(Duration::from_secs(600));
    ExitCode::SUCCESS
}
