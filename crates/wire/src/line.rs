//! [`Line`]: one message's bytes, known to be UTF-8 and free of newlines.

use bytes::Bytes;

use crate::LineError;

/// The bytes of one message as it travels on the wire, without its terminating newline.
///
/// Invariants, checked once where a `Line` is made: the bytes are valid UTF-8 and contain no `\n`.
/// So a `Line` can be written to the wire followed by `\n` without splitting, and the envelope
/// scanner never has to re-check UTF-8. Cloning is cheap (a reference count): the codec hands out
/// lines split off its read buffer, not copies.
///
/// ```
/// use shoal_wire::Line;
///
/// let line = Line::new(&br#"{"jsonrpc":"2.0","method":"ping","id":1}"#[..])?;
/// assert_eq!(line.len(), 40);
/// assert!(Line::new(&b"\xff"[..]).is_err());
/// # Ok::<(), shoal_wire::LineError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Line(Bytes);

impl Line {
    /// Check `bytes` (UTF-8, no newline) and wrap them.
    ///
    /// ```
    /// use shoal_wire::{Line, LineError};
    ///
    /// assert!(Line::new(bytes::Bytes::from_static(b"{}")).is_ok());
    /// assert_eq!(Line::new(&b"{}\n"[..]), Err(LineError::Newline { position: 2 }));
    /// ```
    pub fn new(bytes: impl Into<Bytes>) -> Result<Line, LineError> {
        let bytes = bytes.into();
        if let Some(position) = memchr::memchr(b'\n', &bytes) {
            return Err(LineError::Newline { position });
        }
        check_utf8(&bytes)?;
        Ok(Line(bytes))
    }

    /// The message bytes, without a newline.
    ///
    /// ```
    /// let line = shoal_wire::Line::new(&b"{}"[..])?;
    /// assert_eq!(line.as_bytes(), b"{}");
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The shared buffer holding the message (no copy).
    ///
    /// ```
    /// let line = shoal_wire::Line::new(&b"{}"[..])?;
    /// assert_eq!(line.into_bytes(), bytes::Bytes::from_static(b"{}"));
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes, without the newline.
    ///
    /// ```
    /// assert_eq!(shoal_wire::Line::new(&b"[1]"[..])?.len(), 3);
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the line is empty (the codec never yields one; [`Line::new`] accepts it).
    ///
    /// ```
    /// assert!(shoal_wire::Line::new(&b""[..])?.is_empty());
    /// # Ok::<(), shoal_wire::LineError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Wrap bytes the caller has already checked (codec, builders, scanner sub-spans).
    pub(crate) fn from_checked(bytes: Bytes) -> Line {
        debug_assert!(memchr::memchr(b'\n', &bytes).is_none());
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Line(bytes)
    }
}

impl std::fmt::Debug for Line {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Lines are UTF-8 by construction; lossy conversion only avoids an `expect` here.
        write!(formatter, "Line({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl AsRef<[u8]> for Line {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// UTF-8 check with an ASCII fast path: `is_ascii` runs about 1.5x faster than `from_utf8` on the
/// ASCII-only lines (base64 images, English text) that make up most large results.
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<(), LineError> {
    if bytes.is_ascii() {
        return Ok(());
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(error) => Err(LineError::NotUtf8 {
            valid_up_to: error.valid_up_to(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: Result<(), LineError>) {
        assert_eq!(Line::new(input.to_vec()).map(|_| ()), expected);
    }

    #[test]
    fn accepts_utf8_without_newline() {
        check(b"", Ok(()));
        check(br#"{"text":"h\u00e9llo \r"}"#, Ok(()));
        check("{\"text\":\"héllo ✓\"}".as_bytes(), Ok(()));
    }

    #[test]
    fn rejects_newlines_and_bad_utf8() {
        check(b"a\nb", Err(LineError::Newline { position: 1 }));
        check(b"ab\xc3", Err(LineError::NotUtf8 { valid_up_to: 2 }));
        check(b"\xed\xa0\x80", Err(LineError::NotUtf8 { valid_up_to: 0 }));
    }
}
