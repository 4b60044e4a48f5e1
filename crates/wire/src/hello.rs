//! The versioned hello exchange that opens every connection to a daemon.
//!
//! On accept the daemon writes one [`DaemonHello`] line; the client answers with one
//! [`ClientHello`] line; then the connection carries JSON-RPC (role `session`) or control messages
//! (role `control`) on the same stream.
//!
//! Compatibility contract, for every future protocol version: a hello is one JSON object on one line
//! of at most [`HELLO_MAX_LEN`] bytes, with a `"shoal"` member naming the kind of hello and a
//! `"protocol"` member holding a non-negative integer. Readers check those two first and decode the
//! rest only when the protocol matches, so a peer of another version is reported as
//! [`Error::VersionMismatch`] naming both numbers, never as a decode failure. Within one protocol
//! version, new members may be added (readers ignore unknown members).

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use tokio_util::codec::{Framed, FramedRead};

use crate::{Error, Line, LineCodec, LineError};

/// The wire protocol number this build speaks. Bump it for any change an older peer would
/// misread; adding an optional member does not need a bump.
///
/// ```
/// assert_eq!(shoal_wire::PROTOCOL, 1);
/// ```
pub const PROTOCOL: u32 = 1;

/// Maximum length of a hello line: 4 KiB. A hello is a few hundred bytes; anything longer is not a
/// shoal peer, and reading it must stay cheap for a daemon that accepts anyone's connection.
///
/// ```
/// assert_eq!(shoal_wire::HELLO_MAX_LEN, 4096);
/// ```
pub const HELLO_MAX_LEN: usize = 4096;

/// Default time to wait for the peer's hello: 2 s. A live local peer answers in microseconds; a
/// socket whose owner is wedged must not hang a proxy's start-up or hold a daemon's accept slot.
///
/// ```
/// assert_eq!(shoal_wire::HELLO_TIMEOUT, std::time::Duration::from_secs(2));
/// ```
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// How many bytes of an unrecognised hello an error message quotes.
const EXCERPT_LEN: usize = 64;

/// The `"shoal"` marker of a daemon's hello.
const DAEMON_MARKER: &str = "daemon-hello";
/// The `"shoal"` marker of a client's hello.
const CLIENT_MARKER: &str = "client-hello";

/// The first line a daemon writes on every accepted connection.
///
/// ```
/// use shoal_wire::DaemonHello;
///
/// let hello = DaemonHello {
///     version: "0.1.0".into(),
///     pid: 4242,
///     nonce: "9f86d081884c7d65".into(),
///     key: "2c26b46b68ffc68f".into(),
///     routed_frames: false,
///     custody: false,
/// };
/// let line = hello.to_line();
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"shoal":"daemon-hello","protocol":1,"version":"0.1.0","pid":4242,"nonce":"9f86d081884c7d65","key":"2c26b46b68ffc68f"}"#
/// );
/// assert_eq!(DaemonHello::parse(line.as_bytes())?, hello);
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonHello {
    /// The daemon's shoal version (`CARGO_PKG_VERSION` of the binary), for messages and status.
    pub version: String,
    /// The daemon's process id; a client compares it with the socket's peer credentials.
    pub pid: u32,
    /// Identity of this daemon instance (the nonce of its lock record): tells a restarted daemon
    /// from the one a client knew, even if the pid was reused.
    pub nonce: String,
    /// The daemon key (hashed project root, backend argv, protocol, key env) the daemon serves.
    pub key: String,
    /// Whether this daemon can send a session its messages as routed frames
    /// ([`FrameCodec`](crate::FrameCodec)) instead of lines. Omitted when false: a daemon
    /// without them sends the same hello as before they existed, and a client that does not
    /// know them ignores the member.
    ///
    /// ```
    /// use shoal_wire::DaemonHello;
    ///
    /// let hello = DaemonHello { version: "0.1.0".into(), pid: 1, nonce: "n".into(), key: "k".into(), routed_frames: true, custody: false };
    /// assert!(hello.to_line().as_bytes().ends_with(br#""key":"k","routed_frames":true}"#));
    /// let older = br#"{"shoal":"daemon-hello","protocol":1,"version":"0.1.0","pid":1,"nonce":"n","key":"k"}"#;
    /// assert!(!DaemonHello::parse(older)?.routed_frames);
    /// # Ok::<(), shoal_wire::Error>(())
    /// ```
    #[serde(default, skip_serializing_if = "is_false")]
    pub routed_frames: bool,
    /// Whether this daemon can read a session's host input itself, in custody
    /// ([`ClientHello::custody`]). Omitted when false, as for `routed_frames`.
    ///
    /// ```
    /// use shoal_wire::DaemonHello;
    ///
    /// let hello = DaemonHello { version: "0.1.0".into(), pid: 1, nonce: "n".into(), key: "k".into(), routed_frames: true, custody: true };
    /// assert!(hello.to_line().as_bytes().ends_with(br#""routed_frames":true,"custody":true}"#));
    /// let older = br#"{"shoal":"daemon-hello","protocol":1,"version":"0.1.0","pid":1,"nonce":"n","key":"k"}"#;
    /// assert!(!DaemonHello::parse(older)?.custody);
    /// # Ok::<(), shoal_wire::Error>(())
    /// ```
    #[serde(default, skip_serializing_if = "is_false")]
    pub custody: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// What a connection is for, declared in the [`ClientHello`].
///
/// ```
/// assert_eq!(serde_json::to_string(&shoal_wire::Role::Control)?, r#""control""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An MCP session from a proxy: JSON-RPC follows; counts as a client.
    Session,
    /// `shoal status` / `stop` / `restart`: control messages follow; not a client.
    Control,
}

