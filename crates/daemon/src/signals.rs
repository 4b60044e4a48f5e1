//! Signals as events for the hub's main loop.
//!
//! - SIGTERM, SIGINT: graceful stop (answer what is in flight with an error, stop the backend,
//!   clean up).
//! - SIGHUP: ignored. The daemon is detached; a hang-up from a terminal it was once started from
//!   means nothing to it. A handler, not `SIG_IGN`, because an ignored disposition is inherited
//!   across `exec` and the backend must keep the default.
//! - SIGPIPE: ignored by the Rust runtime before `main`; writes to a closed socket fail with
//!   `EPIPE` instead. Rust's `Command` restores the default for the backend.

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// A signal the hub acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignalEvent {
    /// SIGTERM or SIGINT: stop gracefully.
    Stop(&'static str),
}

pub(crate) struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    pub(crate) fn install() -> io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal that matters; SIGHUP is logged and swallowed.
    pub(crate) async fn recv(&mut self) -> SignalEvent {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return SignalEvent::Stop("SIGTERM"),
                _ = self.interrupt.recv() => return SignalEvent::Stop("SIGINT"),
                _ = self.hangup.recv() => tracing::debug!("ignored SIGHUP"),
            }
        }
    }
}
