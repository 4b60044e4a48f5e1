//! Log levels: one per client, the backend at the most verbose any client asked for, and every
//! `notifications/message` filtered per client.

use serde_json::{Value, json};
use shoal_ipc::session::{self, LogLevel as Level};
use shoal_wire::{Envelope, ErrorCode, Id, error_response};

use super::dispatch::{ClientId, Outputs, Router};
use crate::own_keys::OwnKeyMap;

/// Per-client levels and the level the backend was last set to.
///
/// A client that never called `logging/setLevel` gets what the server sends by default, which is
/// everything for the SDKs' servers (they filter only once a level is set). The server's default
/// cannot be restored once someone set a level (MCP has no "reset"), so while such a client is
/// listening and another has set a level, the backend runs at `debug` and the unset client is shown
/// all of it; the others are filtered to their own level.
#[derive(Debug, Default)]
pub(crate) struct Levels {
    /// Clients that receive broadcasts: their level, `None` if they never set one.
    clients: OwnKeyMap<ClientId, Option<Level>>,
    /// `None` until a client sets a level: the backend is at its own default.
    backend: Option<Level>,
}

impl Levels {
    /// `client` now receives broadcasts. Returns the level the backend must be set to, if it
    /// changes (to `debug`, when another client has narrowed the stream this one expects whole).
    pub(crate) fn ready(&mut self, client: ClientId) -> Option<Level> {
        self.clients.entry(client).or_insert(None);
        self.retarget()
    }

    /// Record `client`'s level. Returns the level the backend must be set to, if it changes.
    pub(crate) fn set(&mut self, client: ClientId, level: Level) -> Option<Level> {
        self.clients.insert(client, Some(level));
        self.retarget()
    }

    /// Forget a departed client. Returns the level the backend should move to, if the departed
    /// client was the one that needed the most verbose level.
    pub(crate) fn remove(&mut self, client: ClientId) -> Option<Level> {
        self.clients.remove(&client)?;
        self.retarget()
    }

    /// The level the backend was last set to, to replay on a new backend.
    pub(crate) fn backend(&self) -> Option<Level> {
        self.backend
    }

    /// The level `client` set, if it set one.
    pub(crate) fn level_of(&self, client: ClientId) -> Option<Level> {
        self.clients.get(&client).copied().flatten()
    }

    /// Whether `client` is shown a message at `level`.
    pub(crate) fn admits(&self, client: ClientId, level: Level) -> bool {
        match self.clients.get(&client) {
            Some(Some(own)) => level >= *own,
            // Never set: everything the backend sends, as it would be alone.
            Some(None) | None => true,
        }
    }

    fn retarget(&mut self) -> Option<Level> {
        let most_verbose_set = self.clients.values().flatten().min().copied();
        let anyone_unset = self.clients.values().any(Option::is_none);
        let wanted = match (most_verbose_set, anyone_unset) {
            // Someone narrowed the backend (now or before): unset clients need it all.
            (_, true) if most_verbose_set.is_some() || self.backend.is_some() => Level::Debug,
            (Some(level), false) => level,
            // Nobody ever set a level, or nobody is left: the backend stays where it is.
            _ => return None,
        };
        (self.backend != Some(wanted)).then(|| {
            self.backend = Some(wanted);
            wanted
        })
    }
}

impl Router {
    /// `logging/setLevel` from a client: its own filter, and the backend at the most verbose
    /// level any client asked for.
    pub(super) fn set_level(
        &mut self,
        client: ClientId,
        id: &Id,
        envelope: &Envelope,
        out: &mut Outputs,
    ) {
        let level = serde_json::from_slice::<Value>(envelope.line().as_bytes())
            .ok()
            .and_then(|message| message.pointer("/params/level").cloned());
        let Some(level) = level
            .as_ref()
            .and_then(Value::as_str)
            .and_then(Level::parse)
        else {
            let answer = error_response(
                Some(id),
                ErrorCode::INVALID_PARAMS,
                "logging/setLevel needs params.level: one of debug, info, notice, warning, error, \
                 critical, alert, emergency",
            );
            return self.reply(client, id, answer.into(), out);
        };
        if let Some(backend_level) = self.levels.set(client, level) {
            self.set_backend_level(backend_level, out);
        }
        self.answer(client, id, &json!({}), out);
    }

    pub(super) fn set_backend_level(&mut self, level: Level, out: &mut Outputs) {
        // A 2026-07-28 backend has no level to set: each request carries its own.
        if self.is_stateless() {
            return;
        }
        self.housekeeping_request(session::SET_LEVEL, json!({ "level": level.as_str() }), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_most_verbose_client() {
        let mut levels = Levels::default();
        assert_eq!(
            levels.ready(1),
            None,
            "nobody set a level: the server's default"
        );
        assert!(
            levels.admits(1, Level::Debug),
            "no level set: everything passes"
        );
        assert_eq!(levels.set(1, Level::Warning), Some(Level::Warning));
        assert_eq!(levels.set(2, Level::Debug), Some(Level::Debug));
        assert_eq!(levels.set(3, Level::Error), None);
        assert!(levels.admits(2, Level::Debug));
        assert!(!levels.admits(1, Level::Info));
        assert!(levels.admits(1, Level::Warning));
        assert_eq!(levels.remove(2), Some(Level::Warning));
        assert_eq!(levels.remove(3), None);
        assert_eq!(
            levels.remove(1),
            None,
            "the last one leaves the backend where it is"
        );
        assert_eq!(levels.backend(), Some(Level::Warning));
    }

    #[test]
    fn a_client_that_never_set_a_level_gets_the_whole_stream() {
        let mut levels = Levels::default();
        assert_eq!(levels.ready(1), None);
        assert_eq!(levels.ready(2), None);
        assert_eq!(
            levels.set(1, Level::Emergency),
            Some(Level::Debug),
            "2 still expects everything"
        );
        assert!(levels.admits(2, Level::Debug));
        assert!(!levels.admits(1, Level::Critical));
        assert_eq!(
            levels.remove(2),
            Some(Level::Emergency),
            "only 1's level is left"
        );
        assert_eq!(
            levels.ready(3),
            Some(Level::Debug),
            "a newcomer that never set a level widens it again"
        );
        assert_eq!(levels.remove(1), None, "3 still needs everything");
        assert_eq!(levels.set(3, Level::Info), Some(Level::Info));
    }
}
