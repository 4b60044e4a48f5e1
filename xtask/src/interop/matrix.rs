//! The matrix stage of `cargo xtask interop`: every pinned client SDK version, of every era, at
//! once on ONE shared backend, for each pinned server version, each session compared with the
//! same client spoken to the server directly.
//!
//! The clients are `xtask/interop/matrix_client.py` (the Python SDK, run under one venv per
//! `mcp` version: 1.x `ClientSession`, 2.x `Client` in each mode) and
//! `xtask/interop/matrix-client.mjs` (the TypeScript SDK, one npm alias per version: 1.x, and the
//! dual-era 2.x client in `auto` and pinned 2026-07-28). Each takes the same generic scenario in
//! lockstep, coordinated here: a driver prints `{"sync": step}` before each step and goes on when
//! this module has seen every running driver arrive at that step (a fence, never a pause), then
//! prints its observations. For each server the scenario runs twice: every session spawning the
//! server itself (direct), then every session spawning `shoal proxy --no-fallback -- <server>`
//! (shared: `shoal status --json` must list exactly one daemon once all have opened). Each
//! session's observations must be equal leaf by leaf, except the differences `docs/routing.md`
//! explains ([`documented_difference`]).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use super::eras::diff;
use super::{is_installed, output, print_daemon_logs, write_stamp};
use crate::util::{project_root, run_command, say};

/// The Python SDK versions with a venv of their own (`target/interop/venv-mcp-<version>`, from
/// `xtask/interop/requirements-mcp-<version>.txt`); 2.3.0 is the main venv's.
pub(super) const PYTHON_SDKS: [&str; 4] = ["1.2.1", "1.9.4", "1.22.0", "1.30.0"];
/// The TypeScript SDK versions, by npm alias in `xtask/interop/package.json` (1.32.2 is the
/// plain `@modelcontextprotocol/sdk` of the SDK stage).
const TYPESCRIPT_SDKS: [(&str, &str); 4] = [
    ("1.9.0", "sdk-1.9.0"),
    ("1.12.3", "sdk-1.12.3"),
    ("1.22.0", "sdk-1.22.0"),
    ("1.32.2", "@modelcontextprotocol/sdk"),
];
/// The 2.x TypeScript client (dual-era), by npm alias, and the modes it runs in.
const TYPESCRIPT_CLIENT: (&str, &str) = ("2.4.0", "client-2.4.0");
const TYPESCRIPT_CLIENT_MODES: [&str; 2] = ["auto", "2026-07-28"];
/// The `mcp` 2.x `Client` modes.
const PYTHON_CLIENT_MODES: [&str; 3] = ["legacy", "auto", "2026-07-28"];
/// The everything server versions, by npm alias (2026.8.31 is the plain package of the SDK
/// stage), and whether its `dist/index.js` takes the transport as an argument.
const EVERYTHING_SERVERS: [(&str, &str, bool); 4] = [
    ("2025.3.19", "server-everything-2025.3.19", false),
    ("2025.5.12", "server-everything-2025.5.12", true),
    ("2025.9.25", "server-everything-2025.9.25", true),
    ("2026.8.31", "@modelcontextprotocol/server-everything", true),
];

/// The whole stage, every server and both runs of each; a normal run takes about two minutes.
const STAGE_DEADLINE: Duration = Duration::from_secs(600);
/// How long the sessions may take to reach the next step together. A driver's own request
/// deadline (30 s) is shorter, so a stuck request fails with its own label first.
const STEP_DEADLINE: Duration = Duration::from_secs(90);

/// Install one venv per [`PYTHON_SDKS`] version (at once: the installs wait on the network),
/// each unless it was installed from the same requirements and Python; returns
/// `(version, interpreter)` pairs.
pub(super) fn install(
    python: &Path,
    python_version: &str,
    interop_dir: &Path,
    manifests: &Path,
) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let venvs: Vec<(String, PathBuf, PathBuf)> = PYTHON_SDKS
        .iter()
        .map(|version| {
            (
                (*version).to_owned(),
                interop_dir.join(format!("venv-mcp-{version}")),
                manifests.join(format!("requirements-mcp-{version}.txt")),
            )
        })
        .collect();
    std::thread::scope(|scope| {
        let installs: Vec<_> = venvs
            .iter()
            .map(|(version, venv, requirements)| {
                scope.spawn(move || {
                    install_venv(python, python_version, version, venv, requirements)
                })
            })
            .collect();
        installs
            .into_iter()
            .map(|install| {
                install
                    .join()
                    .unwrap_or_else(|_| bail!("a venv install panicked"))
            })
            .collect::<anyhow::Result<Vec<()>>>()
    })?;
    Ok(venvs
        .into_iter()
        .map(|(version, venv, _)| (version, venv.join("bin").join("python")))
        .collect())
}

