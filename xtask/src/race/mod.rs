//! `cargo xtask race`: cross-crate race and fault tests with real processes.
//!
//! Each target lives in its own module with two entry points: `run(rounds)`, the coordinator, and
//! `child(args)`, the contender that the coordinator starts by re-executing this binary as
//! `xtask race-child <target> ARGS...`. Contenders are real processes so that the kernel, not a
//! thread scheduler, decides the interleavings.

mod faults;
mod lockfile;
pub(crate) mod proxy;
mod router;

/// What `cargo xtask race` can race.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Target {
    /// 64 processes acquire one lock at once; 64 processes break one stale lock at once.
    Lockfile,
    /// 64 `shoal proxy` processes start at once on a cold root: one daemon, one backend.
    Proxy,
    /// Scenarios 16, 19, 20 (`docs/scenarios.md`): a daemon dying at start-up, a host SIGKILLed, a daemon SIGKILLed
    /// under load; each repeated with fresh processes.
    Faults,
    /// SCENARIO 33: 32 clients × 1000 requests per round with random cancels and disconnects
    /// through one daemon; every answer checked for owner, id and type.
    Router,
}

impl Target {
    /// The targets CI runs, in order. `Router` is not among them: the test suite already runs its
    /// soak at CI scale.
    pub(crate) const ALL: &'static [Target] = &[Target::Lockfile, Target::Proxy, Target::Faults];
}

pub(crate) fn run(target: Target, rounds: u32) -> anyhow::Result<()> {
    match target {
        Target::Lockfile => lockfile::run(rounds),
        Target::Proxy => proxy::run(rounds),
        Target::Faults => faults::run(rounds),
        Target::Router => router::run(rounds),
    }
}

pub(crate) fn child(target: Target, args: &[String]) -> anyhow::Result<()> {
    match target {
        Target::Lockfile => lockfile::child(args),
        Target::Proxy => proxy::child(args),
        Target::Faults => anyhow::bail!("the fault races have no child processes of their own"),
        Target::Router => anyhow::bail!("the router race has no child processes of its own"),
    }
}
