//! The requests at the backend: one table that owns both of its indexes.
//!
//! A request is found by the backend id the daemon minted for it (when its answer or progress
//! arrives) and by its client and the client's own id (when the client cancels it or leaves).
//! Both indexes live here and change only together, so they cannot disagree.
//!
//! Invariant: an entry owned by a client is under its backend id in `by_backend` *and* under
//! (client, client id) in `by_client`; an entry owned by the daemon, or whose client is gone, is
//! only in `by_backend`. Every insertion and removal goes through this table.

use std::collections::HashMap;

use shoal_wire::Id;

use super::ClientId;
use super::lists::ListKind;
use super::subscriptions::Stream;
use crate::own_keys::OwnKeyMap;

/// A request at the backend.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) owner: Owner,
    /// The client's progress token, which the backend knows as this request's id.
    pub(super) token: Option<Id>,
    /// What the answer means beyond being passed on.
    pub(super) hook: Hook,
}

/// Who is waiting for the answer to a backend id.
#[derive(Debug)]
pub(super) enum Owner {
    Client {
        client: ClientId,
        id: Id,
    },
    /// The owner left or cancelled, but the answer still matters to the daemon (see [`Hook`]).
    Gone,
    Daemon(DaemonCall),
}

/// Requests the daemon makes of the backend on its own account.
#[derive(Debug)]
pub(super) enum DaemonCall {
    /// The probe: `server/discover`, to learn the backend's era (`stateless.rs`).
    Discover,
    Initialize,
    /// A page of a fingerprinting listing (see `lists.rs`).
    ListPage(ListKind),
    /// Backend-wide state the daemon keeps in step with its clients: a replayed subscription or
    /// log level, the last subscriber's unsubscribe. The answer only matters if it is an error.
    Housekeeping(&'static str),
    /// One of the daemon's `subscriptions/listen` streams on a 2026-07-28 backend, for translated
    /// clients (`subscriptions.rs`): open until the backend answers it or the daemon cancels it.
    Listen(Stream),
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Hook {
    None,
    /// The first `resources/subscribe` of a URI: its answer is every waiting subscriber's.
    Subscribe(String),
    /// A task-augmented request: a success creates a task owned by the requester.
    CreatesTask,
    /// `tasks/list`: the answer is narrowed to the requester's tasks.
    ListsTasks,
    /// A translated client's request a stateless server may answer with an
    /// `InputRequiredResult`: what it takes to send it again (`rounds.rs`).
    Retryable(Box<Retry>),
}

/// A translated client's request as sent to a stateless backend, to retry with the answers to
/// the server's questions.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Retry {
    pub(super) method: String,
    /// The params as the client sent them, with its `_meta` added: JSON text, members kept as
    /// they were written (see `stateless::RawObject`).
    pub(super) params: String,
    /// Rounds of questions so far.
    pub(super) round: u32,
}

/// What releasing a client's request (cancelled, or its client left) means for the backend.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Released {
    /// Forgotten: tell the backend to cancel `backend_id`.
    Cancel(u64),
    /// Its answer still does the daemon's work (a first subscribe others wait on, a task's
    /// creation): the backend must still answer it, so it is not cancelled there.
    KeptForItsHook,
}

/// Up to how many entries' room a client's emptied request index keeps (see
/// [`InFlightTable::unindex`]).
const KEPT_CAPACITY: usize = 32;

#[derive(Debug, Default)]
pub(super) struct InFlightTable {
    by_backend: OwnKeyMap<u64, InFlight>,
    /// Each client's requests: its id → the backend id.
    by_client: OwnKeyMap<ClientId, HashMap<Id, u64>>,
}

impl InFlightTable {
    pub(super) fn insert(&mut self, backend_id: u64, entry: InFlight) {
        if let Owner::Client { client, id } = &entry.owner {
            self.by_client
                .entry(*client)
                .or_default()
                .insert(id.clone(), backend_id);
        }
        self.by_backend.insert(backend_id, entry);
    }

    pub(super) fn get(&self, backend_id: u64) -> Option<&InFlight> {
        self.by_backend.get(&backend_id)
    }

    /// The backend answered `backend_id`: the request is over.
    pub(super) fn finish(&mut self, backend_id: u64) -> Option<InFlight> {
        let entry = self.by_backend.remove(&backend_id)?;
        if let Owner::Client { client, id } = &entry.owner {
            self.unindex(*client, id);
        }
        Some(entry)
    }

    /// `client` no longer waits for its request `id` (it cancelled it). `None` if no such request
    /// is at the backend.
    pub(super) fn release(&mut self, client: ClientId, id: &Id) -> Option<Released> {
        let backend_id = self.unindex(client, id)?;
        Some(self.release_backend_id(backend_id))
    }

    /// `client` left: release every request it had at the backend. Returns the backend ids to
    /// cancel there.
    pub(super) fn client_left(&mut self, client: ClientId) -> Vec<u64> {
        let Some(requests) = self.by_client.remove(&client) else {
            return Vec::new();
        };
        requests
            .into_values()
            .filter_map(|backend_id| match self.release_backend_id(backend_id) {
                Released::Cancel(backend_id) => Some(backend_id),
                Released::KeptForItsHook => None,
            })
            .collect()
    }

