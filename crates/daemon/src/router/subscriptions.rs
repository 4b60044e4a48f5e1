//! Resource subscriptions, counted per URI: only the first subscribe and the last unsubscribe reach
//! the backend, `notifications/resources/updated` goes to the URI's subscribers only, and a new
//! backend is subscribed again to everything clients still want.
//!
//! On a 2026-07-28 backend there is no `resources/subscribe`: a server tells of changes only on
//! `subscriptions/listen` streams, each a request that stays open, whose notifications carry its
//! id in `params._meta["io.modelcontextprotocol/subscriptionId"]`. Modern clients open their own
//! (they pass through, see `notifications.rs`). For translated clients the daemon opens streams
//! of its own: one per subscribed URI, opened by its first subscribe (answered when the server
//! acknowledges the stream) and cancelled after its last unsubscribe, and one for the lists the
//! server announces changes of, opened when the first translated client initializes. What comes
//! on them reaches translated clients as their era has it: a resource update to that URI's
//! subscribers, without the stream's id; a `list_changed` to every translated client. A restarted
//! backend gets the same streams again.
//!
//! Invariant: a URI has at most one stream of the daemon's at the backend, and it is open exactly
//! while some client subscribes to the URI (or a first subscribe is being answered).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value, json};
use shoal_ipc::session;
use shoal_wire::{Envelope, ErrorCode, Field, Id, Line, error_response, notification_value};

use super::dispatch::{ClientId, Outputs, Router, cancellation};
use super::in_flight::{DaemonCall, Hook};
use super::lists::ListKind;
use super::stateless::ClientEra;
use crate::own_keys::OwnKeySet;

const SUBSCRIPTION_ID_KEY: &str = "io.modelcontextprotocol/subscriptionId";

#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    uris: HashMap<String, Subscription>,
    /// The backend id of the daemon's stream for `list_changed`, on a 2026-07-28 backend.
    lists_stream: Option<u64>,
    /// Times the current backend process ended that stream and it was opened again.
    lists_reopened: u32,
}

/// How many times one backend process may end one of the daemon's streams and see it opened
/// again: a server that ends every stream at once is not asked forever.
const MAX_REOPENS: u32 = 3;

/// What one of the daemon's own `subscriptions/listen` streams is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Stream {
    /// Updates of one resource, for its translated subscribers.
    Resource(String),
    /// `list_changed` of every list the server announces changes of, for translated clients.
    Lists,
}

#[derive(Debug, Default)]
struct Subscription {
    /// Clients that want updates (including those whose subscribe is still being answered).
    subscribers: OwnKeySet<ClientId>,
    /// `Some` while the backend has not answered the first subscribe: the later subscribers'
    /// requests (on a 2026-07-28 backend, the first one's too), answered with its outcome.
    waiting: Option<Vec<Waiter>>,
    /// On a 2026-07-28 backend, the backend id of the daemon's stream for this URI.
    stream: Option<u64>,
    /// Times the current backend process ended that stream and it was opened again.
    reopened: u32,
}

/// A subscriber waiting for a URI's first subscribe to be answered.
#[derive(Debug)]
struct Waiter {
    client: ClientId,
    id: Id,
    /// Its own `resources/subscribe`: on a handshake-era backend, sent in its turn if the first
    /// is refused (see [`Router::first_subscribe_refused`]).
    request: Envelope,
}

