//! A blocking MCP client for tests: send anything (including wrong things on purpose), wait for
//! what should come back, with a deadline and a label on every wait.
//!
//! A reader thread turns each line of the server's output into a message on a channel. Messages a
//! wait does not want are kept, in order, for later waits: a response may arrive after unrelated
//! notifications, and a server→client request may arrive before the response that depends on it.
//!
//! ```no_run
//! use serde_json::json;
//! use shoal_testkit::client::{Client, IdStyle};
//!
//! let mut client = Client::spawn_fixture(["--name", "demo"])?;
//! client.initialize(json!({"sampling": {}}))?;
//!
//! // A request whose answer needs the client: send it, serve the sampling request, then wait.
//! let id = client.send_request("tools/call", json!({"name": "sample", "arguments": {"prompt": "hi"}}))?;
//! let sampling = client.expect_request("sampling/createMessage", client.timeout())?;
//! client.respond(&sampling["id"], json!({"role": "assistant", "content": {"type": "text", "text": "yo"}, "model": "m"}))?;
//! let answer = client.wait_response(&id, client.timeout())?.into_result()?;
//! assert_eq!(answer["structuredContent"]["response"]["model"], "m");
//!
//! // Ids of both JSON types, chosen by the test.
//! client.set_id_style(IdStyle::String);
//! let response = client.request_with_id(json!("1"), "ping", json!({}))?;
//! assert_eq!(response.id, json!("1"));
//! # Ok::<(), shoal_testkit::client::Error>(())
//! ```

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long [`Client::request`] and the helpers built on it wait, unless changed with
/// [`Client::set_timeout`]. Generous, because CI machines stall; a passing test never waits it out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol version [`Client::initialize`] asks for.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// How long [`Client::wait_exit`] sleeps between looks at the child.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Longest message excerpt quoted in an error.
const EXCERPT_CHARS: usize = 400;

