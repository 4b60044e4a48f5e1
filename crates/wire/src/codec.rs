//! [`LineCodec`]: newline-delimited JSON framing with a size limit checked before buffering.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::line::check_utf8;
use crate::{Error, Line, LineError, Rewritten};

/// Default maximum length of one message, in bytes, without its line terminator: 32 MiB.
///
/// Why this size: tool results carry images as base64 (a 5 MB screenshot is ~6.7 MB of text) and
/// whole files as text, so several MiB must pass; several such images in one result should too. Model
/// APIs cap a whole request at about this size (Anthropic's Messages API rejects requests over
/// 32 MB), so a bigger single result could not reach the model anyway. The limit also bounds what
/// a misbehaving peer can make the daemon hold per connection.
///
/// ```
/// assert_eq!(shoal_wire::DEFAULT_MAX_LINE_LEN, 32 * 1024 * 1024);
/// ```
pub const DEFAULT_MAX_LINE_LEN: usize = 32 * 1024 * 1024;

/// Above this capacity, a read buffer emptied while discarding an oversized line is replaced by a
/// small one, so that one huge line does not pin a huge allocation for the rest of the connection.
const DISCARD_RELEASE_CAPACITY: usize = 1024 * 1024;

/// The capacity of the replacement buffer: tokio-util's own initial read-buffer size.
const FRESH_BUFFER_CAPACITY: usize = 8 * 1024;

/// The newline search runs over blocks of this many bytes, and each block searched is checked for
/// ASCII right away, while it is still in L1 cache, instead of in a second pass over the whole line
/// once its end is found. This made the 1 MiB envelope benchmark about 15 % faster than `memchr`
/// over the line followed by `is_ascii` (4 KiB measured best of 2–32 KiB).
const SEARCH_BLOCK: usize = 4 * 1024;

/// Newline-delimited JSON-RPC framing for tokio-util's `FramedRead`/`FramedWrite`/`Framed`.
///
/// Decoding yields `Result<Line, LineError>` items: a bad line (too long, not UTF-8) is an item,
/// not a stream error, because tokio-util stops a stream at its first `Err`. The stream's own
/// `Err` is only for I/O. Details:
///
/// - The limit is checked before buffering past it: once more than `max_line_len + 1` bytes of one
///   line are buffered without a newline, they are dropped, [`LineError::TooLong`] is yielded, and
///   the rest of the line is skipped as it arrives. The buffer never holds more than the limit
///   plus one read.
/// - `\r\n` is accepted as a terminator; blank (whitespace-only) lines are skipped.
/// - A last line without a newline at end of stream is still yielded.
/// - Frames are split off the read buffer (no copy); the search for `\n` resumes where the previous
///   call stopped, so a large line arriving in many reads is scanned once. A line found whole in
///   one call is checked for UTF-8 as it is searched (ASCII, block by block), not in a second pass.
///
/// Encoding writes a [`Line`] or a [`Rewritten`] message followed by `\n`.
///
/// ```
/// use bytes::BytesMut;
/// use shoal_wire::{LineCodec, LineError};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = LineCodec::with_max_line_len(8);
/// let mut buffer = BytesMut::from(&b"{\"a\":1}\r\n\n[1,2,3,4,5,6]\n{}\n"[..]);
/// let first = codec.decode(&mut buffer)?.unwrap().unwrap();
/// assert_eq!(first.as_bytes(), b"{\"a\":1}");
/// assert_eq!(codec.decode(&mut buffer)?, Some(Err(LineError::TooLong { limit: 8 })));
/// assert_eq!(codec.decode(&mut buffer)?.unwrap().unwrap().as_bytes(), b"{}");
/// assert_eq!(codec.decode(&mut buffer)?, None);
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LineCodec {
    max_line_len: usize,
    /// Where the search for `\n` resumes in the read buffer (everything before it was searched).
    next_index: usize,
    /// Inside an oversized line: drop bytes up to and including the next `\n`.
    discarding: bool,
    /// At EOF, decode bytes after the last newline as a final line (see
    /// [`LineCodec::set_keep_partial_last_line`]).
    keep_partial_last_line: bool,
}

