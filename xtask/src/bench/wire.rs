//! `cargo xtask bench wire`: framing and envelope throughput against plain line splitting.

pub(crate) fn run() -> anyhow::Result<()> {
    anyhow::bail!("the wire benchmark is not written yet")
}
