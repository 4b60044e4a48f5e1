//! The `shoal` command line: `shoal proxy` and `shoal daemon` today; `status`, `stop`, `restart`,
//! `logs` and `demo` arrive with issue #6.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `shoal daemon`: it served and exited on idle, `stop` or a signal; for `shoal proxy`: the host closed stdin or went away, or SIGTERM) |
//! | 1 | failure; the message on stderr says what failed and what to do (for `shoal daemon`: it could not start, or it exited because its lock or socket was taken away; for `shoal proxy`: no daemon could be reached and `--no-fallback` was given or the server could not be run directly, or a lost daemon could not be replaced for minutes) |
//! | 2 | the command line is invalid (unknown flag, bad value) |
//! | 3 | `shoal daemon`: another daemon already serves this key; it was left untouched |
//!
//! When `shoal proxy` falls back to running the server directly, the process becomes the server
//! and its exit code is the server's.

mod daemon;
mod proxy;
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
    Proxy(proxy::ProxyArgs),
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
        Command::Proxy(args) => proxy::run(args),
        Command::Daemon(args) => daemon::run(args),
    }
}

/// What must happen before anything else in `main`, argument parsing included: for `shoal proxy`,
/// arming the parent-death watchdog.
pub fn early_init() {
    proxy::arm_if_proxy();
}

/// Print an error and its causes once, as `shoal: failed to <what>: <cause>: <cause>`.
pub(crate) fn report(error: &anyhow::Error) {
    #[expect(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
    {
        eprintln!("shoal: failed to {error:#}");
    }
}
