//! `shoal status`: every daemon of this user, asked over its socket.
//!
//! Each key dir under the runtime dir is probed at the same time (connect, bounded hello,
//! `status` request, each under a deadline), so the whole command takes at most about one
//! deadline however many daemons there are, and a wedged or dead daemon is a row, not a hang or
//! a failure. Rendering is a pure function of the collected [`Entry`]s ([`render_table`]), so
//! it is snapshot-tested with fixed values.
//!
//! # `--json`
//!
//! A JSON array with one object per key dir, sorted by root, then command, then key. The fields
//! are stable: new ones may be added, none is renamed or removed without a changelog entry.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `key` | string | the daemon key id (its directory's name) |
//! | `state` | string | `running` (it answered), `stale` (no daemon listens: it is gone, its dir and log remain), `exiting` (it closed the connection before its hello), `unresponsive` (no usable answer within the deadline, or another shoal protocol) |
//! | `note` | string or null | why it is not `running`, for humans |
//! | `dir` | string | the key dir |
//! | `log` | string | its `daemon.log` |
//! | `pid` | integer or null | the daemon's pid (from `meta.json` when it did not answer) |
//! | `version` | string or null | the daemon's shoal version |
//! | `root` | string or null | the project root |
//! | `argv` | array of strings | the server command line (empty when unknown) |
//! | `backend_pid` | integer or null | the server's pid, when one is running |
//! | `backend_state` | string or null | `starting`, `running`, `restarting`, `crash_looped`, `stopped` or `unknown` |
//! | `backend_restarts` | integer or null | server restarts (crashes and `shoal restart`) |
//! | `clients` | integer or null | connected sessions |
//! | `uptime_ms` | integer or null | time since the daemon started |
//! | `requests_served` | integer or null | client requests answered since start |
//! | `rss_bytes` | integer or null | resident memory of the daemon plus the server's process group |
//! | `env_differs` | array of strings | environment variables that sessions set otherwise than the server's environment (names only; empty when none or unknown) |
//!
//! Fields other than `key`, `state`, `dir`, `log`, `argv` and `env_differs` are null when unknown (a daemon
//! that did not answer reports only what its `meta.json` says).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use shoal_wire::{BackendState, ControlRequest, ControlResponse, StatusReport};

use crate::select::{self, KeyDir};
use crate::{exit, write_stdout};
use shoal_ipc::control::{ControlConnection, ControlError};

/// Show every daemon of this user: root, server command, pids, sessions, uptime, memory.
///
/// Daemons that do not answer are listed as `stale` (gone: their directory and log remain until
/// the next daemon for that key starts), `exiting` or `unresponsive`, never waited on for more
/// than a few seconds. Daemons that stopped cleanly more than a day ago are pruned first (their
/// directory and log are removed), and the listing says how many.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  shoal status
  shoal status --json | jq '.[] | select(.state == \"running\") | .root'")]
#[command(after_long_help = "\
Examples:
  shoal status
  shoal status --json | jq '.[] | select(.state == \"running\") | .root'

--json prints an array with one object per daemon; fields (null when unknown):
  key              the daemon key (its directory's name)
  state            running | stopped (exited cleanly; hidden without --all) |
                   stale (gone without a clean exit; dir and log remain) | exiting | unresponsive
  note             why it is not running, for humans
  dir, log         its key dir and daemon.log
  pid, version     the daemon's pid and shoal version
  root, argv       the project root and the server command line
  backend_pid      the server's pid
  backend_state    starting | running | restarting | crash_looped | stopped | unknown
  backend_restarts server restarts (crashes and `shoal restart`)
  clients          connected sessions
  uptime_ms        time since the daemon started
  requests_served  client requests answered
  rss_bytes        resident memory of the daemon plus the server's process group
  env_differs      variables sessions set otherwise than the server's environment (names)")]
pub(crate) struct StatusArgs {
    /// Print a JSON array (one object per daemon) instead of a table
    #[arg(long)]
    json: bool,

    /// Never shorten the ROOT and COMMAND columns to fit the terminal (they are never shortened
    /// when the output is not a terminal)
    #[arg(long)]
    wide: bool,

    /// Also list daemons that stopped cleanly (idle timeout, `shoal stop`); by default only a
    /// count of them is printed. `--json` always lists them
    #[arg(long)]
    all: bool,
}

/// How long a daemon that accepted the connection and sent its hello has to answer `status`.
/// The hub answers from memory at once; this only bounds a wedged daemon.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// What `shoal status` knows about one key dir; serialised as is for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) state: State,
    pub(crate) note: Option<String>,
    pub(crate) dir: String,
    pub(crate) log: String,
    pub(crate) pid: Option<u32>,
    pub(crate) version: Option<String>,
    pub(crate) root: Option<String>,
    pub(crate) argv: Vec<String>,
    pub(crate) backend_pid: Option<u32>,
    pub(crate) backend_state: Option<BackendState>,
    pub(crate) backend_restarts: Option<u32>,
    pub(crate) clients: Option<u32>,
    pub(crate) uptime_ms: Option<u64>,
    pub(crate) requests_served: Option<u64>,
    pub(crate) rss_bytes: Option<u64>,
    pub(crate) env_differs: Vec<String>,
}

