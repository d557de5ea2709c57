//! Seeded random command sequences for differential testing against redis-server: strings and
//! keys commands with edge-case arguments (empty strings, binary keys, large values, numbers at
//! and past the i64 limits, bad options, wrong arity, unknown commands).
//!
//! Every generated command is deterministic on both servers as long as they receive the same
//! sequence: relative expiries are either ≤ 0 (delete now) or ≥ 1000 s, absolute ones are far in
//! the past or the future, so no key expires *between* the two servers executing a command.

use crate::rng::Rng;

/// One generated command.
pub type Cmd = Vec<Vec<u8>>;

/// Commands whose replies are compared with a tolerance or as unordered sets
/// (see [`Compare`]). Anything else is compared byte for byte.
pub fn compare_mode(cmd: &[u8]) -> Compare {
    match cmd.to_ascii_uppercase().as_slice() {
        b"TTL" | b"EXPIRETIME" => Compare::IntWithin(1),
        b"PTTL" | b"PEXPIRETIME" => Compare::IntWithin(2_000),
        b"KEYS" => Compare::Unordered,
        b"SCAN" => Compare::ScanKeys,
        b"RANDOMKEY" | b"DUMP" => Compare::SameType,
        _ => Compare::Exact,
    }
}

/// How two replies to the same command are compared (the documented allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Byte for byte.
    Exact,
    /// Both integers within this distance (TTL ±1 s, PTTL ±2 s: the servers run a moment apart);
    /// negative codes (-1, -2) must match exactly.
    IntWithin(i64),
    /// Arrays with the same elements in any order (KEYS: hash order differs).
    Unordered,
    /// SCAN: same key set when the cursor is 0 and the count covers the keyspace.
    ScanKeys,
    /// Same reply type only (RANDOMKEY picks any key; DUMP payloads are implementation-specific).
    SameType,
}

/// Key pool: one hash tag keeps multi-key commands in one slot; a few untagged keys exercise
/// CROSSSLOT on multi-key commands.
const TAGGED: &[&[u8]] = &[
    b"{d}a",
    b"{d}0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789-long",
    b"{d}b",
    b"{d}c",
    b"{d}num",
    b"{d}f",
    b"{d}\x00\xff\r\n",
    b"{d} sp ace",
    b"{d}",
];
const UNTAGGED: &[&[u8]] = &[b"other", b"", b"\xfe"];

const VALUES: &[&[u8]] = &[
    b"",
    b"0",
    b"1",
    b"-1",
    b"42",
    b"-0",
    b"007",
    b"+5",
    b" 1",
    b"1 ",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"1.5",
    b"0.1",
    b"-2.5e3",
    b"3.0e3",
    b"1e400",
    b"inf",
    b"-inf",
    b"nan",
    b"0x10",
    b"abc",
    b"hello world",
    // Around the embstr/raw (44 bytes) and int (20 chars) encoding limits.
    b"12345678901234567890123456789012345678901234",
    b"123456789012345678901234567890123456789012345",
    b"10000",
    b"9999",
    b"-10000",
    b"\x00\x01\xff",
    b"\r\n",
    b"12345678901234567890",
    b"1234567890123456789",
];

const INTS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"2",
    b"-3",
    b"100",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"4611686018427387904",
    b"abc",
    b"",
    b"1.5",
    b" 1",
    b"+1",
    b"0x1",
];

const FLOATS: &[&[u8]] = &[
    b"0.1",
    b"0.2",
    b"-0.1",
    b"1.5",
    b"1e10",
    b"5.0e3",
    b"1e308",
    b"-1e308",
    b"1.7976931348623157e308",
    b"inf",
    b"-inf",
    b"nan",
    b"abc",
    b"",
    b" 1",
    b"0x10",
    b"3",
    b"-3",
    b"1e-5",
    b"123456789012345678",
    b"2.5",
];

/// Offsets for GETRANGE/SUBSTR (any size is cheap there).
const RANGE_OFFSETS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"-2",
    b"3",
    b"-100",
    b"100",
    b"1000000",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"abc",
];

/// Offsets for SETRANGE: small ones, negative, or ≥ 512 MB (an error, never a 512 MB allocation).
const SETRANGE_OFFSETS: &[&[u8]] = &[
    b"0",
    b"1",
    b"2",
    b"5",
    b"10",
    b"100",
    b"4096",
    b"-1",
    b"536870912",
    b"536870913",
    b"9223372036854775807",
    b"abc",
];

/// The generator state.
pub struct Gen {
    rng: Rng,
    /// Wall clock (ms) when the sequence started, for EXAT/PXAT arguments.
    now_ms: i64,
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

impl Gen {
    /// A generator for one seed; `now_ms` is the current Unix time in milliseconds.
    pub fn new(seed: u64, now_ms: i64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            now_ms,
        }
    }

