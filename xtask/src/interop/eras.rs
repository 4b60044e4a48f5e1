//! The era stage of `cargo xtask interop`: clients of every MCP era at once on ONE shared
//! 2026-07-28 backend, each compared with the same client spoken to the server directly.
//!
//! `xtask/interop/eras.py` runs the official Python SDK (`mcp` 2.3.0) in its `legacy`
//! (handshake), `auto` and `2026-07-28` modes plus one TypeScript SDK 1.32.2 session (handshake
//! era), all concurrently, against `xtask/interop/dual_era_server.py` (a dual-era `MCPServer`),
//! and prints what each session could observe. It runs twice: with every session spawning the
//! server itself (direct), then with every session spawning `shoal proxy -- <server>`, so that
//! all four share one daemon and one server. Each session's observations must be equal, except
//! the differences `docs/routing.md` documents ([`documented_difference`]).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use crate::util::{project_root, say};

/// One run of the driver, every session and step included; a normal run takes a few seconds.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Run the stage; `runtime_dir` is private to it.
pub(crate) fn run(shoal: &Path, python: &Path, runtime_dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let script_dir = project_root().join("xtask").join("interop");
    let server = script_dir.join("dual_era_server.py");
    let server = server.to_string_lossy().into_owned();
    let python_arg = python.to_string_lossy().into_owned();

    let direct = observe(python, &[python_arg.clone(), server.clone()], runtime_dir)?;
    let shared_argv = [
        shoal.to_string_lossy().into_owned(),
        "proxy".to_owned(),
        "--no-fallback".to_owned(),
        "--".to_owned(),
        python_arg,
        server,
    ];
    let shared = observe(python, &shared_argv, runtime_dir);
    let daemons = count_daemons(shoal, runtime_dir);
    let mut stop = Command::new(shoal);
    stop.args(["stop", "--all"])
        .env("SHOAL_RUNTIME_DIR", runtime_dir)
        .stdout(Stdio::null());
    let stopped = stop.status().context("failed to run `shoal stop --all`")?;
    let shared = shared?;
    ensure!(
        stopped.success(),
        "`shoal stop --all` failed after the era stage"
    );
    let daemons = daemons?;
    ensure!(
        daemons == 1,
        "the era stage's sessions were served by {daemons} daemons; they must share one"
    );

    ensure!(
        direct.keys().eq(shared.keys()),
        "the era stage saw sessions {:?} directly but {:?} through shoal",
        direct.keys().collect::<Vec<_>>(),
        shared.keys().collect::<Vec<_>>()
    );
    let mut differences = Vec::new();
    for (client, seen_directly) in &direct {
        let seen_shared = &shared[client];
        diff(client, "", seen_directly, seen_shared, &mut differences);
    }
    let undocumented: Vec<&String> = differences
        .iter()
        .filter(|difference| !documented_difference(&difference.client, &difference.path))
        .map(|difference| &difference.line)
        .collect();
    if !undocumented.is_empty() {
        bail!(
            "through shoal, sessions saw what they would not directly (and docs/routing.md does \
             not say why):\n  {}",
            undocumented
                .iter()
                .map(|line| line.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    say(&format!(
        "interop: era stage passed in {:.1?}: {} sessions ({}) on one shared 2026-07-28 server \
         saw what they see directly, but for {} documented differences",
        started.elapsed(),
        direct.len(),
        direct.keys().cloned().collect::<Vec<_>>().join(", "),
        differences.len()
    ));
    Ok(())
}

/// Whether a difference at `path` (a `/`-separated pointer into a session's observations) is
/// one `docs/routing.md` explains.
fn documented_difference(client: &str, path: &str) -> bool {
    let translated = matches!(client, "legacy" | "ts");
    // "The server's own per-session state becomes shared": one counter for all sessions, so
    // each sees the others' bumps.
    let shared_state = path == "/bump" || path.starts_with("/updates/others");
    // "A translated session is told the capabilities the server declares to 2026-07-28
    // clients": the dual-era server's handshake answer says `listChanged: false`.
    let discovered_capabilities = translated
        && ["tools", "prompts", "resources"]
            .iter()
            .any(|list| path == format!("/capabilities/{list}/listChanged"));
    shared_state || discovered_capabilities
}

/// One leaf of a session's observations that differs between the direct and the shared run.
pub(super) struct Difference {
    pub(super) client: String,
    /// A `/`-separated pointer into the observations.
    pub(super) path: String,
    /// Both values, for the report.
    pub(super) line: String,
}

/// Every leaf where `a` and `b` differ (also the matrix stage's).
pub(super) fn diff(client: &str, path: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = format!("{path}/{key}");
                let null = Value::Null;
                diff(
                    client,
                    &child,
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a == b => {}
        _ => out.push(Difference {
            client: client.to_owned(),
            path: path.to_owned(),
            line: format!("{client} {path}: directly {a}, through shoal {b}"),
        }),
    }
}

/// Run the driver against `server_argv`; each session's observations, by session name.
fn observe(
    python: &Path,
    server_argv: &[String],
    runtime_dir: &Path,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let script = project_root().join("xtask").join("interop").join("eras.py");
    let mut command = Command::new(python);
    command
        .arg(&script)
        .arg("--server-cmd")
        .arg(serde_json::to_string(server_argv)?)
        .args([
            "--mode",
            "legacy",
            "--mode",
            "auto",
            "--mode",
            "2026-07-28",
            "--ts",
        ])
        .env("SHOAL_RUNTIME_DIR", runtime_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a deadline kills the driver, its sessions and their proxies at once.
        .process_group(0);
    let mut child = command
        .spawn()
        .with_context(|| format!("failed to run {}", script.display()))?;
    let mut stdout = child.stdout.take().context("the driver's stdout")?;
    let mut stderr = child.stderr.take().context("the driver's stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let pid = child.id();
    if !shoal_testkit::process::wait_for_exit(pid, RUN_DEADLINE) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = child.wait().context("failed to wait for the era driver")?;
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "the era driver failed ({status}) against `{}`:\n{stderr}{stdout}",
            server_argv.join(" ")
        );
    }
    let mut sessions = BTreeMap::new();
    for line in stdout.lines().filter(|line| !line.trim().is_empty()) {
        let mut record: Value = serde_json::from_str(line)
            .with_context(|| format!("the era driver printed a line that is not JSON: {line}"))?;
        let client = record["client"]
            .as_str()
            .context("an era driver line names no client")?
            .to_owned();
        sessions.insert(client, record["observations"].take());
    }
    ensure!(
        !sessions.is_empty(),
        "the era driver reported no session:\n{stderr}"
    );
    Ok(sessions)
}

/// The daemons `shoal status` lists in `runtime_dir`.
fn count_daemons(shoal: &Path, runtime_dir: &Path) -> anyhow::Result<usize> {
    let output = Command::new(shoal)
        .args(["status", "--json"])
        .env("SHOAL_RUNTIME_DIR", runtime_dir)
        .output()
        .context("failed to run `shoal status --json`")?;
    let status: Value = serde_json::from_slice(&output.stdout)
        .context("`shoal status --json` printed something that is not JSON")?;
    Ok(status.as_array().map_or(0, Vec::len))
}
