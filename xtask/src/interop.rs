//! `cargo xtask interop`: real third-party MCP peers talk through `shoal proxy`.
//!
//! The server is the reference `@modelcontextprotocol/server-everything` (npm); the clients are
//! the official Python SDK (`mcp` on PyPI) and the official TypeScript SDK (npm); the host is
//! Gemini CLI (npm). All are pinned in `xtask/interop/` and installed into `target/interop/`
//! (never globally) when missing or when the pins changed. What runs (`docs/interop.md` is the
//! user's view):
//!
//! - `xtask/interop/clients.py` opens four client sessions at once (three Python SDK sessions,
//!   and one TypeScript SDK session run by `ts-client.mjs`), each through its own
//!   `shoal proxy --no-fallback -- node <everything server>`, with a private `SHOAL_RUNTIME_DIR`
//!   (so it never touches the user's daemons), and drives them: tool calls with progress,
//!   sampling round trips, a resource subscription and its updates, and a tool call in flight in
//!   every session when the daemon is SIGKILLed; after the kill the same sessions keep working.
//! - This module is the coordinator. At each `sync` line of the script it checks shoal from
//!   outside (`shoal status --json` and `/proc`): one daemon and one server process serve every
//!   session; at `mid-call` (every session has a call in flight and has seen its progress) it
//!   SIGKILLs the daemon; at `recovered` it checks that exactly one new daemon and server took
//!   over and the old ones are gone. At the end `shoal stop --all` must leave no daemon and no
//!   server process.
//!
//! Synchronisation is by events only (the script's lines, which follow the SDKs' answers and
//! notifications); a global deadline kills the script, its proxies and the daemons, and fails the
//! run.
//!
//! Then [`eras`] runs clients of every MCP era (Python SDK `legacy`, `auto`, `2026-07-28`, and
//! the TypeScript SDK) at once on one shared 2026-07-28 server, each compared with the same
//! client spoken to the server directly.
//!
//! Then [`host`] runs a real MCP host, Gemini CLI, with shoal: the host's own `mcp add`, `shoal
//! install` on the config it wrote, and the host's own connection checks, two of them at once.

mod eras;
mod host;
mod matrix;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use shoal_testkit::process::{is_alive, wait_for_exit};

use crate::util::{cargo, project_root, run_command, say, target_dir};

/// The whole run, from the first proxy to the last check, must fit in this; a hang anywhere is a
/// failure after it, never a stuck CI job. A normal run takes about five seconds.
const GLOBAL_DEADLINE: Duration = Duration::from_secs(180);
/// How long a killed or stopped process may take to disappear.
const EXIT_WAIT: Duration = Duration::from_secs(15);
/// Concurrent client sessions of the Python SDK; one of the TypeScript SDK joins them.
const PYTHON_CLIENTS: usize = 3;
/// Every concurrent client session.
const CLIENTS: usize = PYTHON_CLIENTS + 1;
/// The oldest Node.js the pinned everything server (and its dependencies) supports.
const NODE_MIN_MAJOR: u32 = 20;
/// The oldest Python the driver (`asyncio.timeout`) and the pinned wheels support.
const PYTHON_MIN: (u32, u32) = (3, 11);