    fn key(&mut self) -> Vec<u8> {
        if self.rng.chance(4) {
            self.rng.pick(UNTAGGED).to_vec()
        } else {
            self.rng.pick(TAGGED).to_vec()
        }
    }

    fn keys(&mut self, max: u64) -> Vec<Vec<u8>> {
        let n = 1 + self.rng.below(max);
        (0..n).map(|_| self.key()).collect()
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.below(100) {
            0 => {
                // Large value: 10 KB – 300 KB of a repeating pattern.
                let n = 10_000 + self.rng.below(290_000) as usize;
                (0..n).map(|i| b'a' + (i % 26) as u8).collect()
            }
            1..=20 => {
                let n = self.rng.below(40) as usize;
                (0..n).map(|_| self.rng.below(256) as u8).collect()
            }
            21..=30 => self
                .rng
                .range(-1_000_000, 1_000_000)
                .to_string()
                .into_bytes(),
            _ => self.rng.pick(VALUES).to_vec(),
        }
    }

    fn int(&mut self) -> Vec<u8> {
        if self.rng.chance(40) {
            self.rng.range(-1000, 1000).to_string().into_bytes()
        } else {
            self.rng.pick(INTS).to_vec()
        }
    }

    /// A relative time in seconds/ms: ≤ 0, ≥ 1000 s, or invalid/overflowing.
    fn rel_time(&mut self, ms: bool) -> Vec<u8> {
        let scale = if ms { 1000 } else { 1 };
        match self.rng.below(10) {
            0 => b("0"),
            1 => b("-1"),
            2 => b("abc"),
            3 => b("9223372036854775807"),
            4 => b("-9223372036854775808"),
            5 => b("9223372036854775"),
            _ => (self.rng.range(1000, 1_000_000) * scale)
                .to_string()
                .into_bytes(),
        }
    }

    /// An absolute Unix time: long past, recent past, far future, or invalid.
    fn abs_time(&mut self, ms: bool) -> Vec<u8> {
        let now = if ms { self.now_ms } else { self.now_ms / 1000 };
        let scale = if ms { 1000 } else { 1 };
        match self.rng.below(8) {
            0 => b("1"),
            1 => b("0"),
            2 => b("-5"),
            3 => (now - 1000 * scale).to_string().into_bytes(),
            4 => b("abc"),
            5 => b("9223372036854775807"),
            _ => (now + self.rng.range(10_000, 10_000_000) * scale)
                .to_string()
                .into_bytes(),
        }
    }