/// What went wrong while talking to the server. Each variant's text names the client and what it
/// was waiting for.
#[derive(Debug)]
pub enum Error {
    /// Nothing matching arrived before the deadline.
    Timeout {
        /// `"<client>: <what it waited for>"`.
        label: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The server's output ended (or failed) before anything matching arrived.
    Closed {
        /// `"<client>: <what it waited for>"`.
        label: String,
        /// How the output ended.
        detail: String,
    },
    /// The server wrote a line that is not JSON.
    Malformed {
        /// `"<client>: <what it waited for>"`.
        label: String,
        /// The line (lossily decoded).
        line: String,
    },
    /// Writing to the server failed (also after [`Client::close_input`]).
    Write {
        /// `"<client>: <what it was sending>"`.
        label: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Starting the server process failed.
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A JSON-RPC error came back where a result was expected.
    Rpc {
        /// `"<client>: <the request>"`.
        label: String,
        /// The error object.
        error: RpcError,
    },
    /// A message arrived that the test said must not (see [`Client::expect_none`]), or a result
    /// lacked what a helper needs.
    Unexpected {
        /// `"<client>: <what was checked>"`.
        label: String,
        /// The offending message.
        message: Value,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout { label, waited } => {
                let (head, what) = split_label(label);
                write!(f, "{head}timed out after {waited:?} waiting for {what}")
            }
            Error::Closed { label, detail } => {
                let (head, what) = split_label(label);
                write!(
                    f,
                    "{head}server output closed ({detail}) while waiting for {what}"
                )
            }
            Error::Malformed { label, line } => {
                let (head, what) = split_label(label);
                write!(
                    f,
                    "{head}non-JSON line from the server while waiting for {what}: {}",
                    excerpt(line)
                )
            }
            Error::Write { label, source } => write!(f, "{label}: failed to write: {source}"),
            Error::Spawn { program, source } => write!(f, "failed to start {program}: {source}"),
            Error::Rpc { label, error } => write!(
                f,
                "{label}: error {} {:?}{}",
                error.code,
                error.message,
                error
                    .data
                    .as_ref()
                    .map(|data| format!(" (data: {})", excerpt(&data.to_string())))
                    .unwrap_or_default()
            ),
            Error::Unexpected { label, message } => {
                write!(
                    f,
                    "{label}: unexpected message {}",
                    excerpt(&message.to_string())
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Write { source, .. } | Error::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `"client: what"` → (`"client: "`, `"what"`).
fn split_label(label: &str) -> (&str, &str) {
    match label.find(": ") {
        Some(at) => (&label[..at + 2], &label[at + 2..]),
        None => ("", label),
    }
}

fn excerpt(text: &str) -> String {
    if text.chars().count() <= EXCERPT_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(EXCERPT_CHARS).collect();
    format!("{cut}… ({} bytes)", text.len())
}

/// Shorthand for results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    /// `code`.
    pub code: i64,
    /// `message`.
    pub message: String,
    /// `data`, if present.
    pub data: Option<Value>,
}

impl RpcError {
    fn from_json(error: &Value) -> RpcError {
        RpcError {
            code: error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            data: error.get("data").cloned(),
        }
    }
}

/// A response to one of the client's requests.
#[derive(Clone, Debug)]
pub struct Response {
    /// The id, exactly as the server sent it (`"1"` and `1` differ).
    pub id: Value,
    /// `result`, or `error`.
    pub outcome: Result<Value, RpcError>,
    /// The whole message.
    pub raw: Value,
    label: String,
}

impl Response {
    fn from_message(label: String, raw: Value) -> Response {
        let outcome = match raw.get("error") {
            Some(error) => Err(RpcError::from_json(error)),
            None => Ok(raw.get("result").cloned().unwrap_or(Value::Null)),
        };
        Response {
            id: raw.get("id").cloned().unwrap_or(Value::Null),
            outcome,
            raw,
            label,
        }
    }

    /// The error, if this is an error response.
    pub fn error(&self) -> Option<&RpcError> {
        self.outcome.as_ref().err()
    }

    /// The result, or [`Error::Rpc`] naming the request.
    pub fn into_result(self) -> Result<Value> {
        self.outcome.map_err(|error| Error::Rpc {
            label: self.label,
            error,
        })
    }
}

/// The JSON type of the ids [`Client::next_id`] hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdStyle {
    /// `1`, `2`, … (what most SDKs send).
    Number,
    /// `"1"`, `"2"`, … (same digits, to collide with numeric ids of other clients on purpose).
    String,
}

enum Event {
    Message(Value),
    Malformed(String),
    Closed(String),
}

/// A blocking MCP client over a child process's stdio or any byte stream.
///
/// Every wait takes a timeout (or uses [`Client::timeout`]) and fails with an error naming the
/// client and what it waited for. A spawned child is killed and reaped on drop.
pub struct Client {
    name: String,
    writer: Option<Box<dyn Write + Send>>,
    events: mpsc::Receiver<Event>,
    backlog: VecDeque<Value>,
    closed: Option<String>,
    next_id: i64,
    id_style: IdStyle,
    timeout: Duration,
    child: Option<Child>,
    /// A handle on the socket of [`Client::from_unix_stream`], to shut it down: closing our
    /// clones does not close a socket whose other clone the reader thread is blocked on.
    socket: Option<UnixStream>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("backlog", &self.backlog.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts `command` with piped stdin/stdout (stderr as the command says, inherited by default)
    /// and talks MCP over them.
    pub fn spawn(mut command: Command) -> Result<Client> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.clone(),
                source,
            })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let short_name = std::path::Path::new(&program)
            .file_name()
            .map_or(program.clone(), |name| name.to_string_lossy().into_owned());
        let mut client = Client::from_streams(stdout, stdin);
        client.name = format!("{short_name}[{}]", child.id());
        client.child = Some(child);
        Ok(client)
    }

    /// Starts the `shoal-fixture` binary ([`crate::fixture_bin`]) with `args`.
    pub fn spawn_fixture<I, S>(args: I) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(crate::fixture_bin());
        command.args(args);
        Client::spawn(command)
    }

    /// Talks MCP over `reader`/`writer`. For a socket use [`Client::from_unix_stream`]: with two
    /// clones of one socket, dropping the client would not close it (the reader thread's clone
    /// stays open while it blocks).
    pub fn from_streams(
        reader: impl Read + Send + 'static,
        writer: impl Write + Send + 'static,
    ) -> Client {
        let (sender, events) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("testkit-client-reader".to_owned())
            .spawn(move || read_lines(reader, &sender));
        if let Err(error) = spawned {
            panic!("failed to start the client's reader thread: {error}");
        }
        Client {
            name: "client".to_owned(),
            writer: Some(Box::new(writer)),
            events,
            backlog: VecDeque::new(),
            closed: None,
            next_id: 1,
            id_style: IdStyle::Number,
            timeout: DEFAULT_TIMEOUT,
            child: None,
            socket: None,
        }
    }

    /// Talks MCP over a connected Unix socket (e.g. to the daemon, after the caller did any
    /// handshake on it without reading past it). [`Client::close_input`] half-closes it and drop
    /// shuts it down, so the peer sees the disconnection at once.
    pub fn from_unix_stream(stream: UnixStream) -> io::Result<Client> {
        let reader = stream.try_clone()?;
        let handle = stream.try_clone()?;
        let mut client = Client::from_streams(reader, stream);
        client.name = "socket-client".to_owned();
        client.socket = Some(handle);
        Ok(client)
    }

    /// Renames the client in error messages (e.g. `"client 3"`).
    pub fn with_name(mut self, name: impl Into<String>) -> Client {
        self.name = name.into();
        self
    }

    /// The name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The default timeout of [`Client::request`] and the helpers built on it.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the default timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The number [`Client::next_id`] hands out next (default 1).
    pub fn set_next_id(&mut self, next: i64) {
        self.next_id = next;
    }

    /// The JSON type of ids from [`Client::next_id`] (default [`IdStyle::Number`]).
    pub fn set_id_style(&mut self, style: IdStyle) {
        self.id_style = style;
    }

    /// Allocates the next request id.
    pub fn next_id(&mut self) -> Value {
        let n = self.next_id;
        self.next_id += 1;
        match self.id_style {
            IdStyle::Number => json!(n),
            IdStyle::String => json!(n.to_string()),
        }
    }

    /// The child's pid, if the client spawned one.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The spawned child, if any (e.g. to signal it).
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    // ----- sending -----

    /// Writes `line` as is, adding the newline if missing (for malformed input on purpose).
    pub fn send_raw(&mut self, line: &str) -> Result<()> {
        let mut bytes = line.as_bytes().to_vec();
        if !line.ends_with('\n') {
            bytes.push(b'\n');
        }
        let label = format!("{}: raw line", self.name);
        self.write_bytes(&bytes, label)
    }

    /// Writes `bytes` as they are, in one write: part of a line, or several lines at once.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let label = format!("{}: {} raw bytes", self.name, bytes.len());
        self.write_bytes(bytes, label)
    }

