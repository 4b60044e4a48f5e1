//! The backend's requests out at clients: one table that owns both of its indexes.
//!
//! A request the backend sent "the client" is routed to one client under a number the daemon
//! mints (the client sees it inside a daemon-unique string id, see `server_requests.rs`). It is
//! found by that number when the client answers, and by the backend's own id when the backend
//! withdraws it (`notifications/cancelled`). A request the daemon runs as a task for the backend
//! (`client_tasks.rs`) is answered to that task instead, and withdrawn by cancelling the task.
//!
//! Invariant: `by_backend` holds exactly the requests of `by_number` answered to the backend;
//! every insertion and removal goes through this table.

use std::collections::HashMap;

use shoal_wire::Id;

use super::ClientId;
use crate::own_keys::OwnKeyMap;

/// A request out at a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Asked {
    pub(super) number: u64,
    pub(super) client: ClientId,
    pub(super) reply: Reply,
}

/// Where a client's answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// To the backend, under its id for the request.
    Backend(Id),
    /// To the daemon's task of this number, which runs the request for the backend.
    Task(u64),
}

#[derive(Debug, Default)]
pub(super) struct AskedTable {
    /// Number → (client, where its answer goes).
    by_number: OwnKeyMap<u64, (ClientId, Reply)>,
    /// Backend id → number.
    by_backend: HashMap<Id, u64>,
}

impl AskedTable {
    pub(super) fn insert(&mut self, number: u64, client: ClientId, reply: Reply) {
        if let Reply::Backend(backend_id) = &reply {
            self.by_backend.insert(backend_id.clone(), number);
        }
        self.by_number.insert(number, (client, reply));
    }

    /// The daemon withdrew request `number` (the task it ran for was cancelled).
    pub(super) fn withdraw(&mut self, number: u64) -> Option<Asked> {
        self.remove(number)
    }

    /// `client` answered request `number`. `None` if that request is not out at that client (an
    /// answer from another client is never taken for it).
    pub(super) fn answered(&mut self, number: u64, client: ClientId) -> Option<Asked> {
        match self.by_number.get(&number) {
            Some((asked_of, _)) if *asked_of == client => self.remove(number),
            _ => None,
        }
    }

    /// The backend withdrew its request `backend_id`.
    pub(super) fn withdrawn(&mut self, backend_id: &Id) -> Option<Asked> {
        let number = *self.by_backend.get(backend_id)?;
        self.remove(number)
    }

    /// `client` left: every request that was out at it.
    pub(super) fn client_left(&mut self, client: ClientId) -> Vec<Asked> {
        let numbers: Vec<u64> = self
            .by_number
            .iter()
            .filter(|(_, (asked_of, _))| *asked_of == client)
            .map(|(&number, _)| number)
            .collect();
        numbers
            .into_iter()
            .filter_map(|number| self.remove(number))
            .collect()
    }

    /// The backend is gone: every request, and the table empty.
    pub(super) fn drain(&mut self) -> Vec<Asked> {
        self.by_backend.clear();
        std::mem::take(&mut self.by_number)
            .into_iter()
            .map(|(number, (client, reply))| Asked {
                number,
                client,
                reply,
            })
            .collect()
    }

    fn remove(&mut self, number: u64) -> Option<Asked> {
        let (client, reply) = self.by_number.remove(&number)?;
        if let Reply::Backend(backend_id) = &reply {
            self.by_backend.remove(backend_id);
        }
        Some(Asked {
            number,
            client,
            reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_leaves_by_either_index_once() {
        let mut table = AskedTable::default();
        table.insert(5, 1, Reply::Backend(Id::from_u64(100)));
        table.insert(6, 2, Reply::Backend(Id::from_u64(101)));
        table.insert(8, 2, Reply::Task(3));
        assert_eq!(table.answered(5, 2), None, "not asked of client 2");
        let asked = table.answered(5, 1).expect("asked of client 1");
        assert_eq!(asked.reply, Reply::Backend(Id::from_u64(100)));
        assert_eq!(
            table.withdrawn(&Id::from_u64(100)),
            None,
            "already answered"
        );
        assert_eq!(
            table.withdrawn(&Id::from_u64(101)).map(|a| a.number),
            Some(6)
        );
        assert_eq!(table.answered(6, 2), None, "already withdrawn");
        assert_eq!(table.withdraw(8).map(|a| a.reply), Some(Reply::Task(3)));
        assert!(table.by_number.is_empty() && table.by_backend.is_empty());
    }

    #[test]
    fn a_leaving_client_takes_only_its_own() {
        let mut table = AskedTable::default();
        table.insert(5, 1, Reply::Backend(Id::from_u64(100)));
        table.insert(6, 2, Reply::Backend(Id::from_u64(101)));
        table.insert(7, 1, Reply::Task(1));
        let mut left: Vec<u64> = table.client_left(1).iter().map(|a| a.number).collect();
        left.sort_unstable();
        assert_eq!(left, vec![5, 7]);
        assert_eq!(table.drain().len(), 1);
        assert!(table.by_backend.is_empty());
    }
}