impl LineCodec {
    /// A codec with [`DEFAULT_MAX_LINE_LEN`].
    ///
    /// ```
    /// let codec = shoal_wire::LineCodec::new();
    /// assert_eq!(codec.max_line_len(), shoal_wire::DEFAULT_MAX_LINE_LEN);
    /// ```
    pub fn new() -> LineCodec {
        LineCodec::with_max_line_len(DEFAULT_MAX_LINE_LEN)
    }

    /// A codec rejecting lines longer than `max_line_len` bytes (terminator not counted).
    ///
    /// ```
    /// let codec = shoal_wire::LineCodec::with_max_line_len(4096);
    /// assert_eq!(codec.max_line_len(), 4096);
    /// ```
    pub fn with_max_line_len(max_line_len: usize) -> LineCodec {
        LineCodec {
            max_line_len,
            next_index: 0,
            discarding: false,
            keep_partial_last_line: true,
        }
    }

    /// The limit in force.
    ///
    /// ```
    /// assert_eq!(shoal_wire::LineCodec::with_max_line_len(10).max_line_len(), 10);
    /// ```
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// Change the limit, e.g. to read the hello at [`HELLO_MAX_LEN`](crate::HELLO_MAX_LEN) and
    /// then raise it for JSON-RPC on the same stream. Applies to the line being read, too.
    ///
    /// ```
    /// let mut codec = shoal_wire::LineCodec::with_max_line_len(4096);
    /// codec.set_max_line_len(1 << 20);
    /// assert_eq!(codec.max_line_len(), 1 << 20);
    /// ```
    pub fn set_max_line_len(&mut self, max_line_len: usize) {
        self.max_line_len = max_line_len;
    }

    /// Whether bytes after the last newline at EOF are decoded as a final line (the default: a
    /// server that exits without a final newline still meant its last message), or discarded.
    /// Discard them when reading a peer that always ends its lines, such as a shoal daemon: for
    /// it, a tail without a newline can only be a write cut short (the peer died or cut the
    /// connection mid-message), and decoding it would hand on a torn message.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut codec = shoal_wire::LineCodec::new();
    /// codec.set_keep_partial_last_line(false);
    /// let mut buffer = BytesMut::from(&b"{\"id\":1}\n{\"id\":2,\"res"[..]);
    /// assert_eq!(codec.decode_eof(&mut buffer)?.unwrap()?.as_bytes(), b"{\"id\":1}");
    /// assert_eq!(codec.decode_eof(&mut buffer)?, None, "the torn tail is dropped");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_keep_partial_last_line(&mut self, keep: bool) {
        self.keep_partial_last_line = keep;
    }

    /// Skip the rest of an oversized line; true once its newline was consumed.
    fn discard(&mut self, buffer: &mut BytesMut) -> bool {
        match memchr::memchr(b'\n', buffer) {
            Some(newline) => {
                buffer.advance(newline + 1);
                self.discarding = false;
                true
            }
            None => {
                drop_all(buffer);
                false
            }
        }
    }

    /// Turn the bytes of one line (terminator removed) into an item; `None` for a blank line.
    /// `ascii_prefix`: how many of its first bytes are already known to be ASCII.
    fn finish_line(
        &self,
        mut line: BytesMut,
        ascii_prefix: usize,
    ) -> Option<Result<Line, LineError>> {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_line_len {
            return Some(Err(LineError::TooLong {
                limit: self.max_line_len,
            }));
        }
        if line.iter().all(|byte| matches!(byte, b' ' | b'\t' | b'\r')) {
            return None;
        }
        if ascii_prefix < line.len() {
            // An ASCII prefix ends on a character boundary: the rest is valid UTF-8 on its own
            // exactly when the whole line is.
            match check_utf8(&line[ascii_prefix..]) {
                Ok(()) => {}
                Err(LineError::NotUtf8 { valid_up_to }) => {
                    return Some(Err(LineError::NotUtf8 {
                        valid_up_to: ascii_prefix + valid_up_to,
                    }));
                }
                Err(other) => return Some(Err(other)),
            }
        }
        Some(Ok(Line::from_checked(line.freeze())))
    }
}

impl Default for LineCodec {
    fn default() -> LineCodec {
        LineCodec::new()
    }
}

