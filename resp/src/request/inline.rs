//! Inline requests (`PING`, `ECHO "hello world"` typed into a terminal): Redis's `sdssplitargs`.
//!
//! The quirks are Redis 7.0's, byte for byte (checked against redis-server 7.0.15):
//! - blanks between arguments are C `isspace` (space, `\t`, `\n`, `\v`, `\f`, `\r`), but an
//!   unquoted argument ends only at space, `\t`, `\n`, `\r` (so `PING\v` is the command `PING\v`);
//! - a quote may open in the middle of an argument (`ab"cd ef"` is `abcd ef`), and a closing
//!   quote must be followed by a blank or the end of the line;
//! - double quotes know `\n \r \t \b \a`, `\xHH` and `\<any>` (the byte itself); single quotes
//!   know only `\'`.

use bytes::Bytes;

/// Splits one inline line (without its `\n` / `\r\n`) into arguments, or `None` for unbalanced
/// quotes. Unquoted arguments are zero-copy slices of `line`.
pub(crate) fn split_args(line: &Bytes) -> Option<Vec<Bytes>> {
    let s: &[u8] = line;
    // Redis scans a NUL-terminated copy of the line: reading past the end yields 0.
    let at = |i: usize| -> u8 { s.get(i).copied().unwrap_or(0) };
    let mut out = Vec::new();
    let mut p = 0;
    loop {
        while at(p) != 0 && is_c_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Some(out);
        }
        let start = p;
        // `None` while the argument is a plain run of bytes that can be sliced from `line`.
        let mut owned: Option<Vec<u8>> = None;
        let (mut in_dq, mut in_sq) = (false, false);
        let mut end = p;
        loop {
            let c = at(p);
            if in_dq {
                let v = owned.get_or_insert_with(Vec::new);
                if c == b'\\' && at(p + 1) == b'x' && is_hex(at(p + 2)) && is_hex(at(p + 3)) {
                    v.push(hex_val(at(p + 2)) * 16 + hex_val(at(p + 3)));
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    v.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    v.push(c);
                }
            } else if in_sq {
                let v = owned.get_or_insert_with(Vec::new);
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    v.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    v.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        end = p;
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' | b'\'' => {
                        owned.get_or_insert_with(|| s[start..p].to_vec());
                        in_dq = c == b'"';
                        in_sq = c == b'\'';
                    }
                    _ => {
                        if let Some(v) = owned.as_mut() {
                            v.push(c);
                        }
                    }
                }
            }
            p += 1;
        }
        out.push(match owned {
            Some(v) => Bytes::from(v),
            None => line.slice(start..end),
        });
    }
}

/// C `isspace` in the "C" locale.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &[u8]) -> Option<Vec<Vec<u8>>> {
        split_args(&Bytes::copy_from_slice(s)).map(|v| v.into_iter().map(|b| b.to_vec()).collect())
    }

    fn ok(s: &[u8], want: &[&[u8]]) {
        let got = split(s).unwrap_or_else(|| panic!("{s:?} should split"));
        let want: Vec<Vec<u8>> = want.iter().map(|w| w.to_vec()).collect();
        assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(s));
    }

    #[test]
    fn plain_words_and_blanks() {
        ok(b"PING", &[b"PING"]);
        ok(b"  SET  k   v ", &[b"SET", b"k", b"v"]);
        ok(b"", &[]);
        ok(b" \t ", &[]);
        ok(b"a\rb", &[b"a", b"b"]);
        // \v and \f are skipped as leading blanks but do not end an argument (redis 7.0.15:
        // `\vPING\v` is the unknown command 'PING\v').
        ok(b"\x0bPING\x0b", &[b"PING\x0b"]);
        ok(b"\x0cA\x0c B", &[b"A\x0c", b"B"]);
    }

    #[test]
    fn double_quotes_and_escapes() {
        ok(b"ECHO \"hello world\"", &[b"ECHO", b"hello world"]);
        ok(b"ECHO \"a\\x41\\x4\"", &[b"ECHO", b"aAx4"]);
        ok(b"\"\\n\\r\\t\\b\\a\\\\\\\"\\q\"", &[b"\n\r\t\x08\x07\\\"q"]);
        ok(b"\"\\xff\\x00\\xAb\"", &[b"\xff\x00\xab"]);
        ok(b"\"\"", &[b""]);
        ok(b"\"a\" \"\"  \"b\"", &[b"a", b"", b"b"]);
        ok(b"ab\"cd ef\"", &[b"abcd ef"]);
        ok(b"\"x\"\x0bY", &[b"x", b"Y"]);
    }

    #[test]
    fn single_quotes() {
        ok(b"ECHO 'a\\'b'", &[b"ECHO", b"a'b"]);
        ok(b"'a\\nb'", &[b"a\\nb"]);
        ok(b"'a\"b'", &[b"a\"b"]);
        ok(b"x'y z'", &[b"xy z"]);
    }

    #[test]
    fn unbalanced_quotes() {
        for bad in [
            &b"SET \"a b"[..],
            b"ECHO \"ab\"cd",
            b"ECHO 'ab'cd",
            b"ECHO \"a\\",
            b"ECHO \"a\\\"",
            b"'abc",
            b"\"",
        ] {
            assert_eq!(split(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn plain_arguments_are_zero_copy() {
        let line = Bytes::from_static(b"SET key value");
        let args = split_args(&line).unwrap_or_default();
        assert_eq!(args.len(), 3);
        assert_eq!(args[1].as_ptr(), line[4..].as_ptr());
    }
}