fn install_venv(
    python: &Path,
    python_version: &str,
    version: &str,
    venv: &Path,
    requirements: &Path,
) -> anyhow::Result<()> {
    let pins = std::fs::read(requirements)
        .with_context(|| format!("failed to read {}", requirements.display()))?;
    let interpreter = venv.join("bin").join("python");
    let stamp = [pins.as_slice(), b"\0", python_version.as_bytes()].concat();
    if is_installed(venv, &stamp, &[&interpreter]) {
        return Ok(());
    }
    say(&format!(
        "interop: installing the pinned Python SDK mcp {version} into {}",
        venv.display()
    ));
    let _ = std::fs::remove_dir_all(venv);
    let mut create = Command::new(python);
    create.arg("-m").arg("venv").arg(venv);
    run_command(create)
        .context("failed to create a matrix venv; on Debian/Ubuntu install python3-venv")?;
    let mut pip = Command::new(&interpreter);
    pip.args(["-m", "pip", "install", "--quiet", "--no-input"])
        .args(["--disable-pip-version-check", "--require-hashes"])
        .args(["--only-binary", ":all:", "--requirement"])
        .arg(requirements);
    run_command(pip).with_context(|| format!("failed to install mcp {version} for the matrix"))?;
    write_stamp(venv, &stamp)
}

/// What the stage runs.
pub(crate) struct Setup<'a> {
    pub(crate) shoal: &'a Path,
    pub(crate) node: &'a Path,
    /// `target/interop/npm`, where the npm peers are installed.
    pub(crate) npm_dir: &'a Path,
    /// The main venv's interpreter (`mcp` 2.3.0): the 2.x sessions and the dual-era server.
    pub(crate) python: &'a Path,
    /// `(version, interpreter)` of each [`PYTHON_SDKS`] venv.
    pub(crate) pythons: &'a [(String, PathBuf)],
    /// Private to the stage: each server's runtime dir is made under it.
    pub(crate) dir: PathBuf,
}

/// One client session of the matrix: its name and the driver command, less `--server-cmd`.
struct Client {
    name: String,
    argv: Vec<String>,
}

