//! Requests from the backend to "the client": answered locally when the daemon knows the answer
//! (`ping`, `roots/list`), otherwise routed to exactly one capable client under a daemon id, whose
//! answer goes back under the backend's id. The backend always gets an answer: the client's, or an
//! error when no client can answer or the chosen one leaves first.
//!
//! Invariant: a client is asked only if it declared what the request needs (sampling, sampling
//! with tools, form or URL elicitation) and could have caused the request (it owns the related
//! task, has a request in flight, or is the only session); no session is ever shown a request
//! about another session's work because it happened to be capable.

use serde_json::{Value, json};
use shoal_wire::{Envelope, ErrorCode, Field, Id, error_response, response_value};

use super::asked::Reply;
use super::dispatch::{ClientId, Outputs, Router};
use super::elicitations;
use super::in_flight::{DaemonCall, Hook, InFlight, Owner};

/// What a client declared it can answer, as far as the server's requests go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ClientCapabilities {
    pub(super) sampling: bool,
    /// `sampling.tools` (2025-11-25): sampling requests that offer the model tools.
    pub(super) sampling_tools: bool,
    /// Form-mode elicitation: `elicitation: {}` (every era) or `elicitation.form`.
    pub(super) elicitation_form: bool,
    /// URL-mode elicitation (2025-11-25): `elicitation.url`.
    pub(super) elicitation_url: bool,
}

impl ClientCapabilities {
    /// From the `capabilities` of a client's `initialize`.
    pub(super) fn declared(capabilities: Option<&Value>) -> ClientCapabilities {
        let member = |name: &str| capabilities.and_then(|caps| caps.get(name));
        let sampling = member("sampling");
        let elicitation = member("elicitation");
        let mode = |name: &str| elicitation.and_then(|modes| modes.get(name)).is_some();
        // An `elicitation` naming no mode is the form mode, as before modes existed.
        let names_a_mode = mode("form") || mode("url");
        ClientCapabilities {
            sampling: sampling.is_some(),
            sampling_tools: sampling
                .and_then(|sampling| sampling.get("tools"))
                .is_some(),
            elicitation_form: elicitation.is_some() && (mode("form") || !names_a_mode),
            elicitation_url: mode("url"),
        }
    }
}

/// What a server-to-client request needs of the client that answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Need {
    Sampling,
    SamplingWithTools,
    ElicitationForm,
    ElicitationUrl,
}

impl Need {
    fn met_by(self, capabilities: &ClientCapabilities) -> bool {
        match self {
            Need::Sampling => capabilities.sampling,
            Need::SamplingWithTools => capabilities.sampling && capabilities.sampling_tools,
            Need::ElicitationForm => capabilities.elicitation_form,
            Need::ElicitationUrl => capabilities.elicitation_url,
        }
    }

    /// The capability, as the error to the server names it.
    fn capability(self) -> &'static str {
        match self {
            Need::Sampling => "sampling",
            Need::SamplingWithTools => "sampling.tools",
            Need::ElicitationForm => "elicitation (form mode)",
            Need::ElicitationUrl => "elicitation.url",
        }
    }
}

impl Router {
    pub(super) fn backend_request(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let Some(id) = envelope.id() else {
            return;
        };
        let answer = match envelope.method() {
            Some("ping") => response_value(&id, &json!({})),
            Some("roots/list") => response_value(
                &id,
                &json!({ "roots": [{ "uri": self.root_uri, "name": self.root_name }] }),
            ),
            Some(method @ ("sampling/createMessage" | "elicitation/create")) => {
                // Rare, and the params decide who can answer: worth a parse.
                let params = serde_json::from_slice::<Value>(envelope.line().as_bytes())
                    .ok()
                    .and_then(|mut message| message.get_mut("params").map(Value::take))
                    .unwrap_or(Value::Null);
                let need = if method == "sampling/createMessage" {
                    if params.get("tools").is_some() || params.get("toolChoice").is_some() {
                        Need::SamplingWithTools
                    } else {
                        Need::Sampling
                    }
                } else if params.get("mode").and_then(Value::as_str) == Some("url") {
                    Need::ElicitationUrl
                } else {
                    Need::ElicitationForm
                };
                // A task-augmented request (2025-11-25) is run by the daemon as a task of its
                // own (`client_tasks.rs`); the client answers it as a plain request.
                let client = if params.get("task").is_some_and(Value::is_object) {
                    self.run_as_task(id, envelope, need, out)
                } else {
                    self.ask_client(id.clone(), envelope, need, Reply::Backend(id), out)
                        .map(|(client, _)| client)
                };
                let Some(client) = client else {
                    return;
                };
                if need == Need::ElicitationUrl
                    && let Some(elicitation) = params.get("elicitationId").and_then(Value::as_str)
                    && !self.elicitations.insert(elicitation, client)
                {
                    tracing::warn!(
                        "too many URL elicitations await completion; this one's completion \
                         will not reach its client"
                    );
                }
                return;
            }
            Some(method @ ("tasks/get" | "tasks/result" | "tasks/cancel" | "tasks/list")) => {
                return self.client_task_request(method, id, envelope, out);
            }
            Some(method) => error_response(
                Some(&id),
                ErrorCode::METHOD_NOT_FOUND,
                &format!("shoal does not route `{method}` requests to its clients"),
            ),
            None => return,
        };
        out.to_backend.push(answer.into());
    }