/// Run interop, installing the pinned peers first if needed; with `install_only`, stop after
/// installing (what `.ci/run` calls, so the install is a visible step of its own).
pub(crate) fn run(install_only: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let tools = Tools::find()?;
    let peers = install(&tools)?;
    if install_only {
        say(&format!(
            "interop: peers installed in {} ({:.1?})",
            interop_dir().display(),
            started.elapsed()
        ));
        return Ok(());
    }

    // Debug, like the test suite and the races: CI has built it already, and interop checks
    // behaviour, not speed.
    let mut build = cargo();
    build.args(["build", "--quiet", "-p", "shoal", "--bin", "shoal"]);
    run_command(build)?;
    let shoal = target_dir().join("debug").join("shoal");

    let scratch = Scratch::new()?;
    let mut run = Run {
        shoal,
        tools,
        peers,
        scratch,
        script_group: None,
        daemons: BTreeSet::new(),
        checks: 0,
        finished: false,
    };
    let outcome = run.drive();
    let outcome = outcome.and_then(|()| run.stop_all());
    match &outcome {
        Ok(()) => {
            say(&format!(
                "interop: SDK stage: all {} checks passed in {:.1?}: {CLIENTS} clients ({}) \
                 through one shoal daemon to {}, a daemon SIGKILL survived, nothing left running",
                run.checks,
                started.elapsed(),
                run.peers.client_version,
                run.peers.server_version,
            ));
        }
        Err(_) => run.report_failure(),
    }
    outcome?;

    // The SDK stage has stopped everything it started; the era and host stages have their own
    // runtime dirs, so none sees another's daemons.
    eras::run(
        &run.shoal,
        &run.peers.python,
        &run.scratch.base.join("eras-run"),
    )?;
    matrix::run(&matrix::Setup {
        shoal: &run.shoal,
        node: &run.tools.node,
        npm_dir: &interop_dir().join("npm"),
        python: &run.peers.python,
        pythons: &run.peers.matrix_pythons,
        dir: run.scratch.base.join("matrix"),
    })?;
    host::run(&host::Setup {
        shoal: &run.shoal,
        node: &run.tools.node,
        server: &run.peers.server,
        gemini: &run.peers.gemini,
        dir: run.scratch.base.join("gemini"),
    })?;
    run.finished = true;
    say(&format!("interop: all passed in {:.1?}", started.elapsed()));
    Ok(())
}

/// The interpreters interop needs from the machine.
struct Tools {
    node: PathBuf,
    npm: PathBuf,
    python: PathBuf,
}

impl Tools {
    fn find() -> anyhow::Result<Tools> {
        const NODE_HINT: &str = "interop runs the reference MCP server on Node.js: install Node.js \
            20 or newer with npm (e.g. `apt-get install nodejs npm`, or from https://nodejs.org)";
        const PYTHON_HINT: &str = "interop runs the official MCP Python SDK: install Python 3.11 \
            or newer with its venv module (e.g. `apt-get install python3 python3-venv`)";
        let node = which("node").context(NODE_HINT)?;
        let npm = which("npm").context(NODE_HINT)?;
        let python = which("python3").context(PYTHON_HINT)?;

        let version = output(Command::new(&node).arg("--version")).context(NODE_HINT)?;
        let major = version
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok())
            .with_context(|| format!("cannot read node's version from {version:?}"))?;
        ensure!(
            major >= NODE_MIN_MAJOR,
            "{} is Node.js {}; {NODE_HINT}",
            node.display(),
            version.trim()
        );
        let version = output(Command::new(&python).args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ]))
        .context(PYTHON_HINT)?;
        let parsed: Vec<u32> = version
            .split_whitespace()
            .filter_map(|part| part.parse().ok())
            .collect();
        ensure!(
            parsed.len() == 2 && (parsed[0], parsed[1]) >= PYTHON_MIN,
            "{} is Python {}; {PYTHON_HINT}",
            python.display(),
            version.trim()
        );
        Ok(Tools { node, npm, python })
    }
}

/// The installed peers.
struct Peers {
    /// The everything server's entry point (`dist/index.js`).
    server: PathBuf,
    /// The venv's interpreter, which has `mcp` installed.
    python: PathBuf,
    /// `ts-client.mjs`, copied next to the installed TypeScript SDK so that its imports resolve.
    ts_client: PathBuf,
    /// The MCP host of the host stage.
    gemini: host::Gemini,
    /// `(mcp version, interpreter)` of each venv of the matrix stage.
    matrix_pythons: Vec<(String, PathBuf)>,
    server_version: String,
    client_version: String,
}

