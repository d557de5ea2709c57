//! Redis's number parsing and formatting: `string2ll` integers and the x87 80-bit `long double`
//! arithmetic of `INCRBYFLOAT` (`strtold`, `+`, `%.17Lf` with trailing zeros removed).
//!
//! `long double` is emulated exactly (64-bit mantissa, 15-bit exponent, round-to-nearest-even)
//! with big integers, so `INCRBYFLOAT` replies match a real x86-64 Redis byte for byte and
//! every replica computes the same result.

use num_bigint::BigUint;
use std::cmp::Ordering;

/// Error text for a bad integer argument or value.
pub const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
/// Error text for a bad float argument or value.
pub const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";

/// Parses a strict decimal `i64` the way Redis's `string2ll` does: no spaces, no `+`, no
/// leading zeros (except `0` itself), no `-0`, no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        if v > (i64::MAX as u64) + 1 {
            return None;
        }
        Some((v as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(v).ok()
    }
}

// x87 extended precision: 64-bit significand with explicit integer bit.
const MANT_BITS: i64 = 64;
/// Exponent of the least significant mantissa bit of the smallest denormal.
const MIN_LSB_EXP: i64 = -16445;
/// Largest exponent of the leading bit.
const MAX_LEAD_EXP: i64 = 16383;
/// Significant decimal digits kept when parsing; the rest only feed the sticky bit.
const MAX_DIGITS: usize = 6000;

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// `mant * 2^exp`; `mant == 0` is zero.
    Finite {
        mant: u64,
        exp: i64,
    },
    Inf,
    Nan,
}

/// An x87 80-bit `long double` value.
#[derive(Clone, Debug, PartialEq)]
pub struct LongDouble {
    neg: bool,
    kind: Kind,
}

/// Result of rounding an exact value to `long double`.
enum Rounded {
    Value(LongDouble),
    /// Too large (strtold: ±HUGE_VALL with ERANGE).
    Overflow,
    /// A non-zero value that rounded to zero (strtold: 0 with ERANGE).
    Underflow,
}

/// Rounds `(n + sticky·ε) · 2^e2` (ε below n's last bit) to the nearest `long double`, ties to even.
fn round(neg: bool, n: BigUint, e2: i64, sticky: bool) -> Rounded {
    if n.bits() == 0 {
        return if sticky {
            Rounded::Underflow
        } else {
            Rounded::Value(LongDouble {
                neg,
                kind: Kind::Finite { mant: 0, exp: 0 },
            })
        };
    }
    let lead = n.bits() as i64 - 1 + e2;
    let lsb = (lead - (MANT_BITS - 1)).max(MIN_LSB_EXP);
    let shift = lsb - e2;
    let mut q = if shift > 0 {
        let s = shift as u64;
        let q = &n >> s;
        let rem = &n - (&q << s);
        let half = BigUint::from(1u8) << (s - 1);
        let up = match rem.cmp(&half) {
            Ordering::Greater => true,
            Ordering::Equal => sticky || q.bit(0),
            Ordering::Less => false,
        };
        if up {
            q + 1u8
        } else {
            q
        }
    } else {
        // Exact (a sticky remainder is below half an ulp here, so it rounds down).
        n << ((-shift) as u64)
    };
    let mut lsb = lsb;
    if q.bits() as i64 > MANT_BITS {
        q >>= 1u8;
        lsb += 1;
    }
    if q.bits() == 0 {
        return Rounded::Underflow;
    }
    if q.bits() as i64 - 1 + lsb > MAX_LEAD_EXP {
        return Rounded::Overflow;
    }
    let mant = q.iter_u64_digits().next().unwrap_or(0);
    Rounded::Value(LongDouble {
        neg,
        kind: Kind::Finite { mant, exp: lsb },
    })
}

fn pow10(e: u64) -> BigUint {
    BigUint::from(10u8).pow(e as u32)
}

impl LongDouble {
    /// Zero.
    pub fn zero() -> LongDouble {
        LongDouble {
            neg: false,
            kind: Kind::Finite { mant: 0, exp: 0 },
        }
    }

