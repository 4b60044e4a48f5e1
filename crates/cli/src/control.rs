//! The control client shared by `shoal status`, `stop` and `restart`: connect to a daemon's
//! socket, exchange hellos as role `control`, send one request, read one response, each step
//! under a deadline.
//!
//! It lives in the CLI for now; `shoal proxy` speaks the session role and needs none of it. If
//! another crate needs to drive a daemon (xtask, a future library API), this module moves to
//! `shoal-wire` (minus the socket) or `shoal-daemon` as is: it depends only on them and tokio.
//!
//! Nothing here can hang: `connect` on a Unix socket is non-blocking under tokio (a full backlog
//! is an error, not a wait), the daemon's hello is read through a 4 KiB-limited codec within
//! [`HELLO_TIMEOUT`], and every later read has the deadline its caller gives.

use std::io;
use std::path::Path;
use std::time::Duration;

use shoal_ipc::{next_line, send_hello, write_line};
use shoal_wire::{
    ControlRequest, ControlResponse, DaemonHello, HELLO_TIMEOUT, LineCodec, Role, read_daemon_hello,
};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedRead;

/// Control responses are small; a daemon sending more is broken.
const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// Why a control exchange did not happen. The first three mean the same to a user: no daemon
/// is serving there any more (or, for `ClosedBeforeHello`, it is on its way out).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// The socket file is gone: the daemon exited (or never got as far as binding).
    #[error("its socket is gone")]
    NoSocket,
    /// Nobody listens on the socket: the daemon was killed without cleaning up.
    #[error("nothing listens on its socket")]
    Refused,
    /// The daemon accepted, then closed before its hello: it is exiting.
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
    /// Anything else: an I/O error or a message that does not parse.
    #[error(transparent)]
    Other(anyhow::Error),
}

impl ControlError {
    /// Whether this means "no daemon runs there": the directory is stale.
    pub(crate) fn is_stale(&self) -> bool {
        matches!(self, ControlError::NoSocket | ControlError::Refused)
    }

    /// As an `anyhow` error, without wrapping one that already is.
    pub(crate) fn into_anyhow(self) -> anyhow::Error {
        match self {
            ControlError::Other(error) => error,
            error => anyhow::Error::new(error),
        }
    }
}

/// An open control connection, hellos exchanged.
#[derive(Debug)]
pub(crate) struct ControlConnection {
    reader: FramedRead<OwnedReadHalf, LineCodec>,
    write: OwnedWriteHalf,
    hello: DaemonHello,
}

impl ControlConnection {
    /// Connect to `socket`, read the daemon's hello (4 KiB, [`HELLO_TIMEOUT`]), check that it
    /// serves key `key` (when given), and answer with a `control` hello labelled `label`.
    pub(crate) async fn open(
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
                    _ => ControlError::Other(
                        anyhow::Error::new(error)
                            .context(format!("connect to {}", socket.display())),
                    ),
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
            Err(error) => return Err(ControlError::Other(error.into())),
        };
        if let Some(expected) = key
            && hello.key != expected
        {
            return Err(ControlError::WrongKey {
                expected: expected.to_owned(),
                found: hello.key,
            });
        }
        send_hello(&mut write, Role::Control, label, None)
            .await
            .map_err(|error| {
                ControlError::Other(anyhow::Error::new(error).context("send the hello"))
            })?;
        Ok(ControlConnection {
            reader,
            write,
            hello,
        })
    }

    /// The daemon's hello.
    pub(crate) fn hello(&self) -> &DaemonHello {
        &self.hello
    }

    /// Send `request` and read its response within `timeout`.
    pub(crate) async fn request(
        &mut self,
        request: &ControlRequest,
        timeout: Duration,
    ) -> Result<ControlResponse, ControlError> {
        if let Err(error) = write_line(&mut self.write, &request.to_line()).await {
            return Err(match error.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    ControlError::ClosedBeforeHello
                }
                _ => ControlError::Other(anyhow::Error::new(error).context("send the request")),
            });
        }
        match tokio::time::timeout(timeout, next_line(&mut self.reader)).await {
            Err(_elapsed) => Err(ControlError::Timeout(timeout)),
            Ok(None) => Err(ControlError::Other(anyhow::anyhow!(
                "the daemon closed the connection without answering"
            ))),
            Ok(Some(Err(error))) => Err(ControlError::Other(error.into())),
            Ok(Some(Ok(Err(error)))) => Err(ControlError::Other(
                anyhow::Error::new(error).context("read the daemon's answer"),
            )),
            Ok(Some(Ok(Ok(line)))) => ControlResponse::parse(line.as_bytes())
                .map_err(|error| ControlError::Other(error.into())),
        }
    }

    /// Wait until the daemon closes the connection (it does so last, as its process ends),
    /// discarding anything it sends; `false` if it is still open after `timeout`.
    pub(crate) async fn closed(mut self, timeout: Duration) -> bool {
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

/// A current-thread runtime for the CLI's short-lived async work (sockets and deadlines).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}
