//! The `shoal` command line: `shoal daemon`, and the operator commands `status`, `stop`,
//! `restart` and `logs`; `proxy` and `demo` arrive with issue #6.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `shoal daemon`: it served and exited on idle, `stop` or a signal; for `shoal status`: the listing was printed, whatever state the daemons are in) |
//! | 1 | failure; the message on stderr says what failed and what to do (for `shoal daemon`: it could not start, or it exited because its lock or socket was taken away; for `shoal stop`, `restart` and `logs`: no daemon matched, or one of them could not be stopped or restarted) |
//! | 2 | the command line is invalid (unknown flag, bad value) |
//! | 3 | `shoal daemon`: another daemon already serves this key; it was left untouched |

mod control;
mod daemon;
mod logs;
mod root;
mod select;
mod status;
mod stop;

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
    Status(status::StatusArgs),
    Stop(stop::StopArgs),
    Restart(stop::RestartArgs),
    Logs(logs::LogsArgs),
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
        Command::Status(args) => status::run(&args),
        Command::Stop(args) => stop::stop(&args),
        Command::Restart(args) => stop::restart(&args),
        Command::Logs(args) => logs::run(&args),
    }
}

/// Print an error and its causes once, as `shoal: failed to <what>: <cause>: <cause>`.
pub(crate) fn report(error: &anyhow::Error) {
    #[expect(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
    {
        eprintln!("shoal: failed to {error:#}");
    }
}

/// Print `text` on stdout. A closed stdout (`shoal status | head -1`) is not a failure: the
/// reader has what it wanted.
pub(crate) fn write_stdout(text: &str) -> ExitCode {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            report(&anyhow::Error::new(error).context("write to stdout"));
            ExitCode::from(exit::FAILURE)
        }
    }
}
