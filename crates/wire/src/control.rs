//! Control messages: what `shoal status`, `stop` and `restart` send after a `control` hello.
//!
//! One request line, one response line, per exchange. Both are internally tagged (`"op"`,
//! `"outcome"`) so that a message of a kind this version does not know is recognised as such
//! ([`Error::ControlUnsupported`]) instead of failing to decode: the daemon answers it with
//! [`ControlResponse::Error`] and keeps the connection.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hello::{excerpt, to_line};
use crate::{Error, Line};

/// A request on a control connection.
///
/// ```
/// use shoal_wire::ControlRequest;
///
/// assert_eq!(ControlRequest::Status.to_line().as_bytes(), br#"{"op":"status"}"#);
/// assert_eq!(ControlRequest::parse(br#"{"op":"restart"}"#)?, ControlRequest::Restart);
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlRequest {
    /// Report a [`StatusReport`].
    Status,
    /// Stop the daemon (and its backend) gracefully; answered with [`ControlResponse::Stopping`].
    Stop,
    /// Restart the backend without dropping clients; answered with [`ControlResponse::Restarted`].
    Restart,
}

/// The daemon's answer to a [`ControlRequest`].
///
/// ```
/// use shoal_wire::ControlResponse;
///
/// let line = ControlResponse::Error { message: "no such op".into() }.to_line();
/// assert_eq!(line.as_bytes(), br#"{"outcome":"error","message":"no such op"}"#);
/// assert_eq!(ControlResponse::parse(line.as_bytes())?, ControlResponse::Error { message: "no such op".into() });
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlResponse {
    /// Answer to [`ControlRequest::Status`].
    Status(StatusReport),
    /// Answer to [`ControlRequest::Stop`]: the daemon is shutting down; the connection closes
    /// when it is gone.
    Stopping,
    /// Answer to [`ControlRequest::Restart`], once the new backend started (or failed to: then
    /// [`ControlResponse::Error`]).
    Restarted {
        /// The new backend's process id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backend_pid: Option<u32>,
    },
    /// The request failed or is not supported; `message` says why, for a human.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// The state of the shared backend server.
///
/// ```
/// assert_eq!(serde_json::to_string(&shoal_wire::BackendState::CrashLooped)?, r#""crash_looped""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendState {
    /// Being spawned and initialized.
    Starting,
    /// Initialized and serving.
    Running,
    /// Crashed or asked to restart; a new one is on its way.
    Restarting,
    /// Crashed too often; not restarted until `shoal restart`.
    CrashLooped,
    /// Stopped (daemon shutting down).
    Stopped,
    /// A state this version does not know (a newer daemon of the same protocol).
    #[serde(other)]
    Unknown,
}

/// What `shoal status` shows for one daemon.
///
/// ```
/// use shoal_wire::{BackendState, ControlResponse, StatusReport};
/// use std::time::Duration;
///
/// let report = StatusReport {
///     pid: 4242,
///     version: "0.1.0".into(),
///     key: "2c26b46b68ffc68f".into(),
///     root: "/home/me/project".into(),
///     backend_argv: vec!["npx".into(), "-y".into(), "@modelcontextprotocol/server-memory".into()],
///     backend_pid: Some(4243),
///     backend_state: BackendState::Running,
///     backend_restarts: 0,
///     n_clients: 3,
///     uptime: Duration::from_millis(61_500),
///     requests_served: 1200,
///     rss_bytes: Some(52_428_800),
///     env_differs: vec!["DATABASE_URL".into()],
/// };
/// let line = ControlResponse::Status(report.clone()).to_line();
/// assert_eq!(ControlResponse::parse(line.as_bytes())?, ControlResponse::Status(report));
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's shoal version.
    pub version: String,
    /// The daemon key.
    pub key: String,
    /// The project root, as text (non-UTF-8 bytes replaced by the daemon).
    pub root: String,
    /// The backend command line.
    pub backend_argv: Vec<String>,
    /// The backend's process id, when one is running.
    #[serde(default)]
    pub backend_pid: Option<u32>,
    /// What the backend is doing.
    pub backend_state: BackendState,
    /// How many times the backend was restarted (crashes and `shoal restart`).
    pub backend_restarts: u32,
    /// Connected sessions (control connections do not count).
    pub n_clients: u32,
    /// Time since the daemon started; milliseconds on the wire (`uptime_ms`).
    #[serde(rename = "uptime_ms", with = "duration_ms")]
    pub uptime: Duration,
    /// Client requests answered since start.
    pub requests_served: u64,
    /// Resident memory of the daemon and backend tree, when the platform reports it.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// The environment variables sessions set otherwise than the server's environment, from
    /// their hellos ([`ClientHello::env_differs`](crate::ClientHello::env_differs)), sorted;
    /// names only. Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_differs: Vec<String>,
}

/// Every `op` [`ControlRequest`] knows; anything else is "unsupported", not "malformed".
const KNOWN_OPS: &[&str] = &["status", "stop", "restart"];

/// Every `outcome` [`ControlResponse`] knows.
const KNOWN_OUTCOMES: &[&str] = &["status", "stopping", "restarted", "error"];

