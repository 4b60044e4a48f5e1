//! The control client: connect to a daemon's socket, exchange hellos as role `control`, send
//! one request, read one response, each step under a deadline. `shoal status`, `stop` and
//! `restart` use it, and so do the benchmarks and race tests that drive a daemon.
//!
//! Nothing here can hang: `connect` on a Unix socket is non-blocking under tokio (a full backlog
//! is an error, not a wait), the daemon's hello is read at most 4 KiB long within
//! [`HELLO_TIMEOUT`], and every later read has the deadline its caller gives.

use std::io;
use std::path::Path;
use std::time::Duration;

use shoal_wire::{
    ControlRequest, ControlResponse, DaemonHello, HELLO_TIMEOUT, LineCodec, LineError, Role,
    read_daemon_hello,
};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedRead;

use crate::{next_line, send_hello, write_line};

/// Control responses are small; a daemon sending more is broken.
const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// Why a control exchange did not happen. The first two mean that no daemon serves there any
/// more ([`ControlError::is_stale`]); `ClosedBeforeHello` that it is on its way out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket file is gone: the daemon exited (or never got as far as binding).
    #[error("its socket is gone")]
    NoSocket,
    /// Nobody listens on the socket: the daemon was killed without cleaning up.
    #[error("nothing listens on its socket")]
    Refused,
    /// The daemon accepted, then closed before its hello (or before taking the request): it is
    /// exiting.
    #[error("it closed the connection before its hello (it is exiting)")]
    ClosedBeforeHello,
    /// No answer within the deadline: the daemon is wedged or overloaded.
    #[error("it did not answer within {0:?}")]
    Timeout(Duration),
    /// The daemon speaks another wire protocol (another shoal version).
    #[error("it speaks wire protocol {theirs}, this shoal speaks {ours}")]
    OtherProtocol {
        /// Ours.
        ours: u32,
        /// The daemon's.
        theirs: u64,
    },
    /// The peer is not the daemon this directory belongs to (its hello names another key).
    #[error("it answered for key {found}, not {expected}")]
    WrongKey {
        /// The key dir's name.
        expected: String,
        /// The key in its hello.
        found: String,
    },
    /// The daemon closed the connection after the request, without an answer.
    #[error("it closed the connection without answering")]
    Unanswered,
    /// The daemon answered with something that is not the answer the caller can use.
    #[error("it answered {0}")]
    Unexpected(String),
    /// A socket operation failed; `doing` says which.
    #[error("{doing}")]
    Io {
        /// What was being done: "connect to /run/…/daemon.sock", "send the request".
        doing: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The daemon's hello or answer does not parse.
    #[error(transparent)]
    Wire(#[from] shoal_wire::Error),
    /// The daemon's answer is not a line (too long, not UTF-8).
    #[error("its answer is not a valid line")]
    Line(#[source] LineError),
}

impl ControlError {
    /// Whether this means "no daemon runs there": the directory is stale.
    pub fn is_stale(&self) -> bool {
        matches!(self, ControlError::NoSocket | ControlError::Refused)
    }
}

/// An open control connection, hellos exchanged.
#[derive(Debug)]
pub struct ControlConnection {
    reader: FramedRead<OwnedReadHalf, LineCodec>,
    write: OwnedWriteHalf,
    hello: DaemonHello,
}

impl ControlConnection {
    /// Connect to `socket`, read the daemon's hello (4 KiB, [`HELLO_TIMEOUT`]), check that it
    /// serves key `key` (when given), and answer with a `control` hello labelled `label`.
    pub async fn open(
        socket: &Path,
        key: Option<&str>,
        label: &str,
    ) -> Result<ControlConnection, ControlError> {
        let stream = match UnixStream::connect(socket).await {
            Ok(stream) => stream,
            Err(error) => {
                return Err(match error.kind() {
                    io::ErrorKind::NotFound => ControlError::NoSocket,
                    io::ErrorKind::ConnectionRefused => ControlError::Refused,
                    // A full backlog: the daemon is not accepting.
                    io::ErrorKind::WouldBlock => ControlError::Timeout(Duration::ZERO),
                    _ => ControlError::Io {
                        doing: format!("connect to {}", socket.display()),
                        source: error,
                    },
                });
            }
        };
        let (read, mut write) = stream.into_split();
        let mut reader = FramedRead::new(read, LineCodec::with_max_line_len(MAX_RESPONSE_LEN));
        let hello = match read_daemon_hello(&mut reader, HELLO_TIMEOUT).await {
            Ok(hello) => hello,
            Err(shoal_wire::Error::HelloTimeout { timeout, .. }) => {
                return Err(ControlError::Timeout(timeout));
            }
            Err(shoal_wire::Error::HelloClosed { .. }) => {
                return Err(ControlError::ClosedBeforeHello);
            }
            Err(shoal_wire::Error::VersionMismatch { ours, theirs }) => {
                return Err(ControlError::OtherProtocol { ours, theirs });
            }
            Err(shoal_wire::Error::Io(error)) if error.kind() == io::ErrorKind::ConnectionReset => {
                return Err(ControlError::ClosedBeforeHello);
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(expected) = key
            && hello.key != expected
        {
            return Err(ControlError::WrongKey {
                expected: expected.to_owned(),
                found: hello.key,
            });
        }
        send_hello(&mut write, Role::Control, label, None, Vec::new(), false)
            .await
            .map_err(|source| ControlError::Io {
                doing: "send the hello".to_owned(),
                source,
            })?;
        Ok(ControlConnection {
            reader,
            write,
            hello,
        })
    }

    /// The daemon's hello.
    pub fn hello(&self) -> &DaemonHello {
        &self.hello
    }

    /// Send `request` and read its response within `timeout`.
    pub async fn request(
        &mut self,
        request: &ControlRequest,
        timeout: Duration,
    ) -> Result<ControlResponse, ControlError> {
        if let Err(source) = write_line(&mut self.write, &request.to_line()).await {
            return Err(match source.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    ControlError::ClosedBeforeHello
                }
                _ => ControlError::Io {
                    doing: "send the request".to_owned(),
                    source,
                },
            });
        }
        match tokio::time::timeout(timeout, next_line(&mut self.reader)).await {
            Err(_elapsed) => Err(ControlError::Timeout(timeout)),
            Ok(None) => Err(ControlError::Unanswered),
            Ok(Some(Err(error))) => Err(error.into()),
            Ok(Some(Ok(Err(error)))) => Err(ControlError::Line(error)),
            Ok(Some(Ok(Ok(line)))) => Ok(ControlResponse::parse(line.as_bytes())?),
        }
    }

    /// Wait until the daemon closes the connection (it does so last, as its process ends),
    /// discarding anything it sends; `false` if it is still open after `timeout`.
    pub async fn closed(mut self, timeout: Duration) -> bool {
        let eof = async {
            loop {
                match next_line(&mut self.reader).await {
                    None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(timeout, eof).await.is_ok()
    }
}