    /// Writes `message` as one line.
    pub fn send(&mut self, message: &Value) -> Result<()> {
        let mut bytes = message.to_string().into_bytes();
        bytes.push(b'\n');
        let label = format!("{}: {}", self.name, describe(message));
        self.write_bytes(&bytes, label)
    }

    /// Sends a notification (`params` omitted if `Value::Null`).
    pub fn notify(&mut self, method: &str, params: Value) -> Result<()> {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message)
    }

    /// Sends a request with the next id and returns the id, without waiting.
    pub fn send_request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id();
        self.send_request_with_id(id.clone(), method, params)?;
        Ok(id)
    }

    /// Sends a request with exactly `id` (any JSON, even invalid ids), without waiting.
    pub fn send_request_with_id(&mut self, id: Value, method: &str, params: Value) -> Result<()> {
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(&message)
    }

    /// Answers a server→client request with a result.
    pub fn respond(&mut self, id: &Value, result: Value) -> Result<()> {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    /// Answers a server→client request with an error.
    pub fn respond_error(&mut self, id: &Value, code: i64, message: &str) -> Result<()> {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
    }

    /// Closes the server's stdin (or the stream's write half): the server sees EOF.
    pub fn close_input(&mut self) {
        self.writer = None;
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(Shutdown::Write);
        }
    }

    // ----- requests -----

    /// Sends a request and waits (for [`Client::timeout`]) for its response.
    pub fn request(&mut self, method: &str, params: Value) -> Result<Response> {
        let id = self.next_id();
        self.request_with_id(id, method, params)
    }

    /// Sends a request with exactly `id` and waits for the response with that id.
    pub fn request_with_id(&mut self, id: Value, method: &str, params: Value) -> Result<Response> {
        let what = describe_request(method, &params);
        self.send_request_with_id(id.clone(), method, params)?;
        self.wait_response_labelled(&id, self.timeout, &what)
    }

    /// Waits for the response with exactly this id (`"1"` does not match `1`).
    pub fn wait_response(&mut self, id: &Value, timeout: Duration) -> Result<Response> {
        self.wait_response_labelled(id, timeout, "request")
    }

    fn wait_response_labelled(
        &mut self,
        id: &Value,
        timeout: Duration,
        what: &str,
    ) -> Result<Response> {
        let label = format!("response to id {id} ({what})");
        let message = self.expect(&label, timeout, |message| {
            message.get("method").is_none()
                && message.get("id") == Some(id)
                && (message.get("result").is_some() || message.get("error").is_some())
        })?;
        Ok(Response::from_message(
            format!("{}: {what} (id {id})", self.name),
            message,
        ))
    }

    /// Sends a request and returns its result, or [`Error::Rpc`].
    pub fn result(&mut self, method: &str, params: Value) -> Result<Value> {
        self.request(method, params)?.into_result()
    }

    /// Sends `initialize` (protocol [`LATEST_PROTOCOL_VERSION`], these client capabilities),
    /// then `notifications/initialized`; returns the initialize result.
    pub fn initialize(&mut self, capabilities: Value) -> Result<Value> {
        let params = json!({
            "protocolVersion": LATEST_PROTOCOL_VERSION,
            "capabilities": capabilities,
            "clientInfo": {"name": self.name, "version": env!("CARGO_PKG_VERSION")},
        });
        self.initialize_with(params)
    }

    /// Sends `initialize` with exactly `params`, then `notifications/initialized` (only if it
    /// succeeded); returns the initialize result.
    pub fn initialize_with(&mut self, params: Value) -> Result<Value> {
        let result = self.result("initialize", params)?;
        self.notify("notifications/initialized", Value::Null)?;
        Ok(result)
    }

    /// Calls a tool and returns its `CallToolResult` (which may have `isError`), or
    /// [`Error::Rpc`].
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Value> {
        self.result("tools/call", json!({"name": name, "arguments": arguments}))
    }

    /// The fixture's `stats` tool's `structuredContent`.
    pub fn stats(&mut self) -> Result<Value> {
        let mut result = self.call_tool("stats", json!({}))?;
        match result.get_mut("structuredContent") {
            Some(stats) => Ok(stats.take()),
            None => Err(Error::Unexpected {
                label: format!("{}: stats without structuredContent", self.name),
                message: result,
            }),
        }
    }

    // ----- receiving -----

    /// The next message of any kind (kept ones first).
    pub fn recv(&mut self, timeout: Duration) -> Result<Value> {
        self.expect("any message", timeout, |_| true)
    }

    /// The first message, kept or new, for which `predicate` holds; the others stay kept, in
    /// order. `label` says what is awaited, for the error.
    pub fn expect(
        &mut self,
        label: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(at) = self.backlog.iter().position(&mut predicate) {
            return Ok(self.backlog.remove(at).expect("position is in range"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let message = self.receive(deadline, label, timeout)?;
            if predicate(&message) {
                return Ok(message);
            }
            self.backlog.push_back(message);
        }
    }

    /// The first notification with this method.
    pub fn expect_notification(&mut self, method: &str, timeout: Duration) -> Result<Value> {
        let label = format!("notification {method}");
        self.expect(&label, timeout, |message| {
            message.get("id").is_none()
                && message.get("method").and_then(Value::as_str) == Some(method)
        })
    }

    /// The first server→client request with this method.
    pub fn expect_request(&mut self, method: &str, timeout: Duration) -> Result<Value> {
        let label = format!("request {method}");
        self.expect(&label, timeout, |message| {
            message.get("id").is_some()
                && message.get("method").and_then(Value::as_str) == Some(method)
        })
    }

    /// Checks that no message for which `predicate` holds is kept or arrives within `window`
    /// (which it always waits out); other messages are kept. For negative checks only — never
    /// as a way to wait for something.
    pub fn expect_none(
        &mut self,
        label: &str,
        window: Duration,
        mut predicate: impl FnMut(&Value) -> bool,
    ) -> Result<()> {
        let name = self.name.clone();
        let unexpected = |message: Value| Error::Unexpected {
            label: format!("{name}: {label}"),
            message,
        };
        if let Some(message) = self.backlog.iter().find(|message| predicate(message)) {
            return Err(unexpected(message.clone()));
        }
        let deadline = Instant::now() + window;
        loop {
            match self.receive(deadline, label, window) {
                Ok(message) if predicate(&message) => return Err(unexpected(message)),
                Ok(message) => self.backlog.push_back(message),
                Err(Error::Timeout { .. } | Error::Closed { .. }) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }

    /// Everything kept plus everything already received, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut messages: Vec<Value> = self.backlog.drain(..).collect();
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Message(message) => messages.push(message),
                Event::Malformed(line) => messages.push(Value::String(line)),
                Event::Closed(detail) => self.closed = Some(detail),
            }
        }
        messages
    }

    fn receive(&mut self, deadline: Instant, what: &str, timeout: Duration) -> Result<Value> {
        let label = format!("{}: {what}", self.name);
        if let Some(detail) = &self.closed {
            return Err(Error::Closed {
                label,
                detail: detail.clone(),
            });
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(wait) {
            Ok(Event::Message(message)) => Ok(message),
            Ok(Event::Malformed(line)) => Err(Error::Malformed { label, line }),
            Ok(Event::Closed(detail)) => {
                self.closed = Some(detail.clone());
                Err(Error::Closed { label, detail })
            }
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
                label,
                waited: timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => {
                let detail = "reader thread gone".to_owned();
                self.closed = Some(detail.clone());
                Err(Error::Closed { label, detail })
            }
        }
    }

    // ----- the child -----

    /// Waits for the spawned child to exit (it is reaped).
    ///
    /// # Panics
    ///
    /// If the client did not spawn a child.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let name = self.name.clone();
        let child = self
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("{name}: wait_exit on a client without a child"));
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(EXIT_POLL_INTERVAL),
                Ok(None) => {
                    return Err(Error::Timeout {
                        label: format!("{name}: exit of pid {}", child.id()),
                        waited: timeout,
                    });
                }
                Err(source) => {
                    return Err(Error::Write {
                        label: format!("{name}: waiting for exit"),
                        source,
                    });
                }
            }
        }
    }

    /// Kills (SIGKILL) and reaps the spawned child, if any.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn write_bytes(&mut self, bytes: &[u8], label: String) -> Result<()> {
        let Some(writer) = &mut self.writer else {
            return Err(Error::Write {
                label,
                source: io::Error::new(io::ErrorKind::BrokenPipe, "input already closed"),
            });
        };
        writer
            .write_all(bytes)
            .and_then(|()| writer.flush())
            .map_err(|source| Error::Write { label, source })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.writer = None;
        if let Some(socket) = &self.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
        self.kill();
    }
}

