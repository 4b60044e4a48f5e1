//! `shoal-fixture`: the fixture MCP server as a process (see `shoal_testkit::server`).

use std::io::Write;
use std::process::ExitCode;

use shoal_testkit::server::{self, Config, GRANDCHILD_ARG, Parsed, USAGE};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|arg| arg == GRANDCHILD_ARG) {
        server::run_grandchild();
    }
    let parsed = Config::from_env().and_then(|config| config.apply_args(args));
    let config = match parsed {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Help) => {
            let _ = std::io::stdout().write_all(USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "shoal-fixture: {error}");
            return ExitCode::from(2);
        }
    };
    match server::run_stdio(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "shoal-fixture: failed to serve stdio: {error}"
            );
            ExitCode::FAILURE
        }
    }
}
