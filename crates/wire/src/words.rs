//! Byte searches eight bytes at a time in a `u64` ("SWAR"), for the short stretches where a
//! vector search (`memchr`, `is_ascii`, an auto-vectorised chunk loop) costs more to set up than
//! the bytes cost to look at: member names, ids, the strings of a small message. Callers hand
//! over to the vector searches past a few dozen bytes: on a 100-byte line, `memchr` and
//! `is_ascii` already beat thirteen words (tried for the codec's newline search: more
//! instructions per line, not kept).
//!
//! A flag is the high bit of a byte. Only the lowest flag of a word is ever read: the
//! subtraction in [`below`] may borrow into the bytes above a match and flag them falsely, but
//! nothing borrows below the first match, so the lowest flag is exact.

/// `0x01` in every byte.
const ONES: u64 = u64::from_le_bytes([0x01; 8]);

/// The high bit of every byte.
const HIGH_BITS: u64 = ONES * 0x80;

/// The 8 bytes of `bytes` at `at`, the first in the lowest bits; `None` past the end.
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..)?
        .first_chunk::<8>()
        .map(|eight| u64::from_le_bytes(*eight))
}

/// The up to 8 bytes of `bytes` at `at`, padded with `pad` past the end.
pub(crate) fn padded_word_at(bytes: &[u8], at: usize, pad: u8) -> u64 {
    word_at(bytes, at).unwrap_or_else(|| {
        let rest = bytes.get(at..).unwrap_or_default();
        let mut padded = [pad; 8];
        let len = rest.len().min(8);
        padded[..len].copy_from_slice(&rest[..len]);
        u64::from_le_bytes(padded)
    })
}

/// Flags the bytes of `word` below `limit`, which must be at most `0x80`: a byte's flag needs
/// its own high bit clear, and below the first byte under `limit` nothing borrows.
pub(crate) fn below(word: u64, limit: u8) -> u64 {
    debug_assert!(limit <= 0x80, "past 0x80 a byte's own high bit is no flag");
    word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH_BITS
}

/// Flags the bytes of `word` equal to `byte`.
pub(crate) fn equal(word: u64, byte: u8) -> u64 {
    below(word ^ (ONES * u64::from(byte)), 1)
}

/// The index (0–7) of the byte holding the lowest flag of `flags`, which must not be 0.
pub(crate) fn first(flags: u64) -> usize {
    // At most 63 / 8 = 7: the cast cannot truncate.
    (flags.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position, over several backgrounds and with a matching or
    /// high byte after it: the lowest flag is exactly the first matching byte.
    #[test]
    fn the_lowest_flag_is_the_first_match() {
        for position in 0..8 {
            for byte in 0..=u8::MAX {
                for after in [0x00, 0x0a, 0x1f, b'"', b'\\', 0x80, 0xff] {
                    for background in [b'a', 0x20, 0x7f, 0xff] {
                        let mut bytes = [background; 8];
                        bytes[position] = byte;
                        if position < 7 {
                            bytes[7] = after;
                        }
                        let word = u64::from_le_bytes(bytes);
                        for target in [b'"', b'\\', b'\n'] {
                            let expected = bytes.iter().position(|&b| b == target);
                            let flags = equal(word, target);
                            assert_eq!(
                                (flags != 0).then(|| first(flags)),
                                expected,
                                "{bytes:x?} = {target:#x}"
                            );
                        }
                        let expected = bytes.iter().position(|&b| b < 0x20);
                        let flags = below(word, 0x20);
                        assert_eq!(
                            (flags != 0).then(|| first(flags)),
                            expected,
                            "{bytes:x?} < 0x20"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn words_pad_past_the_end() {
        assert_eq!(
            word_at(b"12345678", 0),
            Some(u64::from_le_bytes(*b"12345678"))
        );
        assert_eq!(word_at(b"1234567", 0), None);
        assert_eq!(
            padded_word_at(b"123", 1, b'a'),
            u64::from_le_bytes(*b"23aaaaaa")
        );
        assert_eq!(
            padded_word_at(b"123", 9, b'a'),
            u64::from_le_bytes(*b"aaaaaaaa")
        );
    }
}