    /// The backend id of `client`'s most recent request still at the backend.
    pub(super) fn latest_of(&self, client: ClientId) -> Option<u64> {
        self.by_client
            .get(&client)
            .and_then(|requests| requests.values().max().copied())
    }

    /// The backend is gone: every entry, and the table empty.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = InFlight> + use<> {
        self.by_client.clear();
        std::mem::take(&mut self.by_backend).into_values()
    }

    /// Whether a task-creating request is at the backend: a status notification about a task
    /// nobody owns yet may be about the task it creates.
    pub(super) fn creating_task(&self) -> bool {
        self.by_backend
            .values()
            .any(|entry| entry.hook == Hook::CreatesTask)
    }

    /// Requests at the backend, of clients and of the daemon.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_backend.len()
    }

    fn release_backend_id(&mut self, backend_id: u64) -> Released {
        match self.by_backend.get_mut(&backend_id) {
            // Only these answers do work beyond their requester's (a retry, or a list narrowed
            // for it, is its requester's alone: cancelled with it).
            Some(entry) if matches!(entry.hook, Hook::Subscribe(_) | Hook::CreatesTask) => {
                entry.owner = Owner::Gone;
                Released::KeptForItsHook
            }
            _ => {
                self.by_backend.remove(&backend_id);
                Released::Cancel(backend_id)
            }
        }
    }

    /// Remove (client, id) from the client index; returns its backend id.
    ///
    /// A client's map stays when it empties, until the client leaves: a session with one
    /// request at a time would otherwise allocate and free a map for every request. Only a map
    /// that grew past [`KEPT_CAPACITY`] is shrunk then, so an idle client holds little.
    fn unindex(&mut self, client: ClientId, id: &Id) -> Option<u64> {
        let requests = self.by_client.get_mut(&client)?;
        let backend_id = requests.remove(id)?;
        if requests.is_empty() && requests.capacity() > KEPT_CAPACITY {
            requests.shrink_to(0);
        }
        Some(backend_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client: ClientId, id: u64, hook: Hook) -> InFlight {
        InFlight {
            owner: Owner::Client {
                client,
                id: Id::from_u64(id),
            },
            token: None,
            hook,
        }
    }

    #[test]
    fn an_answer_removes_both_indexes() {
        let mut table = InFlightTable::default();
        table.insert(10, request(1, 0, Hook::None));
        table.insert(11, request(1, 1, Hook::None));
        assert_eq!(table.latest_of(1), Some(11));
        assert!(table.finish(11).is_some());
        assert_eq!(table.latest_of(1), Some(10));
        assert!(table.finish(10).is_some());
        assert_eq!(table.latest_of(1), None);
        assert_eq!(
            table.release(1, &Id::from_u64(0)),
            None,
            "answered: nothing to cancel"
        );
        // The client's emptied index stays for its next request, until it leaves.
        assert!(table.by_client.values().all(HashMap::is_empty));
        assert_eq!(table.client_left(1), Vec::<u64>::new());
        assert!(table.by_client.is_empty());
    }

    /// A client that once had many requests in flight does not keep their room once it has
    /// none; one with a few keeps it for the next.
    #[test]
    fn an_emptied_index_keeps_only_a_little_room() {
        let mut table = InFlightTable::default();
        for n in 0..100 {
            table.insert(n, request(1, n, Hook::None));
        }
        for n in 0..100 {
            assert!(table.finish(n).is_some());
        }
        assert_eq!(table.by_client[&1].capacity(), 0);
        table.insert(200, request(1, 200, Hook::None));
        assert!(table.finish(200).is_some());
        let kept = table.by_client[&1].capacity();
        assert!(kept > 0 && kept <= KEPT_CAPACITY, "{kept}");
    }

    #[test]
    fn release_cancels_unless_a_hook_needs_the_answer() {
        let mut table = InFlightTable::default();
        table.insert(10, request(1, 0, Hook::None));
        table.insert(11, request(1, 1, Hook::Subscribe("a://x".into())));
        assert_eq!(
            table.release(1, &Id::from_u64(0)),
            Some(Released::Cancel(10))
        );
        assert_eq!(
            table.release(1, &Id::from_u64(1)),
            Some(Released::KeptForItsHook)
        );
        assert!(
            matches!(
                table.get(11),
                Some(InFlight {
                    owner: Owner::Gone,
                    ..
                })
            ),
            "kept for its hook, owned by no one"
        );
        assert_eq!(table.release(1, &Id::from_u64(1)), None, "released once");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_leaving_client_cancels_its_own_requests_only() {
        let mut table = InFlightTable::default();
        table.insert(10, request(1, 0, Hook::None));
        table.insert(11, request(2, 0, Hook::None));
        table.insert(12, request(1, 1, Hook::CreatesTask));
        table.insert(
            13,
            InFlight {
                owner: Owner::Daemon(DaemonCall::Initialize),
                token: None,
                hook: Hook::None,
            },
        );
        assert_eq!(table.client_left(1), vec![10]);
        assert_eq!(table.latest_of(1), None);
        assert_eq!(table.latest_of(2), Some(11));
        assert_eq!(
            table.len(),
            3,
            "client 2's, the task creation, the daemon's"
        );
        assert_eq!(table.drain().count(), 3);
        assert_eq!(table.len(), 0);
        assert_eq!(table.latest_of(2), None);
    }
}
