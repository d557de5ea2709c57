//! Redis Cluster key → hash slot: `CRC16-XMODEM(key or its {hash tag}) mod 16384`.

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

// Table-driven CRC16-XMODEM (poly 0x1021, init 0, no reflection), built at compile time.
// `CRC16_TABLES[k][b]` is the CRC of byte `b` followed by `k` zero bytes, so four input bytes
// take four independent lookups instead of a chain of four dependent ones (slicing-by-4):
// `key_slot` runs for every keyed command, and the byte-at-a-time loop was 5 % of a
// pipelined GET's server CPU.
const CRC16_TABLES: [[u16; 256]; 4] = {
    let mut t = [[0u16; 256]; 4];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 4 {
        let mut i = 0;
        while i < 256 {
            // One more zero byte through the byte-wise step.
            let prev = t[k - 1][i];
            t[k][i] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// One byte of CRC16-XMODEM.
#[inline]
fn crc16_byte(crc: u16, b: u8) -> u16 {
    (crc << 8) ^ CRC16_TABLES[0][(((crc >> 8) as u8) ^ b) as usize]
}

/// CRC16-XMODEM of `data` (check value: `crc16(b"123456789") == 0x31C3`).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        // The register's two bytes meet the first two input bytes; the CRC is linear, so the
        // four bytes' contributions (each followed by the zero bytes after it) XOR together.
        let x = crc ^ u16::from_be_bytes([c[0], c[1]]);
        crc = CRC16_TABLES[3][(x >> 8) as usize]
            ^ CRC16_TABLES[2][(x & 0xff) as usize]
            ^ CRC16_TABLES[1][c[2] as usize]
            ^ CRC16_TABLES[0][c[3] as usize];
    }
    chunks
        .remainder()
        .iter()
        .fold(crc, |crc, &b| crc16_byte(crc, b))
}

/// The bytes of `key` that are hashed: the first non-empty `{...}` tag, else the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The hash slot (0..16384) of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    proptest::proptest! {
        // Slicing-by-4 gives the byte-at-a-time CRC for every length and tail.
        #[test]
        fn sliced_crc_matches_bytewise(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let bytewise = data.iter().fold(0u16, |crc, &b| crc16_byte(crc, b));
            proptest::prop_assert_eq!(crc16(&data), bytewise);
        }
    }

    #[test]
    fn spec_vectors() {
        let cases: &[(&[u8], u16)] = &[
            (b"123456789", 12739),
            (b"foo", 12182),
            (b"somekey", 11058),
            (b"foo{hash_tag}", 2515),
            (b"bar{hash_tag}", 2515),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"user1000", 3443),
            (b"bar", 5061),
            (b"hello", 866),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"{bar", 4015),
            (b"foo{bar}{zap}", 5061),
            (b"{}foo", 9500),
            (b"", 0),
            (b"key:__rand_int__", 13782),
            (b"counter:__rand_int__", 10892),
            (b"mylist", 5282),
            (b"myset", 560),
            (b"myhash", 9295),
            (b"myzset", 1515),
            (b"mystream", 12571),
            (b"06S", 0),
            (b"Qi", 1),
            (b"5L5", 2),
            (b"key:{06S}:__rand_int__", 0),
            (b"key:{Qi}}:__rand_int__", 1),
        ];
        for (key, slot) in cases {
            assert_eq!(
                key_slot(key),
                *slot,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
}