/// The line a client answers the daemon's hello with.
///
/// ```
/// use shoal_wire::{ClientHello, Role};
///
/// let hello = ClientHello { role: Role::Session, pid: 777, host_pid: Some(700), label: "claude-code".into(), env_differs: Vec::new(), routed_frames: false, custody: false };
/// let line = hello.to_line();
/// assert_eq!(
///     line.as_bytes(),
///     br#"{"shoal":"client-hello","protocol":1,"role":"session","pid":777,"host_pid":700,"label":"claude-code"}"#
/// );
/// assert_eq!(ClientHello::parse(line.as_bytes())?, hello);
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// What the connection is for.
    pub role: Role,
    /// The client's process id (the proxy, or the `shoal` CLI).
    pub pid: u32,
    /// The process id of the MCP host that started the proxy, when known; for status and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<u32>,
    /// A human label for logs and status (e.g. the host's name); not used for any decision.
    pub label: String,
    /// The names of the environment variables this session sets otherwise than the daemon's
    /// (and so the server's) environment, sorted, at most [`ENV_NAMES_MAX`] of at most
    /// [`ENV_NAME_MAX_LEN`] bytes each; never a value. For logs and status: the server keeps
    /// the environment of the session that started it. Omitted when empty.
    ///
    /// ```
    /// use shoal_wire::{ClientHello, Role};
    ///
    /// let hello = ClientHello {
    ///     env_differs: vec!["DATABASE_URL".into()],
    ///     ..ClientHello { role: Role::Session, pid: 9, host_pid: None, label: "codex".into(), env_differs: Vec::new(), routed_frames: false, custody: false }
    /// };
    /// assert!(hello.to_line().as_bytes().ends_with(br#""label":"codex","env_differs":["DATABASE_URL"]}"#));
    /// ```
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_differs: Vec<String>,
    /// Asks the daemon to send this session's messages as routed frames
    /// ([`FrameCodec`](crate::FrameCodec)) instead of lines; a client sets it only when the
    /// daemon's hello offered them ([`DaemonHello::routed_frames`]). Omitted when false.
    ///
    /// ```
    /// use shoal_wire::{ClientHello, Role};
    ///
    /// let hello = ClientHello { role: Role::Session, pid: 9, host_pid: None, label: "codex".into(), env_differs: Vec::new(), routed_frames: true, custody: false };
    /// assert!(hello.to_line().as_bytes().ends_with(br#""label":"codex","routed_frames":true}"#));
    /// ```
    #[serde(default, skip_serializing_if = "is_false")]
    pub routed_frames: bool,
    /// Hands the daemon this session's host input in custody: the hello came with two
    /// descriptors (`SCM_RIGHTS`), the host's stdin and the writing end of a *custody pipe*,
    /// and the daemon reads the host's messages from the stdin itself, moving every byte it
    /// takes into the custody pipe first, where the proxy reads what was taken. A client sets
    /// it only when the daemon's hello offered it ([`DaemonHello::custody`]) and it also asked
    /// for routed frames, since the daemon tells it through them when to read the custody pipe
    /// ([`Frame::is_custody_notice`](crate::Frame::is_custody_notice)). Omitted when false.
    ///
    /// While the daemon holds the stdin, the client sends nothing on the connection; the first
    /// line it ever sends there is [`CUSTODY_RELEASE`], after which it reads its stdin itself.
    ///
    /// ```
    /// use shoal_wire::{ClientHello, Role};
    ///
    /// let hello = ClientHello { role: Role::Session, pid: 9, host_pid: None, label: "codex".into(), env_differs: Vec::new(), routed_frames: true, custody: true };
    /// assert!(hello.to_line().as_bytes().ends_with(br#""routed_frames":true,"custody":true}"#));
    /// ```
    #[serde(default, skip_serializing_if = "is_false")]
    pub custody: bool,
}

