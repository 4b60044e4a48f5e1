//! What shoal's daemon, proxy and CLI share on one machine, so that each is written once:
//!
//! - where a daemon lives: its identity ([`DaemonKey`], [`KeyId`]), the files of its key
//!   ([`DaemonPaths`], [`resolve_runtime_dir`]) and what it records about itself ([`DaemonMeta`]);
//! - how to talk to it: the socket halves registered for readability only ([`socket`]), and
//!   reading and writing whole lines (and frames) on them ([`next_line`], [`next_item`],
//!   [`write_line`]), and the answer to a
//!   daemon's hello ([`client_hello`], [`send_hello`]), and the control client ([`control`]);
//! - what both must agree a message means: which messages are a session's state ([`session`]).
//!
//! It knows the layout, the bytes' framing and that one list of methods, not how messages are
//! parsed or routed (`shoal-wire`, the daemon's router), nor how daemons are started or locked
//! (`shoal-proxy`, `shoal-daemon`, `shoal-lockfile`).

pub mod control;
#[cfg(target_os = "linux")]
pub mod custody;
mod key;
mod lines;
mod meta;
mod paths;
pub mod session;
pub mod socket;

pub use key::{DaemonKey, KeyId};
pub use lines::{KEPT_READ_BUFFER, client_hello, next_item, next_line, send_hello, write_line};
pub use meta::{DaemonExit, DaemonMeta};
pub use paths::{DaemonPaths, MAX_SOCKET_PATH, RuntimeDirSource, resolve_runtime_dir};