fn interop_dir() -> PathBuf {
    target_dir().join("interop")
}

fn manifests_dir() -> PathBuf {
    project_root().join("xtask").join("interop")
}

/// Install the pinned peers into `target/interop/` unless what is there was installed from the
/// current manifests (a stamp file holds the manifests it was installed from).
fn install(tools: &Tools) -> anyhow::Result<Peers> {
    let manifests = manifests_dir();
    let read = |name: &str| {
        let path = manifests.join(name);
        std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))
    };
    let package_json = read("package.json")?;
    let package_lock = read("package-lock.json")?;
    let requirements = read("requirements.txt")?;

    // npm: `npm ci` installs exactly the lock file (integrity hashes checked) into its own dir.
    let npm_dir = interop_dir().join("npm");
    let server = npm_dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let gemini_manifest = npm_dir.join("node_modules/@google/gemini-cli/package.json");
    let stamp = [package_json.as_slice(), b"\0", package_lock.as_slice()].concat();
    if !is_installed(&npm_dir, &stamp, &[&server, &gemini_manifest]) {
        say(&format!(
            "interop: installing the pinned npm peers into {}",
            npm_dir.display()
        ));
        let _ = std::fs::remove_dir_all(&npm_dir);
        std::fs::create_dir_all(&npm_dir)
            .with_context(|| format!("failed to create {}", npm_dir.display()))?;
        std::fs::write(npm_dir.join("package.json"), &package_json)?;
        std::fs::write(npm_dir.join("package-lock.json"), &package_lock)?;
        let mut npm = Command::new(&tools.npm);
        npm.current_dir(&npm_dir)
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .args(["--loglevel", "error"]);
        run_command(npm).context("failed to install the npm peers of interop")?;
        for installed in [&server, &gemini_manifest] {
            ensure!(
                installed.is_file(),
                "npm ci succeeded but {} is missing",
                installed.display()
            );
        }
        write_stamp(&npm_dir, &stamp)?;
    }

    // PyPI: a venv of its own, every wheel pinned and hash-checked.
    let venv = interop_dir().join("venv");
    let python = venv.join("bin").join("python");
    let python_version = output(Command::new(&tools.python).arg("--version"))?;
    let stamp = [requirements.as_slice(), b"\0", python_version.as_bytes()].concat();
    if !is_installed(&venv, &stamp, &[&python]) {
        say(&format!(
            "interop: installing the pinned PyPI peers into {}",
            venv.display()
        ));
        let _ = std::fs::remove_dir_all(&venv);
        let mut create = Command::new(&tools.python);
        create.arg("-m").arg("venv").arg(&venv);
        run_command(create)
            .context("failed to create the interop venv; on Debian/Ubuntu install python3-venv")?;
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "install", "--quiet", "--no-input"])
            .args(["--disable-pip-version-check", "--require-hashes"])
            .args(["--only-binary", ":all:", "--requirement"])
            .arg(manifests.join("requirements.txt"));
        run_command(pip).context("failed to install the PyPI peers of interop")?;
        write_stamp(&venv, &stamp)?;
    }
    let matrix_pythons =
        matrix::install(&tools.python, &python_version, &interop_dir(), &manifests)?;

    let ts_client = npm_dir.join("ts-client.mjs");
    std::fs::copy(manifests.join("ts-client.mjs"), &ts_client)
        .with_context(|| format!("failed to copy ts-client.mjs to {}", ts_client.display()))?;

    let server_manifest =
        npm_dir.join("node_modules/@modelcontextprotocol/server-everything/package.json");
    let server_version =
        serde_json::from_slice::<Value>(&std::fs::read(&server_manifest)?)?["version"]
            .as_str()
            .map(|version| format!("server-everything {version}"))
            .context("the everything server's package.json has no version")?;
    let sdk_manifest = npm_dir.join("node_modules/@modelcontextprotocol/sdk/package.json");
    let sdk_version = serde_json::from_slice::<Value>(&std::fs::read(&sdk_manifest)?)?["version"]
        .as_str()
        .map(str::to_owned)
        .context("the TypeScript SDK's package.json has no version")?;
    let python_sdk = output(Command::new(&python).args([
        "-c",
        "import importlib.metadata as m; print(m.version('mcp'))",
    ]))?;
    let client_version = format!(
        "{PYTHON_CLIENTS} x Python SDK mcp {}, 1 x TypeScript SDK {sdk_version}",
        python_sdk.trim()
    );
    let gemini = host::Gemini::installed(&gemini_manifest)?;
    Ok(Peers {
        server,
        python,
        ts_client,
        gemini,
        matrix_pythons,
        server_version,
        client_version,
    })
}

