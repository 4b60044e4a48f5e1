//! Outboxes: unbounded in count, bounded in bytes, and never awaited by the hub.
//!
//! The hub is one task serving every client and the backend. If it ever awaited a full queue, one
//! client that stops reading (or a backend that stops reading its stdin while it blocks writing its
//! stdout) would stall everyone: a deadlock, not just a slowdown. So the hub only ever *pushes*:
//! a push that would take a queue over its byte budget fails at once, and the hub decides what that
//! means (a client is disconnected; a request to a backend that is not keeping up gets an error).
//! A writer task per queue does the awaiting and gives the bytes back to the budget as it writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use shoal_wire::{Line, LineCodec, Rewritten};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::Encoder;

/// One message on its way out: a line as received or built, or a rewritten envelope (boxed: it
/// carries its edits inline, and most messages are plain lines).
#[derive(Debug)]
pub(crate) enum Outgoing {
    Line(Line),
    Rewritten(Box<Rewritten>),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Outgoing::Line(line) => line.len(),
            Outgoing::Rewritten(rewritten) => rewritten.len(),
        }
    }
}

impl From<Line> for Outgoing {
    fn from(line: Line) -> Self {
        Outgoing::Line(line)
    }
}

impl From<Rewritten> for Outgoing {
    fn from(rewritten: Rewritten) -> Self {
        Outgoing::Rewritten(Box::new(rewritten))
    }
}

/// The sending side, held by the hub.
#[derive(Debug)]
pub(crate) struct Outbox {
    sender: mpsc::UnboundedSender<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    budget: usize,
}

/// Why a push failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue already holds `queued` bytes; this message would exceed the budget.
    Full { queued: usize },
    /// The writer is gone (the peer closed, or a write failed).
    Closed,
}

/// The receiving side, owned by a writer task.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    receiver: mpsc::UnboundedReceiver<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
}

/// A queue that refuses pushes beyond `budget` queued bytes. One message is always accepted into
/// an empty queue, whatever its size (the line codec already bounds a message), so a large result
/// can never be undeliverable.
pub(crate) fn outbox(budget: usize) -> (Outbox, OutboxReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            sender,
            queued_bytes: Arc::clone(&queued_bytes),
            budget,
        },
        OutboxReceiver {
            receiver,
            queued_bytes,
        },
    )
}

impl Outbox {
    pub(crate) fn push(&self, message: impl Into<Outgoing>) -> Result<(), PushError> {
        let message = message.into();
        let size = message.len() + 1;
        let queued = self.queued_bytes.load(Ordering::Acquire);
        if queued > 0 && queued + size > self.budget {
            return Err(PushError::Full { queued });
        }
        self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        self.sender.send(message).map_err(|_| {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            PushError::Closed
        })
    }

    /// Bytes waiting to be written.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }
}

impl OutboxReceiver {
    /// Write every message to `writer` until the [`Outbox`] is dropped and drained (`Ok`), or a
    /// write fails (`Err`). Messages already queued are batched into one write.
    pub(crate) async fn write_all_to(
        mut self,
        mut writer: impl AsyncWrite + Unpin,
    ) -> std::io::Result<()> {
        let mut codec = LineCodec::new();
        let mut buffer = BytesMut::new();
        while let Some(first) = self.receiver.recv().await {
            let mut message = Some(first);
            let mut batched = 0;
            // Batch what is already queued, up to a bound so that one write does not grow huge.
            while let Some(next) = message.take() {
                batched += next.len() + 1;
                let encoded = match next {
                    Outgoing::Line(line) => codec.encode(line, &mut buffer),
                    Outgoing::Rewritten(rewritten) => codec.encode(&*rewritten, &mut buffer),
                };
                debug_assert!(
                    encoded.is_ok(),
                    "lines and rewritten envelopes always encode"
                );
                if buffer.len() < WRITE_BATCH {
                    message = self.receiver.try_recv().ok();
                }
            }
            let written = writer.write_all(&buffer).await;
            buffer.clear();
            if buffer.capacity() > 4 * WRITE_BATCH {
                // Give back the memory of one huge message.
                buffer = BytesMut::new();
            }
            self.queued_bytes.fetch_sub(batched, Ordering::AcqRel);
            written?;
            writer.flush().await?;
        }
        let _ = writer.shutdown().await;
        Ok(())
    }
}

/// Stop batching once this much is buffered: large enough to amortise syscalls for small
/// messages, small enough not to double the memory of a burst.
const WRITE_BATCH: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line {
        Line::new(text.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn refuses_pushes_beyond_the_budget_but_always_takes_one() {
        let (outbox, _receiver) = outbox(10);
        outbox.push(line("0123456789abcdef")).unwrap();
        assert_eq!(
            outbox.push(line("x")),
            Err(PushError::Full { queued: 17 }),
            "a second message must not go over the budget"
        );
    }

    #[tokio::test]
    async fn writes_lines_and_gives_the_budget_back() {
        let (outbox, receiver) = outbox(64);
        outbox.push(line("{\"a\":1}")).unwrap();
        outbox.push(line("{\"b\":2}")).unwrap();
        let mut written = Vec::new();
        drop(outbox.sender.clone());
        let queued = Arc::clone(&outbox.queued_bytes);
        drop(outbox);
        receiver.write_all_to(&mut written).await.unwrap();
        assert_eq!(written, b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_closed_writer_refuses_pushes() {
        let (outbox, receiver) = outbox(64);
        drop(receiver);
        assert_eq!(outbox.push(line("{}")), Err(PushError::Closed));
        assert_eq!(outbox.queued_bytes(), 0);
    }
}