fn read_lines(reader: impl Read, sender: &mpsc::Sender<Event>) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let event = match reader.read_until(b'\n', &mut line) {
            Ok(0) => Event::Closed("end of output".to_owned()),
            Ok(_) => {
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                match serde_json::from_slice(text) {
                    Ok(message) => Event::Message(message),
                    Err(_) => Event::Malformed(String::from_utf8_lossy(text).into_owned()),
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => Event::Closed(format!("read error: {error}")),
        };
        let last = matches!(event, Event::Closed(_));
        if sender.send(event).is_err() || last {
            return;
        }
    }
}

/// `"tools/call echo"`, `"ping"`, …
fn describe_request(method: &str, params: &Value) -> String {
    match params.get("name").and_then(Value::as_str) {
        Some(name) if method == "tools/call" || method == "prompts/get" => {
            format!("{method} {name}")
        }
        _ => method.to_owned(),
    }
}

fn describe(message: &Value) -> String {
    match (
        message.get("method").and_then(Value::as_str),
        message.get("id"),
    ) {
        (Some(method), Some(id)) => format!("request {method} (id {id})"),
        (Some(method), None) => format!("notification {method}"),
        (None, Some(id)) => format!("response (id {id})"),
        (None, None) => "message".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client whose "server" is a fixed transcript.
    fn scripted(lines: &str) -> Client {
        Client::from_streams(io::Cursor::new(lines.as_bytes().to_vec()), io::sink()).with_name("c1")
    }

    #[test]
    fn keeps_unrelated_messages_in_order() {
        let mut client = scripted(concat!(
            r#"{"jsonrpc":"2.0","method":"notifications/a"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":"1","result":{"s":true}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":1,"result":{"n":true}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/b"}"#,
            "\n",
        ));
        let timeout = Duration::from_secs(5);
        let response = client.wait_response(&json!(1), timeout).unwrap();
        assert_eq!(response.outcome.unwrap(), json!({"n": true}));
        let response = client.wait_response(&json!("1"), timeout).unwrap();
        assert_eq!(response.id, json!("1"));
        client
            .expect_notification("notifications/b", timeout)
            .unwrap();
        assert_eq!(client.recv(timeout).unwrap()["method"], "notifications/a");
        let error = client.recv(timeout).unwrap_err();
        assert_eq!(
            error.to_string(),
            "c1: server output closed (end of output) while waiting for any message"
        );
    }

    #[test]
    fn errors_name_the_wait() {
        let (reader, _writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut client = Client::from_streams(reader, io::sink()).with_name("c2");
        let error = client
            .wait_response(&json!(3), Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "c2: timed out after 20ms waiting for response to id 3 (request)"
        );
        let error = Error::Rpc {
            label: "c2: tools/call fail (id 4)".to_owned(),
            error: RpcError {
                code: -32000,
                message: "boom".to_owned(),
                data: None,
            },
        };
        assert_eq!(
            error.to_string(),
            "c2: tools/call fail (id 4): error -32000 \"boom\""
        );
    }

    #[test]
    fn unix_stream_peer_sees_close_and_drop() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut client = Client::from_unix_stream(ours).unwrap();
        client
            .notify("notifications/initialized", Value::Null)
            .unwrap();
        let mut peer = BufReader::new(theirs.try_clone().unwrap());
        let mut line = String::new();
        peer.read_line(&mut line).unwrap();
        assert_eq!(
            line,
            "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"
        );
        client.close_input();
        line.clear();
        assert_eq!(
            peer.read_line(&mut line).unwrap(),
            0,
            "EOF after close_input"
        );
        drop(client);
        // Writing to a socket whose peer is gone fails (EPIPE) instead of hanging.
        let mut theirs = theirs;
        let written = (0..64).try_for_each(|_| theirs.write_all(&[b'x'; 65536]));
        assert!(written.is_err());
    }

    #[test]
    fn clients_can_move_to_other_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Client>();
    }

    #[test]
    fn string_and_number_ids() {
        let mut client = scripted("");
        assert_eq!(client.next_id(), json!(1));
        client.set_id_style(IdStyle::String);
        client.set_next_id(7);
        assert_eq!(client.next_id(), json!("7"));
    }
}
