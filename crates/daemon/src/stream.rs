//! Reading lines from a framed stream without pulling in a futures utility crate.

use std::future::poll_fn;
use std::pin::Pin;

use futures_core::Stream;
use shoal_wire::{Line, LineError};

/// The next item of a `FramedRead<_, LineCodec>`: `None` at EOF, `Some(Err(_))` on an I/O error,
/// `Some(Ok(Err(_)))` for a line the codec rejected (the stream goes on).
pub(crate) async fn next_line<S>(
    stream: &mut S,
) -> Option<Result<Result<Line, LineError>, shoal_wire::Error>>
where
    S: Stream<Item = Result<Result<Line, LineError>, shoal_wire::Error>> + Unpin,
{
    poll_fn(|context| Pin::new(&mut *stream).poll_next(context)).await
}
