//! The backend's protocol era, and serving every client on a 2026-07-28 ("stateless") backend.
//!
//! Each backend process is first asked `server/discover` (the probe, under id 0, which the
//! daemon never mints). A server that answers with `2026-07-28` among its `supportedVersions`
//! is stateless: no `initialize`, every request carries its own `_meta` (protocol version,
//! client info, capabilities, log level), and server-to-client questions come back as
//! `InputRequiredResult`s (`rounds.rs`). Any other answer means the handshake era: the daemon
//! sends its `initialize` (`handshake.rs`) and never probes again. So does a server that exits
//! on the probe (measured: `mcp` 1.2.1's FastMCP dies on an unknown method); it is restarted by
//! the supervisor like any failed start, and initialized the old way.
//!
//! On a stateless backend, clients come in two kinds, told apart by their first request:
//!
//! - *modern* clients (they never send `initialize`) pass through: their `_meta` is their own,
//!   `ping` and `server/discover` reach the server, and their answers come back untouched;
//! - *translated* clients (they sent `initialize`) are served by the daemon in their era: their
//!   `initialize` is answered from the discover result, each request gets their own `_meta`
//!   injected, stateless-only result fields are removed, `ping` is answered locally, an
//!   `InputRequiredResult` becomes server-to-client requests to that client alone, and their
//!   `resources/subscribe` and `list_changed` ride streams of the daemon's (`subscriptions.rs`).
//!
//! Invariant: on a stateless backend the daemon sends the backend nothing of its own but the
//! probe and the listen streams that stand in for translated clients' subscriptions
//! (`subscriptions.rs`); every request it forwards for a translated client carries that
//! client's `_meta`.

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use shoal_ipc::session::LogLevel as Level;
use shoal_wire::{Envelope, ErrorCode, Id, Kind, Line, Validation, error_response, request_value};

use super::dispatch::{ClientId, Outputs, Phase, Router, Signal};
use super::handshake::{TASKS_PROTOCOL_VERSION, negotiate};
use super::in_flight::{DaemonCall, Hook, InFlight, Owner, Retry};
use super::server_requests::ClientCapabilities;

/// The stateless revision.
pub(super) const STATELESS_VERSION: &str = "2026-07-28";
/// The newest handshake version: what a translated client asking for an unknown one is offered.
const NEWEST_HANDSHAKE_VERSION: &str = "2025-11-25";

const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// The id of the probe: the daemon mints ids from 1, so no answer can be mistaken for it.
const PROBE_ID: u64 = 0;

/// The only requests a stateless server may answer with an `InputRequiredResult`.
const RETRYABLE: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// How the daemon speaks to its backend processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendEra {
    /// Not known yet: the next process is probed.
    Unprobed,
    /// `initialize` first; kept for the daemon's life once seen.
    Handshake,
    /// 2026-07-28: no handshake, `_meta` on every request. Each new process is probed again.
    Stateless,
}

/// How a client speaks, on a stateless backend.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) enum ClientEra {
    /// No request yet (or the backend speaks the handshake era, where this is not tracked).
    #[default]
    Unknown,
    /// Sent `initialize`: served by translation, with what it declared.
    Translated {
        client_info: Value,
        capabilities: Value,
    },
    /// Speaks 2026-07-28 itself. `log_levels`: the backend ids of its requests that asked for
    /// log messages (the server sends them only for requests that carry a level), and the level
    /// each asked for; those no longer in flight are dropped at its next request.
    Modern { log_levels: Vec<(u64, Level)> },
}

impl Router {
    /// A backend process was started: probe it, or initialize it if it is known to need that.
    pub(crate) fn backend_started(&mut self, out: &mut Outputs) {
        if self.era == BackendEra::Handshake {
            return self.send_initialize(out);
        }
        self.in_flight.insert(
            PROBE_ID,
            InFlight {
                owner: Owner::Daemon(DaemonCall::Discover),
                token: None,
                hook: Hook::None,
            },
        );
        self.phase = Phase::Probing;
        let params = json!({ "_meta": self.daemon_meta() });
        out.to_backend
            .push(request_value(&Id::from_u64(PROBE_ID), "server/discover", &params).into());
    }