/// Whether a daemon answered; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Running,
    /// Gone after a clean exit (idle, `shoal stop`, a signal): nothing to look into.
    Stopped,
    Stale,
    Exiting,
    Unresponsive,
}

pub(crate) fn run(args: &StatusArgs) -> ExitCode {
    let mut pruned = 0;
    let listed = select::runtime_dir().and_then(|(runtime_dir, _)| {
        pruned = crate::prune::prune(&runtime_dir, std::time::SystemTime::now());
        Ok((collect(&runtime_dir)?, runtime_dir))
    });
    let (entries, runtime_dir) = match listed {
        Ok(listed) => listed,
        Err(error) => {
            crate::report(&error);
            return ExitCode::from(exit::FAILURE);
        }
    };
    if pruned > 0 && args.json {
        #[expect(clippy::print_stderr, reason = "--json keeps stdout for the JSON")]
        {
            eprint!("{}", pruned_line(pruned));
        }
    }
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&entries)
            .expect("Entry has string keys and no maps: it always serialises");
        json.push('\n');
        json
    } else if entries.is_empty() {
        no_daemons(&runtime_dir)
    } else if !args.all && entries.iter().all(|entry| entry.state == State::Stopped) {
        let mut text = no_daemons(&runtime_dir);
        text.push_str(&stopped_not_shown(entries.len()));
        text
    } else {
        let home = std::env::var_os("HOME").map(|home| home.to_string_lossy().into_owned());
        let width = if args.wide {
            None
        } else {
            crate::terminal::stdout_width()
        };
        let stopped = entries
            .iter()
            .filter(|entry| entry.state == State::Stopped)
            .count();
        if args.all || stopped == 0 {
            render_table(&entries, home.as_deref(), width)
        } else {
            let shown: Vec<Entry> = entries
                .into_iter()
                .filter(|entry| entry.state != State::Stopped)
                .collect();
            render_table(&shown, home.as_deref(), width) + &stopped_not_shown(stopped)
        }
    };
    let text = if pruned > 0 && !args.json {
        text + &pruned_line(pruned)
    } else {
        text
    };
    write_stdout(&text)
}

/// The line that says how many long-stopped daemons were pruned.
fn pruned_line(count: usize) -> String {
    format!(
        "Pruned {count} daemon{} that stopped cleanly more than a day ago (their directories and \
         logs are removed).\n",
        if count == 1 { "" } else { "s" }
    )
}

/// Probe every key dir under `runtime_dir`, all at once.
pub(crate) fn collect(runtime_dir: &Path) -> anyhow::Result<Vec<Entry>> {
    let dirs = select::key_dirs(runtime_dir)?;
    let mut entries = crate::runtime()?.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, dir) in dirs.into_iter().enumerate() {
            tasks.spawn(async move { (index, probe(dir).await) });
        }
        let mut entries = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            // A probe does not panic (no unwrap on peer data); if one did, its row is lost
            // rather than the whole listing.
            if let Ok(entry) = joined {
                entries.push(entry);
            }
        }
        entries
    });
    entries.sort_by(|(_, a), (_, b)| (&a.root, &a.argv, &a.key).cmp(&(&b.root, &b.argv, &b.key)));
    Ok(entries.into_iter().map(|(_, entry)| entry).collect())
}

