//! RESP2/RESP3 reply framing: find where one reply ends in a byte buffer, and
//! parse it into a small value tree for structural comparisons.

use crate::Error;

/// A parsed RESP2/RESP3 reply, kept close to the wire (type byte preserved).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// `+text`
    Simple(Vec<u8>),
    /// `-text` or `!len` (bulk error)
    Error(Vec<u8>),
    /// `:n`
    Int(i64),
    /// `$len` (also `=len` verbatim, flagged by `verbatim`)
    Bulk(Vec<u8>),
    /// `=len` verbatim string (format prefix included in the bytes)
    Verbatim(Vec<u8>),
    /// `$-1`, `*-1` or `_`
    Null,
    /// `*n`
    Array(Vec<Value>),
    /// `~n`
    Set(Vec<Value>),
    /// `%n` key/value pairs
    Map(Vec<(Value, Value)>),
    /// `>n`
    Push(Vec<Value>),
    /// `#t` / `#f`
    Bool(bool),
    /// `,text` (kept as text so `inf`/`nan` compare exactly)
    Double(Vec<u8>),
    /// `(digits`
    BigNum(Vec<u8>),
}

impl Value {
    /// Field `name` of an `INFO` reply (`name:value` lines), or a description of what the
    /// reply was instead ("missing" if the field is absent).
    pub fn info_field(&self, name: &str) -> String {
        match self {
            Value::Bulk(b) | Value::Verbatim(b) => String::from_utf8_lossy(b)
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("missing")
                .trim()
                .to_string(),
            other => format!("{other:?}"),
        }
    }

    /// The bytes of a simple/bulk/verbatim string or an error, if this is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b)
            | Value::Error(b)
            | Value::Bulk(b)
            | Value::Verbatim(b)
            | Value::Double(b)
            | Value::BigNum(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array, set or push reply.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) | Value::Set(v) | Value::Push(v) => Some(v),
            _ => None,
        }
    }

    /// True for `-ERR`-style replies.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }
}

/// Position of the first `\r\n` at or after `from`.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_i64(b: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("bad length/integer {:?}", show(b))))
}

/// Length in bytes of the first complete reply in `buf`, `Ok(None)` if it is
/// not complete yet, or an error if the bytes are not RESP.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    Ok(parse_at(buf, 0)?.map(|(_, end)| end))
}

/// Parse the first complete reply in `buf`: the value and the bytes it used.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, Error> {
    parse_at(buf, 0)
}

/// Parse exactly one reply that must fill `buf`.
pub fn parse_one(buf: &[u8]) -> Result<Value, Error> {
    match parse_at(buf, 0)? {
        Some((v, end)) if end == buf.len() => Ok(v),
        Some(_) => Err(Error::Protocol(format!(
            "trailing bytes after reply: {}",
            show(buf)
        ))),
        None => Err(Error::Protocol(format!("incomplete reply: {}", show(buf)))),
    }
}

fn parse_at(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, Error> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(eol) = line_end(buf, pos + 1) else {
        return Ok(None);
    };
    let line = &buf[pos + 1..eol];
    let next = eol + 2;
    let v = match kind {
        b'+' => Value::Simple(line.to_vec()),
        b'-' => Value::Error(line.to_vec()),
        b':' => Value::Int(parse_i64(line)?),
        b',' => Value::Double(line.to_vec()),
        b'(' => Value::BigNum(line.to_vec()),
        b'_' => Value::Null,
        b'#' => Value::Bool(line == b"t"),
        b'$' | b'=' | b'!' => {
            let n = parse_i64(line)?;
            if n < 0 {
                return Ok(Some((Value::Null, next)));
            }
            let n = n as usize;
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            let data = buf[next..next + n].to_vec();
            let end = next + n + 2;
            let v = match kind {
                b'$' => Value::Bulk(data),
                b'=' => Value::Verbatim(data),
                _ => Value::Error(data),
            };
            return Ok(Some((v, end)));
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_i64(line)?;
            if n < 0 {
                return Ok(Some((Value::Null, next)));
            }
            let count = if matches!(kind, b'%' | b'|') {
                n * 2
            } else {
                n
            } as usize;
            let mut items = Vec::with_capacity(count.min(1024));
            let mut p = next;
            for _ in 0..count {
                match parse_at(buf, p)? {
                    Some((v, e)) => {
                        items.push(v);
                        p = e;
                    }
                    None => return Ok(None),
                }
            }
            let v = match kind {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                b'>' => Value::Push(items),
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    if kind == b'|' {
                        // An attribute annotates the reply that follows it: skip to that reply.
                        return match parse_at(buf, p)? {
                            Some((v, e)) => Ok(Some((v, e))),
                            None => Ok(None),
                        };
                    }
                    Value::Map(pairs)
                }
            };
            return Ok(Some((v, p)));
        }
        other => {
            return Err(Error::Protocol(format!(
                "unknown reply type byte {:?} in {}",
                other as char,
                show(&buf[pos..])
            )))
        }
    };
    Ok(Some((v, next)))
}

/// Printable form of wire bytes: `\r\n` and non-printables escaped, long input cut.
pub fn show(b: &[u8]) -> String {
    const MAX: usize = 400;
    let mut s = String::new();
    for &c in b.iter().take(MAX) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > MAX {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

/// Encode a command as a RESP multibulk request.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_resp2_and_resp3() {
        assert_eq!(frame_len(b"+OK\r\n").unwrap(), Some(5));
        assert_eq!(frame_len(b"+OK\r").unwrap(), None);
        assert_eq!(frame_len(b"$3\r\nabc\r\n:1\r\n").unwrap(), Some(9));
        assert_eq!(frame_len(b"$3\r\nabc\r").unwrap(), None);
        assert_eq!(frame_len(b"$-1\r\n").unwrap(), Some(5));
        assert_eq!(frame_len(b"*2\r\n:1\r\n").unwrap(), None);
        assert_eq!(frame_len(b"*2\r\n:1\r\n$0\r\n\r\n").unwrap(), Some(14));
        assert_eq!(frame_len(b"%1\r\n+a\r\n#t\r\n").unwrap(), Some(12));
        assert_eq!(frame_len(b"_\r\n").unwrap(), Some(3));
        let v = parse_one(b"%1\r\n$1\r\nk\r\n~2\r\n,1.5\r\n(12\r\n").unwrap();
        assert_eq!(
            v,
            Value::Map(vec![(
                Value::Bulk(b"k".to_vec()),
                Value::Set(vec![
                    Value::Double(b"1.5".to_vec()),
                    Value::BigNum(b"12".to_vec())
                ])
            )])
        );
        assert!(frame_len(b"?x\r\n").is_err());
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode_command(&["GET", "k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }
}