const STAMP: &str = ".shoal-installed-from";

fn is_installed(dir: &Path, stamp: &[u8], must_exist: &[&Path]) -> bool {
    must_exist.iter().all(|path| path.is_file())
        && std::fs::read(dir.join(STAMP)).is_ok_and(|found| found == stamp)
}

fn write_stamp(dir: &Path, stamp: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(STAMP);
    std::fs::write(&path, stamp).with_context(|| format!("failed to write {}", path.display()))
}

/// Private, short dirs for one run (socket paths live under the runtime dir, so it must be
/// short). Kept after a failure, for its daemon logs.
struct Scratch {
    base: PathBuf,
    root: PathBuf,
    runtime_dir: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let base = PathBuf::from(format!("/tmp/shoal-interop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("project");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("failed to create {}", root.display()))?;
        Ok(Scratch {
            root: std::fs::canonicalize(&root)?,
            runtime_dir: base.join("run"),
            base,
        })
    }
}

/// What one line of the script (or its end) says.
enum Message {
    Line(String),
    Exited(std::io::Result<ExitStatus>),
}

/// One daemon as `shoal status --json` shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Daemon {
    pid: u32,
    backend_pid: u32,
}

struct Run {
    shoal: PathBuf,
    tools: Tools,
    peers: Peers,
    scratch: Scratch,
    /// The script's process group, killed if the run fails.
    script_group: Option<u32>,
    /// Every daemon and backend pid seen, checked gone at the end.
    daemons: BTreeSet<(u32, u32)>,
    checks: usize,
    finished: bool,
}

