//! What the proxy remembers of its host's session: the requests still owed an answer (the ledger),
//! and what a new daemon must be told so that the session goes on as if nothing happened (the
//! replay memory). Pure bookkeeping, no I/O: `session.rs` feeds it every line.
//!
//! # Replay
//!
//! After a reconnect the new daemon has never seen this session. The proxy replays, in order:
//!
//! 1. the host's `initialize` request, if the old daemon answered it successfully (a host whose
//!    `initialize` failed or never got an answer retries it itself);
//! 2. the host's `notifications/initialized`, if it sent one;
//! 3. its latest `logging/setLevel`;
//! 4. one `resources/subscribe` per URI subscribed and not unsubscribed since.
//!
//! Replayed requests carry proxy-owned ids (`"shoal-proxy-<pid>-replay-<n>"`, a string no host
//! plausibly uses) and their answers are swallowed: the host already had its own.
//!
//! # Requests to the host
//!
//! The daemon also sends the host requests (sampling, elicitation, roots, ping) under ids it mints
//! itself (`"shoal-<pid>-<start>-<n>"`, unique to that daemon process). Those requests die with
//! their daemon: the host is told they are withdrawn (`notifications/cancelled`), since no one is
//! left to take the answers, and a late answer to one is dropped here rather than passed to the
//! next daemon, which never asked it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use shoal_ipc::session::{LogLevel, StateChange};
use shoal_wire::{Envelope, ErrorCode, Field, Id, Kind, Line, Validation, error_response};

/// The message for requests lost with their daemon.
pub(crate) const DAEMON_LOST_MESSAGE: &str = "shoal lost the shared MCP server process (its \
    daemon exited) while this request was in flight; the request may or may not have run. \
    shoal is reconnecting: retry the request";

/// The `reason` of the cancellation the host gets for a request of a lost daemon. A constant
/// without quotes or backslashes: it is put into JSON as it is.
const WITHDRAWN_REASON: &str = "shoal lost the shared MCP server process (its daemon exited) \
    while this request was waiting for an answer";

/// The host's unanswered requests and its session memory.
#[derive(Debug)]
#[cfg_attr(test, derive(Clone))]
pub(crate) struct Ledger {
    /// Ids of requests sent to the daemon and not answered yet, with a count: a host that reuses
    /// an id while the first request is in flight is owed two answers.
    in_flight: HashMap<Id, u32>,
    /// The host's `initialize`, and whether the daemon answered it with a result.
    initialize: Option<(Envelope, bool)>,
    /// The host's `notifications/initialized`.
    initialized: Option<Line>,
    /// The host's latest `logging/setLevel` request.
    log_level: Option<Envelope>,
    /// Subscribed URIs, in subscription order, with the request that subscribed.
    subscriptions: Vec<(String, Envelope)>,
    /// Ids of requests the daemon sent the host and that it has neither answered nor had
    /// withdrawn. Bounded by the daemon, which withdraws what its server gives up on.
    asked: HashSet<Id>,
    /// Ids of replayed requests whose answers are still to be swallowed.
    replay_pending: HashSet<Id>,
    replay_prefix: String,
    next_replay: u64,
}

impl Ledger {
    pub(crate) fn new() -> Ledger {
        Ledger {
            in_flight: HashMap::new(),
            initialize: None,
            initialized: None,
            log_level: None,
            subscriptions: Vec::new(),
            asked: HashSet::new(),
            replay_pending: HashSet::new(),
            replay_prefix: format!("shoal-proxy-{}-replay-", std::process::id()),
            next_replay: 1,
        }
    }

    /// Remember what a host message means for a replay. Only messages the daemon got count: one
    /// queued while reconnecting is remembered when it is sent, after the replay.
    fn remember(&mut self, message: &Envelope) {
        for_each_message(message, |message| {
            let change = message
                .method()
                .and_then(|method| StateChange::of(message.kind(), method));
            match change {
                Some(StateChange::Initialize) => {
                    self.initialize = Some((message.clone(), false));
                }
                Some(StateChange::Initialized) => {
                    self.initialized = Some(message.line().clone());
                }
                Some(StateChange::SetLevel) => {
                    self.log_level = Some(message.clone());
                }
                Some(StateChange::Subscribe) => {
                    if let Some(uri) = message.uri() {
                        let uri = uri.to_owned();
                        self.subscriptions.retain(|(known, _)| *known != uri);
                        self.subscriptions.push((uri, message.clone()));
                    }
                }
                Some(StateChange::Unsubscribe) => {
                    if let Some(uri) = message.uri() {
                        self.subscriptions.retain(|(known, _)| known != uri);
                    }
                }
                None => {}
            }
        });
    }