impl ControlRequest {
    /// The request as a line.
    ///
    /// ```
    /// assert_eq!(shoal_wire::ControlRequest::Stop.to_line().as_bytes(), br#"{"op":"stop"}"#);
    /// ```
    pub fn to_line(&self) -> Line {
        to_line(self)
    }

    /// Parse a request line. An unknown `op` is [`Error::ControlUnsupported`]
    /// ([`Error::is_unsupported`]), anything else wrong is [`Error::ControlMalformed`].
    ///
    /// ```
    /// use shoal_wire::{ControlRequest, Error};
    ///
    /// let error = ControlRequest::parse(br#"{"op":"drain","deadline_ms":5}"#).unwrap_err();
    /// assert_eq!(error.to_string(), "handle control request `drain`: this shoal version does not support it");
    /// assert!(matches!(ControlRequest::parse(b"{}"), Err(Error::ControlMalformed { .. })));
    /// ```
    pub fn parse(line: &[u8]) -> Result<ControlRequest, Error> {
        parse_tagged(line, "op", KNOWN_OPS, "request")
    }
}

impl ControlResponse {
    /// The response as a line.
    ///
    /// ```
    /// assert_eq!(shoal_wire::ControlResponse::Stopping.to_line().as_bytes(), br#"{"outcome":"stopping"}"#);
    /// ```
    pub fn to_line(&self) -> Line {
        to_line(self)
    }

    /// Parse a response line. An unknown `outcome` is [`Error::ControlUnsupported`].
    ///
    /// ```
    /// use shoal_wire::ControlResponse;
    ///
    /// assert_eq!(ControlResponse::parse(br#"{"outcome":"restarted","backend_pid":12}"#)?, ControlResponse::Restarted { backend_pid: Some(12) });
    /// assert!(ControlResponse::parse(br#"{"outcome":"paused"}"#).unwrap_err().is_unsupported());
    /// # Ok::<(), shoal_wire::Error>(())
    /// ```
    pub fn parse(line: &[u8]) -> Result<ControlResponse, Error> {
        parse_tagged(line, "outcome", KNOWN_OUTCOMES, "response")
    }
}

/// Decode an internally tagged message; on failure, tell "unknown tag" from "broken message".
fn parse_tagged<T: serde::de::DeserializeOwned>(
    line: &[u8],
    tag: &'static str,
    known: &[&str],
    expected: &'static str,
) -> Result<T, Error> {
    let error = match serde_json::from_slice::<T>(line) {
        Ok(message) => return Ok(message),
        Err(error) => error,
    };
    let name = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
        .ok()
        .and_then(|mut object| match object.remove(tag) {
            Some(serde_json::Value::String(name)) => Some(name),
            _ => None,
        });
    match name {
        Some(name) if !known.contains(&name.as_str()) => {
            Err(Error::ControlUnsupported { expected, name })
        }
        Some(_) => Err(Error::ControlMalformed {
            expected,
            detail: error.to_string(),
        }),
        None => Err(Error::ControlMalformed {
            expected,
            detail: format!(
                "expected an object with a string `{tag}`, got {}",
                excerpt(line)
            ),
        }),
    }
}

/// `Duration` as whole milliseconds on the wire: what status shows needs no finer unit, and a bare
/// number is easy for `--json` consumers.
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: &str) {
        let rendered = match ControlRequest::parse(line.as_bytes()) {
            Ok(request) => format!("{request:?}"),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(rendered, expected);
    }

    #[test]
    fn parses_requests() {
        check(r#"{"op":"status"}"#, "Status");
        check(r#"{"op":"stop","future_member":1}"#, "Stop");
        check(
            r#"{"op":"drain"}"#,
            "error: handle control request `drain`: this shoal version does not support it",
        );
        check(
            r#"{"op":7}"#,
            r#"error: parse a control request: expected an object with a string `op`, got "{\"op\":7}""#,
        );
        check(
            "not json",
            r#"error: parse a control request: expected an object with a string `op`, got "not json""#,
        );
    }

    #[test]
    fn known_tags_match_the_enums() {
        for request in [
            ControlRequest::Status,
            ControlRequest::Stop,
            ControlRequest::Restart,
        ] {
            let value = serde_json::to_value(&request).unwrap();
            assert!(KNOWN_OPS.contains(&value["op"].as_str().unwrap()));
        }
        let responses = [
            ControlResponse::Stopping,
            ControlResponse::Restarted { backend_pid: None },
            ControlResponse::Error {
                message: String::new(),
            },
        ];
        for response in responses {
            let value = serde_json::to_value(&response).unwrap();
            assert!(KNOWN_OUTCOMES.contains(&value["outcome"].as_str().unwrap()));
        }
        assert!(KNOWN_OUTCOMES.contains(&"status"));
    }

    #[test]
    fn unknown_backend_state_is_kept_as_unknown() {
        let state: BackendState = serde_json::from_str(r#""hibernating""#).unwrap();
        assert_eq!(state, BackendState::Unknown);
    }
}