/// The line a session whose host input the daemon holds in custody ([`ClientHello::custody`])
/// sends first on its connection: stop taking from the host's stdin. The daemon forwards what
/// it took up to the last whole line, closes its end of the custody pipe, and sends a custody
/// notice; the session then reads the host's stdin itself from where the daemon stopped. Not
/// JSON-RPC: a daemon that never held custody of the session would refuse it as such.
///
/// ```
/// assert!(shoal_wire::CUSTODY_RELEASE.as_bytes().starts_with(br#"{"shoal":"#));
/// ```
pub const CUSTODY_RELEASE: &str = r#"{"shoal":"release-custody"}"#;

/// At most this many names in [`ClientHello::env_differs`], so that a hello stays far below
/// [`HELLO_MAX_LEN`] (16 × 64 bytes and their quotes).
///
/// ```
/// assert!(shoal_wire::ENV_NAMES_MAX * (shoal_wire::ENV_NAME_MAX_LEN + 3) < shoal_wire::HELLO_MAX_LEN / 2);
/// ```
pub const ENV_NAMES_MAX: usize = 16;

/// The longest name [`ClientHello::env_differs`] holds, in bytes.
///
/// ```
/// assert_eq!(shoal_wire::ENV_NAME_MAX_LEN, 64);
/// ```
pub const ENV_NAME_MAX_LEN: usize = 64;

impl DaemonHello {
    /// The hello as a line: marker and protocol first, then the fields.
    ///
    /// ```
    /// let hello = shoal_wire::DaemonHello { version: "0.1.0".into(), pid: 1, nonce: "n".into(), key: "k".into(), routed_frames: false, custody: false };
    /// assert!(hello.to_line().as_bytes().starts_with(br#"{"shoal":"daemon-hello","protocol":1,"#));
    /// ```
    pub fn to_line(&self) -> Line {
        hello_line(DAEMON_MARKER, self)
    }

    /// Parse a daemon hello line (without its newline), checking the marker and the protocol first.
    ///
    /// ```
    /// use shoal_wire::{DaemonHello, Error};
    ///
    /// let future = br#"{"shoal":"daemon-hello","protocol":2,"whatever":"changed"}"#;
    /// assert!(matches!(DaemonHello::parse(future), Err(Error::VersionMismatch { ours: 1, theirs: 2 })));
    /// assert!(matches!(DaemonHello::parse(b"SSH-2.0-OpenSSH"), Err(Error::HelloMalformed { .. })));
    /// ```
    pub fn parse(line: &[u8]) -> Result<DaemonHello, Error> {
        parse_hello(line, DAEMON_MARKER, "daemon hello")
    }
}

impl ClientHello {
    /// The hello as a line: marker and protocol first, then the fields.
    ///
    /// ```
    /// use shoal_wire::{ClientHello, Role};
    ///
    /// let hello = ClientHello { role: Role::Control, pid: 1, host_pid: None, label: "shoal status".into(), env_differs: Vec::new(), routed_frames: false, custody: false };
    /// assert_eq!(
    ///     hello.to_line().as_bytes(),
    ///     br#"{"shoal":"client-hello","protocol":1,"role":"control","pid":1,"label":"shoal status"}"#
    /// );
    /// ```
    pub fn to_line(&self) -> Line {
        hello_line(CLIENT_MARKER, self)
    }

    /// Parse a client hello line (without its newline), checking the marker and the protocol first.
    ///
    /// ```
    /// use shoal_wire::{ClientHello, Error};
    ///
    /// let daemon_line = br#"{"shoal":"daemon-hello","protocol":1,"version":"0.1.0","pid":1,"nonce":"n","key":"k"}"#;
    /// let error = ClientHello::parse(daemon_line).unwrap_err();
    /// assert_eq!(error.to_string(), "read the client hello: expected a client-hello, got a daemon-hello");
    /// ```
    pub fn parse(line: &[u8]) -> Result<ClientHello, Error> {
        parse_hello(line, CLIENT_MARKER, "client hello")
    }
}

