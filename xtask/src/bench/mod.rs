//! `cargo xtask bench`: benchmarks that report ratios against a baseline measured in the same run.

pub(crate) mod peers;
mod session;
mod wire;

/// Which benchmark to run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Target {
    /// Envelope decode + id rewrite vs plain newline splitting, small and 1 MiB messages.
    Wire,
    /// shoal end to end (attach, round trips, 1 MiB results, memory, 64 and 256 sessions) vs the
    /// server spoken to directly.
    Session,
}

pub(crate) fn run(target: Option<Target>) -> anyhow::Result<()> {
    match target {
        Some(Target::Wire) => wire::run(),
        Some(Target::Session) => session::run(),
        None => {
            wire::run()?;
            session::run()
        }
    }
}
