//! Hash maps keyed by numbers the daemon hands out itself: client numbers, backend request ids,
//! batch, round, question and task numbers.
//!
//! std's `HashMap` hashes with SipHash-1-3 under a random key, which is what a map needs when
//! someone else picks its keys (a client choosing request ids that all collide would slow the
//! hub, and with it every session). For keys the daemon counts out itself nobody can aim, and
//! SipHash was 5 % of the daemon's instructions per echo (callgrind): a few maps are touched for
//! every message. [`OwnKeys`] hashes such a key with one multiplication. Maps whose keys come
//! from a peer (request ids, task ids, URIs) keep std's hasher.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by numbers the daemon hands out; see the module docs.
pub(crate) type OwnKeyMap<K, V> = HashMap<K, V, BuildHasherDefault<OwnKeys>>;

/// A set of numbers the daemon hands out; see the module docs.
pub(crate) type OwnKeySet<K> = HashSet<K, BuildHasherDefault<OwnKeys>>;

/// Multiply by an odd constant (the 64-bit golden ratio, as FxHash does).
///
/// hashbrown picks the bucket from the low bits and a tag from the top 7 bits. Multiplication
/// by an odd number is a bijection on the low `k` bits for every `k`, so consecutive numbers
/// land in distinct buckets, and the top bits mix every bit of the key.
#[derive(Default)]
pub(crate) struct OwnKeys(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for OwnKeys {
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only numbers are keys here (`write_u64`); anything else still hashes correctly.
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;

    #[test]
    fn consecutive_numbers_fill_distinct_buckets_and_vary_the_tag() {
        let build = BuildHasherDefault::<OwnKeys>::default();
        for bits in [4, 8, 12] {
            let buckets = 1u64 << bits;
            let mut seen = HashSet::new();
            let mut tags = HashSet::new();
            for n in 1_000..1_000 + buckets {
                let hash = build.hash_one(n);
                seen.insert(hash & (buckets - 1));
                tags.insert(hash >> 57);
            }
            assert_eq!(seen.len() as u64, buckets, "{bits} bits");
            assert!(
                tags.len() as u64 >= buckets.min(128) / 2,
                "{bits} bits: {tags:?}"
            );
        }
    }

    #[test]
    fn maps_work_as_maps() {
        let mut map = OwnKeyMap::default();
        for n in 0..10_000u64 {
            map.insert(n * 3, n);
        }
        assert!((0..10_000u64).all(|n| map.remove(&(n * 3)) == Some(n)));
        assert!(map.is_empty());
        let set: OwnKeySet<u64> = [1, 2, 2, 3].into_iter().collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn bytes_hash_like_numbers_of_their_words() {
        let mut bytes = OwnKeys::default();
        bytes.write(&7u64.to_le_bytes());
        let mut number = OwnKeys::default();
        number.write_u64(7);
        assert_eq!(bytes.finish(), number.finish());
        let mut short = OwnKeys::default();
        short.write(b"ab");
        assert_ne!(short.finish(), OwnKeys::default().finish());
    }
}
