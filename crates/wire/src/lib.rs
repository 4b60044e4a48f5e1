//! shoal's wire format: the versioned hello, newline-delimited JSON-RPC framing, and envelopes
//! that read only what routing needs and rewrite ids byte-exactly.
//!
//! This is the only crate that knows the bytes on the wire. It knows nothing about processes,
//! locks or sockets, and it does not log: it returns errors and typed verdicts.
//!
//! # A connection, end to end
//!
//! 1. The daemon writes [`DaemonHello::to_line`]; the client reads it with [`read_daemon_hello`],
//!    answers [`ClientHello::to_line`]; the daemon reads it with [`read_client_hello`]. Both reads
//!    are bounded ([`HELLO_MAX_LEN`], a timeout) and go through the connection's own [`LineCodec`],
//!    so nothing after the hello is lost.
//! 2. Every following line is a [`Line`] from the codec (or a [`LineError`] for that line only:
//!    too long, not UTF-8; the stream goes on).
//! 3. [`Envelope::parse`] classifies a line ([`Kind`]) and exposes `id`, `method`, progress tokens,
//!    `requestId`, `uri`, `subscriptionId`. Client lines are parsed with [`Validation::Full`],
//!    backend lines with [`Validation::Envelope`].
//! 4. [`Envelope::rewrite`] swaps ids and tokens for the daemon's own and back, touching no other
//!    byte; the [`Rewritten`] message is written by the same codec.
//! 5. A session that asked for them in its hello gets the daemon's messages as routed frames
//!    ([`frame_header`], [`FrameCodec`]): each says up front what it is and where its id is, so
//!    the proxy passes it on without reading it.
//! 6. [`error_response`], [`request_value`], [`notification_value`] and [`response_value`] build
//!    the lines the daemon writes itself (the `RawValue` forms [`request`], [`notification`] and
//!    [`response`] pass on JSON the caller already holds as text).
//!
//! ```
//! use shoal_wire::{Envelope, Field, Id, Kind, LineCodec, Validation};
//! use bytes::BytesMut;
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = LineCodec::new();
//! let mut input = BytesMut::from(&br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}
//! "#[..]);
//! let line = codec.decode(&mut input)?.unwrap()?;
//! let request = Envelope::parse(line, Validation::Full);
//! assert_eq!(request.kind(), Kind::Request);
//!
//! // To the backend under the daemon's id...
//! let mut to_backend = BytesMut::new();
//! codec.encode(request.rewrite_id(&Id::from_u64(1001))?, &mut to_backend)?;
//! assert_eq!(&to_backend[..], b"{\"jsonrpc\":\"2.0\",\"id\":1001,\"method\":\"tools/list\"}\n");
//!
//! // ...and the answer back under the client's.
//! let mut from_backend = BytesMut::from(&b"{\"jsonrpc\":\"2.0\",\"id\":1001,\"result\":{\"tools\":[]}}\n"[..]);
//! let response = Envelope::parse(codec.decode(&mut from_backend)?.unwrap()?, Validation::Envelope);
//! let to_client = response.rewrite(&[(Field::Id, &request.id().unwrap())])?.to_line();
//! assert_eq!(to_client.as_bytes(), br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod build;
mod codec;
mod control;
mod envelope;
mod error;
mod frame;
mod hello;
mod id;
mod line;
mod readiness;
mod scan;
mod words;

pub use build::{
    ErrorCode, error_response, notification, notification_value, request, request_value, response,
    response_value,
};
pub use codec::{DEFAULT_MAX_LINE_LEN, LineCodec};
pub use control::{BackendState, ControlRequest, ControlResponse, StatusReport};
pub use envelope::{Envelope, Field, Invalid, InvalidReason, Kind, Rewritten, Validation};
pub use error::{Error, LineError};
pub use frame::{CUSTODY_NOTICE, FRAME_HEADER_LEN, Frame, FrameCodec, frame_header};
pub use hello::{
    CUSTODY_RELEASE, ClientHello, DaemonHello, ENV_NAME_MAX_LEN, ENV_NAMES_MAX, HELLO_MAX_LEN,
    HELLO_TIMEOUT, LineStream, PROTOCOL, Role, read_client_hello, read_daemon_hello,
};
pub use id::Id;
pub use line::Line;
pub use readiness::Readiness;
