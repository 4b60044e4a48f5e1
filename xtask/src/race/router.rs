//! `cargo xtask race router`: SCENARIO 33 ("nothing lost") at full scale.
//!
//! The soak itself is the `scenario_33_soak_nothing_lost` test of `shoal-daemon`'s `routing`
//! test binary, which CI runs at a small scale in the normal test suite. Here it runs with many
//! more clients and requests, one fresh daemon per round and several phases of churn per daemon,
//! with the daemon's RSS checked after each; the seed of every round is printed, and
//! `SHOAL_SOAK_SEED` replays one.

use crate::util::{cargo, run_command};

/// Concurrent clients per round.
const CLIENTS: u32 = 32;
/// Requests per client per phase (with random cancels and disconnects among them).
const REQUESTS: u32 = 1000;
/// Phases of that load per daemon: the daemon's RSS after the last may not exceed its RSS after
/// the first by more than allocator noise (`RSS_GROWTH_ALLOWED` in the soak), or it keeps
/// something per request or per session.
const PHASES: u32 = 4;

pub(crate) fn run(rounds: u32) -> anyhow::Result<()> {
    let mut command = cargo();
    command
        .args(["test", "-p", "shoal-daemon", "--test", "routing", "--"])
        .args(["scenario_33_soak_nothing_lost", "--exact", "--nocapture"])
        .env("SHOAL_SOAK_ROUNDS", rounds.to_string())
        .env("SHOAL_SOAK_PHASES", PHASES.to_string())
        .env("SHOAL_SOAK_CLIENTS", CLIENTS.to_string())
        .env("SHOAL_SOAK_REQUESTS", REQUESTS.to_string());
    run_command(command)
}
