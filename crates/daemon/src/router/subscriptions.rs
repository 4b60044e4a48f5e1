//! Resource subscriptions, counted per URI: only the first subscribe and the last unsubscribe reach
//! the backend, `notifications/resources/updated` goes to the URI's subscribers only, and a new
//! backend is subscribed again to everything clients still want.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use shoal_ipc::session;
use shoal_wire::{Envelope, ErrorCode, Field, Id, error_response};

use super::dispatch::{ClientId, Outputs, Router};
use super::in_flight::Hook;

#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    uris: HashMap<String, Subscription>,
}

#[derive(Debug, Default)]
struct Subscription {
    /// Clients that want updates (including those whose subscribe is still being answered).
    subscribers: HashSet<ClientId>,
    /// `Some` while the backend has not answered the first subscribe: the later subscribers'
    /// requests, answered with its outcome.
    waiting: Option<Vec<(ClientId, Id)>>,
}

/// How the backend answered a URI's first subscribe.
pub(super) enum Answer<'a> {
    Accepted,
    Refused(&'a Envelope),
    Lost(&'a str),
}

impl Subscriptions {
    pub(super) fn subscribers(&self, uri: &str) -> Vec<ClientId> {
        self.uris
            .get(uri)
            .map(|subscription| subscription.subscribers.iter().copied().collect())
            .unwrap_or_default()
    }

    /// URIs the backend has accepted a subscription to: what a new backend must be told.
    pub(super) fn active(&self) -> Vec<String> {
        self.uris
            .iter()
            .filter(|(_, subscription)| subscription.waiting.is_none())
            .map(|(uri, _)| uri.clone())
            .collect()
    }

    /// Forget `client`. Returns the URIs nobody wants any more, to unsubscribe at the backend.
    pub(super) fn client_left(&mut self, client: ClientId) -> Vec<String> {
        let mut unwanted = Vec::new();
        self.uris.retain(|uri, subscription| {
            subscription.subscribers.remove(&client);
            if let Some(waiting) = &mut subscription.waiting {
                waiting.retain(|(waiter, _)| *waiter != client);
                // The first subscribe's answer decides, see `Router::subscription_answered`.
                return true;
            }
            if subscription.subscribers.is_empty() {
                unwanted.push(uri.clone());
                return false;
            }
            true
        });
        unwanted
    }
}

impl Router {
    pub(super) fn subscribe(
        &mut self,
        client: ClientId,
        id: Id,
        envelope: Envelope,
        out: &mut Outputs,
    ) {
        let Some(uri) = envelope.uri().map(str::to_owned) else {
            // Not ours to judge: the backend answers a malformed subscribe.
            return self.forward(client, id, &envelope, Hook::None, out);
        };
        match self.subscriptions.uris.get_mut(&uri) {
            None => {
                self.subscriptions.uris.insert(
                    uri.clone(),
                    Subscription {
                        subscribers: HashSet::from([client]),
                        waiting: Some(Vec::new()),
                    },
                );
                self.forward(client, id, &envelope, Hook::Subscribe(uri), out);
            }
            Some(subscription) => {
                subscription.subscribers.insert(client);
                match &mut subscription.waiting {
                    Some(waiting) => waiting.push((client, id)),
                    None => self.answer(client, &id, &json!({}), out),
                }
            }
        }
    }

    pub(super) fn unsubscribe(
        &mut self,
        client: ClientId,
        id: Id,
        envelope: Envelope,
        out: &mut Outputs,
    ) {
        let Some(uri) = envelope.uri() else {
            return self.forward(client, id, &envelope, Hook::None, out);
        };
        let last = self
            .subscriptions
            .uris
            .get_mut(uri)
            .is_some_and(|subscription| {
                subscription.subscribers.remove(&client)
                    && subscription.subscribers.is_empty()
                    && subscription.waiting.is_none()
            });
        if last {
            self.subscriptions.uris.remove(uri);
            self.forward(client, id, &envelope, Hook::None, out);
        } else {
            // Others still want it, or this client never subscribed: as far as this client can
            // tell, it is unsubscribed.
            self.answer(client, &id, &json!({}), out);
        }
    }

    /// The backend answered (or lost) the first subscribe to `uri`.
    pub(super) fn subscription_answered(
        &mut self,
        uri: &str,
        answer: Answer<'_>,
        out: &mut Outputs,
    ) {
        let Some(subscription) = self.subscriptions.uris.get_mut(uri) else {
            return;
        };
        let Some(waiting) = subscription.waiting.take() else {
            return;
        };
        match answer {
            Answer::Accepted => {
                for (client, id) in waiting {
                    self.answer(client, &id, &json!({}), out);
                }
                let unwanted = self
                    .subscriptions
                    .uris
                    .get(uri)
                    .is_some_and(|subscription| subscription.subscribers.is_empty());
                if unwanted {
                    self.subscriptions.uris.remove(uri);
                    self.housekeeping_request(session::UNSUBSCRIBE, json!({ "uri": uri }), out);
                }
            }
            Answer::Refused(refusal) => {
                self.subscriptions.uris.remove(uri);
                for (client, id) in waiting {
                    match refusal.rewrite(&[(Field::Id, &id)]) {
                        Ok(answer) => self.reply(client, &id, answer.into(), out),
                        Err(error) => {
                            let answer = error_response(
                                Some(&id),
                                ErrorCode::INTERNAL_ERROR,
                                &format!("the MCP server refused the subscription: {error}"),
                            );
                            self.reply(client, &id, answer.into(), out);
                        }
                    }
                }
            }
            Answer::Lost(reason) => {
                self.subscriptions.uris.remove(uri);
                for (client, id) in waiting {
                    let answer = error_response(Some(&id), ErrorCode::BACKEND_UNAVAILABLE, reason);
                    self.reply(client, &id, answer.into(), out);
                }
            }
        }
    }
}
