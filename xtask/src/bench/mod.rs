//! `cargo xtask bench`: benchmarks that report ratios against a baseline measured in the same run.

mod wire;

/// Which benchmark to run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Target {
    /// Envelope decode + id rewrite vs plain newline splitting, small and 1 MiB messages.
    Wire,
}

pub(crate) fn run(target: Option<Target>) -> anyhow::Result<()> {
    match target {
        Some(Target::Wire) | None => wire::run(),
    }
}
