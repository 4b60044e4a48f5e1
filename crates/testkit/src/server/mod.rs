//! The fixture MCP server: a legacy (initialize-era) stdio server whose every behaviour a test can
//! trigger and observe.
//!
//! Start it with [`run_stdio`] (what `shoal-fixture` does) or, without process-level side effects,
//! with [`serve`] over any reader and writer.
//!
//! # Protocol
//!
//! - Newline-delimited JSON-RPC 2.0. The output carries only MCP messages, one per line, written
//!   whole under one lock and flushed; diagnostics go to stderr.
//! - Requests run concurrently: quick methods are answered inline (in arrival order), tools that
//!   wait (`slow`, `wait_cancel`, `sample`, `elicit`, `roots`), task-augmented calls and
//!   `tasks/result` run on their own threads, so cancellation, progress and interleaving are real.
//! - `initialize` echoes the client's `protocolVersion` if it is in [`Config::protocol_versions`],
//!   else answers the latest it speaks. A second `initialize` is accepted, counted
//!   (`initializeCount` in `stats`) and replaces the negotiated version and client info, like the
//!   reference server. Requests before `initialize` are served but counted
//!   (`requestsBeforeInitialized`).
//! - Capabilities: `tools {listChanged}`, `resources {subscribe, listChanged}`,
//!   `prompts {listChanged}`, `logging`, `completions`, and `tasks {list, cancel, requests.tools.call}`
//!   when the negotiated version is 2025-11-25 or later.
//! - `server/discover` and any unknown method: -32601. Bad params: -32602. Unparsable line: -32700
//!   with `id: null`. Not an object, no/invalid `jsonrpc`, `id: null` or an id that is neither string
//!   nor number: -32600 with `id: null` (a valid id is echoed if present).
//! - A JSON array is a batch (2025-03-26): every element is handled as above and the answers are
//!   written as one array once all of them are done (nothing if it held only notifications and
//!   responses); `[]` gets a single -32600.
//! - `notifications/cancelled` is recorded (`cancellations` in `stats`, with the raw `requestId` and
//!   whether it was in flight); a cancelled request gets no response, per the spec.
//! - End of stdin ends [`serve`] (unless [`Config::ignore_stdin_eof`]); requests still running are
//!   abandoned.
//!
//! # Tools
//!
//! | tool | arguments | does |
//! |---|---|---|
//! | `echo` | `text` | returns `text` as text content (the fast path for round-trip benchmarks) |
//! | `big` | `bytes` (≤ 64 MiB) | text content of exactly `bytes` bytes |
//! | `slow` | `ms` (1000), `steps` (10), `late` (0) | `steps` progress notifications spread over `ms` (if the call has `_meta.progressToken`), then the result, then `late` more progress notifications *after* the result; stops silently if cancelled. Task-capable |
//! | `wait_cancel` | `timeout_ms` (30000) | waits until cancelled (no response), else an `isError` result. Task-capable |
//! | `sample` | `prompt`, `timeout_ms` (30000) | sends `sampling/createMessage`, returns the client's result (`structuredContent.response`) or its error (`isError`, `structuredContent.error`). Task-capable |
//! | `elicit` | `message`, `timeout_ms` | same with `elicitation/create` |
//! | `roots` | `timeout_ms` | same with `roots/list` |
//! | `ping_client` | `timeout_ms` | same with `ping` (the daemon answers B's pings itself) |
//! | `log` | `level`, `message`, `logger`, `count` (1) | sends `count` `notifications/message` if `level` passes the current level; returns `{emitted}` |
//! | `notify_list_changed` | `kind` (`tools`/`resources`/`prompts`), `variant` | sends `notifications/<kind>/list_changed`; `variant` first changes the tool list |
//! | `touch` | `uri`, `force` (false) | sends `notifications/resources/updated` if `uri` is subscribed (or `force`); returns `{emitted}` |
//! | `stats` | — | the counters below, as `structuredContent` and as JSON text |
//! | `crash` | `code` (1), `abort` (false) | exits the process at once, no response |
//! | `fail` | `code` (-32000), `message` | a JSON-RPC error response |
//! | `tool_error` | `message` | an `isError: true` result |
//! | `variant_N` | — | only with [`Config::tools_variant`] = N > 0; returns `N` |
//!
//! While waiting for the client, `sample`/`elicit`/`roots` honour cancellation of their `tools/call`
//! by sending `notifications/cancelled` for their own request, and mark requests made on behalf of
//! a task with `_meta["io.modelcontextprotocol/related-task"]`. Server→client request ids are
//! integers from 0, like the SDKs', so they collide with client ids on purpose.
//!
//! # `stats`
//!
//! `pid`, `name`, `initializeCount`, `initializedNotifications`, `protocolVersion`, `clientInfo`,
//! `clientCapabilities`, `requests` (total, including this `stats` call), `requestsBeforeInitialized`,
//! `methods` (requests by method), `notifications` (received, by method), `toolCalls` (by tool),
//! `cancellations` (`[{requestId, reason, inFlight}]`, `requestId` as received), `inFlight` (ids of
//! other requests still running), `duplicateIds` (ids that arrived while a request with the same id
//! was in flight: the daemon must never cause one), `subscriptions` (current URIs), `subscribeRequests`,
//! `unsubscribeRequests`, `resourceUpdatesSent`, `logLevel`, `setLevelRequests` (levels, in order),
//! `responsesReceived`, `unexpectedResponses` (ids of responses to nothing the fixture asked),
//! `toolsVariant`, `chattyRoots` (the client's whole response to the chatty `roots/list`, else null), `tasks` (count),
//! `batches` (JSON arrays received: the daemon must never send one), `invalidMessages` (lines
//! answered -32700/-32600).
//!
//! # Resources, prompts, tasks
//!
//! Five static resources `fixture://static/1`..`5` (paged by [`Config::page_size`], opaque
//! `nextCursor`, a bad cursor is -32602), a template `fixture://dynamic/{id}`, `resources/read`
//! (-32002 for an unknown URI), `resources/subscribe`/`unsubscribe` on any URI. Prompts `greeting`
//! (argument `name`, required) and `simple`. `completion/complete` completes `greeting`'s `name` and
//! the template's `id`. `tools/call` with `task` on a task-capable tool answers a `CreateTaskResult`
//! (status `working`), then `tasks/get`, `tasks/result` (blocks until the task ends; a cancelled
//! task's result is -32603), `tasks/cancel` (-32602 once terminal), `tasks/list` and
//! `notifications/tasks/status` on completion. Task ids are predictable (`fixture-task-N`), unlike
//! what the spec asks of real servers. `task` on a tool that is not task-capable is -32601.

