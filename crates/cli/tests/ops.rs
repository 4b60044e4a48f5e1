//! The operator commands (`shoal status`, `stop`, `restart`, `logs`) against real daemons
//! started with `shoal daemon`, as `shoal proxy` would start them: detached, stderr appended to
//! the key's `daemon.log`, readiness on an inherited pipe.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_ipc::{DaemonKey, DaemonPaths};
use shoal_testkit::client::Client;
use shoal_wire::{ClientHello, DaemonHello, Readiness, Role};

/// `shoal`, reading no config file: the user's own must not change what the tests see.
fn shoal_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    command.env("SHOAL_CONFIG", "/nonexistent/shoal-tests/config.toml");
    command
}

/// Bounds every wait for something that should happen promptly; catches hangs, not slowness.
const WAIT: Duration = Duration::from_secs(20);

/// A scratch area: project roots and a short runtime dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path = PathBuf::from(format!("/tmp/so-{name}-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    /// A project root (created), canonical like the daemon records it.
    fn project(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::canonicalize(path).unwrap()
    }

    fn runtime_dir(&self) -> PathBuf {
        self.0.join("rt")
    }

    /// `shoal <args>` with this runtime dir, run in `cwd`, within [`WAIT`].
    fn shoal(&self, cwd: &Path, args: &[&str]) -> Output {
        let child = shoal_command()
            .args(args)
            .current_dir(cwd)
            .env("SHOAL_RUNTIME_DIR", self.runtime_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        output_within(child, WAIT, &format!("shoal {args:?}"))
    }

    /// `shoal status --json`, parsed.
    fn status_json(&self) -> Vec<Value> {
        let output = self.shoal(&self.0, &["status", "--json"]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|error| panic!("{error}: {}", text(&output.stdout)))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Collect a child's output, failing the test (and killing it) if it runs past `within`.
fn output_within(mut child: Child, within: Duration, label: &str) -> Output {
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{label}: still running after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Poll `condition` until it holds, or panic with `label` after `within`.
fn wait_until(label: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {label}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `shoal daemon` started like `shoal proxy` starts one.
struct Daemon {
    child: Child,
    paths: DaemonPaths,
    root: PathBuf,
}

impl Daemon {
    /// Start `shoal daemon --root <root> -- shoal-fixture <args>` and wait for `ready`.
    fn start(scratch: &Scratch, root: &Path, args: &[&str]) -> Daemon {
        let mut argv: Vec<OsString> = vec![shoal_testkit::fixture_bin().into_os_string()];
        argv.extend(args.iter().map(OsString::from));
        let key = DaemonKey::new(
            root.to_path_buf(),
            argv.clone(),
            env!("CARGO_PKG_VERSION"),
            shoal_wire::PROTOCOL,
            vec![],
        );
        let paths = DaemonPaths::new(&scratch.runtime_dir(), &key.id());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .unwrap();
        let log = paths.open_log().unwrap();
        let (reader, writer) = std::io::pipe().unwrap();
        let writer = OwnedFd::from(writer);
        let raw = writer.as_raw_fd();
        let mut command = shoal_command();
        command
            .arg("daemon")
            .arg("--root")
            .arg(root)
            .args(["--ready-fd", "3", "--idle-timeout", "0", "--"])
            .args(&argv)
            .env("SHOAL_RUNTIME_DIR", scratch.runtime_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: dup2 and fcntl are async-signal-safe; the closure allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec set, so clear it instead.
                let result = if raw == 3 {
                    nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
                } else {
                    nix::libc::dup2(raw, 3)
                };
                if result < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(writer);
        let mut line = String::new();
        BufReader::new(std::fs::File::from(OwnedFd::from(reader)))
            .read_line(&mut line)
            .unwrap();
        let daemon = Daemon {
            child,
            paths,
            root: root.to_path_buf(),
        };
        match Readiness::parse(line.trim_end().as_bytes()) {
            Ok(Readiness::Ready { pid, .. }) => assert_eq!(pid, daemon.pid()),
            other => panic!("expected ready, got {other:?} ({line:?})\n{}", daemon.log()),
        }
        daemon
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    fn root(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// SIGKILL it (a crash: its lock and socket stay) and reap it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited (reaping it).
    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// An initialized MCP session on the daemon's socket, as a proxy would open it.
    fn session(&self, name: &str) -> Client {
        let mut stream = UnixStream::connect(&self.paths.socket).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        // Byte by byte, so that nothing after the hello is consumed here.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
            assert!(line.len() <= shoal_wire::HELLO_MAX_LEN);
        }
        DaemonHello::parse(&line).unwrap();
        stream.set_read_timeout(None).unwrap();
        let mut hello = ClientHello {
            role: Role::Session,
            pid: std::process::id(),
            host_pid: None,
            label: name.into(),
            env_differs: Vec::new(),
            routed_frames: false,
            custody: false,
        }
        .to_line()
        .as_bytes()
        .to_vec();
        hello.push(b'\n');
        stream.write_all(&hello).unwrap();
        let mut client = Client::from_unix_stream(stream).unwrap().with_name(name);
        client.set_timeout(WAIT);
        client.initialize(json!({})).unwrap();
        client
    }
}

impl Drop for Daemon {
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

fn echo(client: &mut Client, text: &str) {
    let result = client.call_tool("echo", json!({ "text": text })).unwrap();
    assert_eq!(result["content"][0]["text"], Value::from(text), "{result}");
}

/// The `--json` entry of `daemon`.
fn entry<'a>(entries: &'a [Value], daemon: &Daemon) -> &'a Value {
    let key = daemon.paths.dir.file_name().unwrap().to_str().unwrap();
    entries
        .iter()
        .find(|entry| entry["key"] == key)
        .unwrap_or_else(|| panic!("no entry for {key} in {entries:#?}"))
}

#[test]
fn status_lists_every_daemon_with_its_root_pids_and_clients() {
    let scratch = Scratch::new("status");
    let a = Daemon::start(&scratch, &scratch.project("a"), &[]);
    let b = Daemon::start(&scratch, &scratch.project("b"), &["--name", "b"]);
    let mut first = a.session("first");
    let _second = a.session("second");
    echo(&mut first, "counted");

    let entries = scratch.status_json();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    for (daemon, clients) in [(&a, 2), (&b, 0)] {
        let entry = entry(&entries, daemon);
        assert_eq!(entry["state"], "running", "{entry:#}");
        assert_eq!(entry["root"], daemon.root(), "{entry:#}");
        assert_eq!(entry["pid"], daemon.pid(), "{entry:#}");
        assert_eq!(entry["clients"], clients, "{entry:#}");
        assert_eq!(entry["backend_state"], "running", "{entry:#}");
        assert!(entry["backend_pid"].as_u64().is_some(), "{entry:#}");
        assert_eq!(entry["note"], Value::Null, "{entry:#}");
    }
    assert_eq!(entry(&entries, &b)["argv"][1], "--name");
    assert!(entry(&entries, &a)["requests_served"].as_u64().unwrap() >= 1);

    let output = scratch.shoal(&scratch.0, &["status"]);
    assert_eq!(output.status.code(), Some(0));
    let table = text(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ROOT "), "{table}");
    for (daemon, clients) in [(&a, "2"), (&b, "0")] {
        let row = lines
            .iter()
            .find(|line| line.starts_with(&format!("{} ", daemon.root())))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", daemon.root()));
        let cells: Vec<&str> = row.split_whitespace().collect();
        // ROOT COMMAND... STATE PID BACKEND-PID BACKEND-STATE CLIENTS ...
        let state = cells.iter().position(|cell| *cell == "running").unwrap();
        assert_eq!(cells[state + 1], daemon.pid().to_string(), "{row}");
        assert_eq!(cells[state + 4], clients, "{row}");
        assert!(
            cells[1] == "shoal-fixture",
            "the program's file name: {row}"
        );
    }
}

#[test]
fn a_killed_or_wedged_daemon_is_listed_without_hanging() {
    let scratch = Scratch::new("stale");
    let mut killed = Daemon::start(&scratch, &scratch.project("killed"), &[]);
    let alive = Daemon::start(&scratch, &scratch.project("alive"), &[]);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    // A key dir whose socket accepts but never says hello: a wedged daemon.
    let wedged_dir = scratch.runtime_dir().join("00000000000000aa");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&wedged_dir)
        .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(wedged_dir.join("daemon.sock")).unwrap();

    // Bounded by `output_within`: a hang fails the test instead of stalling it.
    let entries = scratch.status_json();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let stale = entry(&entries, &killed);
    assert_eq!(stale["state"], "stale", "{stale:#}");
    assert_eq!(stale["pid"], killed.pid(), "from meta.json: {stale:#}");
    assert_eq!(stale["root"], killed.root(), "{stale:#}");
    assert_eq!(stale["clients"], Value::Null, "{stale:#}");
    assert!(
        stale["note"].as_str().unwrap().contains("nothing listens"),
        "{stale:#}"
    );
    assert_eq!(entry(&entries, &alive)["state"], "running");
    let wedged = entries
        .iter()
        .find(|entry| entry["key"] == "00000000000000aa")
        .unwrap();
    assert_eq!(wedged["state"], "unresponsive", "{wedged:#}");
    assert!(
        wedged["note"].as_str().unwrap().contains("did not answer")
            && wedged["note"].as_str().unwrap().contains("no meta.json"),
        "{wedged:#}"
    );

    let output = scratch.shoal(&scratch.0, &["status"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "never an error exit for the listing"
    );
    let table = text(&output.stdout);
    assert!(
        table.contains(&format!(
            "note: {} (stale)",
            killed.paths.dir.file_name().unwrap().to_str().unwrap()
        )),
        "{table}"
    );
    assert!(table.contains("A stale daemon is gone"), "{table}");
}

#[test]
fn stop_stops_the_selected_daemon_only_and_waits_until_it_is_gone() {
    let scratch = Scratch::new("stop");
    // A server that ignores stdin EOF makes the stop take the daemon's whole grace period (2 s)
    // before its SIGTERM, so a `shoal stop` that did not wait would return with it still alive.
    let mut a = Daemon::start(&scratch, &scratch.project("a"), &["--ignore-stdin-eof"]);
    let mut b = Daemon::start(&scratch, &scratch.project("b"), &[]);
    let a_backend = entry(&scratch.status_json(), &a)["backend_pid"]
        .as_u64()
        .unwrap();

    // A command that is not a's: nothing matches, nothing stops.
    let output = scratch.shoal(&a.root, &["stop", "--", "other-server"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("none found"),
        "{}",
        text(&output.stderr)
    );

    // No flag: the current project's daemons.
    let output = scratch.shoal(&a.root, &["stop"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "stopped daemon {} of {} ({} --ignore-stdin-eof)\n",
            a.pid(),
            a.root(),
            shoal_testkit::fixture_bin().display()
        )
    );
    // Gone when `shoal stop` returns: its socket and lock are released and its server stopped.
    assert!(!a.paths.socket.exists(), "socket still there");
    assert!(!a.paths.daemon_lock.exists(), "daemon.lock still there");
    assert!(
        !shoal_testkit::process::is_alive(u32::try_from(a_backend).unwrap()),
        "`shoal stop` returned before the daemon had stopped its server"
    );
    wait_until("the stopped daemon exits", WAIT, || a.exited());
    assert!(!b.exited(), "the other daemon was stopped too");
    let entries = scratch.status_json();
    // It exited cleanly, and said so in meta.json: stopped, not stale (which means crashed).
    assert_eq!(entry(&entries, &a)["state"], "stopped");
    assert_eq!(entry(&entries, &a)["note"], "stopped: stop requested");
    assert_eq!(entry(&entries, &b)["state"], "running");
    // The table leaves stopped daemons out, and says how many; --all lists them.
    let table = text(&scratch.shoal(&scratch.0, &["status"]).stdout);
    assert!(!table.contains(a.root()), "{table}");
    assert!(table.contains(b.root()), "{table}");
    assert!(table.contains("1 stopped daemon not shown"), "{table}");
    let all = text(&scratch.shoal(&scratch.0, &["status", "--all"]).stdout);
    assert!(all.contains(a.root()) && all.contains("stopped"), "{all}");

    // Only stale left for a: exit 1, saying so.
    let output = scratch.shoal(&scratch.0, &["stop", "--root", a.root()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("stale"),
        "{}",
        text(&output.stderr)
    );

    // --root with the exact command.
    let fixture = shoal_testkit::fixture_bin();
    let output = scratch.shoal(
        &scratch.0,
        &["stop", "--root", b.root(), "--", fixture.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    wait_until("b exits", WAIT, || b.exited());
}

/// Make `meta.json` say the daemon stopped `ago` before now (what a day's wait would do).
fn age_exit(paths: &DaemonPaths, ago: Duration) {
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&paths.meta).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    meta["exited"]["at_unix_ms"] = json!(u64::try_from((now - ago).as_millis()).unwrap());
    std::fs::write(&paths.meta, serde_json::to_vec(&meta).unwrap()).unwrap();
}

#[test]
fn status_prunes_daemons_stopped_cleanly_more_than_a_day_ago_and_says_so() {
    let scratch = Scratch::new("prune");
    let old = Daemon::start(&scratch, &scratch.project("old"), &[]);
    let recent = Daemon::start(&scratch, &scratch.project("recent"), &[]);
    let mut running = Daemon::start(&scratch, &scratch.project("running"), &[]);
    for daemon in [&old, &recent] {
        let output = scratch.shoal(&daemon.root, &["stop"]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    age_exit(&old.paths, Duration::from_secs(25 * 3600));
    age_exit(&recent.paths, Duration::from_secs(23 * 3600));
    // A stale dir (a crash: no clean exit recorded) is kept however old.
    running.kill();
    let table = text(&scratch.shoal(&scratch.0, &["status", "--all"]).stdout);
    assert!(
        table.ends_with(
            "Pruned 1 daemon that stopped cleanly more than a day ago (their directories and \
             logs are removed).\n"
        ),
        "{table}"
    );
    assert!(!old.paths.dir.exists(), "the old dir is still there");
    assert!(!table.contains(old.root()), "{table}");
    assert!(
        recent.paths.dir.exists() && table.contains(recent.root()),
        "{table}"
    );
    assert!(
        running.paths.dir.exists() && table.contains("stale"),
        "{table}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(scratch.runtime_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    // Nothing more to prune: nothing said.
    let again = text(&scratch.shoal(&scratch.0, &["status"]).stdout);
    assert!(!again.contains("Pruned"), "{again}");
    // The key is usable again: a new daemon starts in a new dir.
    let mut back = Daemon::start(&scratch, &old.root, &[]);
    assert_eq!(entry(&scratch.status_json(), &back)["state"], "running");
    back.kill();
}

#[test]
fn restart_replaces_the_backend_while_a_session_keeps_working() {
    let scratch = Scratch::new("restart");
    let daemon = Daemon::start(&scratch, &scratch.project("a"), &[]);
    let mut client = daemon.session("kept");
    echo(&mut client, "before");
    let before = entry(&scratch.status_json(), &daemon)["backend_pid"]
        .as_u64()
        .unwrap();

    let output = scratch.shoal(&daemon.root, &["restart"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let entries = scratch.status_json();
    let after = entry(&entries, &daemon)["backend_pid"].as_u64().unwrap();
    assert_ne!(before, after, "the backend was not replaced");
    assert_eq!(
        text(&output.stdout),
        format!(
            "restarted the server (now pid {after}) of daemon {} of {} ({})\n",
            daemon.pid(),
            daemon.root(),
            shoal_testkit::fixture_bin().display()
        )
    );
    assert_eq!(entry(&entries, &daemon)["backend_restarts"], 1);
    assert_eq!(entry(&entries, &daemon)["clients"], 1, "the session stayed");
    echo(&mut client, "after");
    assert!(!shoal_testkit::process::is_alive(
        u32::try_from(before).unwrap()
    ));
}

#[test]
fn logs_prints_the_tail_and_follows_appended_lines() {
    let scratch = Scratch::new("logs");
    let daemon = Daemon::start(&scratch, &scratch.project("a"), &[]);
    // The last line a daemon writes at start; after it, the log holds still until asked.
    wait_until("the daemon logged its start", WAIT, || {
        daemon.log().contains("the MCP server is initialized")
    });

    let log = daemon.log();
    let last_two: Vec<&str> = log
        .lines()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let output = scratch.shoal(&daemon.root, &["logs", "-n", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{}\n", last_two.join("\n")));

    // Follow: the tail first, then a line the daemon writes later (a restart request).
    let mut follower = shoal_command()
        .args(["logs", "-f", "-n", "1"])
        .current_dir(&daemon.root)
        .env("SHOAL_RUNTIME_DIR", scratch.runtime_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (sender, lines) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(WAIT).expect("the tail");
    assert_eq!(first, *last_two.last().unwrap());
    let output = scratch.shoal(&daemon.root, &["restart"]);
    assert_eq!(output.status.code(), Some(0));
    let deadline = Instant::now() + WAIT;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the appended line within the deadline");
        if line.contains("backend restart requested") {
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();

    // The log of a daemon that is gone is still readable.
    drop(daemon);
    let output = scratch.shoal(&scratch.0, &["logs", "--all"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("backend restart requested"));
}

#[test]
fn several_logs_get_headers() {
    let scratch = Scratch::new("headers");
    let a = Daemon::start(&scratch, &scratch.project("a"), &[]);
    let b = Daemon::start(&scratch, &scratch.project("a"), &["--name", "b"]);
    let output = scratch.shoal(&a.root, &["logs", "-n", "1"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    for daemon in [&a, &b] {
        let key = daemon.paths.dir.file_name().unwrap().to_str().unwrap();
        assert!(
            out.contains(&format!("==> {} (", daemon.root()))
                && out.contains(&format!("[{key}] <==")),
            "{out}"
        );
    }
}

#[test]
fn nothing_to_act_on_is_exit_1_with_a_message() {
    let scratch = Scratch::new("none");
    let project = scratch.project("p");
    for command in ["stop", "restart", "logs"] {
        let output = scratch.shoal(&project, &[command]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert_eq!(
            text(&output.stderr),
            format!(
                "shoal: failed to find daemons for {}: none found; `shoal status` lists every \
                 daemon; pick one with --root DIR [-- CMD...], or use --all\n",
                project.display()
            ),
            "{command}"
        );
    }
    let output = scratch.shoal(&project, &["stop", "--all"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("first `shoal proxy`"));
    let output = scratch.shoal(&project, &["status"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).starts_with("No shoal daemons are running"));
    assert_eq!(scratch.status_json(), Vec::<Value>::new());
    let output = scratch.shoal(&project, &["stop", "--all", "--root", "/"]);
    assert_eq!(output.status.code(), Some(2), "usage error");
}

#[test]
fn help() {
    for command in ["status", "stop", "restart", "logs", "install"] {
        let output = shoal_command().args([command, "--help"]).output().unwrap();
        assert!(output.status.success());
        insta::assert_snapshot!(format!("{command}_help"), text(&output.stdout));
    }
}
