//! `shoal stop` and `shoal restart`: send a control request to every selected daemon.
//!
//! Daemons are asked concurrently; the report lists them in key order. A selected key dir whose
//! daemon is gone (stale) is mentioned and skipped. The command fails (exit 1) when a selected
//! daemon could not be stopped or restarted, or when no running daemon was selected at all.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use shoal_wire::{ControlRequest, ControlResponse};

use crate::select::{self, KeyDir, SelectionArgs};
use crate::status::command_line;
use crate::{exit, write_stdout};
use shoal_ipc::control::{ControlConnection, ControlError};

/// Stop daemons: each answers what its sessions have in flight, closes them, stops its server
/// and exits. A session still open gets a new daemon through its `shoal proxy`.
///
/// Without --all or --root, stops the daemons of the current project (the git top level of the
/// current directory, else the current directory). Waits until each daemon is gone.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  shoal stop                                   # the daemons of this project
  shoal stop --root ~/src/app -- npx -y @modelcontextprotocol/server-filesystem .
  shoal stop --all")]
pub(crate) struct StopArgs {
    #[command(flatten)]
    selection: SelectionArgs,
}

/// Restart the MCP server of daemons, keeping every session connected: use it when a server is
/// wedged, crash-looped or must reload its configuration.
///
/// Without --all or --root, restarts the servers of the current project's daemons. Waits until
/// each new server has initialized.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  shoal restart                                # the servers of this project
  shoal restart --root ~/src/app -- npx -y @modelcontextprotocol/server-filesystem .
  shoal restart --all")]
pub(crate) struct RestartArgs {
    #[command(flatten)]
    selection: SelectionArgs,
}

/// A daemon's answer to `stop` or `restart`; the hub answers at once.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopping daemon may take to be gone: it answers in-flight requests, flushes its
/// sessions and stops the server's process group (at most a few seconds of grace per step).
const GONE_TIMEOUT: Duration = Duration::from_secs(30);

/// A restart is answered once the new server has initialized: stopping the old one (seconds)
/// plus the new one's start-up, which the daemon itself bounds at 60 s.
const RESTART_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug)]
enum Action {
    Stop,
    Restart,
}

pub(crate) fn stop(args: &StopArgs) -> ExitCode {
    act(&args.selection, Action::Stop)
}

pub(crate) fn restart(args: &RestartArgs) -> ExitCode {
    act(&args.selection, Action::Restart)
}

/// What happened to one selected daemon.
enum Outcome {
    /// Stopped (and gone), or restarted; the text says so.
    Done(String),
    /// Nothing was running there.
    Stale(ControlError),
    /// It could not be done.
    Failed(anyhow::Error),
}

fn act(selection: &SelectionArgs, action: Action) -> ExitCode {
    let result = (|| {
        let selection = selection.resolve()?;
        let (runtime_dir, _) = select::runtime_dir()?;
        let dirs = select::key_dirs(&runtime_dir)?;
        let selected = selection.apply(dirs);
        let outcomes = crate::runtime()?.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (index, dir) in selected.iter().enumerate() {
                let (socket, key) = (dir.paths.socket.clone(), dir.key.clone());
                tasks.spawn(async move { (index, one(&socket, &key, action).await) });
            }
            let mut outcomes: Vec<_> = tasks.join_all().await;
            outcomes.sort_by_key(|(index, _)| *index);
            outcomes
        });
        Ok((selection, selected, outcomes))
    })();
    let (selection, selected, outcomes) = match result {
        Ok(result) => result,
        Err(error) => {
            crate::report(&error);
            return ExitCode::from(exit::FAILURE);
        }
    };
    let mut out = String::new();
    let (mut done, mut failed) = (0, 0);
    for (index, outcome) in outcomes {
        let dir = &selected[index];
        match outcome {
            Outcome::Done(what) => {
                done += 1;
                let _ = writeln!(out, "{what} {}", describe(dir));
            }
            Outcome::Stale(error) => {
                let _ = writeln!(out, "skipped {} (stale: {error})", describe(dir));
            }
            Outcome::Failed(error) => {
                failed += 1;
                let verb = match action {
                    Action::Stop => "stop",
                    Action::Restart => "restart the server of",
                };
                crate::report(&error.context(format!("{verb} {}", describe(dir))));
            }
        }
    }
    let code = write_stdout(&out);
    if failed > 0 {
        return ExitCode::from(exit::FAILURE);
    }
    if done == 0 {
        let message = if selected.is_empty() {
            selection.none_matched()
        } else {
            format!(
                "find running {}: {} matched, but no daemon runs there any more (stale); \
                 `shoal status` lists the running ones",
                selection.describe(),
                selected.len(),
            )
        };
        crate::report(&anyhow!(message));
        return ExitCode::from(exit::FAILURE);
    }
    code
}

async fn one(socket: &std::path::Path, key: &str, action: Action) -> Outcome {
    let label = match action {
        Action::Stop => "shoal stop",
        Action::Restart => "shoal restart",
    };
    let mut connection = match ControlConnection::open(socket, Some(key), label).await {
        Ok(connection) => connection,
        Err(error) if error.is_stale() => return Outcome::Stale(error),
        Err(error) => return Outcome::Failed(error.into()),
    };
    let pid = connection.hello().pid;
    let (request, timeout) = match action {
        Action::Stop => (ControlRequest::Stop, ANSWER_TIMEOUT),
        Action::Restart => (ControlRequest::Restart, RESTART_TIMEOUT),
    };
    let response = match connection.request(&request, timeout).await {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(error.into()),
    };
    match (action, response) {
        (Action::Stop, ControlResponse::Stopping) => {
            if connection.closed(GONE_TIMEOUT).await {
                Outcome::Done(format!("stopped daemon {pid} of"))
            } else {
                Outcome::Failed(anyhow!(
                    "daemon {pid} accepted the stop but is still running after {GONE_TIMEOUT:?}; \
                     its log may say why (`shoal logs`), or end it with `kill {pid}`"
                ))
            }
        }
        (Action::Restart, ControlResponse::Restarted { backend_pid }) => {
            let new = backend_pid.map_or_else(String::new, |pid| format!(" (now pid {pid})"));
            Outcome::Done(format!("restarted the server{new} of daemon {pid} of"))
        }
        (_, ControlResponse::Error { message }) => Outcome::Failed(anyhow!(
            "daemon {pid} answered: {message}; see `shoal logs`"
        )),
        (_, other) => Outcome::Failed(anyhow!("daemon {pid} answered {other:?}")),
    }
}

/// `/p (npx -y server)`, or the key when `meta.json` is unreadable.
fn describe(dir: &KeyDir) -> String {
    match &dir.meta {
        Ok(meta) => format!("{} ({})", meta.root, command_line(&meta.argv)),
        Err(_) => format!("key {}", dir.key),
    }
}