    /// The `_meta` of the daemon's own requests to a stateless backend: it asks as a client that
    /// can answer no question.
    pub(super) fn daemon_meta(&self) -> Value {
        json!({
            PROTOCOL_VERSION_KEY: STATELESS_VERSION,
            CLIENT_INFO_KEY: self.client_info,
            CLIENT_CAPABILITIES_KEY: {},
        })
    }

    /// The backend answered the probe.
    pub(super) fn probe_answered(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let result = (envelope.kind() == Kind::Response)
            .then(|| serde_json::from_slice::<Value>(envelope.line().as_bytes()).ok())
            .flatten()
            .and_then(
                |mut message| match message.get_mut("result").map(Value::take) {
                    Some(Value::Object(result)) => Some(result),
                    _ => None,
                },
            )
            .filter(|result| {
                result
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .is_some_and(|versions| {
                        versions.iter().any(|version| version == STATELESS_VERSION)
                    })
            });
        let Some(result) = result else {
            tracing::info!(
                "the MCP server does not speak {STATELESS_VERSION}; initializing it the \
                 handshake way"
            );
            self.era = BackendEra::Handshake;
            return self.send_initialize(out);
        };
        tracing::info!("the MCP server speaks {STATELESS_VERSION}; serving it without a handshake");
        self.era = BackendEra::Stateless;
        self.phase = Phase::Ready { result };
        self.initialized_backends += 1;
        out.signal = Some(Signal::Initialized);
        self.reopen_streams(out);
        if self.initialized_backends > 1 {
            // A new process (maybe a new version): its lists may differ, and nothing here can
            // tell (a translated session's only news of changes is the daemon's stream).
            for kind in self.announced_lists() {
                self.broadcast_list_changed(kind, out);
            }
        }
        for (client, envelope) in self.pending.take_all() {
            match envelope.kind() {
                Kind::Request => self.client_request(client, envelope, out),
                _ => self.client_notification(client, envelope, out),
            }
        }
    }

    /// The backend went while the probe was out: a server that dies on an unknown method
    /// speaks the handshake era (one that speaks 2026-07-28 knows `server/discover`).
    pub(super) fn probe_lost(&mut self) {
        if matches!(self.phase, Phase::Probing) && self.era == BackendEra::Unprobed {
            tracing::warn!(
                "the MCP server exited when asked `server/discover`; it will be initialized the \
                 handshake way from now on"
            );
            self.era = BackendEra::Handshake;
        }
    }

    pub(super) fn is_stateless(&self) -> bool {
        self.era == BackendEra::Stateless
    }

    fn client_era(&self, client: ClientId) -> Option<&ClientEra> {
        self.clients.get(&client).map(|state| &state.era)
    }

    /// Whether `client` is served by translation (it initialized, the backend is stateless).
    pub(super) fn translates(&self, client: ClientId) -> bool {
        self.is_stateless() && matches!(self.client_era(client), Some(ClientEra::Translated { .. }))
    }

