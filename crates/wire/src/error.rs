//! The crate's error types: [`Error`] for failures, [`LineError`] for one rejected line.

use std::time::Duration;

/// Everything that can fail in `shoal-wire`.
///
/// A line that the codec rejects is *not* an `Error`: it is a [`LineError`] item in the stream, so
/// the connection survives it. An `Error` from a stream means the connection itself is unusable
/// (I/O failed) or, for the hello and control helpers, that the peer is not one we can talk to.
///
/// ```
/// use shoal_wire::{ClientHello, Error};
///
/// let error = ClientHello::parse(br#"{"shoal":"client-hello","protocol":999}"#).unwrap_err();
/// assert!(matches!(error, Error::VersionMismatch { theirs: 999, .. }));
/// assert!(error.is_version_mismatch());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading from or writing to the connection failed.
    #[error("read from or write to the connection")]
    Io(#[from] std::io::Error),
    /// No complete hello line arrived before the deadline.
    #[error("receive the {expected} within {timeout:?}: the peer sent no complete line")]
    HelloTimeout {
        /// Which hello was awaited: `"daemon hello"` or `"client hello"`.
        expected: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// The peer closed the connection before sending a hello line.
    #[error("receive the {expected}: the peer closed the connection first")]
    HelloClosed {
        /// Which hello was awaited.
        expected: &'static str,
    },
    /// The hello line is longer than [`HELLO_MAX_LEN`](crate::HELLO_MAX_LEN).
    #[error("read the {expected}: the line exceeds {limit} bytes")]
    HelloTooLong {
        /// Which hello was awaited.
        expected: &'static str,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The hello line is not a shoal hello of the expected kind.
    #[error("read the {expected}: {detail}")]
    HelloMalformed {
        /// Which hello was awaited.
        expected: &'static str,
        /// What was wrong, with a short excerpt of what the peer sent.
        detail: String,
    },
    /// The peer speaks another wire protocol version.
    #[error(
        "agree on a wire protocol: this side speaks protocol {ours}, the peer speaks {theirs}; \
         stop the older one (`shoal stop`) or use matching shoal versions"
    )]
    VersionMismatch {
        /// Our [`PROTOCOL`](crate::PROTOCOL).
        ours: u32,
        /// The protocol number the peer announced.
        theirs: u64,
    },
    /// A control message could not be decoded.
    #[error("parse a control {expected}: {detail}")]
    ControlMalformed {
        /// `"request"` or `"response"`.
        expected: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A well-formed control message names an operation or outcome this version does not know.
    #[error("handle control {expected} `{name}`: this shoal version does not support it")]
    ControlUnsupported {
        /// `"request"` or `"response"`.
        expected: &'static str,
        /// The unknown `op` (request) or `outcome` (response).
        name: String,
    },
    /// The line on a daemon's readiness pipe could not be decoded.
    #[error("read the daemon's readiness message: {detail}")]
    ReadinessMalformed {
        /// What was wrong, with an excerpt of the line.
        detail: String,
    },
    /// A rewrite named a field the message does not have (or named it twice).
    #[error("rewrite `{field}`: {problem}")]
    Rewrite {
        /// The field's path in the message, e.g. `params._meta.progressToken`.
        field: &'static str,
        /// `"the message has no such field"` or `"the field is listed twice"`.
        problem: &'static str,
    },
    /// A routed frame's header is not one, its message does not end where the header says, or
    /// its id range holds no id: the stream is out of step and cannot go on (see
    /// [`FrameCodec`](crate::FrameCodec)).
    #[error("read a routed frame: {detail}; the connection is out of step and is closed")]
    BadFrame {
        /// What was wrong (lengths and offsets, never message bytes).
        detail: String,
    },
    /// A byte string is not a JSON string or number, so it cannot be an id.
    #[error("use {excerpt} as a JSON-RPC id: it is not a JSON string or number")]
    InvalidId {
        /// A short, escaped excerpt of the rejected bytes.
        excerpt: String,
    },
    /// A message to encode contains a raw newline, which would split it in two on the wire.
    #[error("encode a message: it contains a raw newline at byte {position}")]
    NewlineInMessage {
        /// Offset of the first newline.
        position: usize,
    },
    /// A line was rejected; see [`LineError`].
    #[error(transparent)]
    Line(#[from] LineError),
}

impl Error {
    /// Whether this is a [`Error::VersionMismatch`]: the peer is a shoal of another protocol version,
    /// which callers usually report differently from a broken peer.
    ///
    /// ```
    /// use shoal_wire::DaemonHello;
    ///
    /// let error = DaemonHello::parse(br#"{"shoal":"daemon-hello","protocol":0}"#).unwrap_err();
    /// assert!(error.is_version_mismatch());
    /// ```
    pub fn is_version_mismatch(&self) -> bool {
        matches!(self, Error::VersionMismatch { .. })
    }

    /// Whether this is a [`Error::ControlUnsupported`]: a well-formed control message of a kind this
    /// version does not know. A daemon answers it with [`ControlResponse::Error`](crate::ControlResponse::Error)
    /// and keeps the connection.
    ///
    /// ```
    /// use shoal_wire::ControlRequest;
    ///
    /// let error = ControlRequest::parse(br#"{"op":"reticulate"}"#).unwrap_err();
    /// assert!(error.is_unsupported());
    /// ```
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::ControlUnsupported { .. })
    }
}

/// Why the codec rejected one line. The stream goes on with the next line.
///
/// ```
/// use shoal_wire::{Line, LineError};
///
/// assert_eq!(Line::new(&b"{}\n{}"[..]), Err(LineError::Newline { position: 2 }));
/// assert_eq!(
///     LineError::TooLong { limit: 4096 }.to_string(),
///     "read a message: the line exceeds the 4096-byte limit"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line is longer than the codec's maximum; its bytes were discarded up to the next newline.
    #[error("read a message: the line exceeds the {limit}-byte limit")]
    TooLong {
        /// The maximum line length in force.
        limit: usize,
    },
    /// The line is not valid UTF-8, which JSON text on the wire must be.
    #[error("read a message: the line is not valid UTF-8 (first bad byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The bytes contain a raw newline (only from [`Line::new`](crate::Line::new), never from the codec).
    #[error("read a message: it contains a raw newline at byte {position}")]
    Newline {
        /// Offset of the first newline.
        position: usize,
    },
}