mod catalog;
mod config;
mod core;
mod os;
mod tasks;
mod tools;

use std::fmt;
use std::io::{self, BufRead, Write};

pub use config::{Config, ConfigError, DEFAULT_PROTOCOL_VERSIONS, Parsed, USAGE};
pub use os::{GRANDCHILD_ARG, GRANDCHILD_MAX_LIFETIME, run_grandchild};

/// A `notifications/message` severity, ordered from least to most severe (RFC 5424 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `notice`
    Notice,
    /// `warning`
    Warning,
    /// `error`
    Error,
    /// `critical`
    Critical,
    /// `alert`
    Alert,
    /// `emergency`
    Emergency,
}

impl LogLevel {
    /// Every level, least severe first.
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    /// The level named `name` (the MCP spelling), if any.
    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str() == name)
    }

    /// The MCP spelling of this level.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs the fixture as a process: appends to the spawn counter, ignores SIGTERM, starts the
/// grandchild, sleeps the start-up delay (each if configured, in that order), then serves MCP on
/// stdin/stdout until stdin closes.
///
/// The `crash` tool and [`Config::crash_after_requests`] end the whole process, so embed this only
/// in a process that exists to be the fixture (e.g. a hidden subcommand). A binary that embeds it
/// and wants [`Config::grandchild_pid_file`] must call [`run_grandchild`] when its first argument is
/// [`GRANDCHILD_ARG`], because the grandchild is a re-execution of the current executable.
pub fn run_stdio(config: Config) -> io::Result<()> {
    if let Some(path) = &config.spawn_counter {
        os::append_spawn_record(path)?;
    }
    if config.ignore_sigterm {
        os::ignore_sigterm()?;
    }
    if let Some(path) = &config.grandchild_pid_file {
        os::spawn_grandchild(path)?;
    }
    if !config.startup_delay.is_zero() {
        std::thread::sleep(config.startup_delay);
    }
    let stdin = io::stdin().lock();
    serve(config, stdin, io::stdout())
}

/// Serves MCP on `input`/`output` until `input` ends (or forever with
/// [`Config::ignore_stdin_eof`]). Does none of [`run_stdio`]'s process-level set-up.
pub fn serve(
    config: Config,
    input: impl BufRead,
    output: impl Write + Send + 'static,
) -> io::Result<()> {
    core::serve(config, input, Box::new(output))
}

/// Writes one diagnostic line to stderr (never stdout, which carries MCP only).
pub(crate) fn diag(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(
        io::stderr().lock(),
        "shoal-fixture[{}]: {message}",
        std::process::id()
    );
}