async fn probe(dir: KeyDir) -> Entry {
    let answer = async {
        let mut connection =
            ControlConnection::open(&dir.paths.socket, Some(&dir.key), "shoal status").await?;
        match connection
            .request(&ControlRequest::Status, STATUS_TIMEOUT)
            .await?
        {
            ControlResponse::Status(report) => Ok(report),
            ControlResponse::Error { message } => Err(ControlError::Unexpected(format!(
                "the status request with an error: {message}"
            ))),
            other => Err(ControlError::Unexpected(format!(
                "the status request with {other:?}"
            ))),
        }
    };
    match answer.await {
        Ok(report) => Entry::from_report(&dir, report),
        Err(error) => Entry::from_dir(&dir, &error),
    }
}

impl Entry {
    fn from_report(dir: &KeyDir, report: StatusReport) -> Entry {
        Entry {
            key: dir.key.clone(),
            state: State::Running,
            note: None,
            dir: dir.paths.dir.to_string_lossy().into_owned(),
            log: dir.paths.log.to_string_lossy().into_owned(),
            pid: Some(report.pid),
            version: Some(report.version),
            root: Some(report.root),
            argv: report.backend_argv,
            backend_pid: report.backend_pid,
            backend_state: Some(report.backend_state),
            backend_restarts: Some(report.backend_restarts),
            clients: Some(report.n_clients),
            uptime_ms: Some(u64::try_from(report.uptime.as_millis()).unwrap_or(u64::MAX)),
            requests_served: Some(report.requests_served),
            rss_bytes: report.rss_bytes,
            env_differs: report.env_differs,
        }
    }

    fn from_dir(dir: &KeyDir, error: &ControlError) -> Entry {
        let exited = dir.meta.as_ref().ok().and_then(|meta| meta.exited.as_ref());
        let state = match error {
            error if error.is_stale() && exited.is_some() => State::Stopped,
            error if error.is_stale() => State::Stale,
            ControlError::ClosedBeforeHello => State::Exiting,
            _ => State::Unresponsive,
        };
        let mut note = match (error, exited) {
            (error, Some(exit)) if error.is_stale() => format!("stopped: {}", exit.reason),
            (error, _) if error.is_stale() => format!("not running: {error}"),
            (error, _) => error.to_string(),
        };
        let meta = dir.meta.as_ref().ok();
        if let Err(why) = &dir.meta {
            let _ = write!(note, "; {why}");
        }
        Entry {
            key: dir.key.clone(),
            state,
            note: Some(note),
            dir: dir.paths.dir.to_string_lossy().into_owned(),
            log: dir.paths.log.to_string_lossy().into_owned(),
            pid: meta.map(|meta| meta.pid),
            version: meta.map(|meta| meta.version.clone()),
            root: meta.map(|meta| meta.root.clone()),
            argv: meta.map(|meta| meta.argv.clone()).unwrap_or_default(),
            backend_pid: None,
            backend_state: None,
            backend_restarts: None,
            clients: None,
            uptime_ms: None,
            requests_served: None,
            rss_bytes: None,
            env_differs: Vec::new(),
        }
    }
}

/// The line that says how many cleanly stopped daemons the table leaves out.
fn stopped_not_shown(count: usize) -> String {
    format!(
        "{count} stopped daemon{} not shown (they exited cleanly; `shoal status --all` lists \
         them, `shoal logs --root DIR` reads their logs).\n",
        if count == 1 { "" } else { "s" }
    )
}

/// What `shoal status` prints when no key dir exists.
pub(crate) fn no_daemons(runtime_dir: &Path) -> String {
    format!(
        "No shoal daemons are running (looked in {}).\n\
         One starts when an MCP host first runs `shoal proxy -- <server command>` in a project.\n",
        runtime_dir.display()
    )
}

/// The narrowest root and command cells when the table must fit a terminal: below these the
/// columns stop telling servers apart, and the line wraps instead.
const MIN_ROOT_WIDTH: usize = 12;
const MIN_COMMAND_WIDTH: usize = 20;

