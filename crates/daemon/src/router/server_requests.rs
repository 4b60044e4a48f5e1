//! Requests from the backend to "the client": answered locally when the daemon knows the answer
//! (`ping`, `roots/list`), otherwise routed to exactly one capable client under a daemon id, whose
//! answer goes back under the backend's id. The backend always gets an answer: the client's, or an
//! error when no client can answer or the chosen one leaves first.

use serde_json::json;
use shoal_wire::{Envelope, ErrorCode, Field, Id, error_response, response_value};

use super::dispatch::{ClientCapabilities, ClientId, Outputs, Router};

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
            Some("sampling/createMessage") => {
                return self.ask_client(id, envelope, "sampling", |caps| caps.sampling, out);
            }
            Some("elicitation/create") => {
                return self.ask_client(id, envelope, "elicitation", |caps| caps.elicitation, out);
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

    /// Route a server-to-client request to one client that declared `capability`: the owner of the
    /// task it relates to; else the capable client with the most recent request in flight (the one
    /// most likely waiting on it); else the capable client that asked something last.
    fn ask_client(
        &mut self,
        backend_id: Id,
        envelope: &Envelope,
        capability: &str,
        capable: fn(&ClientCapabilities) -> bool,
        out: &mut Outputs,
    ) {
        let is_capable = |client: &ClientId| {
            self.clients
                .get(client)
                .is_some_and(|state| state.ready && capable(&state.capabilities))
        };
        let chosen = self
            .tasks
            .related_owner(envelope)
            .filter(is_capable)
            .or_else(|| {
                self.clients
                    .iter()
                    .filter(|(client, _)| is_capable(client))
                    .max_by_key(|&(&client, state)| {
                        let latest_in_flight = self.in_flight.latest_of(client);
                        (
                            latest_in_flight.is_some(),
                            latest_in_flight.unwrap_or(state.last_request),
                            client,
                        )
                    })
                    .map(|(&client, _)| client)
            });
        let method = envelope.method().unwrap_or_default();
        let Some(client) = chosen else {
            let refusal = error_response(
                Some(&backend_id),
                ErrorCode::METHOD_NOT_FOUND,
                &format!(
                    "no client connected to shoal can answer `{method}`: none declared the \
                     `{capability}` capability"
                ),
            );
            out.to_backend.push(refusal.into());
            return;
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
                self.asked.insert(asked_id, client, backend_id);
            }
            Err(error) => {
                let refusal = error_response(
                    Some(&backend_id),
                    ErrorCode::INTERNAL_ERROR,
                    &format!("shoal could not route `{method}`: {error}"),
                );
                out.to_backend.push(refusal.into());
            }
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
        let asked = envelope
            .id()
            .and_then(|id| self.parse_asked_id(&id))
            .and_then(|number| self.asked.answered(number, client));
        let Some(asked) = asked else {
            tracing::debug!(client, "dropped a client's answer to no request of ours");
            return;
        };
        match envelope.rewrite(&[(Field::Id, &asked.backend_id)]) {
            Ok(answer) => out.to_backend.push(answer.into()),
            Err(error) => {
                let answer = error_response(
                    Some(&asked.backend_id),
                    ErrorCode::INTERNAL_ERROR,
                    &format!("the client's answer could not be passed on: {error}"),
                );
                out.to_backend.push(answer.into());
            }
        }
    }

    /// The backend withdrew a request it had sent to a client.
    pub(super) fn backend_cancellation(&mut self, envelope: &Envelope, out: &mut Outputs) {
        let Some(asked) = envelope
            .get(Field::RequestId)
            .and_then(|backend_id| self.asked.withdrawn(&backend_id))
        else {
            return;
        };
        match envelope.rewrite(&[(Field::RequestId, &self.asked_id(asked.number))]) {
            Ok(rewritten) => out.to_clients.push((asked.client, rewritten.into())),
            Err(error) => tracing::debug!(%error, "could not map a cancellation to its client"),
        }
    }

    /// `client` left: the backend gets an error for every request it was asked, and never waits.
    pub(super) fn abandon_asked(&mut self, client: ClientId, out: &mut Outputs) {
        for asked in self.asked.client_left(client) {
            out.to_backend.push(
                error_response(
                    Some(&asked.backend_id),
                    ErrorCode::INTERNAL_ERROR,
                    "the client this request was routed to disconnected before answering",
                )
                .into(),
            );
        }
    }
}