fn arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Run the stage.
pub(crate) fn run(setup: &Setup<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + STAGE_DEADLINE;
    let manifests = project_root().join("xtask").join("interop");
    // The imports resolve from the script's own directory, so it runs from next to the packages.
    let node_driver = setup.npm_dir.join("matrix-client.mjs");
    std::fs::copy(manifests.join("matrix-client.mjs"), &node_driver).with_context(|| {
        format!(
            "failed to copy matrix-client.mjs to {}",
            node_driver.display()
        )
    })?;
    let python_driver = arg(&manifests.join("matrix_client.py"));

    let mut clients = Vec::new();
    for (version, alias) in TYPESCRIPT_SDKS {
        clients.push(Client {
            name: format!("ts-{version}"),
            argv: vec![
                arg(setup.node),
                arg(&node_driver),
                "--sdk".into(),
                alias.into(),
            ],
        });
    }
    for mode in TYPESCRIPT_CLIENT_MODES {
        let (version, alias) = TYPESCRIPT_CLIENT;
        clients.push(Client {
            name: format!("ts-{version}-{mode}"),
            argv: vec![
                arg(setup.node),
                arg(&node_driver),
                "--sdk".into(),
                alias.into(),
            ]
            .into_iter()
            .chain(["--mode".into(), mode.into()])
            .collect(),
        });
    }
    for (version, python) in setup.pythons {
        clients.push(Client {
            name: format!("py-{version}"),
            argv: vec![arg(python), python_driver.clone()],
        });
    }
    for mode in PYTHON_CLIENT_MODES {
        clients.push(Client {
            name: format!("py-2.3.0-{mode}"),
            argv: vec![
                arg(setup.python),
                python_driver.clone(),
                "--mode".into(),
                mode.into(),
            ],
        });
    }

    let mut servers: Vec<Server> = EVERYTHING_SERVERS
        .iter()
        .map(|(version, alias, takes_transport)| {
            let entry = setup
                .npm_dir
                .join("node_modules")
                .join(alias)
                .join("dist/index.js");
            let mut argv = vec![arg(setup.node), arg(&entry)];
            if *takes_transport {
                argv.push("stdio".into());
            }
            Server {
                name: format!("everything {version}"),
                argv,
                stateless: false,
            }
        })
        .collect();
    servers.push(Server {
        name: "dual-era (mcp 2.3.0 MCPServer)".into(),
        argv: vec![
            arg(setup.python),
            arg(&manifests.join("dual_era_server.py")),
        ],
        stateless: true,
    });

    let mut documented = 0;
    for (index, server) in servers.iter().enumerate() {
        let cell = Instant::now();
        // Short: the daemon's socket lives under it.
        let runtime_dir = setup.dir.join(index.to_string());
        std::fs::create_dir_all(&runtime_dir)
            .with_context(|| format!("failed to create {}", runtime_dir.display()))?;
        let outcome = compare(setup, &clients, server, &runtime_dir, deadline);
        if outcome.is_err() {
            print_daemon_logs(&runtime_dir);
            say(&format!(
                "interop: kept {} for inspection",
                setup.dir.display()
            ));
        }
        let seen = outcome?;
        documented += seen.differences;
        say(&format!(
            "interop: ok  matrix, {}: {} sessions at once ({} opened) saw the same directly \
             and through one shared daemon, but for {} documented differences ({}) ({:.1?})",
            server.name,
            seen.sessions,
            seen.opened,
            seen.differences,
            if seen.documented.is_empty() {
                "none".to_owned()
            } else {
                seen.documented.join(", ")
            },
            cell.elapsed()
        ));
    }
    let _ = std::fs::remove_dir_all(&setup.dir);
    say(&format!(
        "interop: matrix stage passed in {:.1?}: {} servers x {} clients ({}) on one shared \
         backend each saw what they see directly, but for {documented} documented differences",
        started.elapsed(),
        servers.len(),
        clients.len(),
        clients
            .iter()
            .map(|client| client.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    ));
    Ok(())
}

/// One server of the matrix.
struct Server {
    name: String,
    argv: Vec<String>,
    /// A 2026-07-28 server (the daemon serves it without a handshake).
    stateless: bool,
}

/// What one server's cell saw.
struct Cell {
    sessions: usize,
    /// Sessions that opened (a pinned 2026-07-28 one does not, on a handshake-era server).
    opened: usize,
    /// Each documented kind of difference, with its count.
    documented: Vec<String>,
    differences: usize,
}

/// One cell: the direct run, the shared run, the check of one daemon, and the diff.
fn compare(
    setup: &Setup<'_>,
    clients: &[Client],
    server: &Server,
    runtime_dir: &Path,
    deadline: Instant,
) -> anyhow::Result<Cell> {
    let Server {
        name: server,
        argv: server_argv,
        stateless,
    } = server;
    let stateless = *stateless;
    let direct = observe(clients, server_argv, runtime_dir, deadline, || Ok(()))
        .with_context(|| format!("the matrix run against {server}, direct"))?;
    let shared_argv: Vec<String> = [
        arg(setup.shoal),
        "proxy".into(),
        "--no-fallback".into(),
        "--".into(),
    ]
    .into_iter()
    .chain(server_argv.iter().cloned())
    .collect();
    let mut daemons = None;
    let shared = observe(clients, &shared_argv, runtime_dir, deadline, || {
        // Every session has opened (or failed to, as directly): they all share one daemon.
        let status = output(
            Command::new(setup.shoal)
                .args(["status", "--json"])
                .env("SHOAL_RUNTIME_DIR", runtime_dir),
        )?;
        let status: Value = serde_json::from_str(&status)
            .with_context(|| format!("shoal status --json printed {status:?}"))?;
        daemons = Some(status.as_array().map_or(0, Vec::len));
        Ok(())
    });
    let mut stop = Command::new(setup.shoal);
    stop.args(["stop", "--all"])
        .env("SHOAL_RUNTIME_DIR", runtime_dir)
        .stdout(Stdio::null());
    let stopped = stop.status().context("failed to run `shoal stop --all`")?;
    let shared =
        shared.with_context(|| format!("the matrix run against {server}, through shoal"))?;
    ensure!(
        stopped.success(),
        "`shoal stop --all` failed after the matrix run against {server}"
    );
    ensure!(
        daemons == Some(1),
        "against {server}, the sessions were served by {daemons:?} daemons; they must share one"
    );

    ensure!(
        direct.keys().eq(shared.keys()),
        "against {server}, the matrix saw sessions {:?} directly but {:?} through shoal",
        direct.keys().collect::<Vec<_>>(),
        shared.keys().collect::<Vec<_>>()
    );
    // For a failure's inspection (the stage's dir is kept then).
    let both = serde_json::json!({ "direct": direct, "shared": shared });
    std::fs::write(runtime_dir.join("observations.json"), format!("{both:#}\n"))
        .context("failed to write the observations")?;
    let mut differences = Vec::new();
    for (client, seen_directly) in &direct {
        diff(client, "", seen_directly, &shared[client], &mut differences);
    }
    let mut documented: BTreeMap<&str, usize> = BTreeMap::new();
    let mut undocumented = Vec::new();
    for difference in &differences {
        let client = &difference.client;
        match documented_difference(
            &difference.path,
            &direct[client],
            &shared[client],
            stateless,
        ) {
            Some(rule) => *documented.entry(rule).or_default() += 1,
            None => undocumented.push(difference.line.as_str()),
        }
    }
    if !undocumented.is_empty() {
        bail!(
            "against {server}, through shoal, sessions saw what they would not directly (and \
             docs/routing.md does not say why):\n  {}",
            undocumented.join("\n  ")
        );
    }
    let opened = direct
        .values()
        .filter(|seen| seen["open"].get("error").is_none())
        .count();
    Ok(Cell {
        sessions: direct.len(),
        opened,
        documented: documented
            .into_iter()
            .map(|(rule, count)| format!("{count} x {rule}"))
            .collect(),
        differences: differences.len(),
    })
}

/// Which bullet of `docs/routing.md` explains a difference at `path` (a `/`-separated pointer
/// into one session's observations, `direct` and `shared`), if one does; `stateless` says the
/// server is the 2026-07-28 one.
fn documented_difference(
    path: &str,
    direct: &Value,
    shared: &Value,
    stateless: bool,
) -> Option<&'static str> {
    let negotiated = direct["open"]["protocol version"]
        .as_str()
        .unwrap_or_default();
    let handshake = direct["open"]["era"] == "handshake";
    // The rules, `initialize`: "Sessions below 2025-11-25 are not offered `tasks`."
    // (Revisions are dates, so they compare as strings.)
    if path.starts_with("/open/capabilities/tasks")
        && negotiated < "2025-11-25"
        && shared["open"]["capabilities"].get("tasks").is_none()
    {
        return Some("no tasks below 2025-11-25");
    }
    // "One capability set and one protocol version for a handshake-era backend": the server
    // tailors its tools to its client's capabilities, and through shoal its client is the
    // daemon, declaring everything it can route; so a session may be offered more tools.
    if path == "/tools" && !stateless && is_subset(&direct["tools"], &shared["tools"]) {
        return Some("tools for shoal's capabilities");
    }
    // The same bullet, and the rule for `list_changed` (a burst is folded into one): a server
    // that announces list changes as it reacts to its client's `initialize` does so once, for
    // the daemon's, before (or while) the session joins.
    let lists = ["tools", "prompts", "resources"];
    if !stateless
        && lists
            .iter()
            .any(|list| path == format!("/notifications/notifications/{list}/list_changed"))
    {
        return Some("list_changed of the daemon's initialize");
    }
    // "A translated session is told the capabilities the server declares to 2026-07-28
    // clients": the dual-era server's handshake answer says `listChanged: false`.
    if stateless
        && handshake
        && lists
            .iter()
            .any(|list| path == format!("/open/capabilities/{list}/listChanged"))
    {
        return Some("translated sessions told the discovered capabilities");
    }
    // The rules, `roots/list`: "Answered by the daemon with the project root; sessions are
    // never asked."
    if path == "/server requests/roots/list"
        && shared["server requests"].get("roots/list").is_none()
    {
        return Some("roots/list answered by the daemon");
    }
    // "Sampling and elicitation can reach the wrong busy session": a server's sampling request
    // (the everything server before 2026 asks for one on every first `resources/subscribe`, and
    // through shoal only a URI's first subscribe reaches it) goes to one capable session with a
    // request in flight, which need not be the one that caused it.
    // (On a stateless backend a question reaches the client whose request it is about alone.)
    if path == "/server requests/sampling/createMessage" && !stateless {
        return Some("sampling routed to one busy session");
    }
    // "A session is never sent a request it did not declare": the everything server before
    // 2026 asks for sampling on a URI's first `resources/subscribe` whatever its client
    // declared. Directly a session that declared no sampling is asked (and mcp 1.2.1 answers);
    // through shoal it is not, the server gets -32601 and refuses the subscribe, when that
    // session's subscribe is the one that reaches the server (the others then send their own).
    if path == "/subscribe"
        && direct["open"]["declares sampling"] == false
        && direct["subscribe"] == "ok"
        && shared["subscribe"]["error"] == -32601
        && !stateless
    {
        return Some("subscribe of a session that declared no sampling refused by the server");
    }
    None
}

