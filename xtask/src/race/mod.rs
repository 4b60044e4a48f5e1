//! `cargo xtask race`: cross-crate race and fault tests with real processes.
//!
//! Each target lives in its own module with two entry points: `run(rounds)`, the coordinator, and
//! `child(args)`, the contender that the coordinator starts by re-executing this binary as
//! `xtask race-child <target> ARGS...`. Contenders are real processes so that the kernel, not a
//! thread scheduler, decides the interleavings.

mod lockfile;
mod proxy;

/// What `cargo xtask race` can race.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Target {
    /// 64 processes acquire one lock at once; 64 processes break one stale lock at once.
    Lockfile,
    /// 64 `shoal proxy` processes start at once on a cold root: one daemon, one backend.
    Proxy,
}

impl Target {
    /// Every target, in the order CI runs them.
    pub(crate) const ALL: &'static [Target] = &[Target::Lockfile, Target::Proxy];
}

pub(crate) fn run(target: Target, rounds: u32) -> anyhow::Result<()> {
    match target {
        Target::Lockfile => lockfile::run(rounds),
        Target::Proxy => proxy::run(rounds),
    }
}

pub(crate) fn child(target: Target, args: &[String]) -> anyhow::Result<()> {
    match target {
        Target::Lockfile => lockfile::child(args),
        Target::Proxy => proxy::child(args),
    }
}
