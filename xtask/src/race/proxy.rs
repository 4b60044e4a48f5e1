//! `cargo xtask race proxy`: scenario 13 of `docs/scenarios.md` with real processes, many rounds: 64 `shoal proxy`
//! processes started at once on a cold root must end with exactly one daemon, one backend start
//! (the fixture's spawn counter) and 64 answered sessions.
//!
//! Each round builds nothing: the `shoal` and `shoal-fixture` binaries are built once up front.
//! Barrier: all 64 proxies are spawned (each is finding or starting the daemon as soon as it runs),
//! then all are sent `initialize`, then all answers are awaited. Odd rounds hold `spawn.lock`
//! until all 64 run, so that every one of them is on the slow path at the same moment; even rounds
//! let them race from the first instruction. The contenders are `shoal proxy` itself, so there is
//! no `race-child` side.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::json;
use shoal_ipc::{DaemonKey, DaemonPaths};
use shoal_testkit::client::Client;
use shoal_wire::{ControlRequest, ControlResponse, PROTOCOL};

use crate::util::{Binaries, build_shoal_and_fixture, control, say};

const PROXIES: usize = 64;
/// The longest any one wait may take before the round is a failure.
const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn run(rounds: u32) -> anyhow::Result<()> {
    let binaries = build_shoal_and_fixture(false)?;
    let started = Instant::now();
    let mut ok = 0;
    for round in 0..rounds {
        match race(&binaries, round) {
            Ok(()) => ok += 1,
            Err(error) => say(&format!("proxy race round {round}: {error:#}")),
        }
    }
    say(&format!(
        "proxy cold-start race: {ok}/{rounds} rounds with one daemon, one backend and {PROXIES} \
         answered sessions ({:.1?})",
        started.elapsed()
    ));
    ensure!(ok == rounds, "some rounds did not end with one daemon");
    Ok(())
}

pub(crate) fn child(_args: &[String]) -> anyhow::Result<()> {
    bail!("the proxy race's contenders are `shoal proxy` processes, not race-child")
}

fn race(binaries: &Binaries, round: u32) -> anyhow::Result<()> {
    let scratch = Scratch::new(round)?;
    let spawns = scratch.base.join("spawns");
    let server: Vec<OsString> = vec![
        binaries.fixture.clone().into(),
        "--spawn-counter".into(),
        spawns.clone().into(),
    ];
    let key = DaemonKey::new(
        scratch.root.clone(),
        server.clone(),
        env!("CARGO_PKG_VERSION"),
        PROTOCOL,
        vec![],
    );
    let paths = DaemonPaths::new(&scratch.runtime_dir, &key.id());
    let held = if round % 2 == 1 {
        shoal_lockfile::ensure_private_dir(&scratch.runtime_dir)?;
        shoal_lockfile::ensure_private_dir(&paths.dir)?;
        Some(shoal_lockfile::PersistentLock::new(&paths.spawn_lock)?.try_lock()?)
    } else {
        None
    };
    let mut clients = Vec::with_capacity(PROXIES);
    for n in 0..PROXIES {
        let mut command = Command::new(&binaries.shoal);
        command
            .arg("proxy")
            .arg("--root")
            .arg(&scratch.root)
            .args(["--idle-timeout", "60", "--no-fallback", "--"])
            .args(&server)
            .env("SHOAL_RUNTIME_DIR", &scratch.runtime_dir)
            .env_remove("SHOAL_IDLE_TIMEOUT");
        let mut client = Client::spawn(command)
            .with_context(|| format!("spawn proxy {n}"))?
            .with_name(format!("proxy {n}"));
        client.set_timeout(WAIT);
        clients.push(client);
    }
    drop(held);
    for client in &mut clients {
        client.send_request(
            "initialize",
            json!({
                "protocolVersion": shoal_testkit::client::LATEST_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "race", "version": "1"},
            }),
        )?;
    }
    for client in &mut clients {
        client.wait_response(&json!(1), WAIT)?.into_result()?;
        client.notify("notifications/initialized", serde_json::Value::Null)?;
    }
    for (n, client) in clients.iter_mut().enumerate() {
        let text = format!("round {round} proxy {n}");
        let result = client.call_tool("echo", json!({ "text": text }))?;
        ensure!(result["content"][0]["text"] == text.as_str(), "{result}");
    }
    let sessions = match control(&paths.socket, &ControlRequest::Status)? {
        ControlResponse::Status(report) => report.n_clients,
        other => bail!("status: {other:?}"),
    };
    let backends = std::fs::read_to_string(&spawns)?.lines().count();
    let log = std::fs::read_to_string(&paths.log)?;
    let daemons = log.matches("daemon ready").count();
    let redundant = log
        .matches("another daemon already serves this key")
        .count();
    ensure!(
        sessions == 64 && backends == 1 && daemons == 1 && redundant == 0,
        "{sessions} sessions, {backends} backend starts, {daemons} daemons ready, {redundant} \
         redundant daemons"
    );
    Ok(())
}

/// A cold project and runtime dir for one round; its daemon is stopped and the files removed on
/// drop.
struct Scratch {
    base: PathBuf,
    root: PathBuf,
    runtime_dir: PathBuf,
}

impl Scratch {
    fn new(round: u32) -> anyhow::Result<Scratch> {
        // Short: socket paths live under it.
        let base = PathBuf::from(format!("/tmp/xr-proxy-{}-{round}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("project");
        std::fs::create_dir_all(&root)?;
        Ok(Scratch {
            root: std::fs::canonicalize(&root)?,
            runtime_dir: base.join("rt"),
            base,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.runtime_dir) {
            for entry in entries.flatten() {
                let _ = control(&entry.path().join("daemon.sock"), &ControlRequest::Stop);
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
