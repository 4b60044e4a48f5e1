//! Which MCP messages make up a session's state: their effect outlives the request that carried
//! them. The daemon keeps that state per session (and replays it to a restarted server); the proxy
//! replays it to a new daemon after a reconnect. Both read this one list, so that what one keeps
//! the other cannot forget.

use shoal_wire::Kind;

/// The `initialize` request: the client's version, capabilities and identity.
pub const INITIALIZE: &str = "initialize";
/// The client's `notifications/initialized`: it may now be sent requests.
pub const INITIALIZED: &str = "notifications/initialized";
/// `logging/setLevel`: the level of log messages the client wants.
pub const SET_LEVEL: &str = "logging/setLevel";
/// `resources/subscribe`: updates of one URI wanted until unsubscribed.
pub const SUBSCRIBE: &str = "resources/subscribe";
/// `resources/unsubscribe`: the end of a subscription.
pub const UNSUBSCRIBE: &str = "resources/unsubscribe";

/// A message that changes a session's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// [`INITIALIZE`], a request.
    Initialize,
    /// [`INITIALIZED`], a notification.
    Initialized,
    /// [`SET_LEVEL`], a request.
    SetLevel,
    /// [`SUBSCRIBE`], a request naming a URI.
    Subscribe,
    /// [`UNSUBSCRIBE`], a request naming a URI.
    Unsubscribe,
}

impl StateChange {
    /// What a message of `kind` calling `method` changes, if anything. A request-only method
    /// sent as a notification changes nothing (it is not answered, so a server ignores it).
    pub fn of(kind: Kind, method: &str) -> Option<StateChange> {
        let change = match method {
            INITIALIZE => StateChange::Initialize,
            INITIALIZED => StateChange::Initialized,
            SET_LEVEL => StateChange::SetLevel,
            SUBSCRIBE => StateChange::Subscribe,
            UNSUBSCRIBE => StateChange::Unsubscribe,
            _ => return None,
        };
        (change.kind() == kind).then_some(change)
    }

    /// The method's name.
    pub const fn method(self) -> &'static str {
        match self {
            StateChange::Initialize => INITIALIZE,
            StateChange::Initialized => INITIALIZED,
            StateChange::SetLevel => SET_LEVEL,
            StateChange::Subscribe => SUBSCRIBE,
            StateChange::Unsubscribe => UNSUBSCRIBE,
        }
    }

    /// The kind of message that carries it.
    pub const fn kind(self) -> Kind {
        match self {
            StateChange::Initialized => Kind::Notification,
            _ => Kind::Request,
        }
    }
}

/// An MCP log level (RFC 5424 severities), ordered from most to least verbose: what a
/// `logging/setLevel` asks for, which the daemon keeps per session and the proxy replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `notice`.
    Notice,
    /// `warning`.
    Warning,
    /// `error`.
    Error,
    /// `critical`.
    Critical,
    /// `alert`.
    Alert,
    /// `emergency`.
    Emergency,
}

impl LogLevel {
    /// Every level, most verbose first.
    pub const ALL: [LogLevel; 8] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ];

    /// The level named `name` in a `logging/setLevel` or `notifications/message`.
    pub fn parse(name: &str) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str() == name)
    }

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_recognised_by_its_method_and_kind_only() {
        let all = [
            StateChange::Initialize,
            StateChange::Initialized,
            StateChange::SetLevel,
            StateChange::Subscribe,
            StateChange::Unsubscribe,
        ];
        let kinds = [
            Kind::Request,
            Kind::Notification,
            Kind::Response,
            Kind::ErrorResponse,
        ];
        for change in all {
            for kind in kinds {
                let expected = (kind == change.kind()).then_some(change);
                assert_eq!(
                    StateChange::of(kind, change.method()),
                    expected,
                    "{change:?} as {kind:?}"
                );
            }
        }
        assert_eq!(StateChange::of(Kind::Request, "tools/call"), None);
        assert_eq!(StateChange::of(Kind::Request, "Initialize"), None);
    }

    #[test]
    fn level_names_round_trip_in_order() {
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::parse(level.as_str()), Some(level));
        }
        assert!(LogLevel::ALL.is_sorted());
        assert_eq!(LogLevel::parse("verbose"), None);
    }
}
