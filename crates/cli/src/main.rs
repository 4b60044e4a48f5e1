//! The `shoal` binary: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    shoal::early_init();
    shoal::run(shoal::Cli::parse())
}
