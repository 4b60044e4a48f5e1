//! Multi-round-trip requests (2026-07-28) for translated clients: a stateless server that needs
//! something from the client (a sampling answer, an elicitation, the roots) answers the request
//! with an `InputRequiredResult`; a client of the handshake era knows these only as
//! server-to-client requests. The daemon asks that client alone, collects its answers and sends
//! the original request again with `inputResponses` and the server's `requestState`, under the
//! client's own id, so the client sees one request and one answer, as it would directly.
//!
//! Invariant: a request in a round is neither at the backend nor pending, and still gets
//! exactly one answer: the retried request's, or an error (the client refused a question, the
//! server asked too often, the backend went). A question's answer is taken only from the
//! client it was asked of.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use shoal_wire::{Envelope, ErrorCode, Field, Id, error_response, request_value};

use super::dispatch::{ClientId, Outputs, Router, cancellation};
use super::in_flight::Retry;
use super::stateless::{RawObject, raw};
use crate::own_keys::OwnKeyMap;

/// What an `InputRequiredResult` may ask: the server-to-client requests of the handshake era.
const ASKABLE: [&str; 3] = ["sampling/createMessage", "elicitation/create", "roots/list"];

/// Rounds one request may take before the daemon gives up on the server: a server that keeps
/// asking would otherwise hold the client's request, and its dialogs, forever.
pub(super) const MAX_ROUNDS: u32 = 16;

/// A request of a translated client waiting for that client's answers to the server's
/// questions.
#[derive(Debug)]
struct Round {
    client: ClientId,
    id: Id,
    retry: Retry,
    request_state: Option<Value>,
    /// Question number (the id the client sees) → the server's key for it.
    waiting: BTreeMap<u64, String>,
    responses: Map<String, Value>,
}

#[derive(Debug, Default)]
pub(super) struct Rounds {
    /// Question number → the round it belongs to (the round's first question number).
    by_question: OwnKeyMap<u64, u64>,
    rounds: OwnKeyMap<u64, Round>,
}

impl Rounds {
    pub(super) fn has_rounds_of(&self, client: ClientId) -> bool {
        self.rounds.values().any(|round| round.client == client)
    }

    fn remove(&mut self, key: u64) -> Option<Round> {
        let round = self.rounds.remove(&key)?;
        for number in round.waiting.keys() {
            self.by_question.remove(number);
        }
        Some(round)
    }

    fn find(&self, client: ClientId, id: &Id) -> Option<u64> {
        self.rounds
            .iter()
            .find(|(_, round)| round.client == client && &round.id == id)
            .map(|(&key, _)| key)
    }

    fn of_client(&self, client: ClientId) -> Vec<u64> {
        self.rounds
            .iter()
            .filter(|(_, round)| round.client == client)
            .map(|(&key, _)| key)
            .collect()
    }
}

