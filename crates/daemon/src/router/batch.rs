//! JSON-RPC batches (2025-03-26): split into single messages (the backend never sees an array) and
//! the answers joined back into one array, sent when the last request of the batch is answered.

use std::collections::HashMap;

use bytes::BytesMut;
use shoal_wire::{Id, Line};

use crate::outbox::Outgoing;
use crate::own_keys::OwnKeyMap;

/// The open batches of one client.
#[derive(Debug, Default)]
pub(super) struct Batches {
    next: u64,
    open: OwnKeyMap<u64, Batch>,
    /// Request id → the batches it came in, oldest first: a client may reuse an id within a
    /// batch or across batches, and each of those requests still gets its own answer.
    members: HashMap<Id, Vec<u64>>,
}

#[derive(Debug, Default)]
struct Batch {
    /// Requests not answered yet.
    waiting: usize,
    answers: Vec<Outgoing>,
    /// Still being split: answers given while splitting must not close it early.
    splitting: bool,
}

impl Batches {
    pub(super) fn open(&mut self) -> u64 {
        let batch = self.next;
        self.next += 1;
        self.open.insert(
            batch,
            Batch {
                splitting: true,
                ..Batch::default()
            },
        );
        batch
    }

    /// Request `id` of `batch` will be answered later.
    pub(super) fn expect(&mut self, batch: u64, id: Id) {
        if let Some(open) = self.open.get_mut(&batch) {
            open.waiting += 1;
            self.members.entry(id).or_default().push(batch);
        }
    }

    /// An answer with no request to wait for (an invalid element).
    pub(super) fn add(&mut self, batch: u64, answer: Outgoing) {
        if let Some(open) = self.open.get_mut(&batch) {
            open.answers.push(answer);
        }
    }

    /// The batch is split. Returns the joined answer if nothing is left to wait for.
    pub(super) fn close(&mut self, batch: u64) -> Option<Line> {
        if let Some(open) = self.open.get_mut(&batch) {
            open.splitting = false;
        }
        self.finish(batch)
    }

    /// The answer to request `id`: kept if it belongs to a batch (`Ok`, with the joined answer
    /// once the batch is complete), handed back otherwise.
    pub(super) fn answered(&mut self, id: &Id, answer: Outgoing) -> Result<Option<Line>, Outgoing> {
        // The common case, on every answer: no batch open, nothing to hash.
        if self.members.is_empty() {
            return Err(answer);
        }
        let Some(batch) = self.take_member(id) else {
            return Err(answer);
        };
        let Some(open) = self.open.get_mut(&batch) else {
            return Err(answer);
        };
        open.answers.push(answer);
        open.waiting -= 1;
        Ok(self.finish(batch))
    }

    /// Request `id` was cancelled and may never be answered.
    pub(super) fn cancelled(&mut self, id: &Id) -> Option<Line> {
        let batch = self.take_member(id)?;
        let open = self.open.get_mut(&batch)?;
        open.waiting -= 1;
        self.finish(batch)
    }

    /// The oldest batch still waiting for a request with this id.
    fn take_member(&mut self, id: &Id) -> Option<u64> {
        let batches = self.members.get_mut(id)?;
        let batch = batches.remove(0);
        if batches.is_empty() {
            self.members.remove(id);
        }
        Some(batch)
    }

    fn finish(&mut self, batch: u64) -> Option<Line> {
        let open = self.open.get(&batch)?;
        if open.splitting || open.waiting > 0 {
            return None;
        }
        let open = self.open.remove(&batch)?;
        // A batch of notifications (or cancelled requests) is answered with nothing at all.
        (!open.answers.is_empty()).then(|| join(&open.answers))
    }
}

fn join(answers: &[Outgoing]) -> Line {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(b"[");
    for (index, answer) in answers.iter().enumerate() {
        if index > 0 {
            bytes.extend_from_slice(b",");
        }
        match answer {
            Outgoing::Line(line) => bytes.extend_from_slice(line.as_bytes()),
            Outgoing::Rewritten(rewritten) => rewritten.write_to(&mut bytes),
        }
    }
    bytes.extend_from_slice(b"]");
    Line::new(bytes.freeze()).expect("joined lines contain no newline")
}
