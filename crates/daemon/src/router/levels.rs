//! Log levels: one per client, the backend at the most verbose any client asked for, and every
//! `notifications/message` filtered per client.

use std::collections::HashMap;

use serde_json::{Value, json};
use shoal_ipc::session;
use shoal_wire::{Envelope, ErrorCode, Id, error_response};

use super::dispatch::{ClientId, Outputs, Router};

/// An MCP log level (RFC 5424 severities), ordered from most to least verbose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Level {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl Level {
    const ALL: [Level; 8] = [
        Level::Debug,
        Level::Info,
        Level::Notice,
        Level::Warning,
        Level::Error,
        Level::Critical,
        Level::Alert,
        Level::Emergency,
    ];

    pub(crate) fn parse(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.as_str() == name)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Alert => "alert",
            Level::Emergency => "emergency",
        }
    }
}

/// What a client that never called `logging/setLevel` is shown once some other client changed the
/// backend's level. The backend's own default is unknowable, and `info` is what servers commonly
/// start at; before any client sets a level, such clients see everything the backend sends, exactly
/// as they would alone.
const UNSET_CLIENT_LEVEL: Level = Level::Info;

/// Per-client levels and the level the backend was last set to.
#[derive(Debug, Default)]
pub(crate) struct Levels {
    clients: HashMap<ClientId, Level>,
    /// `None` until a client sets a level: the backend is at its own default.
    backend: Option<Level>,
}

impl Levels {
    /// Record `client`'s level. Returns the level the backend must be set to, if it changes.
    pub(crate) fn set(&mut self, client: ClientId, level: Level) -> Option<Level> {
        self.clients.insert(client, level);
        self.retarget()
    }

    /// Forget a departed client. Returns the level the backend should drop to, if the departed
    /// client was the most verbose one.
    pub(crate) fn remove(&mut self, client: ClientId) -> Option<Level> {
        self.clients.remove(&client)?;
        self.retarget()
    }

    /// The level the backend was last set to, to replay on a new backend.
    pub(crate) fn backend(&self) -> Option<Level> {
        self.backend
    }

    /// Whether `client` is shown a message at `level`.
    pub(crate) fn admits(&self, client: ClientId, level: Level) -> bool {
        match (self.clients.get(&client), self.backend) {
            (Some(&own), _) => level >= own,
            (None, None) => true,
            (None, Some(_)) => level >= UNSET_CLIENT_LEVEL,
        }
    }

    fn retarget(&mut self) -> Option<Level> {
        // No client with a level left: the backend stays where it is (there is no "reset").
        let wanted = self.clients.values().min().copied()?;
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
        self.housekeeping_request(session::SET_LEVEL, json!({ "level": level.as_str() }), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_most_verbose_client() {
        let mut levels = Levels::default();
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
        assert!(
            !levels.admits(4, Level::Debug),
            "unset clients see info and above"
        );
        assert!(levels.admits(4, Level::Info));
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
    fn names_round_trip() {
        for level in Level::ALL {
            assert_eq!(Level::parse(level.as_str()), Some(level));
        }
        assert_eq!(Level::parse("verbose"), None);
    }
}