    /// A host message is about to be written to the daemon. Returns false if it must not be: it
    /// answers a request of a daemon that is gone (see the module docs).
    ///
    /// Otherwise its requests are now owed an answer; a cancellation releases the request it
    /// names (a cancelled request may never be answered); what it means for a replay is
    /// remembered.
    pub(crate) fn sent(&mut self, message: &Envelope) -> bool {
        if matches!(message.kind(), Kind::Response | Kind::ErrorResponse)
            && let Some(id) = message.id()
            && !self.asked.remove(&id)
        {
            // The id is the daemon's, not the host's; no payload is logged.
            tracing::debug!(
                id = id.as_str(),
                "dropped the host's answer to a request of a daemon that is gone"
            );
            return false;
        }
        self.remember(message);
        for_each_message(message, |message| match message.kind() {
            Kind::Request => {
                if let Some(id) = message.id() {
                    *self.in_flight.entry(id).or_insert(0) += 1;
                }
            }
            Kind::Notification if message.method() == Some("notifications/cancelled") => {
                if let Some(id) = message.get(Field::RequestId) {
                    self.answered(&id);
                }
            }
            // An answer inside a batch: batches are passed on whole.
            Kind::Response | Kind::ErrorResponse => {
                if let Some(id) = message.id() {
                    self.asked.remove(&id);
                }
            }
            _ => {}
        });
        true
    }

    /// A message from the daemon. Returns false if it must not reach the host (the answer to a
    /// replayed request).
    pub(crate) fn received(&mut self, message: &Envelope) -> bool {
        // Replays are rare: no id is made for the check while none is pending.
        if !self.replay_pending.is_empty()
            && let Some(id) = message.id()
            && self.swallowed(message.kind(), &id)
        {
            return false;
        }
        for_each_message(message, |message| match message.kind() {
            kind @ (Kind::Response | Kind::ErrorResponse | Kind::Request) => {
                if let Some(id) = message.id() {
                    self.arrived(kind, id);
                }
            }
            Kind::Notification if message.method() == Some("notifications/cancelled") => {
                if let Some(id) = message.get(Field::RequestId) {
                    self.asked.remove(&id);
                }
            }
            _ => {}
        });
        true
    }

    /// A response, error response or request from the daemon that came as a routed frame, whose
    /// kind and id the daemon gave: what [`Ledger::received`] does with such a message, without
    /// reading it.
    pub(crate) fn received_routed(&mut self, kind: Kind, id: &Id) -> bool {
        if self.swallowed(kind, id) {
            return false;
        }
        self.arrived(kind, id.clone());
        true
    }

    /// Whether a message of `kind` with `id` answers a replayed request (and so is dropped).
    fn swallowed(&mut self, kind: Kind, id: &Id) -> bool {
        // `is_empty` first: a removal hashes the id even from an empty set, and replays are rare.
        if self.replay_pending.is_empty()
            || !matches!(kind, Kind::Response | Kind::ErrorResponse)
            || !self.replay_pending.remove(id)
        {
            return false;
        }
        if kind == Kind::ErrorResponse {
            // The id is ours and carries nothing of the host's; no payload is logged.
            tracing::warn!(
                id = id.as_str(),
                "the new daemon refused a replayed request"
            );
        }
        true
    }

    /// A single response, error response or request from the daemon, on its way to the host.
    fn arrived(&mut self, kind: Kind, id: Id) {
        match kind {
            Kind::Response | Kind::ErrorResponse => {
                if kind == Kind::Response
                    && let Some((initialize, answered)) = &mut self.initialize
                    && initialize.id().as_ref() == Some(&id)
                {
                    *answered = true;
                }
                self.answered(&id);
            }
            Kind::Request => {
                self.asked.insert(id);
            }
            _ => {}
        }
    }

    fn answered(&mut self, id: &Id) {
        // One lookup, not two: hashing the id is a good part of what the ledger costs per
        // message. (Cloning an `Id` copies it when it is short, as ids nearly always are; one over
        // 38 bytes allocates.)
        if let Entry::Occupied(mut entry) = self.in_flight.entry(id.clone()) {
            if *entry.get() > 1 {
                *entry.get_mut() -= 1;
            } else {
                entry.remove();
            }
        }
    }

