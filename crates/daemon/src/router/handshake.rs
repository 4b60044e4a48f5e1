//! Initialization: the daemon's own `initialize` of each backend process, the state replayed
//! after it, and every client's `initialize`, answered from the backend's result with a protocol
//! version negotiated per client.
//!
//! Invariant: a handshake-era backend sees exactly one `initialize` per process, the daemon's own
//! (sent by [`Router::send_initialize`] once the probe settled the era, `stateless.rs`); no client's `initialize` ever reaches it. Client messages that
//! arrive before the backend answered are held (`pending.rs`) and released in arrival order, after
//! the backend-wide state (log level, subscriptions) was replayed to it.

use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use shoal_ipc::session;
use shoal_wire::{
    Envelope, ErrorCode, Id, Kind, error_response, notification_value, request_value,
};

use super::dispatch::{ClientId, Outputs, Phase, Router, Signal};
use super::in_flight::{DaemonCall, Hook, InFlight, Owner};
use super::lists::{CheckStep, ListKind};
use super::server_requests::ClientCapabilities;

/// The protocol version the daemon asks the backend for: the newest initialize-era version it
/// knows. A backend that speaks only older ones answers with its own, which then bounds what
/// every client is offered.
pub(super) const REQUESTED_PROTOCOL_VERSION: &str = "2025-11-25";

/// Initialize-era protocol versions, oldest first. ISO dates, so they also compare as strings.
/// 2024-10-07 predates the first published revision, but the TypeScript SDK's servers (the
/// reference servers among them) still accept it, so a client asking for it gets it directly.
const KNOWN_PROTOCOL_VERSIONS: [&str; 5] = [
    "2024-10-07",
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
];

/// The first version with tasks.
pub(super) const TASKS_PROTOCOL_VERSION: &str = "2025-11-25";

impl Router {
    /// Initialize a handshake-era backend process, once.
    pub(super) fn send_initialize(&mut self, out: &mut Outputs) {
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
        // every client. A request is routed only to a client that declared what it needs
        // (`server_requests.rs`); when none can, the server gets an error, as it would from
        // such a client alone.
        let params = json!({
            "protocolVersion": REQUESTED_PROTOCOL_VERSION,
            "capabilities": {
                "roots": {},
                "sampling": { "tools": {} },
                "elicitation": { "form": {}, "url": {} },
                // The daemon runs these as tasks itself, for any session (`client_tasks.rs`).
                "tasks": {
                    "list": {},
                    "cancel": {},
                    "requests": {
                        "sampling": { "createMessage": {} },
                        "elicitation": { "create": {} },
                    },
                },
            },
            "clientInfo": self.client_info,
        });
        out.to_backend
            .push(request_value(&Id::from_u64(id), session::INITIALIZE, &params).into());
    }

    pub(super) fn initialize_answered(&mut self, envelope: &Envelope, out: &mut Outputs) {
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
        out.to_backend
            .push(notification_value(session::INITIALIZED, None).into());
        self.phase = Phase::Ready { result };
        self.initialized_backends += 1;
        out.signal = Some(Signal::Initialized);

        // A new backend knows nothing of what its predecessor was told: replay the backend-wide
        // state before any queued client message reaches it.
        if let Some(level) = self.levels.backend() {
            self.housekeeping_request(session::SET_LEVEL, json!({ "level": level.as_str() }), out);
        }
        for uri in self.subscriptions.active() {
            self.housekeeping_request(session::SUBSCRIBE, json!({ "uri": uri }), out);
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

        for (client, envelope) in self.pending.take_all() {
            match envelope.kind() {
                Kind::Request => self.client_request(client, envelope, out),
                _ => self.client_notification(client, envelope, out),
            }
        }
    }

    /// `initialize` from a client, answered from the backend's result.
    pub(super) fn answer_initialize(
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
        let declared = ClientCapabilities::declared(params.get("capabilities"));
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
        self.answer(client, id, &Value::Object(answer), out);
    }

    /// A page of a fingerprinting listing arrived.
    pub(super) fn list_page(&mut self, kind: ListKind, envelope: &Envelope, out: &mut Outputs) {
        #[derive(Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            result: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
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
            (CheckStep::NextPage, Some(cursor)) => {
                self.daemon_request(
                    DaemonCall::ListPage(kind),
                    kind.list_method(),
                    &json!({ "cursor": cursor }),
                    out,
                );
            }
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
}

/// The version a client is answered with: its own when the daemon knows it and the backend's is at
/// least as new (servers keep speaking older versions, and newer fields are ignored by older
/// clients); otherwise the backend's, for the client to accept or refuse.
pub(super) fn negotiate<'a>(requested: &'a str, backend: &'a str) -> &'a str {
    if KNOWN_PROTOCOL_VERSIONS.contains(&requested) && requested <= backend {
        requested
    } else {
        backend
    }
}