    /// A request from `client` on a stateless backend.
    pub(super) fn route_stateless(
        &mut self,
        client: ClientId,
        id: Id,
        envelope: Envelope,
        out: &mut Outputs,
    ) {
        let method = envelope.method().unwrap_or_default().to_owned();
        if !self.translates(client) {
            let log_level = requested_log_level(&envelope);
            let Some(state) = self.clients.get_mut(&client) else {
                return;
            };
            let mut log_levels = match std::mem::take(&mut state.era) {
                ClientEra::Modern { log_levels } => log_levels,
                _ => Vec::new(),
            };
            log_levels.retain(|(backend_id, _)| self.in_flight.get(*backend_id).is_some());
            // It has no `notifications/initialized` to send: it hears broadcasts at once.
            state.ready = true;
            let before = state.last_request;
            self.forward(client, id, &envelope, Hook::None, out);
            if let Some(state) = self.clients.get_mut(&client) {
                // Forwarded (a request that could not be is answered with an error at once).
                if let Some(level) = log_level.filter(|_| state.last_request != before) {
                    log_levels.push((state.last_request, level));
                }
                state.era = ClientEra::Modern { log_levels };
            }
            return;
        }
        match method.as_str() {
            // Removed in 2026-07-28; the daemon answers it as the client's own era would.
            "ping" => return self.answer(client, &id, &json!({}), out),
            "logging/setLevel" if self.backend_offers("logging") => {
                return self.set_translated_level(client, &id, &envelope, out);
            }
            // Removed too: the daemon's streams stand in for them (`subscriptions.rs`).
            "resources/subscribe" if self.backend_offers_subscriptions() => {
                return self.translated_subscribe(client, id, &envelope, out);
            }
            "resources/unsubscribe" if self.backend_offers_subscriptions() => {
                return self.translated_unsubscribe(client, id, &envelope, out);
            }
            _ => {}
        }
        let translated = self.with_client_meta(client, &envelope);
        match translated {
            Ok((line, params)) => {
                let envelope = Envelope::parse(line, Validation::Envelope);
                let hook = if RETRYABLE.contains(&method.as_str()) {
                    Hook::Retryable(Box::new(Retry {
                        method,
                        params,
                        round: 0,
                    }))
                } else {
                    Hook::None
                };
                self.forward(client, id, &envelope, hook, out);
            }
            Err(why) => {
                let answer = error_response(Some(&id), ErrorCode::INVALID_PARAMS, &why);
                self.reply(client, &id, answer.into(), out);
            }
        }
    }

    /// A translated client's request with its own `_meta` added, as the line to forward and
    /// its params (kept for the retry of a multi-round-trip request). Only `_meta` is rebuilt:
    /// every other member goes through as the client wrote it.
    fn with_client_meta(
        &self,
        client: ClientId,
        envelope: &Envelope,
    ) -> Result<(Line, String), String> {
        let Some(ClientEra::Translated {
            client_info,
            capabilities,
        }) = self.client_era(client)
        else {
            return Err("the session has not initialized".to_owned());
        };
        let mut message: RawObject = serde_json::from_slice(envelope.line().as_bytes())
            .map_err(|error| format!("the request could not be read: {error}"))?;
        let mut params: RawObject = match message.get("params") {
            None => RawObject::new(),
            Some(params) => serde_json::from_str(params.get())
                .map_err(|_| "the request's params must be an object".to_owned())?,
        };
        let mut meta: RawObject = match params.get("_meta") {
            None => RawObject::new(),
            Some(meta) => serde_json::from_str(meta.get())
                .map_err(|_| "the request's params._meta must be an object".to_owned())?,
        };
        // A handshake-era server sends every level until told otherwise: so does this one for
        // a client that never set a level.
        let level = self.levels.level_of(client).unwrap_or(Level::Debug);
        meta.insert(
            PROTOCOL_VERSION_KEY.to_owned(),
            raw(&json!(STATELESS_VERSION))?,
        );
        meta.insert(CLIENT_INFO_KEY.to_owned(), raw(client_info)?);
        meta.insert(CLIENT_CAPABILITIES_KEY.to_owned(), raw(capabilities)?);
        meta.insert(LOG_LEVEL_KEY.to_owned(), raw(&json!(level.as_str()))?);
        params.insert("_meta".to_owned(), raw(&meta)?);
        let params_text = serde_json::to_string(&params).map_err(|error| error.to_string())?;
        message.insert("params".to_owned(), raw(&params)?);
        let bytes = serde_json::to_vec(&message)
            .map_err(|error| format!("the request could not be rewritten: {error}"))?;
        let line = Line::new(bytes).map_err(|error| error.to_string())?;
        Ok((line, params_text))
    }

