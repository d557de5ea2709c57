//! Per-table bloom filters over user keys.
//!
//! Keys are hashed with XXH3-64 under a fixed seed: a filter written by one process must answer
//! the same in the next one, so the hash must be a specified algorithm, not a per-process or
//! per-crate-version one. The tag stored in each filter names the hash. Tables written before
//! the tag changed carry fastbloom's seeded SipHash, [`LEGACY_SIP_TAG`]: they load without a
//! filter (every lookup reads the table) until compaction rewrites them.

use fastbloom::BloomFilter;

/// The tag every filter is written with: XXH3-64 of the user key under [`XXH3_SEED`].
pub(crate) const TAG: u128 = 0x5049_4e4e_4143_4c45_5848_3336_3442_4c4d;

/// The seed of [`hash`].
const XXH3_SEED: u64 = 0x5049_4e4e_4143_4c45;

/// The tag of filters built over fastbloom's seeded SipHash-1-3 (before XXH3: SipHash cost a
/// sixth of a compaction's CPU and ran on every memtable insert and lookup).
pub(crate) const LEGACY_SIP_TAG: u128 = 0x5049_4e4e_4143_4c45_4c53_4d42_4c4f_4f4d;

/// The hash of `user` that filters use; computed once per lookup and reused per table (and by
/// the memtable's index).
#[inline]
pub(crate) fn hash(user: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(user, XXH3_SEED)
}

/// Builds the serialized filter for the given key hashes.
pub(crate) fn build(hashes: &[u64], fp_rate: f64) -> Vec<u8> {
    let fp = if fp_rate > 0.0 && fp_rate < 1.0 {
        fp_rate
    } else {
        0.01
    };
    let mut f = BloomFilter::with_false_pos(fp)
        .seed(&TAG)
        .expected_items(hashes.len().max(1));
    for &h in hashes {
        f.insert_hash(h);
    }
    let mut out = Vec::with_capacity(24 + f.as_slice().len() * 8);
    out.extend_from_slice(&TAG.to_le_bytes());
    out.extend_from_slice(&f.num_hashes().to_le_bytes());
    for w in f.as_slice() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Decodes a filter written by [`build`]: `None` when malformed, `Some(None)` for a filter over
/// another hash ([`LEGACY_SIP_TAG`]), which the table then does without.
pub(crate) fn decode(data: &[u8]) -> Option<Option<BloomFilter>> {
    if data.len() < 20 || !(data.len() - 20).is_multiple_of(8) || data.len() == 20 {
        return None;
    }
    let tag = u128::from_le_bytes(data[..16].try_into().ok()?);
    let hashes = u32::from_le_bytes(data[16..20].try_into().ok()?);
    if hashes == 0 {
        return None;
    }
    if tag == LEGACY_SIP_TAG {
        return Some(None);
    }
    if tag != TAG {
        return None;
    }
    let words: Vec<u64> = data[20..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    Some(Some(BloomFilter::from_vec(words).seed(&tag).hashes(hashes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_fp_rate() {
        let keys: Vec<Vec<u8>> = (0..10_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| hash(k)).collect();
        let f = decode(&build(&hashes, 0.01)).flatten().expect("decodes");
        assert!(keys.iter().all(|k| f.contains_hash(hash(k))));
        let fps = (10_000u32..110_000)
            .filter(|i| f.contains_hash(hash(&i.to_be_bytes())))
            .count();
        assert!(fps < 2_000, "false positives {fps} / 100000");
    }

    #[test]
    fn a_legacy_siphash_filter_loads_as_no_filter() {
        let mut legacy = build(&[1, 2, 3], 0.01);
        legacy[..16].copy_from_slice(&LEGACY_SIP_TAG.to_le_bytes());
        assert!(matches!(decode(&legacy), Some(None)));
        let mut unknown = build(&[1, 2, 3], 0.01);
        unknown[0] ^= 1;
        assert!(decode(&unknown).is_none());
    }

    #[test]
    fn the_hash_is_pinned() {
        // Filters on disk depend on these exact values: if a dependency update changes them,
        // every stored filter would answer wrongly, so this fails first.
        assert_eq!(hash(b""), 0x9b20_bb99_a6c2_80c7);
        assert_eq!(hash(b"pinnacle"), 0x953a_01b8_0a44_5ee1);
        assert_ne!(hash(b"a"), hash(b"b"));
    }
}
