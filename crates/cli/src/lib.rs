//! The `shoal` command line: `shoal proxy` (what an MCP host runs), `shoal daemon` (what the
//! proxy starts), the operator commands `status`, `stop`, `restart` and `logs`, `shoal install`
//! (rewrites the hosts' configs) and `shoal demo`.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `shoal daemon`: it served and exited on idle, `stop` or a signal; for `shoal proxy`: the host closed stdin or went away, or SIGTERM; for `shoal status`: the listing was printed, whatever state the daemons are in) |
//! | 1 | failure; the message on stderr says what failed and what to do (for `shoal daemon`: it could not start, or it exited because its lock or socket was taken away; for `shoal proxy`: no daemon could be reached and `--no-fallback` was given or the server could not be run directly, or a lost daemon could not be replaced for minutes; for `shoal stop`, `restart` and `logs`: no daemon matched, or one of them could not be stopped or restarted; for `shoal install`: a config file could not be read, parsed or written, the others were still done) |
//! | 2 | the command line is invalid (unknown flag, bad value) |
//! | 3 | `shoal daemon`: another daemon already serves this key; it was left untouched |
//! | 127 | `shoal proxy`: the server's command was not found (as a shell says it); no daemon was started |
//!
//! When `shoal proxy` falls back to running the server directly, the process becomes the server
//! and its exit code is the server's.

mod config;
mod daemon;
mod demo;
mod install;
mod logs;
mod proxy;
mod prune;
mod root;
mod select;
mod server;
mod status;
mod stop;
mod terminal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Share one copy of each stdio MCP server between all the agent sessions of a project.
#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    propagate_version = true,
    after_help = "Settings for every host: ~/.config/shoal/config.toml (runtime_dir, idle_timeout, \
                  log), overridden by SHOAL_RUNTIME_DIR, SHOAL_IDLE_TIMEOUT and SHOAL_LOG. Hosts \
                  strip variables from their servers' environment; the file always applies."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Proxy(proxy::ProxyArgs),
    Daemon(daemon::DaemonArgs),
    Status(status::StatusArgs),
    Stop(stop::StopArgs),
    Restart(stop::RestartArgs),
    Logs(logs::LogsArgs),
    Install(install::InstallArgs),
    Demo(demo::DemoArgs),
    /// The example MCP server `shoal demo` shares (the workspace's test fixture). Not for humans.
    #[command(hide = true)]
    DemoServer {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Exit codes; see the crate docs for the table.
pub(crate) mod exit {
    pub(crate) const FAILURE: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const HELD: u8 = 3;
    /// The shell's code for a command that is not found.
    pub(crate) const NOT_FOUND: u8 = 127;
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Proxy(args) => proxy::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Status(args) => status::run(&args),
        Command::Stop(args) => stop::stop(&args),
        Command::Restart(args) => stop::restart(&args),
        Command::Logs(args) => logs::run(&args),
        Command::Install(args) => install::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::DemoServer { args } => demo::serve(args),
    }
}

/// What must happen before anything else in `main`, argument parsing included: for `shoal proxy`,
/// arming the parent-death watchdog.
pub fn early_init() {
    proxy::arm_if_proxy();
}

/// A current-thread runtime for the CLI's short-lived async work (sockets and deadlines).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
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