    /// Whether the host is still owed answers.
    pub(crate) fn owes_answers(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The daemon is gone: an error response for every request in flight (which are then no
    /// longer owed), a cancellation for every request it was waiting on the host for, and forget
    /// the replayed requests still unanswered.
    pub(crate) fn lost(&mut self, message: &str) -> Vec<Line> {
        self.replay_pending.clear();
        let mut lines = Vec::new();
        for (id, count) in self.in_flight.drain() {
            for _ in 0..count {
                lines.push(error_response(Some(&id), ErrorCode::DAEMON_LOST, message));
            }
        }
        lines.extend(self.asked.drain().filter_map(|id| withdrawn(&id)));
        lines
    }

    /// Whether the host wants log messages at `level` through MCP: it sent
    /// `notifications/initialized` and a `logging/setLevel` at `level` or more verbose. Hosts
    /// that never asked for log messages get none from the proxy either.
    pub(crate) fn host_wants_log(&self, level: LogLevel) -> bool {
        let asked = self.log_level.as_ref().and_then(|request| {
            serde_json::from_slice::<serde_json::Value>(request.line().as_bytes())
                .ok()?
                .pointer("/params/level")?
                .as_str()
                .and_then(LogLevel::parse)
        });
        self.initialized.is_some() && asked.is_some_and(|asked| level >= asked)
    }

    /// How many requests the daemon has sent the host that are still open.
    pub(crate) fn asked(&self) -> usize {
        self.asked.len()
    }

    /// The lines to send a new daemon before anything else, in order; see the module docs.
    pub(crate) fn replay(&mut self) -> Vec<Line> {
        let mut lines = Vec::new();
        if let Some((initialize, true)) = &self.initialize {
            let initialize = initialize.clone();
            lines.extend(self.with_replay_id(&initialize));
        }
        // Only after a replayed initialize: a notification before it would be out of order.
        if let Some(initialized) = &self.initialized
            && !lines.is_empty()
        {
            lines.push(initialized.clone());
        }
        if let Some(log_level) = self.log_level.clone() {
            lines.extend(self.with_replay_id(&log_level));
        }
        for (_, subscribe) in self.subscriptions.clone() {
            lines.extend(self.with_replay_id(&subscribe));
        }
        lines
    }

    fn with_replay_id(&mut self, request: &Envelope) -> Option<Line> {
        let id = Id::string(&format!("{}{}", self.replay_prefix, self.next_replay));
        self.next_replay += 1;
        match request.rewrite_id(&id) {
            Ok(rewritten) => {
                self.replay_pending.insert(id);
                Some(rewritten.to_line())
            }
            Err(error) => {
                tracing::warn!(%error, method = request.method(), "cannot replay a request");
                None
            }
        }
    }
}

/// `notifications/cancelled` for a request of the daemon's that will never be waited for.
fn withdrawn(id: &Id) -> Option<Line> {
    let text = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"{WITHDRAWN_REASON}"}}}}"#,
        id.as_str()
    );
    // An id is JSON without raw newlines (the scanner checks the strings it reads), so this
    // cannot fail; if it ever did, the host would merely not be told.
    Line::new(text)
        .inspect_err(|error| tracing::warn!(%error, "cannot withdraw a request from the host"))
        .ok()
}

