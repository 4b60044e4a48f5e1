//! `cargo xtask`: shoal's project automation.
//!
//! Everything CI does goes through here, so that a developer can run exactly what CI runs with one
//! command (`cargo xtask ci`). Each task lives in its own module; `main` only parses arguments.

mod bench;
mod ci;
mod fuzz;
mod interop;
mod race;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "shoal's project automation", version)]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run everything CI runs: fmt check, clippy -D warnings, the test suite, doc tests, packaging
    /// checks, the race tests at a CI-sized repetition count, and interop.
    ///
    /// Example: cargo xtask ci
    Ci,
    /// Run a cross-crate race test with real processes, repeated N rounds.
    ///
    /// Example: cargo xtask race lockfile --rounds 50
    Race {
        /// What to race.
        #[arg(value_enum)]
        target: race::Target,
        /// How many rounds to run; every round must end with the expected outcome.
        #[arg(long, default_value_t = 50)]
        rounds: u32,
    },
    /// Run real third-party MCP clients (the official Python and TypeScript SDKs), a real
    /// server (the reference everything server) and a real host (Gemini CLI, with `shoal
    /// install`) through `shoal proxy`, with a daemon SIGKILL in the middle; see
    /// docs/interop.md. Installs
    /// the pinned peers (xtask/interop/) into target/interop/ first if needed; needs Node.js 20+
    /// with npm and Python 3.11+.
    ///
    /// Example: cargo xtask interop
    Interop {
        /// Only install the pinned peers (npm and PyPI), do not run.
        #[arg(long)]
        install_only: bool,
    },
    /// Internal: a contender process started by `race`. Not for humans.
    #[command(hide = true)]
    RaceChild {
        #[arg(value_enum)]
        target: race::Target,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the property-based fuzz harness for the wire decoder and hello parser.
    ///
    /// Example: cargo xtask fuzz --secs 600
    Fuzz {
        /// How long to fuzz, in seconds.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// A process `cargo xtask bench session` measures against (the fast server, the two-relay,
    /// half-relay and multiplexer floors; see `bench/peers.rs`). Not for humans.
    #[command(hide = true)]
    BenchPeer {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run benchmarks and print a table of ratios against a baseline measured in the same run.
    ///
    /// Example: cargo xtask bench wire
    Bench {
        /// Which benchmark to run; all of them when omitted.
        #[arg(value_enum)]
        target: Option<bench::Target>,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.task {
        Task::Ci => ci::run(),
        Task::Race { target, rounds } => race::run(target, rounds),
        Task::Interop { install_only } => interop::run(install_only),
        Task::RaceChild { target, args } => race::child(target, &args),
        Task::Fuzz { secs } => fuzz::run(std::time::Duration::from_secs(secs)),
        Task::Bench { target } => bench::run(target),
        Task::BenchPeer { args } => bench::peers::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            #[expect(clippy::print_stderr, reason = "xtask reports its own failure")]
            {
                eprintln!("xtask: error: {error:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