    fn set_translated_level(
        &mut self,
        client: ClientId,
        id: &Id,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let level = serde_json::from_slice::<Value>(envelope.line().as_bytes())
            .ok()
            .and_then(|message| {
                message
                    .pointer("/params/level")
                    .and_then(Value::as_str)
                    .and_then(Level::parse)
            });
        match level {
            Some(level) => {
                // Levels travel in each request's `_meta`: the backend has no level to set.
                let _ = self.levels.set(client, level);
                self.answer(client, id, &json!({}), out);
            }
            None => {
                let answer = error_response(
                    Some(id),
                    ErrorCode::INVALID_PARAMS,
                    "logging/setLevel needs params.level, one of the RFC 5424 level names",
                );
                self.reply(client, id, answer.into(), out);
            }
        }
    }

    /// `initialize` from a client on a stateless backend: answered from the discover result, in
    /// the client's era.
    pub(super) fn answer_initialize_from_discover(
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
        let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
            let answer = error_response(
                Some(id),
                ErrorCode::INVALID_PARAMS,
                "initialize needs params.protocolVersion (a string)",
            );
            return self.reply(client, id, answer.into(), out);
        };
        let version = negotiate(requested, NEWEST_HANDSHAKE_VERSION).to_owned();
        let mut capabilities = result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({}));
        // `listChanged` and `subscribe` stand as the server declares them: the daemon's streams
        // bring a translated client what the handshake era would (`subscriptions.rs`).
        if let Value::Object(capabilities) = &mut capabilities
            && version.as_str() < TASKS_PROTOCOL_VERSION
        {
            capabilities.remove("tasks");
        }
        let mut answer = Map::new();
        answer.insert("protocolVersion".to_owned(), Value::String(version));
        answer.insert("capabilities".to_owned(), capabilities);
        let server_info = result
            .get("_meta")
            .and_then(|meta| meta.get(SERVER_INFO_KEY))
            .cloned()
            .unwrap_or_else(|| json!({ "name": "unknown", "version": "unknown" }));
        answer.insert("serverInfo".to_owned(), server_info);
        if let Some(instructions) = result.get("instructions") {
            answer.insert("instructions".to_owned(), instructions.clone());
        }
        if let Some(state) = self.clients.get_mut(&client) {
            state.capabilities = ClientCapabilities::declared(params.get("capabilities"));
            state.era = ClientEra::Translated {
                client_info: params
                    .get("clientInfo")
                    .cloned()
                    .unwrap_or_else(|| json!({ "name": "unknown", "version": "unknown" })),
                capabilities: params
                    .get("capabilities")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
            };
        }
        self.open_lists_stream(out);
        self.answer(client, id, &Value::Object(answer), out);
    }

    /// A success answer to a translated client's request: a finished result loses the fields
    /// its era does not have; an `InputRequiredResult` starts (or continues) a round of
    /// questions to that client (`rounds.rs`).
    pub(super) fn translated_answer(
        &mut self,
        client: ClientId,
        id: Id,
        hook: Hook,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        // Members kept as the server wrote them (numbers of any size included).
        let result = serde_json::from_slice::<RawObject>(envelope.line().as_bytes())
            .ok()
            .and_then(|message| message.get("result").map(|result| result.get().to_owned()))
            .and_then(|result| serde_json::from_str::<RawObject>(&result).ok());
        let Some(mut result) = result else {
            let answer = error_response(
                Some(&id),
                ErrorCode::INTERNAL_ERROR,
                "the MCP server's answer had no result object",
            );
            return self.reply(client, &id, answer.into(), out);
        };
        let input_required = result
            .get("resultType")
            .and_then(|kind| serde_json::from_str::<String>(kind.get()).ok())
            .is_some_and(|kind| kind == "input_required");
        if input_required {
            let Hook::Retryable(retry) = hook else {
                let answer = error_response(
                    Some(&id),
                    ErrorCode::INTERNAL_ERROR,
                    "the MCP server asked for input on a request that cannot take any",
                );
                return self.reply(client, &id, answer.into(), out);
            };
            let result = serde_json::to_string(&result)
                .ok()
                .and_then(|text| serde_json::from_str::<Map<String, Value>>(&text).ok())
                .unwrap_or_default();
            return self.start_round(client, id, *retry, result, out);
        }
        for field in ["resultType", "ttlMs", "cacheScope"] {
            result.remove(field);
        }
        if let Some(meta) = result.get("_meta")
            && let Ok(mut meta) = serde_json::from_str::<RawObject>(meta.get())
        {
            meta.remove(SERVER_INFO_KEY);
            if meta.is_empty() {
                result.remove("_meta");
            } else if let Ok(meta) = raw(&meta) {
                result.insert("_meta".to_owned(), meta);
            }
        }
        let answer = serde_json::to_string(&result).ok().and_then(|result| {
            let text = format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
                id.as_str()
            );
            Line::new(text.into_bytes()).ok()
        });
        match answer {
            Some(answer) => self.reply(client, &id, answer.into(), out),
            None => {
                let answer = error_response(
                    Some(&id),
                    ErrorCode::INTERNAL_ERROR,
                    "the MCP server's answer could not be passed on",
                );
                self.reply(client, &id, answer.into(), out);
            }
        }
    }

    /// `notifications/message` from a stateless backend. Nothing in it names the request it is
    /// about, so it goes to every client with a request in flight whose level admits it.
    pub(super) fn stateless_log(
        &self,
        envelope: &Envelope,
        level: Option<Level>,
        out: &mut Outputs,
    ) {
        for (&client, state) in &self.clients {
            if !state.ready
                || (self.in_flight.latest_of(client).is_none()
                    && !self.rounds.has_rounds_of(client))
            {
                continue;
            }
            let admitted = match &state.era {
                ClientEra::Translated { .. } => {
                    level.is_none_or(|level| self.levels.admits(client, level))
                }
                ClientEra::Modern { log_levels } => {
                    // The most verbose level any of its requests in flight asked for.
                    let own = log_levels
                        .iter()
                        .filter(|(backend_id, _)| self.in_flight.get(*backend_id).is_some())
                        .map(|&(_, level)| level)
                        .min();
                    own.is_some_and(|own| level.is_none_or(|level| level >= own))
                }
                ClientEra::Unknown => false,
            };
            if admitted {
                out.to_clients
                    .push((client, envelope.line().clone().into()));
            }
        }
    }

    /// Re-send a translated client's request with the answers a round collected.
    pub(super) fn retry(&mut self, client: ClientId, id: Id, retry: Retry, out: &mut Outputs) {
        let line = serde_json::to_string(&retry.method)
            .ok()
            .and_then(|method| {
                let text = format!(
                    r#"{{"jsonrpc":"2.0","id":{},"method":{method},"params":{}}}"#,
                    id.as_str(),
                    retry.params
                );
                Line::new(text.into_bytes()).ok()
            });
        let Some(line) = line else {
            let answer = error_response(
                Some(&id),
                ErrorCode::INTERNAL_ERROR,
                "shoal could not build the retried request",
            );
            return self.reply(client, &id, answer.into(), out);
        };
        let envelope = Envelope::parse(line, Validation::Envelope);
        self.forward(client, id, &envelope, Hook::Retryable(Box::new(retry)), out);
    }
}

/// A JSON object whose members are kept as written: rewriting one member leaves the others'
/// text (numbers beyond 64 bits, say) exactly as it was. Sorted by key, as `serde_json::Map`.
pub(super) type RawObject = std::collections::BTreeMap<String, Box<RawValue>>;

/// `value` as raw JSON text.
pub(super) fn raw(value: &impl serde::Serialize) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(value).map_err(|error| error.to_string())
}

/// The log level a modern client's request asks for in its `_meta`, if any.
fn requested_log_level(envelope: &Envelope) -> Option<Level> {
    let line = envelope.line().as_bytes();
    // Most requests carry none: look before parsing.
    memchr::memmem::find(line, LOG_LEVEL_KEY.as_bytes())?;
    let message = serde_json::from_slice::<Value>(line).ok()?;
    let level = message
        .get("params")?
        .get("_meta")?
        .get(LOG_LEVEL_KEY)?
        .as_str()?;
    Level::parse(level)
}