/// Call `each` for the message, or for each element of a batch.
fn for_each_message(message: &Envelope, mut each: impl FnMut(&Envelope)) {
    if message.kind() == Kind::Batch {
        for element in message.batch() {
            each(&Envelope::parse(element, Validation::Envelope));
        }
    } else {
        each(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Envelope {
        Envelope::parse(Line::new(text.to_owned()).unwrap(), Validation::Envelope)
    }

    fn text(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|line| String::from_utf8(line.as_bytes().to_vec()).unwrap())
            .collect()
    }

    /// The daemon sends `text`: what the ledger does with it read as a line, and checked to be
    /// the same as what it does with a routed frame of it, where the daemon would send one.
    fn daemon(ledger: &mut Ledger, text: &str) -> bool {
        let message = parse(text);
        let mut routed = ledger.clone();
        let passed = ledger.received(&message);
        if let (kind @ (Kind::Response | Kind::ErrorResponse | Kind::Request), Some(id)) =
            (message.kind(), message.id())
        {
            assert_eq!(routed.received_routed(kind, &id), passed, "{text}");
            assert_eq!(routed.in_flight, ledger.in_flight, "{text}");
            assert_eq!(routed.asked, ledger.asked, "{text}");
            assert_eq!(routed.replay_pending, ledger.replay_pending, "{text}");
            let answered =
                |ledger: &Ledger| ledger.initialize.as_ref().map(|(_, answered)| *answered);
            assert_eq!(answered(&routed), answered(ledger), "{text}");
        }
        passed
    }

    /// The host says `text`, and it is sent.
    fn host(ledger: &mut Ledger, text: &str) {
        assert!(ledger.sent(&parse(text)), "{text} is passed on");
    }

    #[test]
    fn owed_requests_get_one_error_each_when_the_daemon_is_lost() {
        let mut ledger = Ledger::new();
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        );
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":"1","method":"tools/list"}"#,
        );
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call"}"#,
        );
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call"}"#,
        );
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#,
        );
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#,
        );
        assert!(daemon(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        ));
        assert!(ledger.owes_answers());
        let mut answers = text(&ledger.lost("gone"));
        answers.sort();
        let error = |id: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32081,"message":"gone"}}}}"#)
        };
        assert_eq!(answers, vec![error("\"1\""), error("2"), error("2")]);
        assert!(!ledger.owes_answers());
        assert!(ledger.lost("gone").is_empty(), "answered once only");
    }

    #[test]
    fn batches_are_counted_element_by_element() {
        let mut ledger = Ledger::new();
        host(
            &mut ledger,
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#,
        );
        daemon(
            &mut ledger,
            r#"[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}]"#,
        );
        assert!(!ledger.owes_answers());
    }

    #[test]
    fn replay_sends_initialize_initialized_level_and_live_subscriptions_and_swallows_answers() {
        let mut ledger = Ledger::new();
        assert!(ledger.replay().is_empty(), "nothing to replay yet");
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{}}}"#,
        );
        assert!(
            ledger.replay().is_empty(),
            "an unanswered initialize is the host's to retry"
        );
        assert!(daemon(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":0,"result":{}}"#
        ));
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}"#,
        );
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"debug"}}"#,
        );
        for (id, method, uri) in [
            (3, "resources/subscribe", "a://1"),
            (4, "resources/subscribe", "a://2"),
            (5, "resources/unsubscribe", "a://1"),
            (6, "resources/subscribe", "a://2"),
        ] {
            host(
                &mut ledger,
                &format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{"uri":"{uri}"}}}}"#
                ),
            );
        }
        let _ = ledger.lost("gone");
        let replay = text(&ledger.replay());
        let prefix = format!("shoal-proxy-{}-replay-", std::process::id());
        assert_eq!(
            replay,
            vec![
                format!(
                    r#"{{"jsonrpc":"2.0","id":"{prefix}1","method":"initialize","params":{{"capabilities":{{}}}}}}"#
                ),
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
                format!(
                    r#"{{"jsonrpc":"2.0","id":"{prefix}2","method":"logging/setLevel","params":{{"level":"debug"}}}}"#
                ),
                format!(
                    r#"{{"jsonrpc":"2.0","id":"{prefix}3","method":"resources/subscribe","params":{{"uri":"a://2"}}}}"#
                ),
            ]
        );
        assert!(
            !ledger.owes_answers(),
            "replayed requests are not the host's"
        );
        for n in 1..=3 {
            let answer = format!(r#"{{"jsonrpc":"2.0","id":"{prefix}{n}","result":{{}}}}"#);
            assert!(!daemon(&mut ledger, &answer), "answer {n} swallowed");
        }
        assert!(
            daemon(
                &mut ledger,
                &format!(r#"{{"jsonrpc":"2.0","id":"{prefix}1","result":{{}}}}"#)
            ),
            "swallowed once only"
        );
    }

    #[test]
    fn requests_of_a_lost_daemon_are_withdrawn_and_late_answers_to_them_dropped() {
        let mut ledger = Ledger::new();
        for asked in [
            r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"roots/list"}"#,
            r#"{"jsonrpc":"2.0","id":9,"method":"elicitation/create","params":{}}"#,
        ] {
            assert!(daemon(&mut ledger, asked));
        }
        // Answered, and withdrawn by the daemon: neither is the new daemon's business.
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":8,"result":{"roots":[]}}"#,
        );
        assert!(daemon(
            &mut ledger,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}}"#
        ));
        assert_eq!(ledger.asked(), 1);
        assert_eq!(
            text(&ledger.lost("gone")),
            vec![format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":7,"reason":"{WITHDRAWN_REASON}"}}}}"#
            )]
        );
        assert_eq!(ledger.asked(), 0);

        // The host answers late; the next daemon has asked something under the same id.
        let late = r#"{"jsonrpc":"2.0","id":7,"result":{"role":"assistant"}}"#;
        assert!(!ledger.sent(&parse(late)), "a late answer is dropped");
        assert!(daemon(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":7,"method":"roots/list"}"#
        ));
        host(
            &mut ledger,
            r#"{"jsonrpc":"2.0","id":7,"result":{"roots":[]}}"#,
        );
        assert!(
            !ledger.sent(&parse(r#"{"jsonrpc":"2.0","id":7,"result":{"roots":[]}}"#)),
            "answered once"
        );
        assert!(
            !ledger.sent(&parse(
                r#"{"jsonrpc":"2.0","id":"7","error":{"code":1,"message":"x"}}"#
            )),
            "ids keep their type: \"7\" was never asked"
        );
    }
}
