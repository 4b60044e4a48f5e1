//! The router's inputs and its request/answer plumbing: a client joining, leaving or sending a
//! line; the backend starting, going or sending a line; a timer. Each input becomes [`Outputs`].
//!
//! Invariant kept here: every client request gets exactly one answer, through [`Router::reply`]
//! (from the backend, locally, or an error when the backend is lost or unavailable); a cancelled
//! request may go unanswered. A client's request id is rewritten to a daemon-unique backend id in
//! exactly one place, [`Router::forward`], and restored in exactly one, [`Router::backend_answer`].

use std::path::Path;
use std::time::{Instant, SystemTime};

use serde_json::{Map, Value, json};
use shoal_ipc::session;
use shoal_wire::{
    Envelope, ErrorCode, Field, Id, Kind, Line, LineError, Validation, error_response,
    notification_value, request_value, response_value,
};

use super::asked::AskedTable;
use super::batch::Batches;
use super::client_tasks::ClientTasks;
use super::elicitations::Elicitations;
use super::in_flight::{DaemonCall, Hook, InFlight, InFlightTable, Owner, Released};
use super::levels::Levels;
use super::lists::Lists;
use super::pending::Pending;
use super::rounds::Rounds;
use super::server_requests::ClientCapabilities;
use super::stateless::{BackendEra, ClientEra};
use super::subscriptions::{self, Subscriptions};
use super::tasks::{self, Tasks};
use crate::outbox::Outgoing;
use crate::own_keys::OwnKeyMap;

/// Identifies one client session for the life of the daemon.
pub(crate) type ClientId = u64;

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
    pub(super) root_uri: String,
    pub(super) root_name: String,
    pub(super) client_info: Value,
    /// One counter for every id and token the daemon mints: backend request ids (which double as
    /// the rewritten progress tokens) and the numbers of requests routed to clients.
    next_id: u64,
    /// Backends initialized so far: the first one's lists are a baseline, later ones' a comparison.
    pub(super) initialized_backends: u64,
    /// Whether the backend serves: the one answer to that question in the daemon.
    pub(super) phase: Phase,
    /// How the daemon speaks to its backend processes (`stateless.rs`).
    pub(super) era: BackendEra,
    /// Translated clients' requests waiting on their answers to a stateless server's questions.
    pub(super) rounds: Rounds,
    pub(super) clients: OwnKeyMap<ClientId, ClientState>,
    pub(super) in_flight: InFlightTable,
    pub(super) asked: AskedTable,
    /// What the ids of requests routed to clients start with: unique to this daemon process
    /// (see `Router::new`).
    pub(super) asked_prefix: String,
    pub(super) subscriptions: Subscriptions,
    pub(super) levels: Levels,
    pub(super) lists: Lists,
    pub(super) tasks: Tasks,
    pub(super) elicitations: Elicitations,
    /// Tasks the daemon runs for the backend as its client (`client_tasks.rs`).
    pub(super) client_tasks: ClientTasks,
    pub(super) pending: Pending,
    /// The wall clock, for task timestamps (fixed in tests).
    pub(super) clock: fn() -> SystemTime,
    requests_served: u64,
}

/// Whether the backend can serve, as far as routing is concerned.
#[derive(Debug)]
pub(super) enum Phase {
    /// No initialized backend yet: it is starting or restarting. Client messages wait.
    Waiting,
    /// The probe (`server/discover`) is in flight: the backend's era is being learnt.
    Probing,
    /// The daemon's `initialize` is in flight.
    Initializing,
    /// Serving. `result` is the backend's initialize result, answered to every client, or its
    /// discover result on a stateless backend.
    Ready { result: Map<String, Value> },
    /// The backend cannot serve (crash loop, shutdown); requests are answered with this reason.
    Unavailable { reason: String },
}