impl Decoder for LineCodec {
    type Item = Result<Line, LineError>;
    type Error = Error;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        loop {
            if self.discarding && !self.discard(buffer) {
                return Ok(None);
            }
            // `min`: a caller may hand us a different buffer than last time; never index past it.
            let start = self.next_index.min(buffer.len());
            let (found, ascii_prefix) = find_newline(buffer, start);
            let Some(newline) = found else {
                // `max_line_len + 1`: the last buffered byte may be the `\r` of a `\r\n` that ends a
                // line of exactly the maximum length. Past that, the line is too long whatever
                // follows, so the verdict does not depend on how the input was split into reads.
                if buffer.len() > self.max_line_len.saturating_add(1) {
                    drop_all(buffer);
                    self.next_index = 0;
                    self.discarding = true;
                    return Ok(Some(Err(LineError::TooLong {
                        limit: self.max_line_len,
                    })));
                }
                self.next_index = buffer.len();
                return Ok(None);
            };
            self.next_index = 0;
            let mut line = buffer.split_to(newline + 1);
            line.truncate(newline);
            if let Some(item) = self.finish_line(line, ascii_prefix) {
                return Ok(Some(item));
            }
        }
    }

    fn decode_eof(&mut self, buffer: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        if let Some(item) = self.decode(buffer)? {
            return Ok(Some(item));
        }
        self.next_index = 0;
        if self.discarding {
            self.discarding = false;
            buffer.clear();
            return Ok(None);
        }
        if buffer.is_empty() {
            return Ok(None);
        }
        if !self.keep_partial_last_line {
            buffer.clear();
            return Ok(None);
        }
        // A peer that exits without a final newline still meant its last message.
        let line = buffer.split();
        Ok(self.finish_line(line, 0))
    }
}

impl Encoder<&Line> for LineCodec {
    type Error = Error;

    fn encode(&mut self, line: &Line, buffer: &mut BytesMut) -> Result<(), Error> {
        buffer.reserve(line.len() + 1);
        buffer.put_slice(line.as_bytes());
        buffer.put_u8(b'\n');
        Ok(())
    }
}

impl Encoder<Line> for LineCodec {
    type Error = Error;

    fn encode(&mut self, line: Line, buffer: &mut BytesMut) -> Result<(), Error> {
        self.encode(&line, buffer)
    }
}

impl Encoder<&Rewritten> for LineCodec {
    type Error = Error;

    fn encode(&mut self, message: &Rewritten, buffer: &mut BytesMut) -> Result<(), Error> {
        buffer.reserve(message.len() + 1);
        message.write_to(buffer);
        buffer.put_u8(b'\n');
        Ok(())
    }
}

impl Encoder<Rewritten> for LineCodec {
    type Error = Error;

    fn encode(&mut self, message: Rewritten, buffer: &mut BytesMut) -> Result<(), Error> {
        self.encode(&message, buffer)
    }
}

/// The first `\n` in `buffer` at or after `start`, and how many bytes at the start of `buffer` are
/// known to be ASCII (a prefix of the line the newline ends).
///
/// Only bytes searched in this call are vouched for, and only when the search started at the
/// beginning of the buffer: what an earlier call searched is not trusted (the caller could have
/// handed a different buffer) and is checked when the line is finished, as a line arriving in
/// several reads always was. The prefix ends at the first block holding a non-ASCII byte; from
/// there the line is checked by [`check_utf8`] when it is finished.
fn find_newline(buffer: &[u8], start: usize) -> (Option<usize>, usize) {
    let mut ascii = start == 0;
    let mut ascii_prefix = 0;
    let mut position = start;
    loop {
        let end = buffer.len().min(position.saturating_add(SEARCH_BLOCK));
        let block = &buffer[position..end];
        let newline = memchr::memchr(b'\n', block);
        if ascii {
            let searched = &block[..newline.unwrap_or(block.len())];
            ascii = searched.is_ascii();
            if ascii {
                ascii_prefix = position + searched.len();
            }
        }
        if let Some(offset) = newline {
            return (Some(position + offset), ascii_prefix);
        }
        if end == buffer.len() {
            return (None, ascii_prefix);
        }
        position = end;
    }
}

/// Empty the read buffer, releasing a large allocation (see [`DISCARD_RELEASE_CAPACITY`]).
fn drop_all(buffer: &mut BytesMut) {
    if buffer.capacity() > DISCARD_RELEASE_CAPACITY {
        *buffer = BytesMut::with_capacity(FRESH_BUFFER_CAPACITY);
    } else {
        buffer.clear();
    }
}