    /// Route a server-to-client request to one client that can answer it, returning that
    /// client. Only a client that declared what the request needs, and could have caused it,
    /// is asked: the owner of the task it relates to; else, of the capable clients with a
    /// request in flight, the one with the most recent (the one most likely waiting on it);
    /// else a capable client alone on this daemon (it would be asked if it had the server to
    /// itself). Anyone else would be shown a form or a sampling dialog about another session's
    /// work, so when no client qualifies the server gets an error at once.
    ///
    /// `envelope` is what the client is sent (under an id of the daemon's), `reply` where its
    /// answer goes; a refusal goes to the backend under `backend_id`. Returns the client and the
    /// number of the request out at it.
    pub(super) fn ask_client(
        &mut self,
        backend_id: Id,
        envelope: &Envelope,
        need: Need,
        reply: Reply,
        out: &mut Outputs,
    ) -> Option<(ClientId, u64)> {
        let is_capable = |client: &ClientId| {
            self.clients
                .get(client)
                .is_some_and(|state| state.ready && need.met_by(&state.capabilities))
        };
        let ready = self.clients.values().filter(|state| state.ready).count();
        let chosen = self
            .tasks
            .related_owner(envelope)
            .filter(is_capable)
            .or_else(|| {
                self.clients
                    .keys()
                    .filter(|client| is_capable(client))
                    .filter_map(|&client| Some((self.in_flight.latest_of(client)?, client)))
                    .max()
                    .map(|(_, client)| client)
            })
            .or_else(|| {
                let mut capable = self
                    .clients
                    .keys()
                    .copied()
                    .filter(|client| is_capable(client));
                capable.next().filter(|_| ready == 1)
            });
        let method = envelope.method().unwrap_or_default();
        let Some(client) = chosen else {
            let anyone_capable = self.clients.keys().any(is_capable);
            let why = if anyone_capable {
                "no session that declared it has a request in flight that could have caused this"
            } else {
                "no connected session declared it"
            };
            let refusal = error_response(
                Some(&backend_id),
                ErrorCode::METHOD_NOT_FOUND,
                &format!(
                    "shoal cannot route `{method}`: it needs the client capability `{}`, and {why}",
                    need.capability()
                ),
            );
            out.to_backend.push(refusal.into());
            return None;
        };
        let asked_id = self.mint_id();
        match envelope.rewrite(&[(Field::Id, &self.asked_id(asked_id))]) {
            Ok(rewritten) => {
                tracing::debug!(
                    client,
                    method,
                    "routed a request from the MCP server to a client"
                );
                out.to_clients.push((client, rewritten.into()));
                self.asked.insert(asked_id, client, reply);
                Some((client, asked_id))
            }
            Err(error) => {
                let refusal = error_response(
                    Some(&backend_id),
                    ErrorCode::INTERNAL_ERROR,
                    &format!("shoal could not route `{method}`: {error}"),
                );
                out.to_backend.push(refusal.into());
                None
            }
        }
    }