    /// True unless infinite or NaN.
    pub fn is_finite(&self) -> bool {
        matches!(self.kind, Kind::Finite { .. })
    }

    /// Parses `s` as Redis's `getLongDoubleFromObject` does: `strtold` must consume the whole
    /// string, no leading space, no overflow or underflow to zero, no NaN.
    pub fn parse(s: &[u8]) -> Option<LongDouble> {
        if s.is_empty() || s[0].is_ascii_whitespace() || s[0] == 0x0b || s[0] == 0x0c {
            return None;
        }
        let (neg, rest) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let lower = rest.to_ascii_lowercase();
        if lower == b"inf" || lower == b"infinity" {
            return Some(LongDouble {
                neg,
                kind: Kind::Inf,
            });
        }
        if lower.starts_with(b"nan") {
            return None;
        }
        let rounded = if lower.len() > 2 && lower.starts_with(b"0x") {
            parse_hex(neg, &lower[2..])?
        } else {
            parse_dec(neg, rest)?
        };
        match rounded {
            Rounded::Value(v) => Some(v),
            Rounded::Overflow | Rounded::Underflow => None,
        }
    }

    /// IEEE addition in `long double` precision (round to nearest even).
    pub fn add(&self, other: &LongDouble) -> LongDouble {
        let nan = LongDouble {
            neg: false,
            kind: Kind::Nan,
        };
        match (&self.kind, &other.kind) {
            (Kind::Nan, _) | (_, Kind::Nan) => nan,
            (Kind::Inf, Kind::Inf) if self.neg != other.neg => nan,
            (Kind::Inf, _) => self.clone(),
            (_, Kind::Inf) => other.clone(),
            (Kind::Finite { mant: ma, exp: ea }, Kind::Finite { mant: mb, exp: eb }) => {
                if *ma == 0 && *mb == 0 {
                    return LongDouble {
                        neg: self.neg && other.neg,
                        kind: Kind::Finite { mant: 0, exp: 0 },
                    };
                }
                if *ma == 0 {
                    return other.clone();
                }
                if *mb == 0 {
                    return self.clone();
                }
                let e = (*ea).min(*eb);
                let a = BigUint::from(*ma) << ((ea - e) as u64);
                let b = BigUint::from(*mb) << ((eb - e) as u64);
                let (neg, n) = if self.neg == other.neg {
                    (self.neg, a + b)
                } else {
                    match a.cmp(&b) {
                        Ordering::Greater => (self.neg, a - b),
                        Ordering::Less => (other.neg, b - a),
                        Ordering::Equal => return LongDouble::zero(),
                    }
                };
                match round(neg, n, e, false) {
                    Rounded::Value(v) => v,
                    Rounded::Overflow => LongDouble {
                        neg,
                        kind: Kind::Inf,
                    },
                    Rounded::Underflow => LongDouble::zero(),
                }
            }
        }
    }

    /// `%.17Lf` with trailing zeros (and a bare `.`) removed, `-0` printed as `0`: Redis's
    /// `ld2string(..., LD_STR_HUMAN)`.
    pub fn to_human_string(&self) -> String {
        let (mant, exp) = match self.kind {
            Kind::Finite { mant, exp } => (mant, exp),
            Kind::Inf => {
                return if self.neg {
                    "-inf".into()
                } else {
                    "inf".into()
                }
            }
            Kind::Nan => return "nan".into(),
        };
        let digits = if exp >= 0 {
            let int = BigUint::from(mant) << (exp as u64);
            format!("{int}00000000000000000")
        } else {
            let s = (-exp) as u64;
            let scaled = BigUint::from(mant) * pow10(17);
            let q = &scaled >> s;
            let rem = &scaled - (&q << s);
            let half = BigUint::from(1u8) << (s - 1);
            let q = match rem.cmp(&half) {
                Ordering::Greater => q + 1u8,
                Ordering::Equal if q.bit(0) => q + 1u8,
                _ => q,
            };
            format!("{q:0>18}")
        };
        let (int, frac) = digits.split_at(digits.len() - 17);
        let frac = frac.trim_end_matches('0');
        let mut out = String::with_capacity(digits.len() + 2);
        if self.neg {
            out.push('-');
        }
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        if out == "-0" {
            out = "0".into();
        }
        out
    }
}

