//! Notifications from the backend: to the one client a notification is about (progress, a
//! `subscriptions/listen` stream, a subscribed resource, a task), or to every ready client
//! (`list_changed`, log messages within each client's level, anything unknown).
//!
//! Invariant: a notification about one client's request reaches that client only, with the
//! field that names the request mapped back to what the client sent; one about a request that is
//! over is dropped (progress may arrive after the answer). Broadcasts reach only clients that sent
//! `notifications/initialized`.

use std::time::Instant;

use serde::Deserialize;
use shoal_wire::{Envelope, Field, Id, Line, notification_value};

use super::dispatch::{Outputs, Router};
use super::in_flight::{DaemonCall, InFlight, Owner};
use super::lists::ListKind;
use super::stateless::ClientEra;
use super::tasks;
use shoal_ipc::session::LogLevel as Level;

impl Router {
    pub(super) fn backend_notification(&mut self, envelope: &Envelope, out: &mut Outputs) {
        // A `subscriptions/listen` stream's notifications (2026-07-28), whatever their method:
        // a tagged `list_changed` or resource update is the listener's, not everyone's.
        if let Some(subscription) = envelope.get(Field::SubscriptionId) {
            return self.notify_request_owner(envelope, &subscription, Field::SubscriptionId, out);
        }
        let method = envelope.method().unwrap_or_default();
        match method {
            "notifications/progress" => {
                if let Some(token) = envelope.get(Field::ProgressToken) {
                    self.notify_request_owner(envelope, &token, Field::ProgressToken, out);
                }
            }
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
            "notifications/message" if self.is_stateless() => {
                self.stateless_log(envelope, log_level(envelope), out);
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
            "notifications/elicitation/complete" => self.elicitation_complete(envelope, out),
            "notifications/tasks/status" => {
                let Some(status) = tasks::status_of(envelope) else {
                    return;
                };
                if status.terminal {
                    self.tasks.ended(&status.task);
                }
                match self.tasks.owner(&status.task) {
                    Some(Some(client)) => out
                        .to_clients
                        .push((client, envelope.line().clone().into())),
                    // Its owner left: nobody else may hear of it.
                    Some(None) => {}
                    // Maybe about the task a request in flight is creating.
                    None if self.in_flight.creating_task() => {
                        self.tasks
                            .hold_status(status, envelope.line().clone(), Instant::now());
                    }
                    None => {}
                }
            }
            _ => {
                if let Some(kind) = ListKind::from_notification(method) {
                    if self.lists.backend_changed(kind, Instant::now()) {
                        self.broadcast_list_changed(kind, out);
                    }
                } else {
                    self.broadcast(envelope.line(), out);
                }
            }
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
        let backend_id = key.as_str().parse::<u64>().ok();
        let entry = backend_id.and_then(|backend_id| self.in_flight.get(backend_id));
        if entry.is_none()
            && field == Field::ProgressToken
            && let Some(task) = backend_id.and_then(|backend_id| self.tasks.progress(backend_id))
        {
            // Progress of a running task: its token outlived the creating request's answer.
            match envelope.rewrite(&[(field, &task.token)]) {
                Ok(rewritten) => out.to_clients.push((task.client, rewritten.into())),
                Err(error) => tracing::debug!(%error, "could not map a task's progress"),
            }
            return;
        }
        let (client, id, token) = match entry {
            Some(InFlight {
                owner: Owner::Client { client, id },
                token,
                ..
            }) => (client, id, token),
            Some(InFlight {
                owner: Owner::Daemon(DaemonCall::Listen(stream)),
                ..
            }) if field == Field::SubscriptionId => {
                let stream = stream.clone();
                if let Some(backend_id) = backend_id {
                    self.stream_notification(backend_id, stream, envelope, out);
                }
                return;
            }
            _ => return,
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

    /// A `list_changed` of the daemon's (coalesced, or after a restart). Not for modern clients
    /// of a 2026-07-28 backend: they hear of changes on their own streams only.
    pub(super) fn broadcast_list_changed(&self, kind: ListKind, out: &mut Outputs) {
        let line = notification_value(kind.notification(), None);
        for (&client, state) in &self.clients {
            let modern = self.is_stateless() && matches!(state.era, ClientEra::Modern { .. });
            if state.ready && !modern {
                out.to_clients.push((client, line.clone().into()));
            }
        }
    }
}

/// The level of a `notifications/message`, if it has a known one.
fn log_level(envelope: &Envelope) -> Option<Level> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        params: Params<'a>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        level: &'a str,
    }
    serde_json::from_slice::<Message<'_>>(envelope.line().as_bytes())
        .ok()
        .and_then(|message| Level::parse(message.params.level))
}
