//! Routed frames: how a daemon sends a session its messages when the session asked for them in
//! its hello ([`ClientHello::routed_frames`](crate::ClientHello::routed_frames)).
//!
//! A session's proxy must know, of each message the daemon sends it, whether it answers one of
//! its host's requests (and which) or asks the host something: that is what it answers with
//! errors when the daemon is lost, withdraws, and swallows after a replay. Read from a plain
//! line, that takes finding the line's end, checking its UTF-8 and scanning its JSON, all of
//! which the daemon has just done: for a 1 MiB result, three passes over every byte, in the
//! process that has nothing else to do with them. A routed frame says it up front:
//!
//! ```text
//!  0      1              5                9              13
//!  ┌──────┬──────────────┬────────────────┬──────────────┬───────────────────┬────┐
//!  │ kind │ length (u32) │ id start (u32) │ id end (u32) │ message (length)  │ \n │
//!  └──────┴──────────────┴────────────────┴──────────────┴───────────────────┴────┘
//! ```
//!
//! `kind` is `R` (a response), `E` (an error response) or `Q` (a request), with the byte range
//! of the message's `id` value in the message; or `L`, a message the reader reads itself (a
//! notification, a batch, a line the daemon built), with a range of zero. Integers are
//! little-endian. The message is a [`Line`]'s bytes; the newline after it lets a reader pass
//! message and newline on in one write, and catches a frame that does not end where its header
//! says. The writer vouches for the message (UTF-8 JSON without a newline, the id where it
//! says); the reader checks the header, the newline and the id, and nothing else.
//!
//! One more kind carries no message: `C`, the [`CUSTODY_NOTICE`], which a daemon holding a
//! session's host input in custody sends to say "read your custody pipe now" (see
//! [`ClientHello::custody`](crate::ClientHello::custody)).

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::{DEFAULT_MAX_LINE_LEN, Error, Id, Kind, Line, LineError};

/// Bytes of a frame before its message.
///
/// ```
/// assert_eq!(shoal_wire::FRAME_HEADER_LEN, 13);
/// ```
pub const FRAME_HEADER_LEN: usize = 13;

const READ_IT: u8 = b'L';
const RESPONSE: u8 = b'R';
const ERROR_RESPONSE: u8 = b'E';
const REQUEST: u8 = b'Q';
const CUSTODY: u8 = b'C';

/// The whole frame of a custody notice: kind `C`, no message, then the newline. A daemon that
/// holds a session's host input in custody sends it when the session must read its custody
/// pipe without waiting for an answer: the pipe is full, it holds a line the daemon could not
/// read, or the daemon closed its end.
///
/// ```
/// use bytes::BytesMut;
/// use shoal_wire::{CUSTODY_NOTICE, FrameCodec};
/// use tokio_util::codec::Decoder;
///
/// let frame = FrameCodec::new().decode(&mut BytesMut::from(&CUSTODY_NOTICE[..]))?.unwrap()?;
/// assert!(frame.is_custody_notice());
/// assert_eq!(frame.routed(), None);
/// # Ok::<(), shoal_wire::Error>(())
/// ```
pub const CUSTODY_NOTICE: [u8; FRAME_HEADER_LEN + 1] =
    [CUSTODY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'\n'];

/// The header of a frame holding a message of `len` bytes (without its newline). With
/// `route`, a response, error response or request whose `id` value lies at that byte range of
/// the message; any other kind, or `None`, makes it a message the reader reads itself.
///
/// `None` only if `len` or the range does not fit the header's 32 bits (4 GiB; messages are at
/// most [`DEFAULT_MAX_LINE_LEN`] and a few ids).
///
/// ```
/// use shoal_wire::{Kind, frame_header};
///
/// let message = br#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
/// let header = frame_header(message.len(), Some((Kind::Response, 22..23))).unwrap();
/// assert_eq!(header[0], b'R');
/// assert_eq!(&header[1..5], &(message.len() as u32).to_le_bytes());
/// assert_eq!(frame_header(2, Some((Kind::Notification, 0..0))).unwrap()[0], b'L');
/// ```
pub fn frame_header(
    len: usize,
    route: Option<(Kind, Range<usize>)>,
) -> Option<[u8; FRAME_HEADER_LEN]> {
    let (tag, span) = match route {
        Some((Kind::Response, span)) => (RESPONSE, span),
        Some((Kind::ErrorResponse, span)) => (ERROR_RESPONSE, span),
        Some((Kind::Request, span)) => (REQUEST, span),
        _ => (READ_IT, 0..0),
    };
    let mut header = [0; FRAME_HEADER_LEN];
    header[0] = tag;
    for (at, value) in [(1, len), (5, span.start), (9, span.end)] {
        header[at..at + 4].copy_from_slice(&u32::try_from(value).ok()?.to_le_bytes());
    }
    Some(header)
}