/// Decimal `strtold` body: digits, optional fraction, optional exponent; must consume all.
fn parse_dec(neg: bool, s: &[u8]) -> Option<Rounded> {
    let mut i = 0;
    let mut digits: Vec<u8> = Vec::new();
    let mut sticky = false;
    let mut exp10: i64 = 0;
    let mut any_digit = false;
    let mut push = |d: u8, exp_adj: i64, exp10: &mut i64, digits: &mut Vec<u8>| {
        if digits.is_empty() && d == 0 {
            *exp10 += exp_adj;
            return;
        }
        if digits.len() < MAX_DIGITS {
            digits.push(d);
            *exp10 += exp_adj;
        } else {
            sticky |= d != 0;
            // A dropped integer digit still scales the value.
            *exp10 += exp_adj + 1;
        }
    };
    while i < s.len() && s[i].is_ascii_digit() {
        push(s[i] - b'0', 0, &mut exp10, &mut digits);
        any_digit = true;
        i += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            push(s[i] - b'0', -1, &mut exp10, &mut digits);
            any_digit = true;
            i += 1;
        }
    }
    if !any_digit {
        return None;
    }
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        let (e, j) = parse_exponent(s, i + 1)?;
        exp10 += e;
        i = j;
    }
    if i != s.len() {
        return None;
    }
    let mut n = BigUint::from(0u8);
    for chunk in digits.chunks(19) {
        let mut v: u64 = 0;
        for &d in chunk {
            v = v * 10 + u64::from(d);
        }
        n = n * pow10(chunk.len() as u64) + v;
    }
    if n.bits() == 0 {
        return Some(Rounded::Value(LongDouble {
            neg,
            kind: Kind::Finite { mant: 0, exp: 0 },
        }));
    }
    let magnitude = exp10 + digits.len() as i64;
    if magnitude > 5000 {
        return Some(Rounded::Overflow);
    }
    if magnitude < -5000 {
        return Some(Rounded::Underflow);
    }
    if exp10 >= 0 {
        return Some(round(neg, n * pow10(exp10 as u64), 0, sticky));
    }
    let den = pow10((-exp10) as u64);
    let k = (den.bits() as i64 - n.bits() as i64 + MANT_BITS + 2).max(0) as u64;
    let num = n << k;
    let q = &num / &den;
    let rem_nonzero = &q * &den != num;
    Some(round(neg, q, -(k as i64), sticky || rem_nonzero))
}

/// Hex `strtold` body after `0x`: hex digits, optional fraction, optional `p` binary exponent.
fn parse_hex(neg: bool, s: &[u8]) -> Option<Rounded> {
    let mut i = 0;
    let mut n = BigUint::from(0u8);
    let mut exp2: i64 = 0;
    let mut any = false;
    let hexval = |c: u8| (c as char).to_digit(16);
    while i < s.len() {
        let Some(d) = hexval(s[i]) else { break };
        if n.bits() < 20_000 {
            n = (n << 4u8) + d;
        } else {
            exp2 += 4;
        }
        any = true;
        i += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() {
            let Some(d) = hexval(s[i]) else { break };
            if n.bits() < 20_000 {
                n = (n << 4u8) + d;
                exp2 -= 4;
            }
            any = true;
            i += 1;
        }
    }
    if !any {
        return None;
    }
    if i < s.len() && s[i] == b'p' {
        let (e, j) = parse_exponent(s, i + 1)?;
        exp2 += e;
        i = j;
    }
    if i != s.len() {
        return None;
    }
    if n.bits() > 0 && n.bits() as i64 + exp2 > 20_000 {
        return Some(Rounded::Overflow);
    }
    if n.bits() > 0 && n.bits() as i64 + exp2 < -20_000 {
        return Some(Rounded::Underflow);
    }
    Some(round(neg, n, exp2, false))
}