    /// An absolute time in the future, or invalid (never in the past).
    fn future_abs_time(&mut self, ms: bool) -> Vec<u8> {
        let t = self.abs_time(ms);
        let now = if ms { self.now_ms } else { self.now_ms / 1000 };
        match std::str::from_utf8(&t)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(v) if v <= now => (now + 1_000_000).to_string().into_bytes(),
            _ => t,
        }
    }

    fn set_options(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = self.rng.below(4);
        for _ in 0..n {
            match self.rng.below(12) {
                0 => out.push(b("NX")),
                1 => out.push(b("XX")),
                2 => out.push(b("GET")),
                3 => out.push(b("KEEPTTL")),
                4 => out.extend([b("EX"), self.rel_time(false)]),
                5 => out.extend([b("PX"), self.rel_time(true)]),
                // Never a past time here: Redis keeps such a key (logically expired) in DBSIZE until
                // its active expiry cycle finds it, which makes DBSIZE timing-dependent.
                6 => out.extend([b("EXAT"), self.future_abs_time(false)]),
                7 => out.extend([b("PXAT"), self.future_abs_time(true)]),
                8 => out.push(b("EX")),
                9 => out.push(b("nx")),
                10 => out.push(b("BOGUS")),
                _ => out.extend([b("ex"), self.rel_time(false)]),
            }
        }
        out
    }

    fn expire_options(&mut self) -> Vec<Vec<u8>> {
        let n = match self.rng.below(10) {
            0..=4 => 0,
            5..=8 => 1,
            _ => 2,
        };
        (0..n)
            .map(|_| {
                self.rng
                    .pick(&["NX", "XX", "GT", "LT", "nx", "gt", "FOO"])
                    .as_bytes()
                    .to_vec()
            })
            .collect()
    }

    /// A list/set/hash/zset command on a pool key, so string and key commands meet WRONGTYPE,
    /// TYPE, COPY, RENAME and OBJECT ENCODING of other types. Only order-deterministic reads.
    fn collection_command(&mut self, k: Vec<u8>) -> Cmd {
        let m = self
            .rng
            .pick(&["a", "b", "1", "2.5", ""])
            .as_bytes()
            .to_vec();
        match self.rng.below(12) {
            0 => vec![b("RPUSH"), k, m, self.value()],
            1 => vec![b("LRANGE"), k, b("0"), b("-1")],
            2 => vec![b("LLEN"), k],
            3 => vec![b("SADD"), k, m],
            4 => vec![b("SCARD"), k],
            5 => vec![b("HSET"), k, m, self.value()],
            6 => vec![b("HGET"), k, m],
            7 => vec![b("HLEN"), k],
            8 => vec![
                b("ZADD"),
                k,
                self.rng
                    .pick(&["1", "-2.5", "inf", "abc"])
                    .as_bytes()
                    .to_vec(),
                m,
            ],
            9 => vec![b("ZRANGE"), k, b("0"), b("-1"), b("WITHSCORES")],
            10 => vec![b("ZSCORE"), k, m],
            _ => vec![b("ZCARD"), k],
        }
    }

    /// The next command.
    pub fn command(&mut self) -> Cmd {
        let mut c = self.command_inner();
        // Sometimes damage the arity or the command name's case.
        match self.rng.below(100) {
            0 if c.len() > 1 => {
                c.pop();
            }
            1 => c.push(self.value()),
            2 | 3 => {
                let name: Vec<u8> = c[0]
                    .iter()
                    .map(|&ch| {
                        if self.rng.chance(50) {
                            ch.to_ascii_lowercase()
                        } else {
                            ch
                        }
                    })
                    .collect();
                c[0] = name;
            }
            _ => {}
        }
        c
    }

    fn command_inner(&mut self) -> Cmd {
        let k = self.key();
        match self.rng.below(48) {
            0..=2 => vec![b("GET"), k],
            3..=5 => {
                let mut c = vec![b("SET"), k, self.value()];
                c.extend(self.set_options());
                c
            }
            6 => vec![b("SETNX"), k, self.value()],
            7 => vec![b("SETEX"), k, self.rel_time(false), self.value()],
            8 => vec![b("PSETEX"), k, self.rel_time(true), self.value()],
            9 => vec![b("GETSET"), k, self.value()],
            10 => vec![b("GETDEL"), k],
            11 => {
                let mut c = vec![b("GETEX"), k];
                match self.rng.below(7) {
                    0 => c.extend([b("EX"), self.rel_time(false)]),
                    1 => c.extend([b("PX"), self.rel_time(true)]),
                    2 => c.extend([b("EXAT"), self.abs_time(false)]),
                    3 => c.extend([b("PXAT"), self.abs_time(true)]),
                    4 => c.push(b("PERSIST")),
                    5 => c.extend([b("PERSIST"), b("EX"), b("10")]),
                    _ => {}
                }
                c
            }
            12 | 13 => {
                let mut c = vec![b("MGET")];
                c.extend(self.keys(4));
                c
            }
            14 | 15 => {
                let mut c = vec![if self.rng.chance(80) {
                    b("MSET")
                } else {
                    b("MSETNX")
                }];
                for key in self.keys(3) {
                    c.push(key);
                    c.push(self.value());
                }
                c
            }
            16..=18 => match self.rng.below(4) {
                0 => vec![b("INCR"), k],
                1 => vec![b("DECR"), k],
                2 => vec![b("INCRBY"), k, self.int()],
                _ => vec![b("DECRBY"), k, self.int()],
            },
            19 => vec![b("INCRBYFLOAT"), k, self.rng.pick(FLOATS).to_vec()],
            20 | 21 => vec![b("APPEND"), k, self.value()],
            22 => vec![b("STRLEN"), k],
            23 => vec![
                if self.rng.chance(80) {
                    b("GETRANGE")
                } else {
                    b("SUBSTR")
                },
                k,
                self.rng.pick(RANGE_OFFSETS).to_vec(),
                self.rng.pick(RANGE_OFFSETS).to_vec(),
            ],
            24 => vec![
                b("SETRANGE"),
                k,
                self.rng.pick(SETRANGE_OFFSETS).to_vec(),
                self.value(),
            ],
            25 => {
                let mut c = vec![self
                    .rng
                    .pick(&["DEL", "UNLINK", "EXISTS", "TOUCH"])
                    .as_bytes()
                    .to_vec()];
                c.extend(self.keys(4));
                c
            }
            26 => vec![b("TYPE"), k],
            27 | 28 => {
                let (name, ms, abs) = *self.rng.pick(&[
                    ("EXPIRE", false, false),
                    ("PEXPIRE", true, false),
                    ("EXPIREAT", false, true),
                    ("PEXPIREAT", true, true),
                ]);
                let t = if abs {
                    self.abs_time(ms)
                } else {
                    self.rel_time(ms)
                };
                let mut c = vec![b(name), k, t];
                c.extend(self.expire_options());
                c
            }
            29 => vec![
                self.rng
                    .pick(&["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"])
                    .as_bytes()
                    .to_vec(),
                k,
            ],
            30 => vec![b("PERSIST"), k],
            31 => {
                let name = if self.rng.chance(70) {
                    "RENAME"
                } else {
                    "RENAMENX"
                };
                let dst = if self.rng.chance(10) {
                    k.clone()
                } else {
                    self.key()
                };
                vec![b(name), k, dst]
            }
            32 => {
                let mut c = vec![b("COPY"), k, self.key()];
                match self.rng.below(5) {
                    0 => c.push(b("REPLACE")),
                    1 => c.extend([b("DB"), b("0")]),
                    2 => c.extend([b("DB"), b("1")]),
                    3 => c.push(b("BOGUS")),
                    _ => {}
                }
                c
            }
            33 => vec![b("DBSIZE")],
            34 => vec![
                b("KEYS"),
                self.rng
                    .pick(&[
                        "*", "{d}*", "{d}?", "*b*", "[ab]*", "{d}[a-c]", "nomatch", "\\{d\\}a",
                        "[^{]*", "*[", "[a-", "\\", "?*", "[]a]*", "[\\]]*", "[z-a]*", "{d}[^ab]",
                        "*\\*", "{d}[a-]", "*{d}*", "{d}???", "[{]d[}]*", "**a", "{d}[c-a]", "",
                    ])
                    .as_bytes()
                    .to_vec(),
            ],
            35 => {
                let mut c = vec![b("SCAN"), b("0"), b("COUNT"), b("1000")];
                match self.rng.below(4) {
                    0 => c.extend([b("MATCH"), b("{d}*")]),
                    1 => c.extend([b("TYPE"), b("string")]),
                    2 => c.extend([b("TYPE"), b("list")]),
                    _ => {}
                }
                c
            }
            // LCS is O(n*m): it runs on two keys outside the pool that only ever hold short strings.
            36 => {
                let n = self.rng.below(20) as usize;
                let v: Vec<u8> = (0..n).map(|_| b'a' + self.rng.below(4) as u8).collect();
                vec![
                    b("SET"),
                    self.rng.pick(&["{d}l1", "{d}l2"]).as_bytes().to_vec(),
                    v,
                ]
            }
            37 => {
                let mut c = vec![b("LCS"), b("{d}l1"), b("{d}l2")];
                match self.rng.below(5) {
                    3 => c.push(b("WITHMATCHLEN")),
                    0 => c.push(b("LEN")),
                    1 => c.push(b("IDX")),
                    2 => c.extend([b("IDX"), b("MINMATCHLEN"), b("2"), b("WITHMATCHLEN")]),
                    _ => c.extend([b("LEN"), b("IDX")]),
                }
                c
            }
            38 => vec![
                b("SELECT"),
                self.rng.pick(&["0", "1", "abc", "-1"]).as_bytes().to_vec(),
            ],
            39 => vec![b("PING")],
            40 => vec![b("ECHO"), self.value()],
            41 => {
                // Unknown commands, with args containing CR/LF and long args (the message cuts at 128 chars).
                let mut c = vec![self
                    .rng
                    .pick(&["FOO", "GETT", "set2", "\r\nX"])
                    .as_bytes()
                    .to_vec()];
                for _ in 0..self.rng.below(4) {
                    c.push(self.value());
                }
                c
            }
            42 => vec![b("RANDOMKEY")],
            43 => match self.rng.below(4) {
                0 | 1 => vec![b("OBJECT"), b("ENCODING"), k],
                2 => vec![b("OBJECT"), b("FREQ"), k],
                _ => vec![b("OBJECT"), b("NOSUCH"), k],
            },
            44 => {
                // DUMP payloads are implementation-specific (compared by reply type only), so
                // RESTORE only ever gets garbage: option parsing, BUSYKEY and the payload check.
                if self.rng.chance(30) {
                    return vec![b("DUMP"), k];
                }
                let mut c = vec![b("RESTORE"), k, self.int(), self.value()];
                for _ in 0..self.rng.below(3) {
                    match self.rng.below(5) {
                        0 => c.push(b("REPLACE")),
                        1 => c.push(b("ABSTTL")),
                        2 => c.extend([b("IDLETIME"), self.int()]),
                        3 => c.extend([b("FREQ"), self.int()]),
                        _ => c.push(b("BOGUS")),
                    }
                }
                c
            }
            45 => self.collection_command(k),
            _ => vec![b("STRLEN"), k],
        }
    }
}
