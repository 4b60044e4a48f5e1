//! Helpers shared by the xtask tasks: locating the workspace and running commands loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_ipc::control::ControlConnection;
use shoal_wire::{ControlRequest, ControlResponse};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// A `cargo` command using the same cargo that runs xtask, started in the workspace root.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(project_root());
    command
}

/// Where cargo puts build output (and the benches and interop their files).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// The `shoal` binary and the `shoal-fixture` test server, built together in one profile.
pub(crate) struct Binaries {
    pub(crate) shoal: PathBuf,
    pub(crate) fixture: PathBuf,
}

/// Build `shoal` and `shoal-fixture` (release or debug) and say where they are.
pub(crate) fn build_shoal_and_fixture(release: bool) -> anyhow::Result<Binaries> {
    let mut build = cargo();
    build.args(["build", "--quiet"]);
    if release {
        build.arg("--release");
    }
    build.args([
        "-p",
        "shoal",
        "--bin",
        "shoal",
        "-p",
        "shoal-fixture",
        "--bin",
        "shoal-fixture",
    ]);
    run_command(build)?;
    let dir = target_dir().join(if release { "release" } else { "debug" });
    Ok(Binaries {
        shoal: dir.join("shoal"),
        fixture: dir.join("shoal-fixture"),
    })
}

/// Run `command`, echoing it first, and fail with its exit status if it does not succeed.
pub(crate) fn run_command(mut command: Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    say(&format!("$ {shown}"));
    let status = command
        .status()
        .with_context(|| format!("failed to start {shown}"))?;
    if !status.success() {
        bail!("{shown} exited with {status}");
    }
    Ok(())
}

/// Print a progress line for a human watching CI.
pub(crate) fn say(line: &str) {
    #[expect(clippy::print_stderr, reason = "xtask progress goes to stderr")]
    {
        eprintln!("xtask: {line}");
    }
}

/// One control exchange with the daemon at `socket`, through the client `shoal status` uses,
/// each step under a deadline.
pub(crate) fn control(socket: &Path, request: &ControlRequest) -> anyhow::Result<ControlResponse> {
    const ANSWER: Duration = Duration::from_secs(30);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let mut connection = ControlConnection::open(socket, None, "xtask")
            .await
            .with_context(|| format!("open a control connection to {}", socket.display()))?;
        Ok(connection.request(request, ANSWER).await?)
    })
}