fn is_subset(small: &Value, large: &Value) -> bool {
    match (small.as_array(), large.as_array()) {
        (Some(small), Some(large)) => small.iter().all(|item| large.contains(item)),
        _ => false,
    }
}

/// What a driver's output thread reports.
enum Event {
    Line(String),
    Eof,
}

/// One running driver.
struct Driver {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// The step it waits at, if it waits.
    waiting: Option<String>,
    done: bool,
    observations: Option<Value>,
    failure: Option<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Run every client at once against `server_argv`, in lockstep; each session's observations, by
/// client name. `at_lists` runs once every session has opened (the first step after `open`).
fn observe(
    clients: &[Client],
    server_argv: &[String],
    runtime_dir: &Path,
    deadline: Instant,
    at_lists: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let (tx, rx) = mpsc::channel::<(usize, Event)>();
    let mut drivers = Vec::new();
    let server_cmd = serde_json::to_string(server_argv)?;
    for (index, client) in clients.iter().enumerate() {
        let spawned = Command::new(&client.argv[0])
            .args(&client.argv[1..])
            .arg("--server-cmd")
            .arg(&server_cmd)
            .env("SHOAL_RUNTIME_DIR", runtime_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: the server or proxy it spawns is killed with it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to start the matrix driver of {}", client.name));
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                kill_all(&mut drivers);
                return Err(error);
            }
        };
        let stdout = child.stdout.take().context("a driver's stdout")?;
        let mut stderr = child.stderr.take().context("a driver's stderr")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((index, Event::Line(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((index, Event::Eof));
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        drivers.push(Driver {
            name: client.name.clone(),
            stdin: child.stdin.take(),
            child,
            waiting: None,
            done: false,
            observations: None,
            failure: None,
            stderr: Some(stderr),
        });
    }
    drop(tx);
    let outcome = lockstep(&mut drivers, &rx, deadline, at_lists);
    kill_all(&mut drivers);
    let mut report = String::new();
    for driver in &mut drivers {
        let stderr = driver
            .stderr
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        if driver.failure.is_some() || driver.observations.is_none() || outcome.is_err() {
            report += &format!(
                "\n--- {}: {}\n{}",
                driver.name,
                driver.failure.as_deref().unwrap_or("(no failure reported)"),
                stderr.trim_end()
            );
        }
    }
    outcome.with_context(|| format!("the drivers said:{report}"))?;
    let mut sessions = BTreeMap::new();
    for driver in &mut drivers {
        let Some(observations) = driver.observations.take() else {
            bail!("{} reported no observations:{report}", driver.name);
        };
        if let Some(failure) = &driver.failure {
            bail!(
                "{} failed: {failure}; observed so far: {observations}{report}",
                driver.name
            );
        }
        sessions.insert(driver.name.clone(), observations);
    }
    Ok(sessions)
}

/// Release the drivers step by step until every one has ended.
fn lockstep(
    drivers: &mut [Driver],
    rx: &mpsc::Receiver<(usize, Event)>,
    deadline: Instant,
    mut at_lists: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut step = "start".to_owned();
    let mut step_deadline = Instant::now() + STEP_DEADLINE;
    loop {
        let running: Vec<usize> = (0..drivers.len()).filter(|&i| !drivers[i].done).collect();
        if running.is_empty() {
            return Ok(());
        }
        if running.iter().all(|&i| drivers[i].waiting.is_some()) {
            let next = drivers[running[0]].waiting.clone().unwrap_or_default();
            if let Some(&other) = running
                .iter()
                .find(|&&i| drivers[i].waiting.as_ref() != Some(&next))
            {
                bail!(
                    "the sessions are out of step: {} waits at {next:?}, {} at {:?}",
                    drivers[running[0]].name,
                    drivers[other].name,
                    drivers[other].waiting
                );
            }
            if next == "lists" {
                at_lists()?;
            }
            for &i in &running {
                let driver = &mut drivers[i];
                driver.waiting = None;
                let stdin = driver.stdin.as_mut().context("a driver's stdin")?;
                writeln!(stdin, "go")
                    .and_then(|()| stdin.flush())
                    .with_context(|| format!("failed to release {} at {next:?}", driver.name))?;
            }
            step = next;
            step_deadline = Instant::now() + STEP_DEADLINE;
            continue;
        }
        let until = step_deadline.min(deadline);
        let Ok((index, event)) = rx.recv_timeout(until.saturating_duration_since(Instant::now()))
        else {
            let late: Vec<&str> = running
                .iter()
                .filter(|&&i| drivers[i].waiting.is_none())
                .map(|&i| drivers[i].name.as_str())
                .collect();
            bail!(
                "timed out after step {step:?} waiting for {} to reach the next step{}",
                late.join(", "),
                if until == deadline {
                    " (the stage's deadline)"
                } else {
                    ""
                }
            );
        };
        let driver = &mut drivers[index];
        match event {
            Event::Eof => driver.done = true,
            Event::Line(line) => {
                let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
                    // The SDKs and servers log to stderr; anything else on stdout is noise.
                    continue;
                };
                if let Some(at) = message["sync"].as_str() {
                    driver.waiting = Some(at.to_owned());
                } else if message.get("observations").is_some() {
                    driver.failure = message["failed"].as_str().map(str::to_owned);
                    driver.observations = Some(message["observations"].take());
                }
            }
        }
    }
}

/// Kill each driver's process group (the driver, and the server or proxy it started: some old
/// servers never exit on their own) and reap the driver.
fn kill_all(drivers: &mut [Driver]) {
    for driver in drivers.iter_mut() {
        driver.stdin = None;
        let group = i32::try_from(driver.child.id()).unwrap_or(i32::MAX);
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = driver.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The difference a 2026-12-07 CI run showed (Python SDK 1.2.1's subscribe reached
    /// server-everything 2025.9.25 first) is documented for a session that declared no
    /// sampling, and only for it.
    #[test]
    fn a_refused_subscribe_is_documented_only_for_a_session_that_declared_no_sampling() {
        let direct = |declares: Option<bool>| {
            let mut open = json!({"era": "handshake", "protocol version": "2024-11-05"});
            if let Some(declares) = declares {
                open["declares sampling"] = json!(declares);
            }
            json!({"open": open, "subscribe": "ok"})
        };
        let shared = json!({"open": {"era": "handshake", "protocol version": "2024-11-05"},
            "subscribe": {"error": -32601}});
        assert_eq!(
            documented_difference("/subscribe", &direct(Some(false)), &shared, false),
            Some("subscribe of a session that declared no sampling refused by the server")
        );
        assert_eq!(
            documented_difference("/subscribe", &direct(None), &shared, false),
            None
        );
        assert_eq!(
            documented_difference("/subscribe", &direct(Some(false)), &shared, true),
            None
        );
    }
}