impl Run {
    fn drive(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + GLOBAL_DEADLINE;
        let mut child = Command::new(&self.peers.python)
            .arg(manifests_dir().join("clients.py"))
            .arg("--shoal")
            .arg(&self.shoal)
            .arg("--root")
            .arg(&self.scratch.root)
            .arg("--runtime-dir")
            .arg(&self.scratch.runtime_dir)
            .arg("--node")
            .arg(&self.tools.node)
            .arg("--server")
            .arg(&self.peers.server)
            .arg("--python-clients")
            .arg(PYTHON_CLIENTS.to_string())
            .arg("--ts-client")
            .arg(&self.peers.ts_client)
            .current_dir(&self.scratch.base)
            .env("PYTHONUNBUFFERED", "1")
            .env("SHOAL_RUNTIME_DIR", &self.scratch.runtime_dir)
            // Its own group, so that a failure can kill it and ts-client.mjs at once (the Python
            // SDK starts each proxy in a session of its own: `report_failure` finds those).
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("failed to start xtask/interop/clients.py")?;
        let pid = child.id();
        self.script_group = Some(pid);
        let mut stdin = child.stdin.take().context("the script's stdin is piped")?;
        let stdout = child
            .stdout
            .take()
            .context("the script's stdout is piped")?;
        // One thread reads the script's lines, then waits for it to exit: every line reaches the
        // loop below before the exit does.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Message::Line(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Message::Exited(child.wait()));
        });

        let mut before: Option<Daemon> = None;
        let mut failure: Option<String> = None;
        let mut done = false;
        let status = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(message) = rx.recv_timeout(left) else {
                // Ask the script where its tasks are stuck (it prints them to stderr), give it a
                // moment, then fail; `report_failure` kills everything.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(pid)?),
                    nix::sys::signal::Signal::SIGUSR1,
                );
                let _ = rx.recv_timeout(Duration::from_secs(2));
                bail!(
                    "interop did not finish within {GLOBAL_DEADLINE:?} (after {} checks passed); \
                     killed it",
                    self.checks
                );
            };
            let line = match message {
                Message::Line(line) => line,
                Message::Exited(status) => {
                    break status.context("failed to wait for the client script")?;
                }
            };
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                say(&format!("interop: clients.py: {line}"));
                continue;
            };
            match event["event"].as_str() {
                Some("check") => {
                    self.checks += 1;
                    say(&format!(
                        "interop: ok  {}: {}",
                        event["name"].as_str().unwrap_or("?"),
                        event["detail"].as_str().unwrap_or("")
                    ));
                }
                Some("sync") => {
                    let phase = event["phase"].as_str().unwrap_or("?").to_owned();
                    let answer = self.sync(&phase, &mut before)?;
                    writeln!(stdin, "{answer}")
                        .and_then(|()| stdin.flush())
                        .with_context(|| format!("failed to answer the script at {phase}"))?;
                }
                Some("fail") => failure = event["reason"].as_str().map(str::to_owned),
                Some("done") => done = true,
                _ => say(&format!("interop: clients.py: {line}")),
            }
        };
        if let Some(reason) = failure {
            bail!("interop failed: {reason}");
        }
        ensure!(
            status.success() && done,
            "the client script exited with {status} before it was done"
        );
        self.script_group = None;
        Ok(())
    }

    /// Check shoal from outside at the script's sync points; the answer goes to its stdin.
    fn sync(&mut self, phase: &str, before: &mut Option<Daemon>) -> anyhow::Result<String> {
        match phase {
            "connected" => {
                let daemon = self.one_daemon(CLIENTS)?;
                self.pass(
                    "one daemon",
                    &format!(
                        "{CLIENTS} clients share daemon {} and server {} (the only one running)",
                        daemon.pid, daemon.backend_pid
                    ),
                );
                *before = Some(daemon);
                Ok("ok".into())
            }
            "mid-call" => {
                let daemon = self.one_daemon(CLIENTS)?;
                ensure!(
                    Some(daemon) == *before,
                    "the daemon or its server changed before the kill: {} / {} then {} / {}",
                    before.map_or(0, |d| d.pid),
                    before.map_or(0, |d| d.backend_pid),
                    daemon.pid,
                    daemon.backend_pid
                );
                self.pass(
                    "same daemon and server for every phase before the kill",
                    "no restart",
                );
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(daemon.pid)?),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .with_context(|| format!("failed to SIGKILL daemon {}", daemon.pid))?;
                say(&format!("interop: SIGKILLed daemon {}", daemon.pid));
                Ok(format!("killed {}", daemon.pid))
            }
            "recovered" => {
                let old = before.context("recovered before connected")?;
                ensure!(
                    wait_for_exit(old.pid, EXIT_WAIT),
                    "the SIGKILLed daemon {} is still running",
                    old.pid
                );
                ensure!(
                    wait_for_exit(old.backend_pid, EXIT_WAIT),
                    "the server {} of the SIGKILLed daemon is still running",
                    old.backend_pid
                );
                let daemon = self.one_daemon(CLIENTS)?;
                ensure!(
                    daemon.pid != old.pid && daemon.backend_pid != old.backend_pid,
                    "after the kill, status shows daemon {} and server {} again",
                    daemon.pid,
                    daemon.backend_pid
                );
                self.pass(
                    "one new daemon",
                    &format!(
                        "the same {CLIENTS} sessions moved to daemon {} and server {}; the killed \
                         daemon's server is gone",
                        daemon.pid, daemon.backend_pid
                    ),
                );
                Ok("ok".into())
            }
            other => bail!("the client script sent an unknown sync point {other:?}"),
        }
    }

    /// `shoal status --json` shows exactly one daemon (one key: every session computed the same
    /// one), running, under our runtime dir, with `clients` sessions and a server that never
    /// restarted; and `/proc` shows exactly that server process for the project.
    fn one_daemon(&mut self, clients: usize) -> anyhow::Result<Daemon> {
        let status = self.status()?;
        ensure!(
            status.len() == 1 && status[0]["state"] == "running",
            "expected exactly one daemon, running; status shows {}",
            Value::from(status.clone())
        );
        let entry = &status[0];
        let dir = entry["dir"].as_str().unwrap_or_default();
        ensure!(
            Path::new(dir).starts_with(&self.scratch.runtime_dir),
            "the daemon's dir {dir} is not under the private runtime dir {}",
            self.scratch.runtime_dir.display()
        );
        ensure!(
            entry["clients"].as_u64() == Some(clients as u64)
                && entry["backend_state"] == "running"
                && entry["backend_restarts"] == 0,
            "expected {clients} clients and a running server that never restarted: {entry}"
        );
        let pid = as_pid(&entry["pid"]).with_context(|| format!("no daemon pid in {entry}"))?;
        let backend_pid =
            as_pid(&entry["backend_pid"]).with_context(|| format!("no server pid in {entry}"))?;
        let servers = self.server_processes();
        ensure!(
            servers == [backend_pid],
            "expected one server process ({backend_pid}) for the project, found {servers:?}"
        );
        self.daemons.insert((pid, backend_pid));
        Ok(Daemon { pid, backend_pid })
    }

    fn status(&self) -> anyhow::Result<Vec<Value>> {
        let text = output(
            Command::new(&self.shoal)
                .args(["status", "--json"])
                .env("SHOAL_RUNTIME_DIR", &self.scratch.runtime_dir),
        )?;
        parse_status(&text)
    }

    fn server_processes(&self) -> Vec<u32> {
        server_processes(&self.tools.node, &self.peers.server, &self.scratch.root)
    }

    fn pass(&mut self, name: &str, detail: &str) {
        self.checks += 1;
        say(&format!("interop: ok  {name}: {detail}"));
    }

    /// `shoal stop --all` ends the daemon, and with it the server; nothing of ours is left.
    fn stop_all(&mut self) -> anyhow::Result<()> {
        let mut stop = Command::new(&self.shoal);
        stop.args(["stop", "--all"])
            .env("SHOAL_RUNTIME_DIR", &self.scratch.runtime_dir);
        run_command(stop)?;
        let detail = all_stopped(&self.daemons, || self.server_processes(), || self.status())?;
        self.pass("shoal stop --all", &detail);
        Ok(())
    }

    /// After a failure: kill what is left, and show the daemon logs.
    fn report_failure(&mut self) {
        // The script and its proxies first, so that no proxy starts a new daemon after the stop.
        if let Some(group) = self.script_group.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(i32::try_from(group).unwrap_or(i32::MAX)),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for pid in processes(|argv| {
            argv.first() == Some(&self.shoal.as_os_str().as_encoded_bytes())
                && argv.get(1) == Some(&b"proxy".as_slice())
                && argv.contains(&self.scratch.root.as_os_str().as_encoded_bytes())
        }) {
            let _ = shoal_testkit::process::kill(pid);
        }
        let mut stop = Command::new(&self.shoal);
        stop.args(["stop", "--all"])
            .env("SHOAL_RUNTIME_DIR", &self.scratch.runtime_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let listed = self.status().unwrap_or_default();
        let leftovers: Vec<u32> = self
            .daemons
            .iter()
            .flat_map(|&(daemon, server)| [daemon, server])
            .chain(listed.iter().filter_map(|entry| as_pid(&entry["pid"])))
            .chain(self.server_processes())
            .filter(|&pid| is_alive(pid))
            .collect();
        for pid in leftovers {
            say(&format!("interop: killing leftover process {pid}"));
            let _ = shoal_testkit::process::kill(pid);
        }
        print_daemon_logs(&self.scratch.runtime_dir);
        say(&format!(
            "interop: kept {} for inspection",
            self.scratch.base.display()
        ));
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.finished {
            let _ = std::fs::remove_dir_all(&self.scratch.base);
        }
    }
}

