//! Routing between client sessions and the one shared backend.
//!
//! This is the router's first stage (issue #4): enough for the daemon's lifecycle to be real end to
//! end. It already keeps the invariants every later stage builds on:
//!
//! - the backend sees exactly one `initialize`, the daemon's own, once per process; clients'
//!   `initialize` requests are answered from its result, and `notifications/initialized` from
//!   clients is swallowed;
//! - every client request reaches the backend under a daemon-unique id and its answer returns to
//!   the client that sent it with the client's id, byte for byte;
//! - every client request gets exactly one answer: from the backend, or an error when the backend
//!   is lost, crash-looped or the daemon stops; a client that leaves has its requests cancelled;
//! - the router does no I/O: it turns one input into [`Outputs`], so the hub stays the only place
//!   that touches queues and the rules are testable without processes.
//!
//! Progress tokens, server-to-client routing, subscriptions, log levels, tasks and batches land
//! with the full routing table (issue #5); until then notifications are broadcast to ready clients
//! and server-to-client requests that need a client are refused.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use shoal_wire::{
    Envelope, ErrorCode, Field, Id, Kind, Line, LineError, Validation, error_response,
    notification, request, response,
};

use crate::outbox::Outgoing;

/// Identifies one client session for the life of the daemon.
pub(crate) type ClientId = u64;

/// The protocol version the daemon asks the backend for: the newest initialize-era version it
/// knows. A backend that speaks only older ones answers with its own, which is then what every
/// client is offered.
pub(crate) const REQUESTED_PROTOCOL_VERSION: &str = "2025-11-25";

/// What one input produced.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub(crate) to_backend: Vec<Outgoing>,
    pub(crate) to_clients: Vec<(ClientId, Outgoing)>,
    /// Something the hub must act on.
    pub(crate) signal: Option<Signal>,
}

/// News about the backend's initialization, for the hub's supervisor.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The backend answered the daemon's `initialize`; it is serving.
    Initialized,
    /// The backend answered `initialize` with an error: it cannot serve.
    InitializeFailed(String),
}

#[derive(Debug)]
pub(crate) struct Router {
    root_uri: String,
    root_name: String,
    client_info: Value,
    next_backend_id: u64,
    phase: Phase,
    clients: HashMap<ClientId, ClientState>,
    in_flight: HashMap<u64, Owner>,
    /// Client messages waiting for the backend to be initialized, in arrival order.
    pending: VecDeque<(ClientId, Envelope)>,
    pending_bytes: usize,
    requests_served: u64,
}

#[derive(Debug)]
enum Phase {
    /// No initialized backend yet: it is starting or restarting. Client messages wait.
    Waiting,
    /// The daemon's `initialize` is in flight.
    Initializing,
    /// Serving. `result` is the backend's initialize result, answered to every client.
    Ready { result: Map<String, Value> },
    /// The backend cannot serve (crash loop); requests are answered with this reason.
    Unavailable { reason: String },
}

#[derive(Debug, Default)]
struct ClientState {
    /// Sent `notifications/initialized`: receives broadcasts.
    ready: bool,
    /// The client's in-flight requests: its id → the backend id.
    requests: HashMap<Id, u64>,
}

/// Who is waiting for the answer to a backend id.
#[derive(Debug)]
enum Owner {
    Client {
        client: ClientId,
        id: Id,
    },
    /// The daemon's own `initialize`.
    Initialize,
    /// The owner left; the answer is dropped.
    Gone,
}

/// Client messages queued while the backend starts, in bytes. Clients are throttled by the hub's
/// bounded event channel, but a start-up can take long; past this, requests get an error rather
/// than growing the daemon without limit.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