/// Every item `codec` decodes from `input` fed in pieces of `chunk` bytes, then its end (for the
/// tests of this crate's decoders).
#[cfg(test)]
pub(crate) fn decode_in_chunks<D>(mut codec: D, input: &[u8], chunk: usize) -> Vec<D::Item>
where
    D: Decoder,
    D::Error: std::fmt::Debug,
{
    let mut buffer = BytesMut::new();
    let mut items = Vec::new();
    for piece in input.chunks(chunk) {
        buffer.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buffer).unwrap() {
            items.push(item);
        }
    }
    while let Some(item) = codec.decode_eof(&mut buffer).unwrap() {
        items.push(item);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in chunks of `chunk` bytes, then end the stream; render the items.
    fn check(max_line_len: usize, chunk: usize, input: &[u8], expected: &[&str]) {
        let codec = LineCodec::with_max_line_len(max_line_len);
        let items: Vec<String> = decode_in_chunks(codec, input, chunk)
            .into_iter()
            .map(render)
            .collect();
        assert_eq!(items, expected, "chunk size {chunk}");
    }

    fn render(item: Result<Line, LineError>) -> String {
        match item {
            Ok(line) => String::from_utf8(line.as_bytes().to_vec()).unwrap(),
            Err(error) => format!("error: {error}"),
        }
    }

    fn check_all_chunkings(max_line_len: usize, input: &[u8], expected: &[&str]) {
        for chunk in 1..=input.len().max(1) {
            check(max_line_len, chunk, input, expected);
        }
    }

    #[test]
    fn splits_lines_and_tolerates_crlf_and_blank_lines() {
        check_all_chunkings(
            100,
            b"{\"a\":1}\r\n\n  \r\n[2]\n\t\n\"x\"",
            &["{\"a\":1}", "[2]", "\"x\""],
        );
    }

    #[test]
    fn oversized_line_is_one_error_and_the_stream_recovers() {
        check_all_chunkings(
            4,
            b"1234\r\n12345\n123456789\n12\n",
            &[
                "1234",
                "error: read a message: the line exceeds the 4-byte limit",
                "error: read a message: the line exceeds the 4-byte limit",
                "12",
            ],
        );
    }

    #[test]
    fn oversized_last_line_without_newline() {
        check_all_chunkings(
            2,
            b"1\n12345",
            &[
                "1",
                "error: read a message: the line exceeds the 2-byte limit",
            ],
        );
        check_all_chunkings(
            2,
            b"1\n123",
            &[
                "1",
                "error: read a message: the line exceeds the 2-byte limit",
            ],
        );
    }

    #[test]
    fn bad_utf8_is_an_error_for_that_line_only() {
        check_all_chunkings(
            100,
            b"[1]\n\"\xff\"\n[2]\n",
            &[
                "[1]",
                "error: read a message: the line is not valid UTF-8 (first bad byte at offset 1)",
                "[2]",
            ],
        );
    }

    #[test]
    fn utf8_errors_are_located_past_the_search_blocks() {
        // Long lines cross several search blocks; whole or in pieces, the offset is the line's.
        for bad_at in [SEARCH_BLOCK - 1, SEARCH_BLOCK, 3 * SEARCH_BLOCK + 7] {
            let mut input = vec![b'a'; bad_at];
            input.extend_from_slice(b"\xc3\xa9\xff");
            input.extend_from_slice(b"\n[1]\n");
            let expected = format!(
                "error: read a message: the line is not valid UTF-8 (first bad byte at offset {})",
                bad_at + 2
            );
            for chunk in [1, 7, SEARCH_BLOCK - 3, input.len()] {
                check(1 << 20, chunk, &input, &[&expected, "[1]"]);
            }
        }
        let mut input = "é".repeat(3 * SEARCH_BLOCK).into_bytes();
        input.push(b'\n');
        let expected = "é".repeat(3 * SEARCH_BLOCK);
        check(1 << 20, input.len(), &input, &[&expected]);
        check(1 << 20, 1000, &input, &[&expected]);
    }

    #[test]
    fn encodes_with_a_newline() {
        let mut codec = LineCodec::new();
        let mut buffer = BytesMut::new();
        codec
            .encode(Line::new(&b"{}"[..]).unwrap(), &mut buffer)
            .unwrap();
        assert_eq!(&buffer[..], b"{}\n");
    }
}