#[derive(Debug, Default)]
pub(super) struct ClientState {
    /// Sent `notifications/initialized`: receives broadcasts.
    pub(super) ready: bool,
    /// What the client declared in its `initialize`.
    pub(super) capabilities: ClientCapabilities,
    /// The backend id of the client's latest request: ranks clients for server-to-client routing.
    pub(super) last_request: u64,
    pub(super) batches: Batches,
    /// Its era, on a stateless backend.
    pub(super) era: ClientEra,
}

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
            era: BackendEra::Unprobed,
            rounds: Rounds::default(),
            clients: OwnKeyMap::default(),
            in_flight: InFlightTable::default(),
            asked: AskedTable::default(),
            asked_prefix: format!("shoal-{instance}-"),
            subscriptions: Subscriptions::default(),
            levels: Levels::default(),
            lists: Lists::default(),
            tasks: Tasks::default(),
            elicitations: Elicitations::default(),
            client_tasks: ClientTasks::default(),
            pending: Pending::default(),
            clock: SystemTime::now,
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

    /// Why the backend cannot serve, when no backend will come until someone asks.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        match &self.phase {
            Phase::Unavailable { reason } => Some(reason),
            _ => None,
        }
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
        if self.clients.remove(&client).is_none() {
            return;
        }
        for backend_id in self.in_flight.client_left(client) {
            out.to_backend
                .push(cancellation(&Id::from_u64(backend_id), "the client disconnected").into());
        }
        self.pending.client_left(client);
        self.abandon_asked(client, out);
        for (uri, stream) in self.subscriptions.client_left(client) {
            self.drop_subscription(&uri, stream, out);
        }
        if let Some(level) = self.levels.remove(client) {
            self.set_backend_level(level, out);
        }
        self.tasks.client_left(client);
        self.elicitations.client_left(client);
        self.client_left_rounds(client);
    }

    /// The backend process is gone (crash, restart, stop): every request it held gets `reason` as
    /// an error; requests it sent to clients are withdrawn. Messages still queued for the next
    /// backend stay queued.
    pub(crate) fn backend_lost(&mut self, reason: &str, out: &mut Outputs) {
        self.probe_lost();
        self.backend_lost_rounds(reason, out);
        for entry in self.in_flight.drain() {
            if let Owner::Client { client, id } = &entry.owner {
                let answer = error_response(Some(id), ErrorCode::BACKEND_UNAVAILABLE, reason);
                self.reply(*client, id, answer.into(), out);
            }
            let uri = match (entry.hook, entry.owner) {
                (Hook::Subscribe(uri), _) => Some(uri),
                (_, Owner::Daemon(DaemonCall::Listen(subscriptions::Stream::Resource(uri)))) => {
                    Some(uri)
                }
                _ => None,
            };
            if let Some(uri) = uri {
                let lost = subscriptions::Answer::Failed(ErrorCode::BACKEND_UNAVAILABLE, reason);
                self.subscription_answered(&uri, lost, out);
            }
        }
        self.subscriptions.backend_lost();
        for asked in self.asked.drain() {
            out.to_clients.push((
                asked.client,
                cancellation(
                    &self.asked_id(asked.number),
                    "the MCP server that asked stopped",
                )
                .into(),
            ));
        }
        self.tasks.backend_lost();
        self.client_tasks.backend_lost();
        self.lists.backend_lost();
        if !matches!(self.phase, Phase::Unavailable { .. }) {
            self.phase = Phase::Waiting;
        }
    }

    /// No backend will come until someone asks (crash loop) or the daemon stops: answer every
    /// queued request, and every later one, with `reason`.
    pub(crate) fn backend_unavailable(&mut self, reason: String, out: &mut Outputs) {
        self.backend_lost(&reason, out);
        for (client, envelope) in self.pending.take_all() {
            if let (Kind::Request, Some(id)) = (envelope.kind(), envelope.id()) {
                let answer = error_response(Some(&id), ErrorCode::BACKEND_UNAVAILABLE, &reason);
                self.reply(client, &id, answer.into(), out);
            }
        }
        self.phase = Phase::Unavailable { reason };
    }

    /// The backend failed to start in time: the requests held for it have waited long enough
    /// and are answered with `reason`; later ones wait for the next process.
    pub(crate) fn fail_pending(&mut self, reason: &str, out: &mut Outputs) {
        for (client, envelope) in self.pending.take_all() {
            if let (Kind::Request, Some(id)) = (envelope.kind(), envelope.id()) {
                let answer = error_response(Some(&id), ErrorCode::BACKEND_UNAVAILABLE, reason);
                self.reply(client, &id, answer.into(), out);
            }
        }
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
                (Kind::Batch, None) => state.batches.add(
                    batch,
                    error_response(
                        None,
                        ErrorCode::INVALID_REQUEST,
                        "Invalid Request: a batch must not contain a batch",
                    )
                    .into(),
                ),
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

    pub(super) fn client_request(
        &mut self,
        client: ClientId,
        envelope: Envelope,
        out: &mut Outputs,
    ) {
        let Some(id) = envelope.id() else {
            return;
        };
        let stateless = self.is_stateless() && self.is_ready();
        match envelope.method() {
            // On a stateless backend, a modern client's `ping` and `server/discover` are the
            // server's to answer (`stateless.rs`).
            Some("ping") if !stateless => return self.answer(client, &id, &json!({}), out),
            Some(session::INITIALIZE) if stateless => {
                return self.answer_initialize_from_discover(client, &id, &envelope, out);
            }
            // Dual-era clients probe `server/discover` and fall back to `initialize` on any error.
            // A handshake-era backend is served the handshake way, as it would be directly.
            Some("server/discover") if self.era == BackendEra::Handshake => {
                let answer = error_response(
                    Some(&id),
                    ErrorCode::METHOD_NOT_FOUND,
                    "server/discover is not supported: this shared server speaks the \
                     initialize-based MCP protocol; send `initialize`",
                );
                return self.reply(client, &id, answer.into(), out);
            }
            Some(session::INITIALIZE) if self.is_ready() => {
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
            Phase::Waiting | Phase::Probing | Phase::Initializing => {
                self.hold(client, envelope, out);
            }
        }
    }

    /// A request while the backend serves.
    fn route_request(&mut self, client: ClientId, id: Id, envelope: Envelope, out: &mut Outputs) {
        if self.is_stateless() {
            return self.route_stateless(client, id, envelope, out);
        }
        match envelope.method() {
            // Counted only where the server has subscriptions; elsewhere it answers them itself
            // (with -32601, typically), as it would directly.
            Some(session::SUBSCRIBE) if self.backend_offers_subscriptions() => {
                self.subscribe(client, id, envelope, out);
            }
            Some(session::UNSUBSCRIBE) if self.backend_offers_subscriptions() => {
                self.unsubscribe(client, id, envelope, out);
            }
            Some(session::SET_LEVEL) if self.backend_offers("logging") => {
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

    pub(super) fn client_notification(
        &mut self,
        client: ClientId,
        envelope: Envelope,
        out: &mut Outputs,
    ) {
        match envelope.method() {
            Some(session::INITIALIZED) => {
                if let Some(state) = self.clients.get_mut(&client) {
                    state.ready = true;
                    // A stateless backend has no level to set: each request carries its own.
                    if let Some(level) = self.levels.ready(client)
                        && !self.is_stateless()
                    {
                        self.set_backend_level(level, out);
                    }
                }
            }
            // Roots are the project's, answered by the daemon; a client's change is not news.
            Some("notifications/roots/list_changed") => {}
            Some("notifications/cancelled") => self.client_cancellation(client, &envelope, out),
            _ => match self.phase {
                Phase::Ready { .. } => out.to_backend.push(envelope.into_line().into()),
                Phase::Unavailable { .. } => {}
                Phase::Waiting | Phase::Probing | Phase::Initializing => {
                    self.hold(client, envelope, out);
                }
            },
        }
    }

    fn client_cancellation(&mut self, client: ClientId, envelope: &Envelope, out: &mut Outputs) {
        let Some(request_id) = envelope.get(Field::RequestId) else {
            return;
        };
        self.release_from_batch(client, &request_id, out);
        if self.pending.cancel(client, &request_id) || self.cancel_round(client, &request_id, out) {
            return;
        }
        let Some(Released::Cancel(backend_id)) = self.in_flight.release(client, &request_id) else {
            return;
        };
        match envelope.rewrite(&[(Field::RequestId, &Id::from_u64(backend_id))]) {
            Ok(rewritten) => out.to_backend.push(rewritten.into()),
            Err(error) => tracing::debug!(client, %error, "could not map a cancellation"),
        }
    }

    /// `client`'s request `id` was cancelled: JSON-RPC lets it go unanswered, so a batch it is in
    /// no longer waits for it (and is sent if that was the last answer missing).
    pub(super) fn release_from_batch(&mut self, client: ClientId, id: &Id, out: &mut Outputs) {
        if let Some(joined) = self
            .clients
            .get_mut(&client)
            .and_then(|state| state.batches.cancelled(id))
        {
            out.to_clients.push((client, joined.into()));
        }
    }

    /// Pass a client request on under a fresh backend id (and progress token): the one place a
    /// client's id is rewritten on its way to the backend.
    pub(super) fn forward(
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
            // The backend id doubles as the token: unique, and one table finds the owner of both.
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
    pub(super) fn daemon_request(
        &mut self,
        call: DaemonCall,
        method: &str,
        params: &Value,
        out: &mut Outputs,
    ) -> u64 {
        let id = self.mint_id();
        out.to_backend
            .push(request_value(&Id::from_u64(id), method, params).into());
        self.in_flight.insert(
            id,
            InFlight {
                owner: Owner::Daemon(call),
                token: None,
                hook: Hook::None,
            },
        );
        id
    }

    pub(super) fn housekeeping_request(
        &mut self,
        method: &'static str,
        params: Value,
        out: &mut Outputs,
    ) {
        if self.is_ready() {
            self.daemon_request(DaemonCall::Housekeeping(method), method, &params, out);
        }
    }

    fn hold(&mut self, client: ClientId, envelope: Envelope, out: &mut Outputs) {
        let Some(refused) = self.pending.hold(client, envelope) else {
            return;
        };
        if let (Kind::Request, Some(id)) = (refused.kind(), refused.id()) {
            let answer = error_response(
                Some(&id),
                ErrorCode::BACKEND_UNAVAILABLE,
                "the MCP server is still starting and too many requests are queued; retry \
                 shortly",
            );
            self.reply(client, &id, answer.into(), out);
        }
    }

    /// Send `client` the answer to its request `id`, or add it to the batch it belongs to.
    pub(super) fn reply(&mut self, client: ClientId, id: &Id, answer: Outgoing, out: &mut Outputs) {
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
    pub(super) fn answer(&mut self, client: ClientId, id: &Id, result: &Value, out: &mut Outputs) {
        self.reply(client, id, response_value(id, result).into(), out);
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

    /// The backend answered one of its requests: the one place a client's own id is restored.
    fn backend_answer(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let backend_id = envelope.id().and_then(|id| id.as_str().parse::<u64>().ok());
        let entry = backend_id.and_then(|backend_id| self.in_flight.finish(backend_id));
        let Some(entry) = entry else {
            if envelope.has_null_id() {
                // A server's parse error: it could not read something it was sent, and cannot
                // say what. Client lines it could not parse are refused before they reach it
                // (`Validation::Full`), so this is news about the daemon's own traffic.
                tracing::warn!(
                    "the MCP server answered a message it could not read with an error that names \
                     no request; dropped it"
                );
            } else {
                tracing::debug!("dropped an answer to no request in flight");
            }
            return;
        };
        let success = envelope.kind() == Kind::Response;
        match (&entry.hook, success) {
            (Hook::Subscribe(uri), true) => {
                self.subscription_answered(uri, subscriptions::Answer::Accepted, out);
            }
            (Hook::Subscribe(uri), false) => {
                let first = match &entry.owner {
                    Owner::Client { client, .. } => Some(*client),
                    _ => None,
                };
                self.first_subscribe_refused(uri, first, out);
            }
            (Hook::CreatesTask, true) => {
                if let Owner::Client { client, .. } = &entry.owner {
                    let progress = backend_id.zip(entry.token.clone());
                    for status in self.tasks.created(*client, envelope, progress) {
                        out.to_clients.push((*client, status.into()));
                    }
                }
            }
            _ => {}
        }
        if entry.hook == Hook::CreatesTask && !self.in_flight.creating_task() {
            self.tasks.drop_held();
        }
        match entry.owner {
            Owner::Client { client, id } if success && self.translates(client) => {
                self.translated_answer(client, id, entry.hook, envelope, out);
            }
            Owner::Client { client, id } => {
                if !success {
                    self.note_required_elicitations(client, envelope);
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
            Owner::Daemon(DaemonCall::Discover) => self.probe_answered(envelope, out),
            Owner::Daemon(DaemonCall::Initialize) => self.initialize_answered(envelope, out),
            Owner::Daemon(DaemonCall::ListPage(kind)) => self.list_page(kind, envelope, out),
            Owner::Daemon(DaemonCall::Listen(stream)) => {
                if let Some(backend_id) = backend_id {
                    self.stream_ended(backend_id, stream, envelope, out);
                }
            }
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

    /// Whether the backend's initialize result declares capability `name`.
    pub(super) fn backend_offers(&self, name: &str) -> bool {
        self.discovered_capability(name).is_some()
    }

    /// Capability `name` as the backend declared it (in its initialize or discover result).
    pub(super) fn discovered_capability(&self, name: &str) -> Option<&Value> {
        match &self.phase {
            Phase::Ready { result } => result
                .get("capabilities")
                .and_then(|capabilities| capabilities.get(name)),
            _ => None,
        }
    }

    /// Whether the backend declared `resources.subscribe`.
    pub(super) fn backend_offers_subscriptions(&self) -> bool {
        match &self.phase {
            Phase::Ready { result } => result
                .get("capabilities")
                .and_then(|capabilities| capabilities.pointer("/resources/subscribe"))
                .is_some_and(|subscribe| subscribe == &Value::Bool(true)),
            _ => false,
        }
    }

    pub(super) fn mint_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// `notifications/cancelled` for `request_id`.
pub(super) fn cancellation(request_id: &Id, reason: &str) -> Line {
    let request_id = serde_json::from_str::<Value>(request_id.as_str()).unwrap_or(Value::Null);
    notification_value(
        "notifications/cancelled",
        Some(&json!({ "requestId": request_id, "reason": reason })),
    )
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