/// The human table: one row per entry, then a note for each daemon that did not answer.
///
/// `home` (the user's home directory) is shown as `~` in roots. With `width` (a terminal's), the
/// root and command cells are shortened with `…` so that lines fit it (a root keeps its end,
/// which tells projects apart; a command its start); without, nothing is ever cut.
pub(crate) fn render_table(entries: &[Entry], home: Option<&str>, width: Option<usize>) -> String {
    const HEADER: [&str; 10] = [
        "ROOT", "COMMAND", "STATE", "PID", "BACKEND", "CLIENTS", "UPTIME", "RESTARTS", "REQUESTS",
        "MEMORY",
    ];
    let dash = || "-".to_owned();
    let mut rows: Vec<[String; 10]> = entries
        .iter()
        .map(|entry| {
            let backend = match (entry.backend_pid, entry.backend_state) {
                (Some(pid), Some(state)) => format!("{pid} {}", backend_state(state)),
                (None, Some(state)) => backend_state(state).to_owned(),
                (_, None) => dash(),
            };
            [
                entry
                    .root
                    .as_deref()
                    .map_or_else(|| "?".to_owned(), |root| home_root(root, home)),
                if entry.argv.is_empty() {
                    "?".to_owned()
                } else {
                    command_cell(&entry.argv)
                },
                state(entry.state).to_owned(),
                entry.pid.map_or_else(dash, |pid| pid.to_string()),
                backend,
                entry.clients.map_or_else(dash, |n| n.to_string()),
                entry
                    .uptime_ms
                    .map_or_else(dash, |ms| duration(Duration::from_millis(ms))),
                entry.backend_restarts.map_or_else(dash, |n| n.to_string()),
                entry.requests_served.map_or_else(dash, |n| n.to_string()),
                entry.rss_bytes.map_or_else(dash, size),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Columns shown, in order. A terminal too narrow for them all loses the least telling
    // first (`--json` and a wider window have everything); root and command always stay.
    let mut shown: Vec<usize> = (0..HEADER.len()).collect();
    if let Some(total) = width {
        let needed = |shown: &[usize]| {
            let others: usize = shown[2..].iter().map(|&column| widths[column]).sum();
            others + 2 * (shown.len() - 1) + MIN_ROOT_WIDTH + MIN_COMMAND_WIDTH
        };
        for column in DROPPED_FIRST {
            if needed(&shown) <= total {
                break;
            }
            shown.retain(|&shown| shown != column);
        }
        let others: usize = shown[2..].iter().map(|&column| widths[column]).sum();
        let room = total.saturating_sub(others + 2 * (shown.len() - 1));
        let (root, command) = fit(room, widths[0], widths[1]);
        if root < widths[0] || command < widths[1] {
            for row in &mut rows {
                row[0] = keep_end(&row[0], root);
                row[1] = keep_both_ends(&row[1], command);
            }
            widths[0] = root.max(HEADER[0].len());
            widths[1] = command.max(HEADER[1].len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 10]| {
        let mut text = String::new();
        for &column in &shown {
            let width = widths[column];
            let _ = write!(text, "{:<width$}  ", cells[column]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(HEADER);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    let mut stale = false;
    for entry in entries {
        if let Some(note) = &entry.note {
            stale |= entry.state == State::Stale;
            let _ = writeln!(out, "note: {} ({}): {note}", entry.key, state(entry.state));
        }
        if !entry.env_differs.is_empty() {
            let _ = writeln!(
                out,
                "note: {} (running): sessions set {} otherwise than the server's environment \
                 (it keeps the first session's; `--key-env NAME` splits sessions by value)",
                entry.key,
                entry.env_differs.join(", ")
            );
        }
    }
    if stale {
        out.push_str(
            "A stale daemon is gone; its directory and log stay until the next daemon for that \
             key starts (read the log with `shoal logs --root DIR`).\n",
        );
    }
    out
}

fn state(state: State) -> &'static str {
    match state {
        State::Running => "running",
        State::Stopped => "stopped",
        State::Stale => "stale",
        State::Exiting => "exiting",
        State::Unresponsive => "no answer",
    }
}

fn backend_state(state: BackendState) -> &'static str {
    match state {
        BackendState::Starting => "starting",
        BackendState::Running => "running",
        BackendState::Restarting => "restarting",
        BackendState::CrashLooped => "crash-looped",
        BackendState::Stopped => "stopped",
        BackendState::Unknown => "unknown",
    }
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`: two units at most, enough to tell daemons apart.
pub(crate) fn duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes, seconds) = (
        seconds / 86_400,
        seconds / 3_600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// `512 B`, `12.4 KiB`, `50.0 MiB`, `1.2 GiB`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[expect(clippy::cast_precision_loss, reason = "one decimal is shown")]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A command line as a shell would take it back: arguments with spaces, quotes or nothing in
/// them are single-quoted.
pub(crate) fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The table's command cell: the program's file name (its directory is noise here; `--json`
/// has the full argv) and the arguments.
fn command_cell(argv: &[String]) -> String {
    let mut argv = argv.to_vec();
    if let Some(program) = argv.first_mut()
        && let Some(name) = Path::new(program.as_str()).file_name()
    {
        *program = name.to_string_lossy().into_owned();
    }
    command_line(&argv)
}

/// The table's root cell: `~` for the home directory.
pub(crate) fn home_root(root: &str, home: Option<&str>) -> String {
    match home {
        Some(home) if !home.is_empty() && home != "/" => match root.strip_prefix(home) {
            Some("") => "~".to_owned(),
            Some(rest) if rest.starts_with('/') => format!("~{rest}"),
            _ => root.to_owned(),
        },
        _ => root.to_owned(),
    }
}

/// The columns a narrow terminal loses, first to last: REQUESTS, RESTARTS, UPTIME, MEMORY, PID.
const DROPPED_FIRST: [usize; 5] = [8, 7, 6, 9, 3];

/// The widths of the root and command cells in `room` columns, given their natural widths: both
/// natural if they fit; else the command (what tells a project's servers apart) gets what the
/// root leaves of the room, the root at most two fifths of it, neither below its minimum.
fn fit(room: usize, root: usize, command: usize) -> (usize, usize) {
    if root + command <= room {
        return (root, command);
    }
    let root = root.min((room * 2 / 5).max(MIN_ROOT_WIDTH));
    let command = command.min(room.saturating_sub(root).max(MIN_COMMAND_WIDTH));
    (root, command)
}

/// `text` in at most `width` characters, its end kept behind `…`.
fn keep_end(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - (width - 1)).collect();
    format!("…{tail}")
}

/// A command line in at most `width` characters: its program's name and its end, with `…` for
/// the middle. The end is what tells apart the servers of one project (`npx -y
/// @scope/server-memory` and `npx -y @scope/server-filesystem` share all but their last
/// words); the program says what runs them.
pub(crate) fn keep_both_ends(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let program = text
        .split(' ')
        .next()
        .map_or(0, |program| program.chars().count());
    let head = (program + 1).min(width / 3);
    let tail = width - head - 1;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |secs: u64, expected: &str| {
            assert_eq!(duration(Duration::from_secs(secs)), expected, "{secs}s");
        };
        check(0, "0s");
        check(59, "59s");
        check(60, "1m00s");
        check(192, "3m12s");
        check(3_600, "1h00m");
        check(7_500, "2h05m");
        check(86_400 * 3 + 3_600 * 4 + 59, "3d04h");
    }

    #[test]
    fn sizes() {
        let check = |bytes: u64, expected: &str| assert_eq!(size(bytes), expected, "{bytes}");
        check(0, "0 B");
        check(1023, "1023 B");
        check(1024, "1.0 KiB");
        check(12_697, "12.4 KiB");
        check(1024 * 1024 - 1, "1.0 MiB");
        check(52_428_800, "50.0 MiB");
        check(5 * 1024 * 1024 * 1024, "5.0 GiB");
        check(u64::MAX, "16777216.0 TiB");
    }

    #[test]
    fn command_cells() {
        let argv = |args: &[&str]| args.iter().map(|arg| (*arg).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&argv(&["npx", "-y", "a b", "", "it's"])),
            r"npx -y 'a b' '' 'it'\''s'"
        );
        assert_eq!(
            command_cell(&argv(&["/usr/local/bin/server", "--port=1"])),
            "server --port=1"
        );
        assert_eq!(
            keep_both_ends("npx -y @scope/server-memory", 20),
            "npx …e/server-memory"
        );
        assert_eq!(keep_both_ends("npx -y x", 20), "npx -y x");
        assert_eq!(keep_end("/srv/deep/project", 10), "…p/project");
        assert_eq!(keep_end("short", 10), "short");
    }

    fn running(root: &str, argv: &[&str], pid: u32) -> Entry {
        Entry {
            key: format!("{pid:016x}"),
            state: State::Running,
            note: None,
            dir: format!("/run/user/1000/shoal/{pid:016x}"),
            log: format!("/run/user/1000/shoal/{pid:016x}/daemon.log"),
            pid: Some(pid),
            version: Some("0.1.0".into()),
            root: Some(root.into()),
            argv: argv.iter().map(|arg| (*arg).to_owned()).collect(),
            backend_pid: Some(pid + 1),
            backend_state: Some(BackendState::Running),
            backend_restarts: Some(0),
            clients: Some(3),
            uptime_ms: Some(192_400),
            requests_served: Some(1200),
            rss_bytes: Some(13_002_342),
            env_differs: Vec::new(),
        }
    }

    #[test]
    fn table() {
        let mut crash_looped = running("/srv/tools", &["uvx", "mcp-server-git"], 5001);
        crash_looped.backend_pid = None;
        crash_looped.backend_state = Some(BackendState::CrashLooped);
        crash_looped.backend_restarts = Some(5);
        crash_looped.clients = Some(0);
        crash_looped.uptime_ms = Some(2 * 86_400_000 + 3_600_000);
        crash_looped.rss_bytes = None;
        let mut stale = running("/home/me/src/old", &["node", "server.js"], 4000);
        stale.state = State::Stale;
        stale.note = Some("not running: nothing listens on its socket".into());
        (
            stale.backend_pid,
            stale.backend_state,
            stale.backend_restarts,
            stale.clients,
            stale.uptime_ms,
            stale.requests_served,
            stale.rss_bytes,
        ) = (None, None, None, None, None, None, None);
        let mut app = running(
            "/home/me/src/app",
            &["npx", "-y", "@modelcontextprotocol/server-memory"],
            4242,
        );
        app.env_differs = vec!["DATABASE_URL".into(), "GITHUB_TOKEN".into()];
        let entries = [
            app,
            running(
                "/home/me/work/a/very/deeply/nested/monorepo/packages/frontend",
                &["/usr/local/bin/my-server", "--config", "my config.toml"],
                4300,
            ),
            crash_looped,
            stale,
        ];
        insta::assert_snapshot!(render_table(&entries, Some("/home/me"), Some(132)));
        insta::assert_snapshot!("no_daemons", no_daemons(Path::new("/run/user/1000/shoal")));
    }

    /// Four servers that differ only at the end of their command lines, as `npx` servers of one
    /// project do: at 80 columns, and piped (nothing cut, so each is told apart).
    fn four_servers() -> Vec<Entry> {
        ["memory", "filesystem", "everything", "sequential-thinking"]
            .iter()
            .zip(5000..)
            .map(|(name, pid)| {
                running(
                    "/home/me/src/shoal-demo/packages/frontend",
                    &[
                        "npx",
                        "-y",
                        &format!("@modelcontextprotocol/server-{name}@2025.9.25"),
                    ],
                    pid,
                )
            })
            .collect()
    }

    #[test]
    fn table_at_80_columns() {
        let table = render_table(&four_servers(), Some("/home/me"), Some(80));
        for line in table.lines() {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
        insta::assert_snapshot!(table);
    }

    #[test]
    fn table_piped() {
        let table = render_table(&four_servers(), Some("/home/me"), None);
        for name in ["memory", "filesystem", "everything", "sequential-thinking"] {
            assert!(
                table.contains(&format!("@modelcontextprotocol/server-{name}@2025.9.25")),
                "{table}"
            );
        }
        insta::assert_snapshot!(table);
    }

    #[test]
    fn root_cells() {
        assert_eq!(home_root("/home/me/src/app", Some("/home/me")), "~/src/app");
        assert_eq!(home_root("/home/me", Some("/home/me")), "~");
        assert_eq!(home_root("/home/meta/x", Some("/home/me")), "/home/meta/x");
        assert_eq!(home_root("/srv/x", Some("/")), "/srv/x");
    }
}
