//! The `shoal` command line: `shoal daemon` today; `proxy`, `status`, `stop`, `restart`, `logs` and
//! `demo` arrive with issue #6.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `shoal daemon`: it served and exited on idle, `stop` or a signal) |
//! | 1 | failure; the message on stderr says what failed and what to do (for `shoal daemon`: it could not start, or it exited because its lock or socket was taken away) |
//! | 2 | the command line is invalid (unknown flag, bad value) |
//! | 3 | `shoal daemon`: another daemon already serves this key; it was left untouched |

mod daemon;
mod root;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Share one copy of each stdio MCP server between all the agent sessions of a project.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Daemon(daemon::DaemonArgs),
}

/// Exit codes; see the crate docs for the table.
pub(crate) mod exit {
    pub(crate) const FAILURE: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const HELD: u8 = 3;
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Daemon(args) => daemon::run(args),
    }
}

/// Print an error and its causes once, as `shoal: failed to <what>: <cause>: <cause>`.
pub(crate) fn report(error: &anyhow::Error) {
    #[expect(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
    {
        eprintln!("shoal: failed to {error:#}");
    }
}
