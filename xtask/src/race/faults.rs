//! `cargo xtask race faults`: scenarios 16, 19 and 20 (`docs/scenarios.md`), repeated with real processes.
//!
//! The scenarios themselves are tests in `shoal`'s `proxy` test binary (`crates/cli/tests/
//! proxy.rs`), which the normal suite runs once each. Here they run `rounds` times each, every
//! round with fresh proxies, daemons, servers and runtime dir:
//! - 16: a daemon that dies during start-up is reported by the proxy with its reason and log tail;
//! - 19: a SIGKILLed host's proxy exits and the daemon's client count drops;
//! - 20: a daemon SIGKILLed with slow calls and pipelined echoes in flight: every request gets
//!   exactly one response, every proxy reconnects and replays, later requests succeed.
//!
//! Where in its life each pipelined echo is when the daemon dies (in the proxy, the daemon, the
//! backend, or on its way back) is up to the kernel's scheduling, which is why this repeats.

use crate::util::{cargo, run_command};

/// The scenario tests this target repeats, by name prefix.
const SCENARIOS: &[&str] = &["scenario_16_", "scenario_19_", "scenario_20_"];

pub(crate) fn run(rounds: u32) -> anyhow::Result<()> {
    // One run per scenario: the test runner takes a single name filter.
    for scenario in SCENARIOS {
        let mut command = cargo();
        command
            .args(["test", "--quiet", "-p", "shoal", "--test", "proxy", "--"])
            .args([scenario, "--nocapture"])
            .env("SHOAL_FAULT_ROUNDS", rounds.to_string());
        run_command(command)?;
    }
    Ok(())
}