/// The signed decimal exponent after an `e`/`p` marker that ends at `s[start - 1]`: returns the
/// exponent (clamped, like strtold, far beyond any representable value) and the index after
/// it, or `None` when no digit follows (strtold would stop before the marker: trailing garbage).
fn parse_exponent(s: &[u8], start: usize) -> Option<(i64, usize)> {
    let mut j = start;
    let neg = match s.get(j) {
        Some(b'-') => {
            j += 1;
            true
        }
        Some(b'+') => {
            j += 1;
            false
        }
        _ => false,
    };
    let digits_start = j;
    let mut e: i64 = 0;
    while j < s.len() && s[j].is_ascii_digit() {
        e = (e * 10 + i64::from(s[j] - b'0')).min(1_000_000_000);
        j += 1;
    }
    if j == digits_start {
        return None;
    }
    Some((if neg { -e } else { e }, j))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(a: &str, b: &str) -> Option<String> {
        let x = LongDouble::parse(a.as_bytes())?;
        let y = LongDouble::parse(b.as_bytes())?;
        let s = x.add(&y);
        s.is_finite().then(|| s.to_human_string())
    }

    #[test]
    fn string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn long_double_matches_redis() {
        // Values checked against redis-server 7.0.15 on x86-64.
        assert_eq!(incr("10.5", "0.1").as_deref(), Some("10.6"));
        assert_eq!(incr("0.1", "0.2").as_deref(), Some("0.3"));
        assert_eq!(incr("5.0e3", "2.0e2").as_deref(), Some("5200"));
        assert_eq!(incr("0", "3.0e3").as_deref(), Some("3000"));
        assert_eq!(incr("1", "-1").as_deref(), Some("0"));
        assert_eq!(incr("-0", "-0").as_deref(), Some("0"));
        assert_eq!(incr("0", "1e-20").as_deref(), Some("0"));
        assert_eq!(incr("0", "-1e-20").as_deref(), Some("0"));
        assert_eq!(incr("0", "0x10").as_deref(), Some("16"));
        assert_eq!(incr("0", "1.5e1").as_deref(), Some("15"));
        assert_eq!(incr("3", "1.23456789").as_deref(), Some("4.23456789"));
        assert_eq!(incr("0", "inf"), None);
        assert_eq!(LongDouble::parse(b"nan"), None);
        assert_eq!(LongDouble::parse(b" 1"), None);
        assert_eq!(LongDouble::parse(b"1e"), None);
        assert_eq!(LongDouble::parse(b"."), None);
        assert_eq!(LongDouble::parse(b"1e99999"), None);
        assert_eq!(LongDouble::parse(b"1e-99999"), None);
        assert!(LongDouble::parse(b"1e4000").is_some());
        assert!(LongDouble::parse(b"1e-4940").is_some()); // denormal: accepted
        assert!(LongDouble::parse(b".5").is_some());
        assert!(LongDouble::parse(b"5.").is_some());
        assert!(LongDouble::parse(b"+5").is_some());
    }

    proptest::proptest! {
        #[test]
        fn parse_and_add_never_panic(a in "[-+0-9.eExXpPa-fin]{0,30}", b in "[-+0-9.eE]{0,30}") {
            if let (Some(x), Some(y)) = (LongDouble::parse(a.as_bytes()), LongDouble::parse(b.as_bytes())) {
                let _ = x.add(&y).to_human_string();
            }
            let _ = parse_i64(a.as_bytes());
        }

        #[test]
        fn integers_round_trip_exactly(v in -(1i64 << 62)..(1i64 << 62)) {
            let x = LongDouble::parse(v.to_string().as_bytes()).expect("an integer parses");
            proptest::prop_assert_eq!(x.to_human_string(), v.to_string());
            proptest::prop_assert_eq!(parse_i64(v.to_string().as_bytes()), Some(v));
        }
    }
}
