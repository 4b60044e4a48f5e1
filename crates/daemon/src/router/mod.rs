//! Routing between client sessions and the one shared backend: `docs/routing.md` is the user's
//! view of these rules, `../shared/MCP-ROUTING.md` their source.
//!
//! The router does no I/O: each input (a line from a client or the backend, a client joining or
//! leaving, the backend starting or going, a timer) becomes [`Outputs`], so the hub stays the only
//! place that touches queues, and every rule is testable without processes. Invariants:
//!
//! - the backend sees exactly one `initialize` per process, the daemon's own; clients' are answered
//!   from its result with a protocol version negotiated per client;
//! - every client request reaches the backend under a daemon-unique id (and progress token), and
//!   its answer and progress return to that client only, with the client's own id and token, byte
//!   for byte;
//! - every client request gets exactly one answer: from the backend, locally, or an error when the
//!   backend is lost or the daemon stops; a cancelled request may go unanswered, as JSON-RPC allows;
//! - every server-to-client request gets exactly one answer at the backend: locally (`ping`,
//!   `roots/list`), from the one client it was routed to, or an error when no client can answer
//!   or the chosen one leaves;
//! - nothing addressed to one client (answers, progress, routed requests, subscribed updates,
//!   task status) reaches another.

mod batch;
mod levels;
mod lists;
mod server_requests;
mod subscriptions;
mod tasks;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Instant;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use shoal_wire::{
    Envelope, ErrorCode, Field, Id, Kind, Line, LineError, Validation, error_response,
    notification, request, response,
};

use crate::outbox::Outgoing;
use batch::Batches;
use levels::{Level, Levels};
use lists::{CheckStep, ListKind, Lists};
use server_requests::Asked;
use subscriptions::Subscriptions;
use tasks::Tasks;

/// Identifies one client session for the life of the daemon.
pub(crate) type ClientId = u64;

/// The protocol version the daemon asks the backend for: the newest initialize-era version it
/// knows. A backend that speaks only older ones answers with its own, which then bounds what
/// every client is offered.
pub(crate) const REQUESTED_PROTOCOL_VERSION: &str = "2025-11-25";

/// Initialize-era protocol versions, oldest first. ISO dates, so they also compare as strings.
const KNOWN_PROTOCOL_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The first version with tasks.
const TASKS_PROTOCOL_VERSION: &str = "2025-11-25";

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
    /// One counter for every id and token the daemon mints: backend request ids (which double as
    /// the rewritten progress tokens) and the ids of requests routed to clients.
    next_id: u64,
    /// Backends initialized so far: the first one's lists are a baseline, later ones' a comparison.
    initialized_backends: u64,
    phase: Phase,
    clients: HashMap<ClientId, ClientState>,
    in_flight: HashMap<u64, InFlight>,
    /// Requests out at clients, by the number in the id the client saw (see `asked_id`).
    asked: HashMap<u64, Asked>,
    /// What the ids of requests routed to clients start with: unique to this daemon process
    /// (see `Router::new`).
    asked_prefix: String,
    /// The backend's id of each request out at a client → the id the client saw.
    asked_by_backend: HashMap<Id, u64>,
    subscriptions: Subscriptions,
    levels: Levels,
    lists: Lists,
    tasks: Tasks,
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
    /// What the client declared in its `initialize`.
    capabilities: ClientCapabilities,
    /// The client's in-flight requests: its id → the backend id.
    requests: HashMap<Id, u64>,
    /// The backend id of the client's latest request: ranks clients for server-to-client routing.
    last_request: u64,
    batches: Batches,
}

#[derive(Clone, Copy, Debug, Default)]
struct ClientCapabilities {
    sampling: bool,
    elicitation: bool,
}

/// A request at the backend.
#[derive(Debug)]
struct InFlight {
    owner: Owner,
    /// The client's progress token, which the backend knows as this request's id.
    token: Option<Id>,
    /// What the answer means beyond being passed on.
    hook: Hook,
}

