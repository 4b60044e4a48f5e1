//! [`Id`]: a JSON-RPC id (or progress token, request id, subscription id) kept as its exact JSON text.

use std::hash::{Hash, Hasher};

use crate::Error;
use crate::scan::is_id_token;

/// Ids up to this many bytes are stored inline: enough for a quoted UUID (36 + 2), the longest id
/// real clients use, so mapping ids never allocates.
const INLINE_CAPACITY: usize = 38;

/// How much of a rejected id an error message shows.
const EXCERPT_LEN: usize = 40;

/// A JSON-RPC id, progress token, `requestId` or `subscriptionId`: the exact JSON text of a string
/// or a number.
///
/// Exactness is the point: `1`, `1.0` and `"1"` are three different ids, and a client gets back the
/// very bytes it sent. Equality and hashing compare the text. An `Id` never borrows the line it
/// came from (short ones are stored inline, long ones copied), so keeping it in a map does not pin
/// a message buffer.
///
/// ```
/// use shoal_wire::Id;
///
/// let number = Id::from_u64(7);
/// assert_eq!(number.as_str(), "7");
/// assert!(number.is_number());
/// assert_ne!(Id::parse(b"1")?, Id::parse(b"1.0")?);
/// assert_ne!(Id::parse(b"1")?, Id::parse(br#""1""#)?);
/// assert_eq!(Id::string("shoal-1").as_str(), r#""shoal-1""#);
/// # Ok::<(), shoal_wire::Error>(())
/// ```
#[derive(Clone)]
pub struct Id(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_CAPACITY],
    },
    Heap(Box<str>),
}

impl Id {
    /// The number `n` as an id (the daemon's own counters).
    ///
    /// ```
    /// assert_eq!(shoal_wire::Id::from_u64(18446744073709551615).as_str(), "18446744073709551615");
    /// ```
    pub fn from_u64(n: u64) -> Id {
        // u64::MAX has 20 digits, well under the inline capacity.
        let mut bytes = [0; INLINE_CAPACITY];
        let mut digits = [0u8; 20];
        let mut rest = n;
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let len = digits.len() - start;
        bytes[..len].copy_from_slice(&digits[start..]);
        Id(Repr::Inline {
            len: len as u8,
            bytes,
        })
    }

    /// `text` as a JSON string id (quoted and escaped).
    ///
    /// ```
    /// assert_eq!(shoal_wire::Id::string("a\"b").as_str(), r#""a\"b""#);
    /// ```
    pub fn string(text: &str) -> Id {
        // Serialising a &str to JSON cannot fail (no maps, no I/O).
        let json = serde_json::to_string(text).expect("a string always serialises to JSON");
        Id::from_checked(json.as_bytes())
    }

    /// Check that `raw` is exactly one JSON string or number (no surrounding whitespace) and keep it.
    ///
    /// ```
    /// use shoal_wire::Id;
    ///
    /// assert!(Id::parse(br#""req-1""#).is_ok());
    /// assert!(Id::parse(b"-12.5e3").is_ok());
    /// assert!(Id::parse(b"null").is_err());
    /// assert!(Id::parse(b" 1").is_err());
    /// ```
    pub fn parse(raw: &[u8]) -> Result<Id, Error> {
        if is_id_token(raw) {
            Ok(Id::from_checked(raw))
        } else {
            let mut excerpt = String::from_utf8_lossy(&raw[..raw.len().min(EXCERPT_LEN)]);
            if raw.len() > EXCERPT_LEN {
                excerpt.to_mut().push('…');
            }
            Err(Error::InvalidId {
                excerpt: format!("{excerpt:?}"),
            })
        }
    }

    /// The JSON text, e.g. `7` or `"abc"` (with quotes).
    ///
    /// ```
    /// assert_eq!(shoal_wire::Id::parse(br#""x""#)?.as_bytes(), br#""x""#);
    /// # Ok::<(), shoal_wire::Error>(())
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(text) => text.as_bytes(),
        }
    }

    /// The JSON text as a `str`.
    ///
    /// ```
    /// assert_eq!(shoal_wire::Id::from_u64(3).as_str(), "3");
    /// ```
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Inline bytes were copied from checked UTF-8 (a `Line`, a `str`, or `is_id_token`).
            Repr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("inline id bytes are UTF-8 by construction"),
            Repr::Heap(text) => text,
        }
    }

    /// Whether the id is a JSON string (otherwise it is a number).
    ///
    /// ```
    /// assert!(shoal_wire::Id::string("1").is_string());
    /// ```
    pub fn is_string(&self) -> bool {
        self.as_bytes().first() == Some(&b'"')
    }

    /// Whether the id is a JSON number.
    ///
    /// ```
    /// assert!(shoal_wire::Id::from_u64(1).is_number());
    /// ```
    pub fn is_number(&self) -> bool {
        !self.is_string()
    }

    /// Keep bytes already known to be one JSON string or number token in UTF-8.
    pub(crate) fn from_checked(raw: &[u8]) -> Id {
        if raw.len() <= INLINE_CAPACITY {
            let mut bytes = [0; INLINE_CAPACITY];
            bytes[..raw.len()].copy_from_slice(raw);
            Id(Repr::Inline {
                len: raw.len() as u8,
                bytes,
            })
        } else {
            let text = String::from_utf8_lossy(raw).into_owned();
            Id(Repr::Heap(text.into_boxed_str()))
        }
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Id {}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Id) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Id({})", self.as_str())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Option<(&str, bool)>) {
        let parsed = Id::parse(raw.as_bytes()).ok();
        let rendered = parsed.as_ref().map(|id| (id.as_str(), id.is_string()));
        assert_eq!(rendered, expected, "{raw}");
    }

    #[test]
    fn keeps_exact_text() {
        check("1", Some(("1", false)));
        check("1.0", Some(("1.0", false)));
        check("\"1\"", Some(("\"1\"", true)));
        let long = format!("\"{}\"", "x".repeat(100));
        check(&long, Some((&long, true)));
        // A lone surrogate is not a string a strict parser accepts, so not an id either.
        check("\"\\ud800\"", None);
        check("\"\\ud83d\\ude00\"", Some(("\"\\ud83d\\ude00\"", true)));
    }

    #[test]
    fn rejects_non_ids() {
        check("", None);
        check("true", None);
        check("[1]", None);
        check("\"a", None);
        check("1 ", None);
    }

    #[test]
    fn numbers_from_u64() {
        for n in [0, 9, 10, 1234567890, u64::MAX] {
            assert_eq!(Id::from_u64(n).as_str(), n.to_string());
        }
    }
}
