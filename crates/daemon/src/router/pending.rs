//! Client messages held while the backend starts: in arrival order, bounded in bytes.
//!
//! Invariant: `bytes` is the sum of the held lines' lengths, and never exceeds
//! [`MAX_PENDING_BYTES`]; a message that would exceed it is handed back to the caller to refuse.
//! Held messages leave in arrival order, all at once, when the backend is initialized.

use std::collections::VecDeque;

use shoal_wire::{Envelope, Id, Kind};

use super::ClientId;

/// Client messages queued while the backend starts, in bytes. Clients are throttled by the hub's
/// bounded event channel, but a start-up can take long; past this, requests get an error rather
/// than growing the daemon without limit.
pub(super) const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct Pending {
    queue: VecDeque<(ClientId, Envelope)>,
    bytes: usize,
}

impl Pending {
    /// Hold `envelope`; when the queue is full it is handed back (`Some`) for the caller to
    /// refuse.
    pub(super) fn hold(&mut self, client: ClientId, envelope: Envelope) -> Option<Envelope> {
        if self.bytes + envelope.line().len() > MAX_PENDING_BYTES {
            return Some(envelope);
        }
        self.bytes += envelope.line().len();
        self.queue.push_back((client, envelope));
        None
    }

    /// Forget what `client` queued.
    pub(super) fn client_left(&mut self, client: ClientId) {
        let bytes = &mut self.bytes;
        self.queue.retain(|(owner, envelope)| {
            let keep = *owner != client;
            if !keep {
                *bytes -= envelope.line().len();
            }
            keep
        });
    }

    /// `client` cancelled its request `id`: forget it if it is still held. Returns whether it was.
    pub(super) fn cancel(&mut self, client: ClientId, id: &Id) -> bool {
        let position = self.queue.iter().position(|(owner, queued)| {
            *owner == client && queued.kind() == Kind::Request && queued.id().as_ref() == Some(id)
        });
        match position.and_then(|position| self.queue.remove(position)) {
            Some((_, queued)) => {
                self.bytes -= queued.line().len();
                true
            }
            None => false,
        }
    }

    /// Everything held, in arrival order; the queue is empty after.
    pub(super) fn take_all(&mut self) -> VecDeque<(ClientId, Envelope)> {
        self.bytes = 0;
        std::mem::take(&mut self.queue)
    }
}