/// A framed connection whose line codec the hello helpers may re-limit: `Framed` or `FramedRead`
/// over [`LineCodec`]. Sealed; implemented by tokio-util's types only.
///
/// ```
/// use shoal_wire::{LineCodec, LineStream};
/// use tokio_util::codec::FramedRead;
///
/// let mut framed = FramedRead::new(&b""[..], LineCodec::new());
/// assert_eq!(framed.line_codec().max_line_len(), shoal_wire::DEFAULT_MAX_LINE_LEN);
/// ```
pub trait LineStream:
    Stream<Item = Result<Result<Line, LineError>, Error>> + Unpin + sealed::Sealed
{
    /// The codec, to change its limit.
    fn line_codec(&mut self) -> &mut LineCodec;
}

impl<T: AsyncRead + Unpin> LineStream for FramedRead<T, LineCodec> {
    fn line_codec(&mut self) -> &mut LineCodec {
        self.decoder_mut()
    }
}

impl<T: AsyncRead + Unpin> LineStream for Framed<T, LineCodec> {
    fn line_codec(&mut self) -> &mut LineCodec {
        self.codec_mut()
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for tokio_util::codec::FramedRead<T, crate::LineCodec> {}
    impl<T> Sealed for tokio_util::codec::Framed<T, crate::LineCodec> {}
}

/// Read the daemon's hello from a freshly connected stream (client side), within `timeout`.
///
/// The line is read through the stream's own codec, limited to [`HELLO_MAX_LEN`] for this line
/// only, so bytes that follow it stay buffered in `framed` for the JSON-RPC that comes next.
/// Needs a Tokio runtime with time enabled.
///
/// ```
/// use shoal_wire::{DaemonHello, LineCodec, HELLO_TIMEOUT, read_daemon_hello};
/// use tokio_util::codec::FramedRead;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let hello = DaemonHello { version: "0.1.0".into(), pid: 9, nonce: "n".into(), key: "k".into(), routed_frames: false, custody: false };
/// let mut bytes = hello.to_line().as_bytes().to_vec();
/// bytes.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n");
/// let mut framed = FramedRead::new(&bytes[..], LineCodec::new());
/// assert_eq!(read_daemon_hello(&mut framed, HELLO_TIMEOUT).await?, hello);
/// # Ok::<(), shoal_wire::Error>(())
/// # }).unwrap();
/// ```
pub async fn read_daemon_hello<S: LineStream>(
    framed: &mut S,
    timeout: Duration,
) -> Result<DaemonHello, Error> {
    let line = read_hello_line(framed, timeout, "daemon hello").await?;
    DaemonHello::parse(line.as_bytes())
}

/// Read a client's hello from an accepted stream (daemon side), within `timeout`. Same bounds and
/// buffering as [`read_daemon_hello`].
///
/// ```
/// use shoal_wire::{ClientHello, Error, LineCodec, Role, read_client_hello};
/// use std::time::Duration;
/// use tokio_util::codec::FramedRead;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let flood = vec![b'x'; 10_000];
/// let mut framed = FramedRead::new(&flood[..], LineCodec::new());
/// let error = read_client_hello(&mut framed, Duration::from_secs(2)).await.unwrap_err();
/// assert!(matches!(error, Error::HelloTooLong { limit: 4096, .. }));
/// # });
/// ```
pub async fn read_client_hello<S: LineStream>(
    framed: &mut S,
    timeout: Duration,
) -> Result<ClientHello, Error> {
    let line = read_hello_line(framed, timeout, "client hello").await?;
    ClientHello::parse(line.as_bytes())
}

async fn read_hello_line<S: LineStream>(
    framed: &mut S,
    timeout: Duration,
    expected: &'static str,
) -> Result<Line, Error> {
    let previous_limit = framed.line_codec().max_line_len();
    framed.line_codec().set_max_line_len(HELLO_MAX_LEN);
    let next = poll_fn(|context| Pin::new(&mut *framed).poll_next(context));
    let outcome = tokio::time::timeout(timeout, next).await;
    // Restore the limit whatever happened: on success JSON-RPC follows on this stream.
    framed.line_codec().set_max_line_len(previous_limit);
    match outcome {
        Err(_elapsed) => Err(Error::HelloTimeout { expected, timeout }),
        Ok(None) => Err(Error::HelloClosed { expected }),
        Ok(Some(Err(error))) => Err(error),
        Ok(Some(Ok(Err(LineError::TooLong { limit })))) => {
            Err(Error::HelloTooLong { expected, limit })
        }
        Ok(Some(Ok(Err(error)))) => Err(Error::HelloMalformed {
            expected,
            detail: error.to_string(),
        }),
        Ok(Some(Ok(Ok(line)))) => Ok(line),
    }
}

/// Serialise a hello or control message (derived `Serialize`, string keys: cannot fail).
/// A hello line: the marker and our protocol number first (so any version can recognise it),
/// then the hello's own fields.
fn hello_line<T: Serialize>(marker: &'static str, hello: &T) -> Line {
    #[derive(Serialize)]
    struct Wire<'a, T> {
        shoal: &'static str,
        protocol: u32,
        #[serde(flatten)]
        hello: &'a T,
    }
    to_line(&Wire {
        shoal: marker,
        protocol: PROTOCOL,
        hello,
    })
}