/// One message from a frame: its bytes and newline, and, when the writer gave it, what it is
/// and its id.
///
/// ```
/// use bytes::BytesMut;
/// use shoal_wire::{FrameCodec, Id, Kind, frame_header};
/// use tokio_util::codec::Decoder;
///
/// let message = br#"{"jsonrpc":"2.0","id":"a","method":"roots/list"}"#;
/// let mut input = BytesMut::new();
/// input.extend_from_slice(&frame_header(message.len(), Some((Kind::Request, 22..25))).unwrap());
/// input.extend_from_slice(message);
/// input.extend_from_slice(b"\n");
/// let frame = FrameCodec::new().decode(&mut input)?.unwrap()?;
/// assert_eq!(frame.routed(), Some(&(Kind::Request, Id::string("a"))));
/// assert_eq!(frame.message(), message);
/// assert!(frame.with_newline().ends_with(b"}\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The message and its newline.
    bytes: Bytes,
    routed: Option<(Kind, Id)>,
    notice: bool,
}

impl Frame {
    /// The kind and id the writer gave: `None` for a message to read
    /// ([`Frame::into_line`]).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use shoal_wire::{FrameCodec, frame_header};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut input = BytesMut::from(&frame_header(2, None).unwrap()[..]);
    /// input.extend_from_slice(b"[]\n");
    /// assert_eq!(FrameCodec::new().decode(&mut input)?.unwrap()?.routed(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn routed(&self) -> Option<&(Kind, Id)> {
        self.routed.as_ref()
    }

    /// The message, without its newline.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use shoal_wire::{FrameCodec, frame_header};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut input = BytesMut::from(&frame_header(2, None).unwrap()[..]);
    /// input.extend_from_slice(b"{}\n");
    /// assert_eq!(FrameCodec::new().decode(&mut input)?.unwrap()?.message(), b"{}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn message(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - 1]
    }

    /// The message and its newline, as they go on to a host.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use shoal_wire::{FrameCodec, frame_header};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut input = BytesMut::from(&frame_header(2, None).unwrap()[..]);
    /// input.extend_from_slice(b"{}\n");
    /// assert_eq!(FrameCodec::new().decode(&mut input)?.unwrap()?.with_newline(), b"{}\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_newline(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether this is a [`CUSTODY_NOTICE`] rather than a message.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use shoal_wire::{FrameCodec, frame_header};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut input = BytesMut::from(&frame_header(2, None).unwrap()[..]);
    /// input.extend_from_slice(b"{}\n");
    /// assert!(!FrameCodec::new().decode(&mut input)?.unwrap()?.is_custody_notice());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_custody_notice(&self) -> bool {
        self.notice
    }

    /// The message as a [`Line`], checked as the [`LineCodec`](crate::LineCodec) checks one (for
    /// a message to read: the writer vouches for it, but reading it is parsing it anyway).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use shoal_wire::{FrameCodec, frame_header};
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut input = BytesMut::from(&frame_header(2, None).unwrap()[..]);
    /// input.extend_from_slice(b"{}\n");
    /// let line = FrameCodec::new().decode(&mut input)?.unwrap()?.into_line()?;
    /// assert_eq!(line.as_bytes(), b"{}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_line(mut self) -> Result<Line, LineError> {
        self.bytes.truncate(self.bytes.len() - 1);
        Line::new(self.bytes)
    }
}

/// Decodes routed frames (see the module docs). A frame whose message is longer than the limit
/// is skipped without being buffered and comes out as [`LineError::TooLong`], as the
/// [`LineCodec`](crate::LineCodec) does for a line; a header that is not one, a frame that does
/// not end in a newline where its header says, or an id range that does not hold an id is an
/// [`Error::BadFrame`]: the stream is out of step and cannot go on.
///
/// At the end of the input, a frame cut short is dropped: its writer died mid-message, and a
/// reader must never pass half a message on.
///
/// ```
/// use bytes::BytesMut;
/// use shoal_wire::{FrameCodec, LineError, frame_header};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = FrameCodec::with_max_len(4);
/// let mut input = BytesMut::new();
/// for message in [&b"[1,2,3]"[..], b"{}"] {
///     input.extend_from_slice(&frame_header(message.len(), None).unwrap());
///     input.extend_from_slice(message);
///     input.extend_from_slice(b"\n");
/// }
/// assert_eq!(codec.decode(&mut input)?.unwrap(), Err(LineError::TooLong { limit: 4 }));
/// assert_eq!(codec.decode(&mut input)?.unwrap()?.message(), b"{}");
/// assert!(codec.decode(&mut input)?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_len: usize,
    /// Bytes still to drop of a frame over the limit.
    skipping: usize,
}