/// Who is waiting for the answer to a backend id.
#[derive(Debug)]
enum Owner {
    Client {
        client: ClientId,
        id: Id,
    },
    /// The owner left or cancelled, but the answer still matters to the daemon (see [`Hook`]).
    Gone,
    Daemon(DaemonCall),
}

/// Requests the daemon makes of the backend on its own account.
#[derive(Debug)]
enum DaemonCall {
    Initialize,
    /// A page of a fingerprinting listing (see [`lists`]).
    ListPage(ListKind),
    /// Backend-wide state the daemon keeps in step with its clients: a replayed subscription or
    /// log level, the last subscriber's unsubscribe. The answer only matters if it is an error.
    Housekeeping(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
enum Hook {
    None,
    /// The first `resources/subscribe` of a URI: its answer is every waiting subscriber's.
    Subscribe(String),
    /// A task-augmented request: a success creates a task owned by the requester.
    CreatesTask,
    /// `tasks/list`: the answer is narrowed to the requester's tasks.
    ListsTasks,
}

/// Client messages queued while the backend starts, in bytes. Clients are throttled by the hub's
/// bounded event channel, but a start-up can take long; past this, requests get an error rather
/// than growing the daemon without limit.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

impl Router {
    /// A router for the project at `root`. `instance` names this daemon process uniquely among
    /// the daemons a session may ever meet (the daemon uses its pid and start time): the ids of
    /// requests routed to clients carry it, because a session outlives its daemon. A proxy whose
    /// daemon dies reconnects its host to a new one, and the host may still hold a request of the
    /// old daemon (a sampling dialog open) and answer it later; were the new daemon's ids to
    /// start where the old one's did, that late answer would be taken for the answer to another
    /// request, and the host would see two open requests with one id.
    pub(crate) fn new(root: &Path, shoal_version: &str, instance: &str) -> Router {
        Router {
            root_uri: file_uri(root),
            root_name: root
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| root.to_string_lossy().into_owned()),
            client_info: json!({ "name": "shoal", "version": shoal_version }),
            next_id: 1,
            initialized_backends: 0,
            phase: Phase::Waiting,
            clients: HashMap::new(),
            in_flight: HashMap::new(),
            asked: HashMap::new(),
            asked_prefix: format!("shoal-{instance}-"),
            asked_by_backend: HashMap::new(),
            subscriptions: Subscriptions::default(),
            levels: Levels::default(),
            lists: Lists::default(),
            tasks: Tasks::default(),
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

    /// When [`Router::tick`] next has work (the end of a `list_changed` coalescing window).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.lists.deadline()
    }

    /// Timers: send the `list_changed` notifications folded into windows that ended.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut Outputs) {
        for kind in self.lists.expired(now) {
            self.broadcast_list_changed(kind, out);
        }
    }

    pub(crate) fn client_joined(&mut self, client: ClientId) {
        self.clients.insert(client, ClientState::default());
    }

    /// The client is gone: cancel its in-flight requests at the backend, answer the backend for
    /// the requests routed to it, and release its queued messages, subscriptions, level and tasks.
    pub(crate) fn client_left(&mut self, client: ClientId, out: &mut Outputs) {
        let Some(state) = self.clients.remove(&client) else {
            return;
        };
        for backend_id in state.requests.into_values() {
            if self.release(backend_id) {
                out.to_backend.push(
                    cancellation(&Id::from_u64(backend_id), "the client disconnected").into(),
                );
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
        self.abandon_asked(client, out);
        for uri in self.subscriptions.client_left(client) {
            self.housekeeping_request("resources/unsubscribe", json!({ "uri": uri }), out);
        }
        if let Some(level) = self.levels.remove(client) {
            self.set_backend_level(level, out);
        }
        self.tasks.client_left(client);
    }

    /// Forget the backend request `backend_id` for its client (cancelled, or the client left).
    /// Returns whether to tell the backend to cancel it.
    fn release(&mut self, backend_id: u64) -> bool {
        match self.in_flight.get_mut(&backend_id) {
            // Its answer still does the daemon's work (a first subscribe others wait on, a task's
            // creation): the backend must still answer it, so it is not cancelled there.
            Some(entry) if entry.hook != Hook::None => {
                entry.owner = Owner::Gone;
                false
            }
            Some(_) => {
                self.in_flight.remove(&backend_id);
                true
            }
            None => false,
        }
    }

    /// A backend process was started: initialize it, once.
    pub(crate) fn backend_started(&mut self, out: &mut Outputs) {
        let id = self.mint_id();
        self.in_flight.insert(
            id,
            InFlight {
                owner: Owner::Daemon(DaemonCall::Initialize),
                token: None,
                hook: Hook::None,
            },
        );
        self.phase = Phase::Initializing;
        // Every capability the daemon can serve or route: servers may offer features (a sampling
        // tool, say) only to clients that declared them, and the backend is initialized once for
        // every client. Requests no connected client can serve are answered with an error.
        let params = json!({
            "protocolVersion": REQUESTED_PROTOCOL_VERSION,
            "capabilities": { "roots": {}, "sampling": {}, "elicitation": {} },
            "clientInfo": self.client_info,
        });
        out.to_backend.push(
            request(&Id::from_u64(id), "initialize", Some(&raw(&params)))
                .expect("compact JSON has no raw newline")
                .into(),
        );
    }

    /// The backend process is gone (crash, restart, stop): every request it held gets `reason` as
    /// an error; requests it sent to clients are withdrawn. Messages still queued for the next
    /// backend stay queued.
    pub(crate) fn backend_lost(&mut self, reason: &str, out: &mut Outputs) {
        let in_flight = std::mem::take(&mut self.in_flight);
        for (_, entry) in in_flight {
            if let Owner::Client { client, id } = &entry.owner {
                if let Some(state) = self.clients.get_mut(client) {
                    state.requests.remove(id);
                }
                let answer = error_response(Some(id), ErrorCode::BACKEND_UNAVAILABLE, reason);
                self.reply(*client, id, answer.into(), out);
            }
            if let Hook::Subscribe(uri) = entry.hook {
                self.subscription_answered(&uri, subscriptions::Answer::Lost(reason), out);
            }
        }
        for (asked_id, asked) in std::mem::take(&mut self.asked) {
            out.to_clients.push((
                asked.client,
                cancellation(
                    &self.asked_id(asked_id),
                    "the MCP server that asked stopped",
                )
                .into(),
            ));
        }
        self.asked_by_backend.clear();
        self.tasks.backend_lost();
        self.lists.backend_lost();
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
            if let (Kind::Request, Some(id)) = (envelope.kind(), envelope.id()) {
                let answer = error_response(Some(&id), ErrorCode::BACKEND_UNAVAILABLE, &reason);
                self.reply(client, &id, answer.into(), out);
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
            Kind::Batch => self.client_batch(client, &envelope, out),
            _ => self.client_message(client, envelope, out),
        }
    }

    /// A batch: each message handled on its own, the answers joined into one array.
    fn client_batch(&mut self, client: ClientId, envelope: &Envelope, out: &mut Outputs) {
        let Some(batch) = self
            .clients
            .get_mut(&client)
            .map(|state| state.batches.open())
        else {
            return;
        };
        for item in envelope.batch() {
            let item = Envelope::parse(item, Validation::Full);
            let Some(state) = self.clients.get_mut(&client) else {
                return;
            };
            match (item.kind(), item.invalid()) {
                (Kind::Request, _) => {
                    if let Some(id) = item.id() {
                        state.batches.expect(batch, id);
                    }
                    self.client_request(client, item, out);
                }
                (_, Some(invalid)) => state.batches.add(batch, invalid.error_response().into()),
                _ => self.client_message(client, item, out),
            }
        }
        if let Some(joined) = self
            .clients
            .get_mut(&client)
            .and_then(|state| state.batches.close(batch))
        {
            out.to_clients.push((client, joined.into()));
        }
    }

    /// One message from a client, alone or out of a batch.
    fn client_message(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        match envelope.kind() {
            Kind::Invalid => {
                if let Some(invalid) = envelope.invalid() {
                    out.to_clients
                        .push((client, invalid.error_response().into()));
                }
            }
            // Nested batches are invalid JSON-RPC; the wire crate reports them as Invalid.
            Kind::Batch => {}
            Kind::Request => self.client_request(client, envelope, out),
            Kind::Notification => self.client_notification(client, envelope, out),
            Kind::Response | Kind::ErrorResponse => self.client_answer(client, &envelope, out),
        }
    }

    fn client_request(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        let Some(id) = envelope.id() else {
            return;
        };
        match envelope.method() {
            Some("ping") => return self.answer(client, &id, &json!({}), out),
            // Dual-era clients probe `server/discover` and fall back to `initialize` on any error.
            // The daemon speaks the initialize era to its backend, whatever the backend knows.
            Some("server/discover") => {
                let answer = error_response(
                    Some(&id),
                    ErrorCode::METHOD_NOT_FOUND,
                    "server/discover is not supported: this shared server speaks the \
                     initialize-based MCP protocol; send `initialize`",
                );
                return self.reply(client, &id, answer.into(), out);
            }
            Some("initialize") if self.is_ready() => {
                return self.answer_initialize(client, &id, &envelope, out);
            }
            _ => {}
        }
        match &self.phase {
            Phase::Ready { .. } => self.route_request(client, id, envelope, out),
            Phase::Unavailable { reason } => {
                let answer = error_response(Some(&id), ErrorCode::BACKEND_UNAVAILABLE, reason);
                self.reply(client, &id, answer.into(), out);
            }
            Phase::Waiting | Phase::Initializing => self.hold(client, envelope, out),
        }
    }

    /// A request while the backend serves.
    fn route_request(&mut self, client: ClientId, id: Id, envelope: Envelope, out: &mut Outputs) {
        match envelope.method() {
            Some("resources/subscribe") => self.subscribe(client, id, envelope, out),
            Some("resources/unsubscribe") => self.unsubscribe(client, id, envelope, out),
            Some("logging/setLevel") if self.backend_offers("logging") => {
                self.set_level(client, &id, &envelope, out);
            }
            Some(method @ ("tasks/get" | "tasks/result" | "tasks/cancel")) => {
                if let Some(refusal) = self.tasks.refuse(client, method, &envelope) {
                    return self.reply(client, &id, refusal.into(), out);
                }
                self.forward(client, id, &envelope, Hook::None, out);
            }
            Some("tasks/list") => self.forward(client, id, &envelope, Hook::ListsTasks, out),
            _ => {
                // Only a backend that offers tasks can create one: others never pay for the scan.
                let hook = if self.backend_offers("tasks") && tasks::is_task_augmented(&envelope) {
                    Hook::CreatesTask
                } else {
                    Hook::None
                };
                self.forward(client, id, &envelope, hook, out);
            }
        }
    }

    /// `initialize` from a client, answered from the backend's result.
    fn answer_initialize(
        &mut self,
        client: ClientId,
        id: &Id,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let Phase::Ready { result } = &self.phase else {
            return;
        };
        let params = serde_json::from_slice::<Value>(envelope.line().as_bytes())
            .ok()
            .and_then(|mut message| message.get_mut("params").map(Value::take))
            .unwrap_or(Value::Null);
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let Some(requested) = requested else {
            let answer = error_response(
                Some(id),
                ErrorCode::INVALID_PARAMS,
                "initialize needs params.protocolVersion (a string)",
            );
            return self.reply(client, id, answer.into(), out);
        };
        let capabilities = params.get("capabilities");
        let declares = |name: &str| capabilities.and_then(|caps| caps.get(name)).is_some();
        let declared = ClientCapabilities {
            sampling: declares("sampling"),
            elicitation: declares("elicitation"),
        };
        let mut answer = result.clone();
        let backend_version = answer
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(REQUESTED_PROTOCOL_VERSION)
            .to_owned();
        let version = negotiate(requested, &backend_version);
        if version < TASKS_PROTOCOL_VERSION
            && let Some(Value::Object(capabilities)) = answer.get_mut("capabilities")
        {
            capabilities.remove("tasks");
        }
        answer.insert(
            "protocolVersion".to_owned(),
            Value::String(version.to_owned()),
        );
        if let Some(state) = self.clients.get_mut(&client) {
            state.capabilities = declared;
        }
        self.answer(client, id, &answer, out);
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
        // JSON-RPC lets a cancelled request go unanswered: one in a batch no longer holds it up.
        if let Some(joined) = self
            .clients
            .get_mut(&client)
            .and_then(|state| state.batches.cancelled(&request_id))
        {
            out.to_clients.push((client, joined.into()));
        }
        // Still queued: forget it.
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
            .get_mut(&client)
            .and_then(|state| state.requests.remove(&request_id))
        else {
            return;
        };
        if !self.release(backend_id) {
            return;
        }
        match envelope.rewrite(&[(Field::RequestId, &Id::from_u64(backend_id))]) {
            Ok(rewritten) => out.to_backend.push(rewritten.into()),
            Err(error) => tracing::debug!(client, %error, "could not map a cancellation"),
        }
    }

    /// Pass a client request on under a fresh backend id (and progress token).
    fn forward(
        &mut self,
        client: ClientId,
        id: Id,
        envelope: &Envelope,
        hook: Hook,
        out: &mut Outputs,
    ) {
        let backend_id = self.mint_id();
        let backend_key = Id::from_u64(backend_id);
        let token = envelope.get(Field::MetaProgressToken);
        let rewritten = if token.is_some() {
            // The backend id doubles as the token: unique, and one map finds the owner of both.
            envelope.rewrite(&[
                (Field::Id, &backend_key),
                (Field::MetaProgressToken, &backend_key),
            ])
        } else {
            envelope.rewrite(&[(Field::Id, &backend_key)])
        };
        match rewritten {
            Ok(rewritten) => {
                out.to_backend.push(rewritten.into());
                if let Some(state) = self.clients.get_mut(&client) {
                    state.requests.insert(id.clone(), backend_id);
                    state.last_request = backend_id;
                }
                self.in_flight.insert(
                    backend_id,
                    InFlight {
                        owner: Owner::Client { client, id },
                        token,
                        hook,
                    },
                );
            }
            Err(error) => {
                let answer =
                    error_response(Some(&id), ErrorCode::INVALID_REQUEST, &error.to_string());
                self.reply(client, &id, answer.into(), out);
            }
        }
    }

    /// A request for the backend on the daemon's own account, answered to no client.
    fn daemon_request(
        &mut self,
        call: DaemonCall,
        method: &str,
        params: &Value,
        out: &mut Outputs,
    ) {
        let id = self.mint_id();
        match request(&Id::from_u64(id), method, Some(&raw(params))) {
            Ok(line) => {
                out.to_backend.push(line.into());
                self.in_flight.insert(
                    id,
                    InFlight {
                        owner: Owner::Daemon(call),
                        token: None,
                        hook: Hook::None,
                    },
                );
            }
            Err(error) => {
                tracing::warn!(method, %error, "could not build a request for the MCP server")
            }
        }
    }

    fn housekeeping_request(&mut self, method: &'static str, params: Value, out: &mut Outputs) {
        if self.is_ready() {
            self.daemon_request(DaemonCall::Housekeeping(method), method, &params, out);
        }
    }

    fn hold(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        if self.pending_bytes + envelope.line().len() > MAX_PENDING_BYTES {
            if let (Kind::Request, Some(id)) = (envelope.kind(), envelope.id()) {
                let answer = error_response(
                    Some(&id),
                    ErrorCode::BACKEND_UNAVAILABLE,
                    "the MCP server is still starting and too many requests are queued; retry \
                     shortly",
                );
                self.reply(client, &id, answer.into(), out);
            }
            return;
        }
        self.pending_bytes += envelope.line().len();
        self.pending.push_back((client, envelope));
    }

    /// Send `client` the answer to its request `id`, or add it to the batch it belongs to.
    fn reply(&mut self, client: ClientId, id: &Id, answer: Outgoing, out: &mut Outputs) {
        self.requests_served += 1;
        let answer = match self.clients.get_mut(&client) {
            Some(state) => match state.batches.answered(id, answer) {
                Ok(Some(joined)) => joined.into(),
                Ok(None) => return,
                Err(answer) => answer,
            },
            None => answer,
        };
        out.to_clients.push((client, answer));
    }

    /// A local success answer.
    fn answer(
        &mut self,
        client: ClientId,
        id: &Id,
        result: &impl serde::Serialize,
        out: &mut Outputs,
    ) {
        let answer = response(id, &raw(result)).expect("compact JSON has no raw newline");
        self.reply(client, id, answer.into(), out);
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
            Kind::Response | Kind::ErrorResponse => self.backend_answer(&envelope, out),
            Kind::Request => self.backend_request(&envelope, out),
            Kind::Notification => self.backend_notification(&envelope, out),
            Kind::Batch | Kind::Invalid => {
                tracing::warn!(
                    kind = ?envelope.kind(),
                    "dropped a message from the MCP server that is not a single JSON-RPC message"
                );
            }
        }
    }

    fn backend_answer(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let entry = envelope
            .id()
            .and_then(|id| id.as_str().parse::<u64>().ok())
            .and_then(|backend_id| self.in_flight.remove(&backend_id));
        let Some(entry) = entry else {
            tracing::debug!("dropped an answer to no request in flight");
            return;
        };
        let success = envelope.kind() == Kind::Response;
        match (&entry.hook, success) {
            (Hook::Subscribe(uri), _) => {
                let answer = if success {
                    subscriptions::Answer::Accepted
                } else {
                    subscriptions::Answer::Refused(envelope)
                };
                self.subscription_answered(uri, answer, out);
            }
            (Hook::CreatesTask, true) => {
                if let Owner::Client { client, .. } = entry.owner {
                    self.tasks.created(client, envelope);
                }
            }
            _ => {}
        }
        match entry.owner {
            Owner::Client { client, id } => {
                if let Some(state) = self.clients.get_mut(&client) {
                    state.requests.remove(&id);
                }
                let answer = if entry.hook == Hook::ListsTasks && success {
                    self.tasks.narrow_list(client, &id, envelope)
                } else {
                    envelope
                        .rewrite(&[(Field::Id, &id)])
                        .map(Outgoing::from)
                        .map_err(|error| error.to_string())
                };
                let answer = answer.unwrap_or_else(|error| {
                    error_response(
                        Some(&id),
                        ErrorCode::INTERNAL_ERROR,
                        &format!("the MCP server's answer could not be passed on: {error}"),
                    )
                    .into()
                });
                self.reply(client, &id, answer, out);
            }
            Owner::Gone => {}
            Owner::Daemon(DaemonCall::Initialize) => self.initialize_answered(envelope, out),
            Owner::Daemon(DaemonCall::ListPage(kind)) => self.list_page(kind, envelope, out),
            Owner::Daemon(DaemonCall::Housekeeping(method)) => {
                if !success {
                    tracing::warn!(
                        method,
                        "the MCP server refused a request shoal made to keep it in step with its clients"
                    );
                }
            }
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
        self.initialized_backends += 1;
        out.signal = Some(Signal::Initialized);

        // A new backend knows nothing of what its predecessor was told: replay the backend-wide
        // state before any queued client message reaches it.
        if let Some(level) = self.levels.backend() {
            self.housekeeping_request("logging/setLevel", json!({ "level": level.as_str() }), out);
        }
        for uri in self.subscriptions.active() {
            self.housekeeping_request("resources/subscribe", json!({ "uri": uri }), out);
        }
        let after_restart = self.initialized_backends > 1;
        for kind in ListKind::ALL {
            if self.backend_offers(kind.capability()) {
                self.lists.start_check(kind, after_restart);
                self.daemon_request(
                    DaemonCall::ListPage(kind),
                    kind.list_method(),
                    &json!({}),
                    out,
                );
            } else if after_restart {
                self.lists.start_check(kind, true);
                let step = self.lists.check_page(kind, None, false);
                self.announce_if(step, kind, out);
            }
        }

        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for (client, envelope) in pending {
            match envelope.kind() {
                Kind::Request => self.client_request(client, envelope, out),
                _ => self.client_notification(client, envelope, out),
            }
        }
    }

    /// A page of a fingerprinting listing arrived.
    fn list_page(&mut self, kind: ListKind, envelope: &Envelope, out: &mut Outputs) {
        #[derive(serde::Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            result: Option<&'a RawValue>,
        }
        #[derive(serde::Deserialize)]
        struct Cursor {
            #[serde(rename = "nextCursor")]
            next_cursor: Option<Value>,
        }
        let result = serde_json::from_slice::<Page<'_>>(envelope.line().as_bytes())
            .ok()
            .and_then(|page| page.result);
        let next_cursor = result
            .and_then(|result| serde_json::from_str::<Cursor>(result.get()).ok())
            .and_then(|cursor| cursor.next_cursor)
            .filter(|cursor| !cursor.is_null());
        let step = self.lists.check_page(
            kind,
            result.map(|result| result.get().as_bytes()),
            next_cursor.is_some(),
        );
        match (step, next_cursor) {
            (CheckStep::NextPage, Some(cursor)) => self.daemon_request(
                DaemonCall::ListPage(kind),
                kind.list_method(),
                &json!({ "cursor": cursor }),
                out,
            ),
            (CheckStep::Again, _) => {
                self.daemon_request(
                    DaemonCall::ListPage(kind),
                    kind.list_method(),
                    &json!({}),
                    out,
                );
            }
            (step, _) => self.announce_if(step, kind, out),
        }
    }

    fn announce_if(&mut self, step: CheckStep, kind: ListKind, out: &mut Outputs) {
        let CheckStep::Done(changed) = step else {
            return;
        };
        if changed {
            tracing::info!(
                list = kind.capability(),
                "the new MCP server's list differs; telling clients"
            );
            if self.lists.coalesce(kind, Instant::now()) {
                self.broadcast_list_changed(kind, out);
            }
        }
        if self.lists.settled() {
            tracing::info!(
                backend = self.initialized_backends,
                "listed the MCP server's tools, resources and prompts"
            );
        }
    }

    fn backend_notification(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let method = envelope.method().unwrap_or_default();
        match method {
            "notifications/progress" => self.backend_progress(envelope, out),
            "notifications/cancelled" => self.backend_cancellation(envelope, out),
            "notifications/resources/updated" => {
                let Some(uri) = envelope.uri() else {
                    return;
                };
                for client in self.subscriptions.subscribers(uri) {
                    out.to_clients
                        .push((client, envelope.line().clone().into()));
                }
            }
            "notifications/message" => {
                let level = log_level(envelope);
                for (&client, state) in &self.clients {
                    let admitted = level.is_none_or(|level| self.levels.admits(client, level));
                    if state.ready && admitted {
                        out.to_clients
                            .push((client, envelope.line().clone().into()));
                    }
                }
            }
            "notifications/tasks/status" => {
                if let Some(client) = self.tasks.owner_of_notification(envelope) {
                    out.to_clients
                        .push((client, envelope.line().clone().into()));
                }
            }
            _ => {
                if let Some(kind) = ListKind::from_notification(method) {
                    if self.lists.backend_changed(kind, Instant::now()) {
                        self.broadcast_list_changed(kind, out);
                    }
                } else if let Some(subscription) = envelope.get(Field::SubscriptionId) {
                    self.notify_request_owner(envelope, &subscription, Field::SubscriptionId, out);
                } else {
                    self.broadcast(envelope.line(), out);
                }
            }
        }
    }

    fn backend_progress(&mut self, envelope: &Envelope, out: &mut Outputs) {
        if let Some(token) = envelope.get(Field::ProgressToken) {
            self.notify_request_owner(envelope, &token, Field::ProgressToken, out);
        }
    }

    /// A notification about one client request (its progress, its `subscriptions/listen` stream):
    /// to that request's client only, with `field` mapped back to what the client sent. Dropped
    /// when the request is over: progress may arrive after the answer.
    fn notify_request_owner(
        &mut self,
        envelope: &Envelope,
        key: &Id,
        field: Field,
        out: &mut Outputs,
    ) {
        let entry = key
            .as_str()
            .parse::<u64>()
            .ok()
            .and_then(|backend_id| self.in_flight.get(&backend_id));
        let Some(InFlight {
            owner: Owner::Client { client, id },
            token,
            ..
        }) = entry
        else {
            return;
        };
        let original = match field {
            Field::ProgressToken => match token {
                Some(token) => token,
                None => return,
            },
            _ => id,
        };
        match envelope.rewrite(&[(field, original)]) {
            Ok(rewritten) => out.to_clients.push((*client, rewritten.into())),
            Err(error) => tracing::debug!(%error, "could not map a notification to its client"),
        }
    }

    fn broadcast(&self, line: &Line, out: &mut Outputs) {
        for (&client, state) in &self.clients {
            if state.ready {
                out.to_clients.push((client, line.clone().into()));
            }
        }
    }

    fn broadcast_list_changed(&self, kind: ListKind, out: &mut Outputs) {
        let line = notification(kind.notification(), None).expect("no params, no newline");
        self.broadcast(&line, out);
    }

    /// Whether the backend's initialize result declares capability `name`.
    fn backend_offers(&self, name: &str) -> bool {
        match &self.phase {
            Phase::Ready { result } => result
                .get("capabilities")
                .and_then(|capabilities| capabilities.get(name))
                .is_some(),
            _ => false,
        }
    }

    /// `logging/setLevel` from a client: its own filter, and the backend at the most verbose
    /// level any client asked for.
    fn set_level(&mut self, client: ClientId, id: &Id, envelope: &Envelope, out: &mut Outputs) {
        let level = serde_json::from_slice::<Value>(envelope.line().as_bytes())
            .ok()
            .and_then(|message| message.pointer("/params/level").cloned());
        let Some(level) = level
            .as_ref()
            .and_then(Value::as_str)
            .and_then(Level::parse)
        else {
            let answer = error_response(
                Some(id),
                ErrorCode::INVALID_PARAMS,
                "logging/setLevel needs params.level: one of debug, info, notice, warning, error, \
                 critical, alert, emergency",
            );
            return self.reply(client, id, answer.into(), out);
        };
        if let Some(backend_level) = self.levels.set(client, level) {
            self.set_backend_level(backend_level, out);
        }
        self.answer(client, id, &json!({}), out);
    }

    fn set_backend_level(&mut self, level: Level, out: &mut Outputs) {
        self.housekeeping_request("logging/setLevel", json!({ "level": level.as_str() }), out);
    }

    fn mint_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// The version a client is answered with: its own when the daemon knows it and the backend's is at
/// least as new (servers keep speaking older versions, and newer fields are ignored by older
/// clients); otherwise the backend's, for the client to accept or refuse.
fn negotiate<'a>(requested: &'a str, backend: &'a str) -> &'a str {
    if KNOWN_PROTOCOL_VERSIONS.contains(&requested) && requested <= backend {
        requested
    } else {
        backend
    }
}

/// The level of a `notifications/message`, if it has a known one.
fn log_level(envelope: &Envelope) -> Option<Level> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        params: Params<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        level: &'a str,
    }
    serde_json::from_slice::<Message<'_>>(envelope.line().as_bytes())
        .ok()
        .and_then(|message| Level::parse(message.params.level))
}

fn cancellation(request_id: &Id, reason: &str) -> Line {
    let params = raw(&json!({
        "requestId": serde_json::from_str::<Value>(request_id.as_str()).unwrap_or(Value::Null),
        "reason": reason,
    }));
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

#[cfg(test)]
mod tests;
