//! Redis's glob matcher, a port of `stringmatchlen` (util.c): `*`, `?`, `[abc]`, `[^a-z]`,
//! `\x` escapes, with the same quirks (unterminated `[` matches to the end of the pattern,
//! reversed ranges like `[z-a]` work, a trailing `\` matches a literal `\`).

/// True if `string` matches `pattern` (case-sensitive, like KEYS and SCAN MATCH).
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_inner(pattern, string, false, &mut skip_longer, 0)
}

/// Same as [`matches`] but ASCII case-insensitive.
pub fn matches_nocase(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_inner(pattern, string, true, &mut skip_longer, 0)
}

fn lower(c: u8, nocase: bool) -> u8 {
    if nocase {
        c.to_ascii_lowercase()
    } else {
        c
    }
}

fn match_inner(
    mut p: &[u8],
    mut s: &[u8],
    nocase: bool,
    skip_longer: &mut bool,
    nesting: usize,
) -> bool {
    // Same protection as Redis against pathological patterns.
    if nesting > 1000 {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_inner(&p[1..], s, nocase, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s = &s[1..];
            }
            b'[' => {
                p = &p[1..];
                let not = !p.is_empty() && p[0] == b'^';
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                loop {
                    if !p.is_empty() && p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            matched = true;
                        }
                    } else if !p.is_empty() && p[0] == b']' {
                        break;
                    } else if p.is_empty() {
                        // Unterminated class: Redis steps back so the outer p++ ends the pattern.
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut start, mut end) = (p[0], p[2]);
                        let mut c = s[0];
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = start.to_ascii_lowercase();
                            end = end.to_ascii_lowercase();
                            c = c.to_ascii_lowercase();
                        }
                        p = &p[2..];
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if lower(p[0], nocase) == lower(s[0], nocase) {
                        matched = true;
                    }
                    p = &p[1..];
                }
                let matched = if not { !matched } else { matched };
                if !matched {
                    return false;
                }
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if lower(p[0], nocase) != lower(s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if lower(c, nocase) != lower(s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        if p.is_empty() {
            // The class loop consumed the whole (unterminated) pattern.
            break;
        }
        p = &p[1..];
        if s.is_empty() {
            while !p.is_empty() && p[0] == b'*' {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cases() {
        let yes: &[(&str, &str)] = &[
            ("*", "abc"),
            ("a*", "abc"),
            ("*c", "abc"),
            ("a?c", "abc"),
            ("h[ae]llo", "hello"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("h\\*llo", "h*llo"),
            ("foo*bar*", "foo_bar_baz"),
            ("**a", "a"),
            ("a*", "a"),
            ("[\\]]", "]"),
            ("[a-]", "a"),
            ("\\", "\\"),
            ("ab[c", "abc"),
            ("user:*:name", "user:1000:name"),
        ];
        let no: &[(&str, &str)] = &[
            ("", "a"),
            ("*", ""), // KEYS/SCAN special-case a lone "*" before matching
            ("a", ""),
            ("?", ""),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("h\\*llo", "hello"),
            ("abc", "ABC"),
            ("a*b", "acd"),
            ("*a", "b"),
            ("ab[", "abc"),
            ("ab[c", "abcd"),
        ];
        for (p, s) in yes {
            assert!(matches(p.as_bytes(), s.as_bytes()), "{p} ~ {s}");
        }
        for (p, s) in no {
            assert!(!matches(p.as_bytes(), s.as_bytes()), "{p} !~ {s}");
        }
        assert!(matches_nocase(b"ABC", b"abc"));
        assert!(matches(b"", b""));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let s = "a".repeat(60);
        let p = "a*".repeat(30) + "b";
        assert!(!matches(p.as_bytes(), s.as_bytes()));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(p in "[a-c*?\\[\\]^\\-]{0,12}", s in "[a-c*?\\[\\]^\\-]{0,12}") {
            let _ = matches(p.as_bytes(), s.as_bytes());
            let _ = matches_nocase(p.as_bytes(), s.as_bytes());
        }

        #[test]
        fn literal_patterns_match_themselves(s in "[a-z0-9:]{0,16}") {
            proptest::prop_assert!(matches(s.as_bytes(), s.as_bytes()));
            let star = format!("{s}*");
            proptest::prop_assert!(matches(star.as_bytes(), s.as_bytes()) || s.is_empty());
        }
    }
}
