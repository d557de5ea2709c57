//! Every reply we encode must decode with an independent implementation (`redis-protocol`) to
//! the frame the reply stands for, in both protocols.

use super::*;
use proptest::prelude::*;
use redis_protocol::resp2::types::OwnedFrame as F2;
use redis_protocol::resp3::types::{FrameMap, FrameSet, OwnedFrame as F3, VerbatimStringFormat};

/// The RESP2 frame a reply must decode to.
fn resp2_frame(r: &Reply) -> F2 {
    let bulk = |b: &[u8]| F2::BulkString(b.to_vec());
    match r {
        Reply::Simple(s) => F2::SimpleString(s.to_vec()),
        Reply::Error(e) => F2::Error(String::from_utf8_lossy(e).into_owned()),
        Reply::Integer(n) => F2::Integer(*n),
        Reply::Bulk(b) => bulk(b),
        Reply::Null | Reply::NullArray => F2::Null,
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
            F2::Array(items.iter().map(resp2_frame).collect())
        }
        Reply::Map(pairs) => F2::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [resp2_frame(k), resp2_frame(v)])
                .collect(),
        ),
        Reply::Double(d) => bulk(format_double(*d).as_bytes()),
        Reply::Boolean(b) => F2::Integer(i64::from(*b)),
        Reply::Verbatim(_, text) => bulk(text),
        Reply::BigNumber(n) => bulk(n),
        Reply::BulkArray(a) => F2::Array(a.items().iter().map(|b| bulk(b)).collect()),
    }
}

/// The RESP3 frame a reply must decode to.
fn resp3_frame(r: &Reply) -> F3 {
    let attributes = None;
    match r {
        Reply::Simple(s) => F3::SimpleString {
            data: s.to_vec(),
            attributes,
        },
        Reply::Error(e) => F3::SimpleError {
            data: String::from_utf8_lossy(e).into_owned(),
            attributes,
        },
        Reply::Integer(n) => F3::Number {
            data: *n,
            attributes,
        },
        Reply::Bulk(b) => F3::BlobString {
            data: b.to_vec(),
            attributes,
        },
        Reply::Null | Reply::NullArray => F3::Null,
        Reply::Array(items) => F3::Array {
            data: items.iter().map(resp3_frame).collect(),
            attributes,
        },
        Reply::BulkArray(a) => F3::Array {
            data: a
                .items()
                .into_iter()
                .map(|b| F3::BlobString {
                    data: b.to_vec(),
                    attributes: None,
                })
                .collect(),
            attributes,
        },
        Reply::Push(items) => F3::Push {
            data: items.iter().map(resp3_frame).collect(),
            attributes,
        },
        Reply::Set(items) => F3::Set {
            data: items.iter().map(resp3_frame).collect::<FrameSet<_>>(),
            attributes,
        },
        Reply::Map(pairs) => F3::Map {
            data: pairs
                .iter()
                .map(|(k, v)| (resp3_frame(k), resp3_frame(v)))
                .collect::<FrameMap<_, _>>(),
            attributes,
        },
        Reply::Double(d) => F3::Double {
            data: *d,
            attributes,
        },
        Reply::Boolean(b) => F3::Boolean {
            data: *b,
            attributes,
        },
        Reply::Verbatim(fmt, text) => F3::VerbatimString {
            data: text.to_vec(),
            format: if *fmt == "mkd" {
                VerbatimStringFormat::Markdown
            } else {
                VerbatimStringFormat::Text
            },
            attributes,
        },
        Reply::BigNumber(n) => F3::BigNumber {
            data: n.to_vec(),
            attributes,
        },
    }
}

/// Scalars usable as map keys and set members (redis-protocol hashes only scalars).
fn key() -> impl Strategy<Value = Reply> {
    prop_oneof![
        "[a-zA-Z0-9 :_.-]{0,12}".prop_map(|s| Reply::Simple(Bytes::from(s))),
        any::<i64>().prop_map(Reply::Integer),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(|b| Reply::Bulk(Bytes::from(b))),
    ]
}

fn scalar() -> impl Strategy<Value = Reply> {
    prop_oneof![
        key(),
        "(ERR|WRONGTYPE|MOVED) [a-zA-Z0-9 ':]{0,16}".prop_map(|s| Reply::Error(Bytes::from(s))),
        Just(Reply::Null),
        Just(Reply::NullArray),
        any::<f64>()
            .prop_filter("NaN is never equal", |d| !d.is_nan())
            .prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Boolean),
        (
            prop_oneof![Just("txt"), Just("mkd")],
            prop::collection::vec(any::<u8>(), 0..24)
        )
            .prop_map(|(f, t)| Reply::Verbatim(f, Bytes::from(t))),
        "-?[1-9][0-9]{0,40}".prop_map(|s| Reply::BigNumber(Bytes::from(s))),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    scalar().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
            prop::collection::vec(key(), 0..6).prop_map(Reply::Set),
            // Duplicate keys are legal RESP3 but a map decoder keeps only one of them.
            prop::collection::vec((key(), inner.clone()), 0..6).prop_map(|mut pairs| {
                let mut seen = std::collections::HashSet::new();
                pairs.retain(|(k, _)| seen.insert(k.to_bytes(Protocol::Resp3)));
                Reply::Map(pairs)
            }),
            prop::collection::vec(inner, 0..6).prop_map(Reply::Push),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn resp2_decodes_to_the_same_frame(replies in prop::collection::vec(reply(), 1..4)) {
        let mut wire = BytesMut::new();
        for r in &replies {
            r.encode(Protocol::Resp2, &mut wire);
        }
        let mut at = 0;
        for r in &replies {
            let decoded = redis_protocol::resp2::decode::decode(&wire[at..]);
            let Ok(Some((frame, used))) = decoded else {
                return Err(TestCaseError::fail(format!("{decoded:?} for {r:?}")));
            };
            prop_assert_eq!(frame, resp2_frame(r));
            at += used;
        }
        prop_assert_eq!(at, wire.len());
    }

    #[test]
    fn resp3_decodes_to_the_same_frame(replies in prop::collection::vec(reply(), 1..4)) {
        let mut wire = BytesMut::new();
        for r in &replies {
            r.encode(Protocol::Resp3, &mut wire);
        }
        let mut at = 0;
        for r in &replies {
            let decoded = redis_protocol::resp3::decode::complete::decode(&wire[at..]);
            let Ok(Some((frame, used))) = decoded else {
                return Err(TestCaseError::fail(format!("{decoded:?} for {r:?}")));
            };
            prop_assert_eq!(frame, resp3_frame(r));
            at += used;
        }
        prop_assert_eq!(at, wire.len());
    }
}