pub(crate) fn to_line<T: Serialize>(message: &T) -> Line {
    let bytes = serde_json::to_vec(message).expect("wire structs always serialise to JSON");
    // Compact serde_json output is UTF-8 without raw newlines.
    Line::from_checked(bytes.into())
}

/// A short, escaped quote of what a peer sent, for error messages.
pub(crate) fn excerpt(line: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(&line[..line.len().min(EXCERPT_LEN)]).into_owned();
    if line.len() > EXCERPT_LEN {
        text.push('…');
    }
    format!("{text:?}")
}

fn parse_hello<T: serde::de::DeserializeOwned>(
    line: &[u8],
    marker: &'static str,
    expected: &'static str,
) -> Result<T, Error> {
    /// The part of a hello every protocol version shares.
    #[derive(Deserialize)]
    struct Probe {
        shoal: Option<String>,
        protocol: Option<u64>,
    }
    let malformed = |detail: String| Error::HelloMalformed { expected, detail };
    let probe: Probe = serde_json::from_slice(line).map_err(|_| {
        malformed(format!(
            "expected a shoal {marker} line, got {}",
            excerpt(line)
        ))
    })?;
    match probe.shoal.as_deref() {
        Some(found) if found == marker => {}
        Some(other @ (DAEMON_MARKER | CLIENT_MARKER)) => {
            return Err(malformed(format!("expected a {marker}, got a {other}")));
        }
        _ => {
            return Err(malformed(format!(
                "expected a shoal {marker} line, got {}",
                excerpt(line)
            )));
        }
    }
    let theirs = probe
        .protocol
        .ok_or_else(|| malformed(String::from("the `protocol` member is missing")))?;
    if theirs != u64::from(PROTOCOL) {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL,
            theirs,
        });
    }
    serde_json::from_slice(line).map_err(|error| malformed(format!("protocol {PROTOCOL}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_client(line: &str, expected: &str) {
        let rendered = match ClientHello::parse(line.as_bytes()) {
            Ok(hello) => format!("{hello:?}"),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(rendered, expected);
    }

    #[test]
    fn parses_client_hellos() {
        check_client(
            r#"{"shoal":"client-hello","protocol":1,"role":"control","pid":5,"label":"x","extra":[1]}"#,
            r#"ClientHello { role: Control, pid: 5, host_pid: None, label: "x", env_differs: [], routed_frames: false, custody: false }"#,
        );
        check_client(
            r#"{"protocol":7,"shoal":"client-hello"}"#,
            "error: agree on a wire protocol: this side speaks protocol 1, the peer speaks 7; \
             stop the older one (`shoal stop`) or use matching shoal versions",
        );
        check_client(
            r#"{"shoal":"client-hello","protocol":1,"role":"admin","pid":5,"label":"x"}"#,
            "error: read the client hello: protocol 1: unknown variant `admin`, expected \
             `session` or `control` at line 1 column 51",
        );
        check_client(
            r#"{"shoal":"client-hello"}"#,
            "error: read the client hello: the `protocol` member is missing",
        );
        check_client(
            r#"{"shoal":"client-hello","protocol":"1"}"#,
            r#"error: read the client hello: expected a shoal client-hello line, got "{\"shoal\":\"client-hello\",\"protocol\":\"1\"}""#,
        );
        check_client(
            "[1,2]",
            r#"error: read the client hello: expected a shoal client-hello line, got "[1,2]""#,
        );
        check_client(
            &format!("{{\"jsonrpc\":\"2.0\",\"method\":\"{}\"}}", "x".repeat(100)),
            r#"error: read the client hello: expected a shoal client-hello line, got "{\"jsonrpc\":\"2.0\",\"method\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…""#,
        );
    }
}
