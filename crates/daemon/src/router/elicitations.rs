//! URL-mode elicitations (2025-11-25): which client each one belongs to, so that the server's
//! `notifications/elicitation/complete` reaches that client alone, as the spec asks.
//!
//! An elicitation gets its owner in one of two ways: the server's `elicitation/create` with
//! `mode: "url"` was routed to that client, or the server answered that client's request with a
//! `URLElicitationRequiredError` (-32042) listing elicitations. Invariant: an entry lives until its
//! completion arrives or its client leaves, and the table never holds more than [`MAX_TRACKED`]
//! entries, whatever the server sends: beyond that, a completion is dropped (the client's own
//! timeout ends its wait).

use std::collections::HashMap;

use serde_json::Value;

use super::dispatch::ClientId;

/// At most this many URL elicitations are waiting for their completion at once.
const MAX_TRACKED: usize = 4096;

/// The JSON-RPC error code of `URLElicitationRequiredError`.
pub(super) const URL_ELICITATION_REQUIRED: i64 = -32042;

#[derive(Debug, Default)]
pub(super) struct Elicitations {
    owners: HashMap<String, ClientId>,
}

impl Elicitations {
    /// `client` owns the elicitation `id`. False if the table is full.
    pub(super) fn insert(&mut self, id: &str, client: ClientId) -> bool {
        if self.owners.len() >= MAX_TRACKED && !self.owners.contains_key(id) {
            return false;
        }
        self.owners.insert(id.to_owned(), client);
        true
    }

    /// The elicitation `id` is complete: its owner, once.
    pub(super) fn complete(&mut self, id: &str) -> Option<ClientId> {
        self.owners.remove(id)
    }

    pub(super) fn client_left(&mut self, client: ClientId) {
        self.owners.retain(|_, owner| *owner != client);
    }
}

/// The ids of the elicitations a -32042 error's `data.elicitations` lists.
pub(super) fn required_ids(error: &Value) -> impl Iterator<Item = &str> {
    error
        .pointer("/data/elicitations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|elicitation| elicitation.get("elicitationId")?.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_completion_reaches_its_owner_once() {
        let mut table = Elicitations::default();
        assert!(table.insert("a", 1));
        assert!(table.insert("b", 2));
        assert_eq!(table.complete("a"), Some(1));
        assert_eq!(table.complete("a"), None);
        table.client_left(2);
        assert_eq!(table.complete("b"), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = Elicitations::default();
        for n in 0..MAX_TRACKED {
            assert!(table.insert(&n.to_string(), 1));
        }
        assert!(!table.insert("one too many", 1));
        assert!(
            table.insert("0", 2),
            "an existing entry can still change hands"
        );
    }

    #[test]
    fn required_ids_are_read_from_the_error_data() {
        let error = json!({"code": -32042, "data": {"elicitations": [
            {"mode": "url", "elicitationId": "e1"}, {"mode": "url"}, {"elicitationId": 7}
        ]}});
        assert_eq!(required_ids(&error).collect::<Vec<_>>(), ["e1"]);
        assert_eq!(required_ids(&json!({"code": -32042})).count(), 0);
    }
}