/// `shoal status --json`'s entries.
fn parse_status(text: &str) -> anyhow::Result<Vec<Value>> {
    serde_json::from_str(text).with_context(|| format!("shoal status --json printed {text:?}"))
}

/// Live everything-server processes serving the project `root`: `node <entry> ...` whose working
/// directory is `root` (the daemon starts its server there, and so does a host). Zombies do not
/// count.
/// After `shoal stop --all`: each (daemon, server) pair is gone within [`EXIT_WAIT`], then no
/// server process of the run is `left` and `status` lists no running daemon. Returns the
/// check's detail.
fn all_stopped(
    daemons: &BTreeSet<(u32, u32)>,
    left: impl FnOnce() -> Vec<u32>,
    status: impl FnOnce() -> anyhow::Result<Vec<Value>>,
) -> anyhow::Result<String> {
    for &(daemon, server) in daemons {
        ensure!(
            wait_for_exit(daemon, EXIT_WAIT),
            "daemon {daemon} still runs after shoal stop --all"
        );
        ensure!(
            wait_for_exit(server, EXIT_WAIT),
            "server {server} still runs after shoal stop --all"
        );
    }
    let left = left();
    ensure!(
        left.is_empty(),
        "server processes {left:?} still run after shoal stop --all"
    );
    let running = status()?
        .into_iter()
        .filter(|entry| entry["state"] == "running")
        .count();
    ensure!(
        running == 0,
        "shoal status shows {running} running daemons after stop"
    );
    Ok(format!(
        "{} daemons and their servers gone, no server process left",
        daemons.len()
    ))
}

