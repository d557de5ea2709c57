//! Redis Cluster key → hash slot: `CRC16-XMODEM(key or its {hash tag}) mod 16384`.

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

// Table-driven CRC16-XMODEM (poly 0x1021, init 0, no reflection), built at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
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
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16-XMODEM of `data` (check value: `crc16(b"123456789") == 0x31C3`).
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[(((crc >> 8) as u8) ^ b) as usize]
    })
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
