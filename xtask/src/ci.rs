//! `cargo xtask ci`: the one command CI runs, and that a developer runs before pushing.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::util::{cargo, run_command, say};

/// Rounds of each race in CI: enough to catch a regression that lets two holders in, small enough
/// to finish in minutes on a 2-core machine. `cargo xtask race <target> --rounds 50` is the full run.
const CI_RACE_ROUNDS: u32 = 10;

/// How long CI fuzzes the decoder and hello parser; the 10-minute run is `cargo xtask fuzz --secs 600`.
const CI_FUZZ_TIME: Duration = Duration::from_secs(20);

pub(crate) fn run() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run_command(fmt)?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run_command(clippy)?;

    if has_nextest() {
        check_every_test_binary_lists_tests()?;
        let mut tests = cargo();
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--profile",
            "ci",
        ]);
        run_command(tests)?;
    } else {
        say("cargo-nextest is not installed; running the suite with cargo test");
        let mut tests = cargo();
        tests.args(["test", "--workspace", "--locked", "--all-targets"]);
        run_command(tests)?;
    }
    // nextest does not run doc tests; rustdoc examples are part of the contract of `lockfile` and
    // `wire`, so they run here.
    let mut doc_tests = cargo();
    doc_tests.args(["test", "--workspace", "--locked", "--doc"]);
    run_command(doc_tests)?;

    let mut docs = cargo();
    docs.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run_command(docs)?;

    // `shoal-lockfile` is meant to be usable alone: it must package (and build from the package)
    // without the rest of the workspace.
    let mut package = cargo();
    package.args(["package", "--package", "shoal-lockfile", "--allow-dirty"]);
    run_command(package)?;

    for target in crate::race::Target::ALL {
        crate::race::run(*target, CI_RACE_ROUNDS)?;
    }
    // Real third-party MCP peers through `shoal proxy` (installs them into target/interop/ if
    // `.ci/run` has not already).
    crate::interop::run(false)?;
    crate::fuzz::run(CI_FUZZ_TIME)?;
    say("ci: all checks passed");
    Ok(())
}

/// Fail if an integration-test binary lists no tests to nextest.
///
/// A `harness = false` binary that gets libtest's `--list --format terse` wrong lists nothing, and
/// nextest then runs nothing from it and still reports success: every real-process scenario in it
/// silently stops running. This happened twice before the binaries moved to libtest-mimic.
fn check_every_test_binary_lists_tests() -> anyhow::Result<()> {
    let mut list = cargo();
    list.args([
        "nextest",
        "list",
        "--workspace",
        "--locked",
        "--message-format",
        "json",
    ]);
    let output = list
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("failed to run cargo nextest list")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo nextest list exited with {}",
        output.status
    );
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("failed to parse cargo nextest list's JSON")?;
    let suites = listing["rust-suites"]
        .as_object()
        .context("cargo nextest list's JSON has no rust-suites")?;
    let empty: Vec<&str> = suites
        .iter()
        .filter(|(_, suite)| suite["kind"] == "test")
        .filter(|(_, suite)| {
            suite["testcases"]
                .as_object()
                .is_none_or(|cases| cases.is_empty())
        })
        .map(|(binary_id, _)| binary_id.as_str())
        .collect();
    anyhow::ensure!(
        empty.is_empty(),
        "these test binaries list no tests to nextest, so none of their tests would run: {}; \
         check that a harness = false binary handles libtest's `--list --format terse`",
        empty.join(", ")
    );
    say(&format!(
        "{} test binaries list their tests to nextest",
        suites
            .values()
            .filter(|suite| suite["kind"] == "test")
            .count()
    ));
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