impl Router {
    /// The server answered a translated client's request with an `InputRequiredResult`.
    pub(super) fn start_round(
        &mut self,
        client: ClientId,
        id: Id,
        mut retry: Retry,
        result: Map<String, Value>,
        out: &mut Outputs,
    ) {
        retry.round += 1;
        if retry.round > MAX_ROUNDS {
            let answer = error_response(
                Some(&id),
                ErrorCode::INTERNAL_ERROR,
                &format!(
                    "the MCP server asked for more input {MAX_ROUNDS} times for one `{}` \
                     request; shoal gave up on it",
                    retry.method
                ),
            );
            return self.reply(client, &id, answer.into(), out);
        }
        let request_state = result.get("requestState").cloned();
        let questions = match result.get("inputRequests") {
            Some(Value::Object(questions)) => questions.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                let answer = error_response(
                    Some(&id),
                    ErrorCode::INTERNAL_ERROR,
                    "the MCP server's InputRequiredResult has an inputRequests that is not an \
                     object",
                );
                return self.reply(client, &id, answer.into(), out);
            }
        };
        if questions.is_empty() && request_state.is_none() {
            let answer = error_response(
                Some(&id),
                ErrorCode::INTERNAL_ERROR,
                "the MCP server's InputRequiredResult asks for nothing and has no requestState",
            );
            return self.reply(client, &id, answer.into(), out);
        }
        // A question the client's era cannot be asked: the request fails as a whole, before any
        // question goes out.
        if let Some(odd) = questions.values().find_map(|question| {
            let method = question
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (!ASKABLE.contains(&method)).then(|| method.to_owned())
        }) {
            let answer = error_response(
                Some(&id),
                ErrorCode::INTERNAL_ERROR,
                &format!(
                    "the MCP server's InputRequiredResult asks for `{odd}`, which shoal cannot \
                     ask a client (it asks sampling/createMessage, elicitation/create and \
                     roots/list)"
                ),
            );
            return self.reply(client, &id, answer.into(), out);
        }
        let mut round = Round {
            client,
            id,
            retry,
            request_state,
            waiting: BTreeMap::new(),
            responses: Map::new(),
        };
        for (key, question) in questions {
            let method = question
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let params = question.get("params").cloned().unwrap_or_else(|| json!({}));
            if method == "roots/list" {
                // The project's roots, answered as the daemon answers every session's server.
                round.responses.insert(
                    key,
                    json!({ "roots": [{ "uri": self.root_uri, "name": self.root_name }] }),
                );
                continue;
            }
            let number = self.mint_id();
            out.to_clients.push((
                client,
                request_value(&self.asked_id(number), method, &params).into(),
            ));
            round.waiting.insert(number, key);
        }
        let key = self.mint_id();
        for number in round.waiting.keys() {
            self.rounds.by_question.insert(*number, key);
        }
        self.rounds.rounds.insert(key, round);
        self.finish_round_if_answered(key, out);
    }

    /// A client answered question `number` of a round: `false` if it is no question of a round
    /// asked of that client.
    pub(super) fn round_answer(
        &mut self,
        client: ClientId,
        number: u64,
        envelope: &Envelope,
        out: &mut Outputs,
    ) -> bool {
        let Some(&key) = self.rounds.by_question.get(&number) else {
            return false;
        };
        let Some(round) = self.rounds.rounds.get_mut(&key) else {
            return false;
        };
        if round.client != client {
            return false;
        }
        self.rounds.by_question.remove(&number);
        let Some(question) = round.waiting.remove(&number) else {
            return true;
        };
        let answer =
            serde_json::from_slice::<Value>(envelope.line().as_bytes()).unwrap_or_default();
        match (answer.get("result"), answer.get("error")) {
            (Some(result), _) => {
                round.responses.insert(question, result.clone());
                self.finish_round_if_answered(key, out);
            }
            (None, error) => {
                // `inputResponses` cannot carry an error. A handshake-era server whose
                // `elicitation/create` got one fails the request with that same error (measured
                // with the Python SDK), so the client's request ends with its own error.
                let Some(round) = self.rounds.remove(key) else {
                    return true;
                };
                self.withdraw_questions(&round, out);
                let answer = match (error, envelope.rewrite(&[(Field::Id, &round.id)])) {
                    (Some(_), Ok(rewritten)) => rewritten.into(),
                    _ => error_response(
                        Some(&round.id),
                        ErrorCode::INTERNAL_ERROR,
                        "the client answered the MCP server's question with neither a result \
                         nor an error",
                    )
                    .into(),
                };
                self.reply(round.client, &round.id, answer, out);
            }
        }
        true
    }

    fn finish_round_if_answered(&mut self, key: u64, out: &mut Outputs) {
        if self
            .rounds
            .rounds
            .get(&key)
            .is_none_or(|round| !round.waiting.is_empty())
        {
            return;
        }
        let Some(round) = self.rounds.remove(key) else {
            return;
        };
        let Round {
            client,
            id,
            mut retry,
            request_state,
            responses,
            ..
        } = round;
        // The params as first sent, members kept as written, with this round's answers.
        let params = serde_json::from_str::<RawObject>(&retry.params)
            .ok()
            .and_then(|mut params| {
                if responses.is_empty() {
                    params.remove("inputResponses");
                } else {
                    params.insert("inputResponses".to_owned(), raw(&responses).ok()?);
                }
                match &request_state {
                    Some(state) => {
                        params.insert("requestState".to_owned(), raw(state).ok()?);
                    }
                    None => {
                        params.remove("requestState");
                    }
                }
                serde_json::to_string(&params).ok()
            });
        let Some(params) = params else {
            let answer = error_response(
                Some(&id),
                ErrorCode::INTERNAL_ERROR,
                "shoal could not build the retried request",
            );
            return self.reply(client, &id, answer.into(), out);
        };
        retry.params = params;
        self.retry(client, id, retry, out);
    }

    /// `client` cancelled its request `id`: if it was in a round, the round ends and the
    /// questions out at the client are withdrawn. `true` if it was.
    pub(super) fn cancel_round(&mut self, client: ClientId, id: &Id, out: &mut Outputs) -> bool {
        let Some(round) = self
            .rounds
            .find(client, id)
            .and_then(|key| self.rounds.remove(key))
        else {
            return false;
        };
        self.withdraw_questions(&round, out);
        true
    }

    /// `client` left: its rounds end with it.
    pub(super) fn client_left_rounds(&mut self, client: ClientId) {
        for key in self.rounds.of_client(client) {
            self.rounds.remove(key);
        }
    }

    /// The backend is gone: its `requestState`s mean nothing to the next one, so every round
    /// ends with `reason`.
    pub(super) fn backend_lost_rounds(&mut self, reason: &str, out: &mut Outputs) {
        let keys: Vec<u64> = self.rounds.rounds.keys().copied().collect();
        for key in keys {
            let Some(round) = self.rounds.remove(key) else {
                continue;
            };
            self.withdraw_questions(&round, out);
            let answer = error_response(Some(&round.id), ErrorCode::BACKEND_UNAVAILABLE, reason);
            self.reply(round.client, &round.id, answer.into(), out);
        }
    }

    fn withdraw_questions(&self, round: &Round, out: &mut Outputs) {
        for number in round.waiting.keys() {
            out.to_clients.push((
                round.client,
                cancellation(
                    &self.asked_id(*number),
                    "the request that needed this ended",
                )
                .into(),
            ));
        }
    }
}
