//! `cargo xtask bench wire`: framing and envelope throughput against plain line splitting.
//!
//! xtask itself runs as a debug build (the `cargo xtask` alias), so the timing happens in a release
//! build of `crates/wire/examples/wire_bench.rs`; this task builds and runs it, lets it print its
//! table, and has it write the figures to `target/bench/wire.json`.

use crate::util::{cargo, run_command, say};

pub(crate) fn run() -> anyhow::Result<()> {
    let target_dir = crate::util::target_dir();
    let json_path = target_dir.join("bench").join("wire.json");
    std::fs::create_dir_all(json_path.parent().unwrap_or(&target_dir))?;
    let mut bench = cargo();
    bench
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "shoal-wire",
            "--example",
            "wire_bench",
            "--",
            "--json",
        ])
        .arg(&json_path);
    run_command(bench)?;
    say(&format!("bench wire: figures in {}", json_path.display()));
    Ok(())
}
