//! Per-table bloom filters over user keys.
//!
//! fastbloom's default hasher is randomly keyed per process, so every filter is built with a
//! fixed seed that is also stored in the table: a filter written by one process must answer
//! the same in the next one.

use fastbloom::BloomFilter;
use std::sync::OnceLock;

/// The seed every table is written with (stored in the table, checked on load).
pub(crate) const SEED: u128 = 0x5049_4e4e_4143_4c45_4c53_4d42_4c4f_4f4d;

fn hasher() -> &'static BloomFilter {
    static H: OnceLock<BloomFilter> = OnceLock::new();
    H.get_or_init(|| BloomFilter::with_num_bits(64).seed(&SEED).hashes(1))
}

/// The source hash of `user` under [`SEED`]; computed once per lookup and reused per table.
#[inline]
pub(crate) fn hash(user: &[u8]) -> u64 {
    hasher().source_hash(user)
}

/// Builds the serialized filter for the given key hashes.
pub(crate) fn build(hashes: &[u64], fp_rate: f64) -> Vec<u8> {
    let fp = if fp_rate > 0.0 && fp_rate < 1.0 {
        fp_rate
    } else {
        0.01
    };
    let mut f = BloomFilter::with_false_pos(fp)
        .seed(&SEED)
        .expected_items(hashes.len().max(1));
    for &h in hashes {
        f.insert_hash(h);
    }
    let mut out = Vec::with_capacity(24 + f.as_slice().len() * 8);
    out.extend_from_slice(&SEED.to_le_bytes());
    out.extend_from_slice(&f.num_hashes().to_le_bytes());
    for w in f.as_slice() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Decodes a filter written by [`build`]; `None` when malformed.
pub(crate) fn decode(data: &[u8]) -> Option<BloomFilter> {
    if data.len() < 20 || !(data.len() - 20).is_multiple_of(8) || data.len() == 20 {
        return None;
    }
    let seed = u128::from_le_bytes(data[..16].try_into().ok()?);
    let hashes = u32::from_le_bytes(data[16..20].try_into().ok()?);
    let words: Vec<u64> = data[20..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    if seed != SEED || hashes == 0 {
        return None;
    }
    Some(BloomFilter::from_vec(words).seed(&seed).hashes(hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_fp_rate() {
        let keys: Vec<Vec<u8>> = (0..10_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| hash(k)).collect();
        let f = decode(&build(&hashes, 0.01)).expect("decodes");
        assert!(keys.iter().all(|k| f.contains_hash(hash(k))));
        let fps = (10_000u32..110_000)
            .filter(|i| f.contains_hash(hash(&i.to_be_bytes())))
            .count();
        assert!(fps < 2_000, "false positives {fps} / 100000");
    }
}
