//! `cargo xtask race lockfile`: the 64-contender acquire and stale-break races.

pub(crate) fn run(_rounds: u32) -> anyhow::Result<()> {
    anyhow::bail!("the lockfile race is not written yet")
}

pub(crate) fn child(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("the lockfile race is not written yet")
}