    /// The backend answered `client`'s request with an error. If it is a
    /// `URLElicitationRequiredError`, the elicitations it lists are that client's: their
    /// completions go to it alone.
    pub(super) fn note_required_elicitations(&mut self, client: ClientId, envelope: &Envelope) {
        let line = envelope.line().as_bytes();
        // Most errors are not this one (`URL_ELICITATION_REQUIRED`): look for the code first.
        if memchr::memmem::find(line, b"-32042").is_none() {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let Some(error) = message.get("error") else {
            return;
        };
        if error.get("code").and_then(Value::as_i64) != Some(elicitations::URL_ELICITATION_REQUIRED)
        {
            return;
        }
        for elicitation in elicitations::required_ids(error) {
            if !self.elicitations.insert(elicitation, client) {
                tracing::warn!(
                    "too many URL elicitations await completion; this one's completion will not \
                     reach its client"
                );
            }
        }
    }

    /// `notifications/elicitation/complete`: to the client the elicitation belongs to, alone.
    pub(super) fn elicitation_complete(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let elicitation = serde_json::from_slice::<Value>(envelope.line().as_bytes())
            .ok()
            .and_then(|message| {
                message
                    .pointer("/params/elicitationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        match elicitation.and_then(|elicitation| self.elicitations.complete(&elicitation)) {
            Some(client) => out
                .to_clients
                .push((client, envelope.line().clone().into())),
            None => tracing::debug!("dropped the completion of an elicitation no session owns"),
        }
    }

    /// The id a client sees for the daemon's request number `n`: a string that no other daemon
    /// process uses (see `Router::new`).
    pub(super) fn asked_id(&self, n: u64) -> Id {
        Id::string(&format!("{}{n}", self.asked_prefix))
    }

    /// The number of a request this daemon routed to a client, from the id the client answered
    /// with; `None` for any other id (another daemon's, or one the daemon never sent).
    fn parse_asked_id(&self, id: &Id) -> Option<u64> {
        id.as_str()
            .strip_prefix('"')?
            .strip_suffix('"')?
            .strip_prefix(self.asked_prefix.as_str())?
            .parse()
            .ok()
    }

    /// A client answered a request: pass it back under the backend's id, once.
    pub(super) fn client_answer(
        &mut self,
        client: ClientId,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let number = envelope.id().and_then(|id| self.parse_asked_id(&id));
        if let Some(number) = number
            && self.round_answer(client, number, envelope, out)
        {
            return;
        }
        let asked = number.and_then(|number| self.asked.answered(number, client));
        let Some(asked) = asked else {
            tracing::debug!(client, "dropped a client's answer to no request of ours");
            return;
        };
        let backend_id = match asked.reply {
            Reply::Backend(backend_id) => backend_id,
            Reply::Task(task) => return self.client_task_answered(task, envelope, out),
        };
        match envelope.rewrite(&[(Field::Id, &backend_id)]) {
            Ok(answer) => out.to_backend.push(answer.into()),
            Err(error) => {
                let answer = error_response(
                    Some(&backend_id),
                    ErrorCode::INTERNAL_ERROR,
                    &format!("the client's answer could not be passed on: {error}"),
                );
                out.to_backend.push(answer.into());
            }
        }
    }

    /// The backend withdrew a request it had sent to a client.
    pub(super) fn backend_cancellation(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let Some(request_id) = envelope.get(Field::RequestId) else {
            return;
        };
        let Some(asked) = self.asked.withdrawn(&request_id) else {
            // Or it ends a client's request itself: a server tearing down a
            // `subscriptions/listen` stream (2026-07-28) cancels the listen request.
            return self.backend_ended_request(&request_id, envelope, out);
        };
        match envelope.rewrite(&[(Field::RequestId, &self.asked_id(asked.number))]) {
            Ok(rewritten) => out.to_clients.push((asked.client, rewritten.into())),
            Err(error) => tracing::debug!(%error, "could not map a cancellation to its client"),
        }
    }

    /// The backend cancelled `client`'s request `backend_id` (2026-07-28 servers end a
    /// `subscriptions/listen` stream so): that client alone hears of it, under its own id, and
    /// the request is over. Any other id is dropped.
    fn backend_ended_request(&mut self, backend_id: &Id, envelope: &Envelope, out: &mut Outputs) {
        let number = backend_id.as_str().parse::<u64>().ok();
        // One of the daemon's own listen streams (`subscriptions.rs`), ended by the server.
        if let Some(number) = number
            && let Some(InFlight {
                owner: Owner::Daemon(DaemonCall::Listen(_)),
                ..
            }) = self.in_flight.get(number)
            && let Some(InFlight {
                owner: Owner::Daemon(DaemonCall::Listen(stream)),
                ..
            }) = self.in_flight.finish(number)
        {
            return self.stream_ended(number, stream, envelope, out);
        }
        let owned = number
            // A request whose answer does the daemon's work (a first subscribe others wait on,
            // a task's creation) stays until answered: ending it here would lose those answers.
            .filter(|&backend_id| {
                self.in_flight.get(backend_id).is_some_and(|entry| {
                    matches!(entry.owner, Owner::Client { .. }) && entry.hook == Hook::None
                })
            })
            .and_then(|backend_id| self.in_flight.finish(backend_id));
        let Some(InFlight {
            owner: Owner::Client { client, id },
            ..
        }) = owned
        else {
            tracing::debug!("dropped the MCP server's cancellation of no request in flight");
            return;
        };
        match envelope.rewrite(&[(Field::RequestId, &id)]) {
            Ok(rewritten) => out.to_clients.push((client, rewritten.into())),
            Err(error) => tracing::debug!(%error, "could not map a cancellation to its client"),
        }
        self.release_from_batch(client, &id, out);
    }

    /// `client` left: the backend gets an error for every request it was asked, and never waits.
    pub(super) fn abandon_asked(&mut self, client: ClientId, out: &mut Outputs) {
        const WHY: &str = "the client this request was routed to disconnected before answering";
        for asked in self.asked.client_left(client) {
            match asked.reply {
                Reply::Backend(backend_id) => out
                    .to_backend
                    .push(error_response(Some(&backend_id), ErrorCode::INTERNAL_ERROR, WHY).into()),
                Reply::Task(task) => self.client_task_failed(task, WHY, out),
            }
        }
    }
}