impl Router {
    pub(crate) fn new(root: &Path, shoal_version: &str) -> Router {
        Router {
            root_uri: file_uri(root),
            root_name: root
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| root.to_string_lossy().into_owned()),
            client_info: json!({ "name": "shoal", "version": shoal_version }),
            next_backend_id: 1,
            phase: Phase::Waiting,
            clients: HashMap::new(),
            in_flight: HashMap::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            requests_served: 0,
        }
    }

    /// Client requests answered since the daemon started (by the backend or locally).
    pub(crate) fn requests_served(&self) -> u64 {
        self.requests_served
    }

    /// Whether the backend answered the daemon's `initialize`.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready { .. })
    }

    pub(crate) fn client_joined(&mut self, client: ClientId) {
        self.clients.insert(client, ClientState::default());
    }

    /// The client is gone: cancel its in-flight requests at the backend, forget its queued ones.
    pub(crate) fn client_left(&mut self, client: ClientId, out: &mut Outputs) {
        let Some(state) = self.clients.remove(&client) else {
            return;
        };
        for backend_id in state.requests.into_values() {
            if let Some(owner) = self.in_flight.get_mut(&backend_id) {
                *owner = Owner::Gone;
                out.to_backend
                    .push(cancellation(backend_id, "the client disconnected").into());
            }
        }
        let pending_bytes = &mut self.pending_bytes;
        self.pending.retain(|(owner, envelope)| {
            let keep = *owner != client;
            if !keep {
                *pending_bytes -= envelope.line().len();
            }
            keep
        });
    }

    /// A backend process was started: initialize it, once.
    pub(crate) fn backend_started(&mut self, out: &mut Outputs) {
        let id = self.next_id();
        self.in_flight.insert(id, Owner::Initialize);
        self.phase = Phase::Initializing;
        let params = json!({
            "protocolVersion": REQUESTED_PROTOCOL_VERSION,
            // Roots are answered by the daemon from the project root. Sampling and elicitation
            // are declared once they can be routed to a client (issue #5).
            "capabilities": { "roots": { "listChanged": true } },
            "clientInfo": self.client_info,
        });
        let params = raw(&params);
        out.to_backend.push(
            request(&Id::from_u64(id), "initialize", Some(&params))
                .expect("compact JSON has no raw newline")
                .into(),
        );
    }

    /// The backend process is gone (crash, restart, stop): every request it held gets `reason` as
    /// an error. Messages still queued for the next backend stay queued.
    pub(crate) fn backend_lost(&mut self, reason: &str, out: &mut Outputs) {
        for (_, owner) in self.in_flight.drain() {
            if let Owner::Client { client, id } = owner {
                if let Some(state) = self.clients.get_mut(&client) {
                    state.requests.remove(&id);
                }
                out.to_clients.push((
                    client,
                    error_response(Some(&id), ErrorCode::BACKEND_UNAVAILABLE, reason).into(),
                ));
                self.requests_served += 1;
            }
        }
        if !matches!(self.phase, Phase::Unavailable { .. }) {
            self.phase = Phase::Waiting;
        }
    }

    /// No backend will come until someone asks (crash loop) or the daemon stops: answer every
    /// queued request, and every later one, with `reason`.
    pub(crate) fn backend_unavailable(&mut self, reason: String, out: &mut Outputs) {
        self.backend_lost(&reason, out);
        while let Some((client, envelope)) = self.pending.pop_front() {
            self.pending_bytes -= envelope.line().len();
            if envelope.kind() == Kind::Request {
                out.to_clients.push((
                    client,
                    refusal(&envelope, ErrorCode::BACKEND_UNAVAILABLE, &reason),
                ));
                self.requests_served += 1;
            }
        }
        self.phase = Phase::Unavailable { reason };
    }

    /// A line from client `client`.
    pub(crate) fn client_line(
        &mut self,
        client: ClientId,
        line: Result<Line, LineError>,
        out: &mut Outputs,
    ) {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                let code = match error {
                    LineError::TooLong { .. } => ErrorCode::INVALID_REQUEST,
                    _ => ErrorCode::PARSE_ERROR,
                };
                out.to_clients.push((
                    client,
                    error_response(None, code, &error.to_string()).into(),
                ));
                return;
            }
        };
        let envelope = Envelope::parse(line, Validation::Full);
        match envelope.kind() {
            Kind::Invalid => {
                if let Some(invalid) = envelope.invalid() {
                    out.to_clients
                        .push((client, invalid.error_response().into()));
                }
            }
            Kind::Batch => out.to_clients.push((
                client,
                error_response(
                    None,
                    ErrorCode::INVALID_REQUEST,
                    "JSON-RPC batches are not supported by this shoal version; send the messages \
                     one per line",
                )
                .into(),
            )),
            Kind::Request => self.client_request(client, envelope, out),
            Kind::Notification => self.client_notification(client, envelope, out),
            // Answers to server-to-client requests: none are routed to clients yet.
            Kind::Response | Kind::ErrorResponse => {
                tracing::debug!(client, "dropped a response to no request of ours");
            }
        }
    }

    fn client_request(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        match envelope.method() {
            Some("ping") => {
                out.to_clients
                    .push((client, local_answer(&envelope, &json!({}))));
                self.requests_served += 1;
                return;
            }
            Some("initialize") => {
                if let Phase::Ready { result } = &self.phase {
                    out.to_clients
                        .push((client, local_answer(&envelope, result)));
                    self.requests_served += 1;
                    return;
                }
            }
            _ => {}
        }
        match &self.phase {
            Phase::Ready { .. } => self.forward_request(client, envelope, out),
            Phase::Unavailable { reason } => {
                out.to_clients.push((
                    client,
                    refusal(&envelope, ErrorCode::BACKEND_UNAVAILABLE, reason),
                ));
                self.requests_served += 1;
            }
            Phase::Waiting | Phase::Initializing => self.hold(client, envelope, out),
        }
    }

    fn client_notification(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        match envelope.method() {
            Some("notifications/initialized") => {
                if let Some(state) = self.clients.get_mut(&client) {
                    state.ready = true;
                }
            }
            // Roots are the project's, answered by the daemon; a client's change is not news.
            Some("notifications/roots/list_changed") => {}
            Some("notifications/cancelled") => self.client_cancellation(client, &envelope, out),
            _ => match self.phase {
                Phase::Ready { .. } => out.to_backend.push(envelope.into_line().into()),
                Phase::Unavailable { .. } => {}
                Phase::Waiting | Phase::Initializing => self.hold(client, envelope, out),
            },
        }
    }

    fn client_cancellation(&mut self, client: ClientId, envelope: &Envelope, out: &mut Outputs) {
        let Some(request_id) = envelope.get(Field::RequestId) else {
            return;
        };
        // Still queued: forget it. JSON-RPC lets a cancelled request go unanswered.
        if let Some(position) = self.pending.iter().position(|(owner, queued)| {
            *owner == client
                && queued.kind() == Kind::Request
                && queued.id() == Some(request_id.clone())
        }) {
            if let Some((_, queued)) = self.pending.remove(position) {
                self.pending_bytes -= queued.line().len();
            }
            return;
        }
        let Some(backend_id) = self
            .clients
            .get(&client)
            .and_then(|state| state.requests.get(&request_id).copied())
        else {
            return;
        };
        match envelope.rewrite(&[(Field::RequestId, &Id::from_u64(backend_id))]) {
            Ok(rewritten) => out.to_backend.push(rewritten.into()),
            Err(error) => tracing::debug!(client, %error, "could not map a cancellation"),
        }
    }

    fn forward_request(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        let Some(id) = envelope.id() else {
            return;
        };
        let backend_id = self.next_id();
        match envelope.rewrite_id(&Id::from_u64(backend_id)) {
            Ok(rewritten) => {
                out.to_backend.push(rewritten.into());
                self.in_flight.insert(
                    backend_id,
                    Owner::Client {
                        client,
                        id: id.clone(),
                    },
                );
                if let Some(state) = self.clients.get_mut(&client) {
                    state.requests.insert(id, backend_id);
                }
            }
            Err(error) => {
                out.to_clients.push((
                    client,
                    error_response(Some(&id), ErrorCode::INVALID_REQUEST, &error.to_string())
                        .into(),
                ));
                self.requests_served += 1;
            }
        }
    }

    fn hold(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        if self.pending_bytes + envelope.line().len() > MAX_PENDING_BYTES {
            if envelope.kind() == Kind::Request {
                out.to_clients.push((
                    client,
                    refusal(
                        &envelope,
                        ErrorCode::BACKEND_UNAVAILABLE,
                        "the MCP server is still starting and too many requests are queued; retry \
                         shortly",
                    ),
                ));
                self.requests_served += 1;
            }
            return;
        }
        self.pending_bytes += envelope.line().len();
        self.pending.push_back((client, envelope));
    }

    /// A line from the backend.
    pub(crate) fn backend_line(&mut self, line: Result<Line, LineError>, out: &mut Outputs) {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                tracing::warn!(%error, "dropped an unreadable line from the MCP server");
                return;
            }
        };
        let envelope = Envelope::parse(line, Validation::Envelope);
        match envelope.kind() {
            Kind::Response | Kind::ErrorResponse => self.backend_response(envelope, out),
            Kind::Request => self.backend_request(&envelope, out),
            Kind::Notification => {
                for (&client, state) in &self.clients {
                    if state.ready {
                        out.to_clients
                            .push((client, envelope.line().clone().into()));
                    }
                }
            }
            Kind::Batch | Kind::Invalid => {
                tracing::warn!(
                    kind = ?envelope.kind(),
                    "dropped a message from the MCP server that is not a single JSON-RPC message"
                );
            }
        }
    }

    fn backend_response(&mut self, envelope: Envelope, out: &mut Outputs) {
        let owner = envelope
            .id()
            .and_then(|id| id.as_str().parse::<u64>().ok())
            .and_then(|backend_id| self.in_flight.remove(&backend_id));
        match owner {
            Some(Owner::Client { client, id }) => {
                if let Some(state) = self.clients.get_mut(&client) {
                    state.requests.remove(&id);
                }
                match envelope.rewrite(&[(Field::Id, &id)]) {
                    Ok(rewritten) => out.to_clients.push((client, rewritten.into())),
                    Err(error) => out.to_clients.push((
                        client,
                        error_response(
                            Some(&id),
                            ErrorCode::INTERNAL_ERROR,
                            &format!("the MCP server's answer could not be passed on: {error}"),
                        )
                        .into(),
                    )),
                }
                self.requests_served += 1;
            }
            Some(Owner::Initialize) => self.initialize_answered(&envelope, out),
            Some(Owner::Gone) => {}
            None => tracing::debug!("dropped an answer to no request in flight"),
        }
    }

    fn initialize_answered(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let result = (envelope.kind() == Kind::Response)
            .then(|| serde_json::from_slice::<Value>(envelope.line().as_bytes()).ok())
            .flatten()
            .and_then(
                |mut message| match message.get_mut("result").map(Value::take) {
                    Some(Value::Object(result)) => Some(result),
                    _ => None,
                },
            );
        let Some(result) = result else {
            let detail = serde_json::from_slice::<Value>(envelope.line().as_bytes())
                .ok()
                .and_then(|message| message.pointer("/error/message").cloned())
                .and_then(|message| message.as_str().map(str::to_owned))
                .unwrap_or_else(|| "the answer had no result object".to_owned());
            out.signal = Some(Signal::InitializeFailed(detail));
            return;
        };
        let protocol = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("?");
        tracing::info!(protocol, "the MCP server is initialized");
        out.to_backend.push(
            notification("notifications/initialized", None)
                .expect("no params, no newline")
                .into(),
        );
        self.phase = Phase::Ready { result };
        out.signal = Some(Signal::Initialized);
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for (client, envelope) in pending {
            match envelope.kind() {
                Kind::Request => self.client_request(client, envelope, out),
                _ => self.client_notification(client, envelope, out),
            }
        }
    }

    fn backend_request(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let answer = match envelope.method() {
            Some("ping") => local_answer(envelope, &json!({})),
            Some("roots/list") => local_answer(
                envelope,
                &json!({ "roots": [{ "uri": self.root_uri, "name": self.root_name }] }),
            ),
            Some(method) => refusal(
                envelope,
                ErrorCode::METHOD_NOT_FOUND,
                &format!("shoal cannot route `{method}` to a client yet"),
            ),
            None => return,
        };
        out.to_backend.push(answer);
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_backend_id;
        self.next_backend_id += 1;
        id
    }
}

/// A success response to `envelope` (a request) carrying `result`.
fn local_answer(envelope: &Envelope, result: &impl serde::Serialize) -> Outgoing {
    let id = envelope.id().expect("only requests are answered");
    response(&id, &raw(result))
        .expect("compact JSON has no raw newline")
        .into()
}

/// An error response to `envelope` (a request).
fn refusal(envelope: &Envelope, code: ErrorCode, message: &str) -> Outgoing {
    error_response(envelope.id().as_ref(), code, message).into()
}

fn cancellation(backend_id: u64, reason: &str) -> Line {
    let params = raw(&json!({ "requestId": backend_id, "reason": reason }));
    notification("notifications/cancelled", Some(&params)).expect("compact JSON has no raw newline")
}

fn raw(value: &impl serde::Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("JSON values and maps always serialise")
}

/// `file://` URI of an absolute path, percent-encoding what a URI path may not contain.
fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file://");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}