impl FrameCodec {
    /// A codec for messages of at most [`DEFAULT_MAX_LINE_LEN`] bytes (and a few ids more: a
    /// daemon's rewrite may lengthen a line by the ids it puts in).
    ///
    /// ```
    /// assert_eq!(shoal_wire::FrameCodec::new().max_len(), shoal_wire::DEFAULT_MAX_LINE_LEN + 64 * 1024);
    /// ```
    pub fn new() -> FrameCodec {
        FrameCodec::with_max_len(DEFAULT_MAX_LINE_LEN + 64 * 1024)
    }

    /// A codec for messages of at most `max_len` bytes.
    ///
    /// ```
    /// assert_eq!(shoal_wire::FrameCodec::with_max_len(10).max_len(), 10);
    /// ```
    pub fn with_max_len(max_len: usize) -> FrameCodec {
        FrameCodec {
            max_len,
            skipping: 0,
        }
    }

    /// The longest message this codec passes.
    ///
    /// ```
    /// assert_eq!(shoal_wire::FrameCodec::with_max_len(3).max_len(), 3);
    /// ```
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

impl Default for FrameCodec {
    fn default() -> FrameCodec {
        FrameCodec::new()
    }
}

fn bad_frame(detail: impl Into<String>) -> Error {
    Error::BadFrame {
        detail: detail.into(),
    }
}

fn read_u32(header: &[u8], at: usize) -> usize {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&header[at..at + 4]);
    // u32 into usize: shoal builds for 64-bit (and 32-bit) targets only.
    u32::from_le_bytes(bytes) as usize
}

impl Decoder for FrameCodec {
    type Item = Result<Frame, LineError>;
    type Error = Error;

    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        if self.skipping > 0 {
            let dropped = self.skipping.min(buffer.len());
            buffer.advance(dropped);
            self.skipping -= dropped;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        let Some(header) = buffer.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let kind = match header[0] {
            CUSTODY if header[1..] == CUSTODY_NOTICE[1..FRAME_HEADER_LEN] => {
                let Some(&end) = buffer.get(FRAME_HEADER_LEN) else {
                    return Ok(None);
                };
                if end != b'\n' {
                    return Err(bad_frame("a custody notice is not followed by a newline"));
                }
                let bytes = buffer
                    .split_to(FRAME_HEADER_LEN + 1)
                    .freeze()
                    .slice(FRAME_HEADER_LEN..);
                return Ok(Some(Ok(Frame {
                    bytes,
                    routed: None,
                    notice: true,
                })));
            }
            CUSTODY => return Err(bad_frame("a custody notice gives a length or an id range")),
            READ_IT => None,
            RESPONSE => Some(Kind::Response),
            ERROR_RESPONSE => Some(Kind::ErrorResponse),
            REQUEST => Some(Kind::Request),
            other => {
                return Err(bad_frame(format!(
                    "a frame header starts with byte {other:#04x}, which names no kind of message"
                )));
            }
        };
        let len = read_u32(header, 1);
        let id = read_u32(header, 5)..read_u32(header, 9);
        // A 32-bit length: no overflow on 64-bit targets, and saturating on 32-bit ones makes a
        // frame that long "too long" there too.
        let total = FRAME_HEADER_LEN.saturating_add(len).saturating_add(1);
        if len > self.max_len {
            self.skipping = total;
            let dropped = total.min(buffer.len());
            buffer.advance(dropped);
            self.skipping -= dropped;
            return Ok(Some(Err(LineError::TooLong {
                limit: self.max_len,
            })));
        }
        if buffer.len() < total {
            // One allocation for the whole frame, instead of doubling the buffer as it fills.
            buffer.reserve(total - buffer.len());
            return Ok(None);
        }
        let mut bytes = buffer.split_to(total).freeze();
        bytes.advance(FRAME_HEADER_LEN);
        if bytes[len] != b'\n' {
            return Err(bad_frame(format!(
                "a frame of {len} bytes is not followed by a newline"
            )));
        }
        let routed = match kind {
            None if id.is_empty() => None,
            None => {
                return Err(bad_frame(
                    "a frame to read gives an id range; only a response or request has one",
                ));
            }
            Some(kind) => {
                if id.is_empty() || id.end > len {
                    return Err(bad_frame(format!(
                        "a frame of {len} bytes gives its id at {}..{}",
                        id.start, id.end
                    )));
                }
                let value = Id::parse(&bytes[id]).map_err(|error| bad_frame(error.to_string()))?;
                Some((kind, value))
            }
        };
        Ok(Some(Ok(Frame {
            bytes,
            routed,
            notice: false,
        })))
    }

