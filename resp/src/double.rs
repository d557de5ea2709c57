//! Doubles in replies, formatted as Redis 7.0 does (`addReplyDouble`: `%.17g`).
//!
//! Checked against redis-server 7.0.15: `ZADD z 0.1 a` then `ZSCORE z a` gives
//! `0.10000000000000001`; `1e-5` gives `1.0000000000000001e-05`, `1e17` gives `1e+17`,
//! `1000000000000000.25` gives `1000000000000000.2` (ties to even), `-0.0` gives `-0`.
//! (Redis 7.2 switched to the shortest round-trip form; 7.0 is our reference.)

/// Formats a double as C's `printf("%.17g")` does with glibc, with `inf` / `-inf` spelled
/// explicitly as Redis does, and NaN as glibc prints it (`nan`, `-nan`).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return if d.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:.16e}` is exact decimal rounding to 17 significant digits (ties to even, as
    // glibc); `%g` takes the exponent X of that form and prints fixed when -4 <= X < 17.
    let sci = format!("{:.16e}", d);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..17).contains(&exp) {
        let decimals = (16 - exp) as usize;
        trim_fraction(format!("{:.*}", decimals, d))
    } else {
        let mantissa = trim_fraction(mantissa.to_string());
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// `%g` drops trailing zeros of the fraction, and the point when nothing follows it.
fn trim_fraction(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
// The literals are the exact inputs tried on redis-server; their extra digits are the point.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// glibc's own `%.17g`: the oracle.
    fn c_g17(d: f64) -> String {
        let mut buf = [0u8; 64];
        // SAFETY: the buffer is 64 bytes, enough for any `%.17g` (at most 24 chars + NUL), and
        // the format takes exactly one double.
        let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.17g".as_ptr(), d) };
        String::from_utf8_lossy(&buf[..usize::try_from(n).unwrap_or(0)]).into_owned()
    }

    #[test]
    fn values_seen_on_redis_7_0_15() {
        // ZADD / ZSCORE on a real redis-server 7.0.15 (listpack and skiplist encodings).
        for (d, want) in [
            (0.1, "0.10000000000000001"),
            (1e-5, "1.0000000000000001e-05"),
            (123456789.123, "123456789.123"),
            (1e17, "1e+17"),
            (1000000000000000.25, "1000000000000000.2"),
            (0.000123, "0.00012300000000000001"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (2.0, "2"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(format_double(d), want, "{d:e}");
        }
    }

    #[test]
    fn edges_match_glibc() {
        let mut cases = vec![
            0.0,
            1e-4,
            9.9999999999999995e-5,
            0.00009999999999999999,
            1e16,
            9.999999999999999e16,
            99999999999999999.0,
            123456789012345678.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -1e300,
            0.5,
            1.0 / 3.0,
            2.0f64.powi(53),
            2.0f64.powi(60),
        ];
        for e in -330..310 {
            cases.push(10f64.powi(e));
            cases.push(-7.25 * 10f64.powi(e));
        }
        for d in cases {
            assert_eq!(format_double(d), c_g17(d), "{d:e}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn random_bit_patterns_match_glibc(bits in any::<u64>()) {
            let d = f64::from_bits(bits);
            prop_assume!(!d.is_nan() && !d.is_infinite());
            prop_assert_eq!(format_double(d), c_g17(d));
        }

        #[test]
        fn random_decimals_match_glibc(m in -1_000_000_000i64..1_000_000_000, e in -12i32..20) {
            let d = m as f64 * 10f64.powi(e - 6);
            prop_assert_eq!(format_double(d), c_g17(d));
        }
    }
}