/// How the backend answered a URI's first subscribe.
pub(super) enum Answer<'a> {
    Accepted,
    Refused(&'a Envelope),
    /// Not answered by the backend: an error with this code and message for every waiter.
    Failed(ErrorCode, &'a str),
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

    /// The backend process is gone, and its streams with it.
    pub(super) fn backend_lost(&mut self) {
        self.lists_stream = None;
        self.lists_reopened = 0;
        for subscription in self.uris.values_mut() {
            subscription.stream = None;
            subscription.reopened = 0;
        }
    }

    /// Forget `client`. Returns the URIs nobody wants any more, to unsubscribe at the backend,
    /// with their streams on a 2026-07-28 backend.
    pub(super) fn client_left(&mut self, client: ClientId) -> Vec<(String, Option<u64>)> {
        let mut unwanted = Vec::new();
        self.uris.retain(|uri, subscription| {
            subscription.subscribers.remove(&client);
            if let Some(waiting) = &mut subscription.waiting {
                waiting.retain(|waiter| waiter.client != client);
                // The first subscribe's answer decides, see `Router::subscription_answered`.
                return true;
            }
            if subscription.subscribers.is_empty() {
                unwanted.push((uri.clone(), subscription.stream));
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
                        subscribers: OwnKeySet::from_iter([client]),
                        waiting: Some(Vec::new()),
                        stream: None,
                        reopened: 0,
                    },
                );
                self.forward(client, id, &envelope, Hook::Subscribe(uri), out);
            }
            Some(_) => self.join_subscription(client, id, &uri, envelope, out),
        }
    }

    /// A later subscriber of `uri` (`request` is its subscribe): answered with the first
    /// subscribe's outcome.
    fn join_subscription(
        &mut self,
        client: ClientId,
        id: Id,
        uri: &str,
        request: Envelope,
        out: &mut Outputs,
    ) {
        let Some(subscription) = self.subscriptions.uris.get_mut(uri) else {
            return;
        };
        subscription.subscribers.insert(client);
        match &mut subscription.waiting {
            Some(waiting) => waiting.push(Waiter {
                client,
                id,
                request,
            }),
            None => self.answer(client, &id, &json!({}), out),
        }
    }

    /// `resources/subscribe` from a translated client: the first subscriber of a URI opens the
    /// daemon's stream for it, and is answered when the server acknowledges it.
    pub(super) fn translated_subscribe(
        &mut self,
        client: ClientId,
        id: Id,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let Some(uri) = envelope.uri().map(str::to_owned) else {
            let answer = error_response(
                Some(&id),
                ErrorCode::INVALID_PARAMS,
                "resources/subscribe needs params.uri (a string)",
            );
            return self.reply(client, &id, answer.into(), out);
        };
        if self.subscriptions.uris.contains_key(&uri) {
            return self.join_subscription(client, id, &uri, envelope.clone(), out);
        }
        let stream = self.open_stream(Stream::Resource(uri.clone()), out);
        self.subscriptions.uris.insert(
            uri,
            Subscription {
                subscribers: OwnKeySet::from_iter([client]),
                waiting: Some(vec![Waiter {
                    client,
                    id,
                    request: envelope.clone(),
                }]),
                stream: Some(stream),
                reopened: 0,
            },
        );
    }

    /// `resources/unsubscribe` from a translated client: the last subscriber's closes the stream.
    pub(super) fn translated_unsubscribe(
        &mut self,
        client: ClientId,
        id: Id,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let Some(uri) = envelope.uri() else {
            let answer = error_response(
                Some(&id),
                ErrorCode::INVALID_PARAMS,
                "resources/unsubscribe needs params.uri (a string)",
            );
            return self.reply(client, &id, answer.into(), out);
        };
        if self.release_subscriber(client, uri)
            && let Some(subscription) = self.subscriptions.uris.remove(uri)
            && let Some(stream) = subscription.stream
        {
            self.close_stream(stream, "no client subscribes to the resource any more", out);
        }
        self.answer(client, &id, &json!({}), out);
    }

    /// Remove `client` from `uri`'s subscribers; whether it was the last and the subscription
    /// is settled (an unsettled one waits for its first subscribe's answer, which decides).
    fn release_subscriber(&mut self, client: ClientId, uri: &str) -> bool {
        self.subscriptions
            .uris
            .get_mut(uri)
            .is_some_and(|subscription| {
                subscription.subscribers.remove(&client)
                    && subscription.subscribers.is_empty()
                    && subscription.waiting.is_none()
            })
    }

    /// A subscription nobody wants any more: closed at the backend, as its era has it.
    pub(super) fn drop_subscription(&mut self, uri: &str, stream: Option<u64>, out: &mut Outputs) {
        if self.is_stateless() {
            if let Some(stream) = stream {
                self.close_stream(stream, "no client subscribes to the resource any more", out);
            }
        } else {
            self.housekeeping_request(session::UNSUBSCRIBE, json!({ "uri": uri }), out);
        }
    }

    /// Open one of the daemon's streams; returns its backend id.
    fn open_stream(&mut self, stream: Stream, out: &mut Outputs) -> u64 {
        let filter = match &stream {
            Stream::Resource(uri) => json!({ "resourceSubscriptions": [uri] }),
            Stream::Lists => {
                let mut filter = Map::new();
                for kind in self.announced_lists() {
                    let key = match kind {
                        ListKind::Tools => "toolsListChanged",
                        ListKind::Resources => "resourcesListChanged",
                        ListKind::Prompts => "promptsListChanged",
                    };
                    filter.insert(key.to_owned(), Value::Bool(true));
                }
                Value::Object(filter)
            }
        };
        let params = json!({ "notifications": filter, "_meta": self.daemon_meta() });
        self.daemon_request(
            DaemonCall::Listen(stream),
            "subscriptions/listen",
            &params,
            out,
        )
    }

    fn close_stream(&mut self, stream: u64, reason: &str, out: &mut Outputs) {
        self.in_flight.finish(stream);
        out.to_backend
            .push(cancellation(&Id::from_u64(stream), reason).into());
    }

    /// The lists a 2026-07-28 backend declares `listChanged` for.
    pub(super) fn announced_lists(&self) -> Vec<ListKind> {
        ListKind::ALL
            .into_iter()
            .filter(|kind| {
                self.discovered_capability(kind.capability())
                    .and_then(|list| list.get("listChanged"))
                    == Some(&Value::Bool(true))
            })
            .collect()
    }

    /// A translated client initialized: translated clients hear of list changes from now on.
    pub(super) fn open_lists_stream(&mut self, out: &mut Outputs) {
        if self.subscriptions.lists_stream.is_none() && !self.announced_lists().is_empty() {
            self.subscriptions.lists_stream = Some(self.open_stream(Stream::Lists, out));
        }
    }

    /// A new 2026-07-28 backend process serves: open the streams the old one had.
    pub(super) fn reopen_streams(&mut self, out: &mut Outputs) {
        let translated = self
            .clients
            .values()
            .any(|state| matches!(state.era, ClientEra::Translated { .. }));
        if translated {
            self.open_lists_stream(out);
        }
        for uri in self.subscriptions.active() {
            let stream = self.open_stream(Stream::Resource(uri.clone()), out);
            if let Some(subscription) = self.subscriptions.uris.get_mut(&uri) {
                subscription.stream = Some(stream);
            }
        }
    }

    /// A notification on the daemon's stream `id` (for `stream`).
    pub(super) fn stream_notification(
        &mut self,
        id: u64,
        stream: Stream,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let method = envelope.method().unwrap_or_default();
        match (stream, method) {
            (Stream::Resource(uri), "notifications/subscriptions/acknowledged") => {
                if honors(envelope, &uri) {
                    self.subscription_answered(&uri, Answer::Accepted, out);
                } else {
                    tracing::warn!("the MCP server declined a resource subscription");
                    self.close_stream(id, "the subscription was declined", out);
                    self.subscription_answered(
                        &uri,
                        Answer::Failed(
                            ErrorCode::INVALID_PARAMS,
                            "the MCP server declined to subscribe to this resource",
                        ),
                        out,
                    );
                    // A replayed subscription has nobody waiting, so the answer kept it.
                    self.subscriptions.uris.remove(&uri);
                }
            }
            (Stream::Resource(uri), "notifications/resources/updated") => {
                let Some(update) = untagged(envelope) else {
                    return;
                };
                for client in self.subscriptions.subscribers(&uri) {
                    out.to_clients.push((client, update.clone().into()));
                }
            }
            (Stream::Lists, method) => {
                if let Some(kind) = ListKind::from_notification(method)
                    && self.lists.backend_changed(kind, Instant::now())
                {
                    self.broadcast_list_changed(kind, out);
                }
            }
            _ => tracing::debug!(
                method,
                "dropped a notification on one of shoal's own streams"
            ),
        }
    }

    /// The backend answered the daemon's stream `stream`: it ended it.
    pub(super) fn stream_ended(
        &mut self,
        id: u64,
        stream: Stream,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        match stream {
            Stream::Lists => {
                if self.subscriptions.lists_stream != Some(id) {
                    return;
                }
                self.subscriptions.lists_stream = None;
                let translated = self
                    .clients
                    .values()
                    .any(|state| matches!(state.era, ClientEra::Translated { .. }));
                if translated && self.subscriptions.lists_reopened < MAX_REOPENS {
                    self.subscriptions.lists_reopened += 1;
                    tracing::warn!(
                        "the MCP server ended shoal's stream of list changes; reopening it"
                    );
                    self.open_lists_stream(out);
                } else if translated {
                    tracing::warn!(
                        "the MCP server keeps ending shoal's stream of list changes; \
                         handshake-era sessions hear of no more list changes from this process"
                    );
                }
            }
            Stream::Resource(uri) => {
                let Some(subscription) = self.subscriptions.uris.get(&uri) else {
                    return;
                };
                if subscription.stream != Some(id) {
                    return;
                }
                if subscription.waiting.is_some() {
                    let answer = if envelope.kind() == shoal_wire::Kind::ErrorResponse {
                        Answer::Refused(envelope)
                    } else {
                        Answer::Failed(
                            ErrorCode::INTERNAL_ERROR,
                            "the MCP server ended the subscription before acknowledging it",
                        )
                    };
                    return self.subscription_answered(&uri, answer, out);
                }
                // Acknowledged: its subscribers still count on it, as a handshake-era server's
                // subscription would last. Opened again, a few times at most.
                if subscription.reopened < MAX_REOPENS && !subscription.subscribers.is_empty() {
                    tracing::warn!("the MCP server ended a resource subscription; reopening it");
                    let stream = self.open_stream(Stream::Resource(uri.clone()), out);
                    if let Some(subscription) = self.subscriptions.uris.get_mut(&uri) {
                        subscription.stream = Some(stream);
                        subscription.reopened += 1;
                    }
                } else {
                    self.subscriptions.uris.remove(&uri);
                    tracing::warn!(
                        "the MCP server keeps ending a resource subscription; its subscribers get \
                         no more updates of it"
                    );
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

    /// A handshake-era backend refused the first subscribe to `uri`, sent for `first` (`None`
    /// once that client is gone; the refusal itself is that request's answer). A refusal can be
    /// about who asked, not what: the reference server asks the subscriber for sampling, and
    /// refuses a subscriber that cannot answer where it accepts one that can. So the waiting
    /// subscribers are not handed the refusal: the next one's own subscribe goes to the server,
    /// and each gets what the server says to it, as it would directly.
    pub(super) fn first_subscribe_refused(
        &mut self,
        uri: &str,
        first: Option<ClientId>,
        out: &mut Outputs,
    ) {
        let Some(subscription) = self.subscriptions.uris.get_mut(uri) else {
            return;
        };
        let waiting = subscription.waiting.get_or_insert_with(Vec::new);
        // A client that subscribed twice still waits on its second.
        if let Some(first) = first
            && !waiting.iter().any(|waiter| waiter.client == first)
        {
            subscription.subscribers.remove(&first);
        }
        if waiting.is_empty() {
            self.subscriptions.uris.remove(uri);
            return;
        }
        let next = waiting.remove(0);
        self.forward(
            next.client,
            next.id,
            &next.request,
            Hook::Subscribe(uri.to_owned()),
            out,
        );
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
                for Waiter { client, id, .. } in waiting {
                    self.answer(client, &id, &json!({}), out);
                }
                let unwanted = self
                    .subscriptions
                    .uris
                    .get(uri)
                    .is_some_and(|subscription| subscription.subscribers.is_empty());
                if unwanted && let Some(subscription) = self.subscriptions.uris.remove(uri) {
                    self.drop_subscription(uri, subscription.stream, out);
                }
            }
            Answer::Refused(refusal) => {
                self.subscriptions.uris.remove(uri);
                for Waiter { client, id, .. } in waiting {
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
            Answer::Failed(code, reason) => {
                self.subscriptions.uris.remove(uri);
                for Waiter { client, id, .. } in waiting {
                    let answer = error_response(Some(&id), code, reason);
                    self.reply(client, &id, answer.into(), out);
                }
            }
        }
    }
}

/// Whether a stream's acknowledgement honors a subscription to `uri`.
fn honors(envelope: &Envelope, uri: &str) -> bool {
    serde_json::from_slice::<Value>(envelope.line().as_bytes())
        .ok()
        .and_then(|message| {
            message
                .pointer("/params/notifications/resourceSubscriptions")
                .and_then(Value::as_array)
                .map(|uris| uris.iter().any(|honored| honored == uri))
        })
        .unwrap_or(false)
}

/// A stream's notification as a handshake-era client has it: without the stream's id.
fn untagged(envelope: &Envelope) -> Option<Line> {
    let mut message: Map<String, Value> =
        serde_json::from_slice(envelope.line().as_bytes()).ok()?;
    let method = message.get("method")?.as_str()?.to_owned();
    let mut params = match message.remove("params") {
        Some(Value::Object(params)) => params,
        _ => Map::new(),
    };
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.remove(SUBSCRIPTION_ID_KEY);
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    Some(notification_value(&method, Some(&Value::Object(params))))
}