fn server_processes(node: &Path, server: &Path, root: &Path) -> Vec<u32> {
    processes(|argv| {
        argv.first() == Some(&node.as_os_str().as_encoded_bytes())
            && argv.get(1) == Some(&server.as_os_str().as_encoded_bytes())
    })
    .into_iter()
    .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == root))
    .collect()
}

/// Live processes (zombies do not count) whose argv satisfies `matches`, from `/proc`.
fn processes(matches: impl Fn(&[&[u8]]) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let argv: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
                matches(&argv)
            }) && is_alive(pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// The tail of each daemon log under `runtime_dir`, for a failure report.
fn print_daemon_logs(runtime_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(runtime_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let log = entry.path().join("daemon.log");
        if let Ok(text) = std::fs::read_to_string(&log) {
            let lines: Vec<&str> = text.lines().collect();
            say(&format!("interop: last lines of {}:", log.display()));
            for line in &lines[lines.len().saturating_sub(40)..] {
                say(&format!("    {line}"));
            }
        }
    }
}

fn as_pid(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|pid| u32::try_from(pid).ok())
}

/// The first executable named `name` on `PATH`.
fn which(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|meta| {
                use std::os::unix::fs::PermissionsExt as _;
                meta.is_file() && meta.permissions().mode() & 0o111 != 0
            })
        })
        .with_context(|| format!("`{name}` is not on PATH"))
}

/// Run `command` and return its stdout; fail with its stderr if it fails.
fn output(command: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {shown}"))?;
    ensure!(
        out.status.success(),
        "{shown} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8(out.stdout).with_context(|| format!("{shown} printed non-UTF-8"))
}