    fn decode_eof(&mut self, buffer: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        if let Some(item) = self.decode(buffer)? {
            return Ok(Some(item));
        }
        buffer.clear();
        self.skipping = 0;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &str, route: Option<(Kind, Range<usize>)>) -> Vec<u8> {
        let mut bytes = frame_header(message.len(), route).unwrap().to_vec();
        bytes.extend_from_slice(message.as_bytes());
        bytes.push(b'\n');
        bytes
    }

    fn render(item: Result<Frame, LineError>) -> String {
        match item {
            Ok(frame) if frame.is_custody_notice() => "notice".to_owned(),
            Ok(frame) => {
                let message = String::from_utf8(frame.message().to_vec()).unwrap();
                match frame.routed() {
                    Some((kind, id)) => format!("{kind:?} {} {message}", id.as_str()),
                    None => format!("read {message}"),
                }
            }
            Err(error) => format!("error: {error}"),
        }
    }

    /// Every item of `input` fed in pieces of `chunk` bytes, then its end, rendered.
    fn decode_chunked(max_len: usize, input: &[u8], chunk: usize) -> Vec<String> {
        crate::codec::decode_in_chunks(FrameCodec::with_max_len(max_len), input, chunk)
            .into_iter()
            .map(render)
            .collect()
    }

    #[test]
    fn frames_come_out_whole_however_the_input_is_split() {
        let response = r#"{"jsonrpc":"2.0","id":"x-1","result":{"a":"b"}}"#;
        let mut input = frame(response, Some((Kind::Response, 22..27)));
        input.extend(CUSTODY_NOTICE);
        input.extend(frame(
            r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            None,
        ));
        input.extend(frame(&format!("[{}]", "7".repeat(80)), None));
        input.extend(frame(
            r#"{"jsonrpc":"2.0","id":3,"error":{}}"#,
            Some((Kind::ErrorResponse, 22..23)),
        ));
        let expected = [
            format!("Response \"x-1\" {response}"),
            "notice".to_owned(),
            r#"read {"jsonrpc":"2.0","method":"notifications/progress"}"#.to_owned(),
            "error: read a message: the line exceeds the 56-byte limit".to_owned(),
            r#"ErrorResponse 3 {"jsonrpc":"2.0","id":3,"error":{}}"#.to_owned(),
        ];
        for chunk in 1..=input.len() {
            assert_eq!(
                decode_chunked(56, &input, chunk),
                expected,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_frame_cut_short_at_the_end_is_dropped() {
        let input = frame(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, None);
        for cut in 0..input.len() {
            assert!(
                decode_chunked(1024, &input[..cut], 5).is_empty(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_stream_out_of_step_is_an_error() {
        let decode = |input: Vec<u8>| {
            let mut buffer = BytesMut::from(&input[..]);
            FrameCodec::new()
                .decode(&mut buffer)
                .map(|_| ())
                .map_err(|error| error.to_string())
        };
        let mut unknown = frame("{}", None);
        unknown[0] = b'{';
        assert_eq!(
            decode(unknown).unwrap_err(),
            "read a routed frame: a frame header starts with byte 0x7b, which names no kind of \
             message; the connection is out of step and is closed"
        );
        let mut no_newline = frame("{}", None);
        *no_newline.last_mut().unwrap() = b' ';
        assert!(
            decode(no_newline)
                .unwrap_err()
                .contains("not followed by a newline")
        );
        let message = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        for span in [0..0, 22..99, 21..23, 5..5] {
            let bad = frame(message, Some((Kind::Response, span.clone())));
            assert!(decode(bad).is_err(), "id at {span:?}");
        }
        let mut notice = CUSTODY_NOTICE.to_vec();
        notice[1] = 2;
        assert!(decode(notice).unwrap_err().contains("custody notice gives"));
        let mut notice = CUSTODY_NOTICE.to_vec();
        notice[FRAME_HEADER_LEN] = b'x';
        assert!(
            decode(notice)
                .unwrap_err()
                .contains("notice is not followed")
        );
        let mut read_with_id = frame(message, None);
        read_with_id[5] = 22;
        read_with_id[9] = 23;
        assert!(
            decode(read_with_id)
                .unwrap_err()
                .contains("gives an id range")
        );
    }
}
