//! The sequential specification of one key: a Redis string that INCR can count with.

use crate::history::{Op, Ret};
use bytes::Bytes;

/// A string value, with canonical integers kept as numbers so INCR and equality are cheap.
/// Invariant: `Str` never holds the canonical decimal form of an i64 (Redis's `string2ll` set).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Value {
    Int(i64),
    Str(Bytes),
}

impl Value {
    pub(crate) fn from_bytes(b: &Bytes) -> Value {
        match canonical_int(b) {
            Some(n) => Value::Int(n),
            None => Value::Str(b.clone()),
        }
    }
}

/// Parses the strings Redis's INCR accepts: "0", or an optional '-' then a digit 1-9 and more
/// digits, within i64. "+1", "01", "-0", " 1" are not integers to Redis.
fn canonical_int(b: &[u8]) -> Option<i64> {
    if b == b"0" {
        return Some(0);
    }
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let first = *digits.first()?;
    if !(b'1'..=b'9').contains(&first) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The state of one key: absent, or a value.
pub(crate) type State = Option<Value>;

/// An operation with its argument normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MOp {
    Set(Value),
    SetGet(Value),
    Get,
    Incr,
    Del,
}

impl From<&Op> for MOp {
    fn from(op: &Op) -> Self {
        match op {
            Op::Set(v) => MOp::Set(Value::from_bytes(v)),
            Op::SetGet(v) => MOp::SetGet(Value::from_bytes(v)),
            Op::Get => MOp::Get,
            Op::Incr => MOp::Incr,
            Op::Del => MOp::Del,
        }
    }
}

/// A reply with values normalised; `Any` is the unconstrained result of an indeterminate op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MRet {
    Ok,
    Value(Option<Value>),
    Int(i64),
    NotInteger,
    Any,
}

impl From<&Ret> for MRet {
    fn from(ret: &Ret) -> Self {
        match ret {
            Ret::Ok => MRet::Ok,
            Ret::Value(v) => MRet::Value(v.as_ref().map(Value::from_bytes)),
            Ret::Int(n) => MRet::Int(*n),
            Ret::NotInteger => MRet::NotInteger,
        }
    }
}

/// Whether `ret` is a reply `op` can give at all, whatever the state (a SET answering an
/// integer is a bug no ordering can explain).
pub(crate) fn well_formed(op: &MOp, ret: &MRet) -> bool {
    match (op, ret) {
        (_, MRet::Any) => true,
        (MOp::Set(_), r) => *r == MRet::Ok,
        (MOp::SetGet(_) | MOp::Get, r) => matches!(r, MRet::Value(_)),
        (MOp::Incr, r) => matches!(r, MRet::Int(_) | MRet::NotInteger),
        (MOp::Del, r) => matches!(r, MRet::Int(0 | 1)),
    }
}

/// Applies `op` to `state`; `Some(new state)` when it answers `ret`, `None` when it cannot.
pub(crate) fn step(state: &State, op: &MOp, ret: &MRet) -> Option<State> {
    let any = *ret == MRet::Any;
    match op {
        MOp::Set(v) => (any || *ret == MRet::Ok).then(|| Some(v.clone())),
        MOp::SetGet(v) => match ret {
            MRet::Value(old) if old != state => None,
            MRet::Value(_) | MRet::Any => Some(Some(v.clone())),
            _ => None,
        },
        MOp::Get => match ret {
            MRet::Value(seen) if seen != state => None,
            MRet::Value(_) | MRet::Any => Some(state.clone()),
            _ => None,
        },
        MOp::Incr => {
            let next = match state {
                None => Some(1),
                Some(Value::Int(n)) => n.checked_add(1),
                Some(Value::Str(_)) => None,
            };
            match (next, ret) {
                (Some(n), MRet::Int(m)) if n == *m => Some(Some(Value::Int(n))),
                (Some(n), MRet::Any) => Some(Some(Value::Int(n))),
                (None, MRet::NotInteger | MRet::Any) => Some(state.clone()),
                _ => None,
            }
        }
        MOp::Del => {
            let existed = i64::from(state.is_some());
            (any || *ret == MRet::Int(existed)).then_some(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> Value {
        Value::from_bytes(&Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn integers_follow_redis_string2ll() {
        for (s, n) in [
            ("0", 0),
            ("7", 7),
            ("-12", -12),
            ("9223372036854775807", i64::MAX),
        ] {
            assert_eq!(v(s), Value::Int(n), "{s}");
        }
        for s in [
            "",
            "-",
            "+1",
            "01",
            "-0",
            " 1",
            "1 ",
            "1.0",
            "9223372036854775808",
            "x",
        ] {
            assert!(matches!(v(s), Value::Str(_)), "{s}");
        }
    }

    #[test]
    fn steps_follow_redis() {
        let none: State = None;
        assert_eq!(
            step(&none, &MOp::Incr, &MRet::Int(1)),
            Some(Some(Value::Int(1)))
        );
        assert_eq!(step(&none, &MOp::Incr, &MRet::Int(2)), None);
        let s = Some(v("abc"));
        assert_eq!(step(&s, &MOp::Incr, &MRet::NotInteger), Some(s.clone()));
        assert_eq!(step(&s, &MOp::Incr, &MRet::Int(1)), None);
        let max = Some(Value::Int(i64::MAX));
        assert_eq!(step(&max, &MOp::Incr, &MRet::NotInteger), Some(max.clone()));
        assert_eq!(step(&s, &MOp::Del, &MRet::Int(1)), Some(None));
        assert_eq!(step(&none, &MOp::Del, &MRet::Int(1)), None);
        assert_eq!(step(&none, &MOp::Del, &MRet::Int(0)), Some(None));
        let got = MRet::Value(s.clone());
        assert_eq!(
            step(&s, &MOp::SetGet(v("5")), &got),
            Some(Some(Value::Int(5)))
        );
        assert_eq!(step(&none, &MOp::SetGet(v("5")), &got), None);
        assert_eq!(step(&s, &MOp::Get, &MRet::Value(None)), None);
        assert_eq!(step(&s, &MOp::Get, &MRet::Any), Some(s.clone()));
        assert!(!well_formed(&MOp::Set(v("1")), &MRet::Int(1)));
        assert!(!well_formed(&MOp::Del, &MRet::Int(2)));
    }
}
