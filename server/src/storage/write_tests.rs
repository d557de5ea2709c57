//! Tests of the write-command codec: frozen opcodes and bytes, round trips, replay.
use super::*;
use pinnacle_resp::Reply;
use proptest::prelude::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// One example of every operation, in opcode order.
fn examples() -> Vec<WriteOp> {
    vec![
        WriteOp::Set {
            key: b("k"),
            value: b("v"),
            cond: SetCond::Nx,
            get: true,
            expire: ExpireSpec::At(5),
        },
        WriteOp::SetNx {
            key: b("k"),
            value: b("v"),
        },
        WriteOp::GetDel { key: b("k") },
        WriteOp::GetEx {
            key: b("k"),
            expire: ExpireSpec::Clear,
        },
        WriteOp::MSet {
            pairs: vec![(b("a"), b("1"))],
        },
        WriteOp::MSetNx {
            pairs: vec![(b("a"), b("1"))],
        },
        WriteOp::IncrBy {
            key: b("k"),
            delta: -3,
        },
        WriteOp::IncrByFloat {
            key: b("k"),
            delta: b("1.5"),
        },
        WriteOp::Append {
            key: b("k"),
            value: b("x"),
        },
        WriteOp::SetRange {
            key: b("k"),
            offset: 3,
            value: b("x"),
        },
        WriteOp::Del {
            keys: vec![b("a"), b("b")],
        },
        WriteOp::Expire {
            key: b("k"),
            at_ms: -1,
            cond: ExpireCond::XxGt,
        },
        WriteOp::Persist { key: b("k") },
        WriteOp::Rename {
            src: b("a"),
            dst: b("b"),
            nx: true,
        },
        WriteOp::Copy {
            src: b("a"),
            dst: b("b"),
            replace: false,
        },
        WriteOp::Restore {
            key: b("k"),
            payload: b("p"),
            expire_at: 9,
            replace: true,
        },
        WriteOp::FlushAll,
        WriteOp::DelExpired { keys: vec![b("x")] },
        WriteOp::HSet {
            key: b("h"),
            pairs: vec![(b("f"), b("v"))],
            nx: false,
        },
        WriteOp::HDel {
            key: b("h"),
            fields: vec![b("f")],
        },
        WriteOp::HIncrBy {
            key: b("h"),
            field: b("f"),
            delta: -3,
        },
        WriteOp::HIncrByFloat {
            key: b("h"),
            field: b("f"),
            delta: b("1.5"),
        },
        WriteOp::SAdd {
            key: b("s"),
            members: vec![b("m")],
        },
        WriteOp::SRem {
            key: b("s"),
            members: vec![b("m")],
        },
        WriteOp::SPop {
            key: b("s"),
            members: vec![b("m")],
            count: true,
        },
        WriteOp::SMove {
            src: b("s"),
            dst: b("t"),
            member: b("m"),
        },
        WriteOp::SStore {
            kind: SetOpKind::Diff,
            dst: b("d"),
            keys: vec![b("a"), b("b")],
        },
        WriteOp::LPush {
            key: b("l"),
            elems: vec![b("a")],
            left: true,
            xx: false,
        },
        WriteOp::LPop {
            key: b("l"),
            left: false,
            count: Some(2),
        },
        WriteOp::LSet {
            key: b("l"),
            index: -1,
            value: b("v"),
        },
        WriteOp::LRem {
            key: b("l"),
            count: -2,
            elem: b("a"),
        },
        WriteOp::LTrim {
            key: b("l"),
            start: 1,
            stop: -1,
        },
        WriteOp::LInsert {
            key: b("l"),
            before: true,
            pivot: b("p"),
            elem: b("e"),
        },
        WriteOp::LMove {
            src: b("l"),
            dst: b("m"),
            from_left: false,
            to_left: true,
        },
        WriteOp::LMPop {
            keys: vec![b("l"), b("m")],
            left: true,
            count: 3,
        },
        WriteOp::ZAdd {
            key: b("z"),
            flags: 0,
            pairs: vec![(1.5, b("m"))],
        },
        WriteOp::ZRem {
            key: b("z"),
            members: vec![b("m")],
        },
        WriteOp::ZPop {
            key: b("z"),
            max: true,
            count: 1,
        },
        WriteOp::ZRemRange {
            key: b("z"),
            kind: crate::storage::zset::RemRange::Lex,
            min: b("-"),
            max: b("+"),
        },
        WriteOp::ZStore {
            kind: crate::storage::zset_ops::ZOpKind::Inter,
            dst: b("d"),
            keys: vec![b("a"), b("b")],
            weights: vec![2.0, 0.5],
            agg: crate::storage::zset_ops::Aggregate::Max,
        },
        WriteOp::ZMPop {
            keys: vec![b("a"), b("b")],
            max: true,
            count: 3,
        },
        WriteOp::ZRangeStore {
            dst: b("d"),
            src: b("s"),
            kind: crate::storage::zset::RemRange::Score,
            rev: true,
            min: b("(1"),
            max: b("+inf"),
            offset: 1,
            limit: -1,
        },
        WriteOp::XAdd {
            key: b("x"),
            id: crate::storage::stream::IdSpec::AutoSeq(5),
            nomkstream: true,
            fields: vec![b("f"), b("v")],
            trim: Some(crate::storage::stream::Trim {
                minid: true,
                approx: true,
                maxlen: 0,
                min_id: crate::storage::stream::StreamId { ms: 3, seq: 4 },
                limit: 7,
            }),
        },
        WriteOp::XTrim {
            key: b("x"),
            trim: crate::storage::stream::Trim {
                minid: false,
                approx: false,
                maxlen: 10,
                min_id: crate::storage::stream::StreamId::default(),
                limit: 0,
            },
        },
        WriteOp::XDel {
            key: b("x"),
            ids: vec![b("1-1")],
        },
        WriteOp::XGroup {
            op: crate::storage::stream::group_op::GroupOp::Ack {
                key: b("x"),
                group: b("g"),
                ids: vec![crate::storage::stream::StreamId { ms: 1, seq: 2 }],
            },
        },
        WriteOp::XSetId {
            key: b("x"),
            last: crate::storage::stream::StreamId { ms: 9, seq: 1 },
            added: Some(4),
            max_deleted: Some(crate::storage::stream::StreamId { ms: 3, seq: 0 }),
        },
        WriteOp::TxRead {
            resp3: true,
            args: vec![b("LRANGE"), b("l"), b("0"), b("-1")],
        },
        WriteOp::SPopAt {
            key: b("s"),
            count: Some(3),
            seed: 42,
        },
    ]
}

#[test]
fn opcodes_are_frozen() {
    // Stored in Raft logs: never renumber, only append.
    let codes: Vec<u8> = examples().iter().map(WriteOp::opcode).collect();
    assert_eq!(codes, (1..=49).collect::<Vec<u8>>());
    assert_eq!(crate::storage::zset::RemRange::Lex as u8, 2);
    assert_eq!(crate::storage::zset::ZADD_INCR, 32);
    assert_eq!(SetOpKind::Inter as u8, 0);
    assert_eq!(SetOpKind::Diff as u8, 2);
    assert_eq!(crate::storage::zset_ops::ZOpKind::Diff as u8, 2);
    assert_eq!(crate::storage::zset_ops::Aggregate::Max as u8, 2);
    assert_eq!(FORMAT_VERSION, 1);
    assert_eq!(SetCond::Xx as u8, 2);
    assert_eq!(ExpireCond::XxLt as u8, 6);
}

#[test]
fn encoding_is_frozen() {
    let cmd = WriteCommand {
        now_ms: 0x0102,
        op: WriteOp::Set {
            key: b("k"),
            value: b("v"),
            cond: SetCond::Xx,
            get: false,
            expire: ExpireSpec::At(7),
        },
    };
    let expect: &[u8] = &[
        1, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v', 2, 0, 2, 0, 0, 0, 0, 0,
        0, 0, 7,
    ];
    assert_eq!(&cmd.encode()[..], expect);
}

#[test]
fn bad_input_is_an_error() {
    for op in examples() {
        let enc = WriteCommand { now_ms: 1, op }.encode();
        for cut in 0..enc.len() {
            assert!(WriteCommand::decode(enc.slice(..cut)).is_err());
        }
        let mut long = enc.to_vec();
        long.push(0);
        assert_eq!(
            WriteCommand::decode(Bytes::from(long)),
            Err(DecodeError::Trailing)
        );
    }
    assert_eq!(
        WriteCommand::decode(Bytes::from_static(&[2, 1])),
        Err(DecodeError::Version(2))
    );
    assert_eq!(
        WriteCommand::decode(Bytes::from_static(&[1, 99, 0, 0, 0, 0, 0, 0, 0, 0])),
        Err(DecodeError::Opcode(99))
    );
}

fn arb_bytes() -> BoxedStrategy<Bytes> {
    proptest::collection::vec(any::<u8>(), 0..16)
        .prop_map(Bytes::from)
        .boxed()
}

fn arb_expire() -> impl Strategy<Value = ExpireSpec> {
    prop_oneof![
        Just(ExpireSpec::Clear),
        Just(ExpireSpec::Keep),
        any::<u64>().prop_map(ExpireSpec::At)
    ]
}

fn arb_op() -> impl Strategy<Value = WriteOp> {
    let keys = proptest::collection::vec(arb_bytes(), 0..4);
    let pairs = proptest::collection::vec((arb_bytes(), arb_bytes()), 0..4);
    let pairs2 = pairs.clone();
    let cond = prop_oneof![Just(SetCond::Always), Just(SetCond::Nx), Just(SetCond::Xx)];
    let econd = (0u8..7).prop_map(|c| match c {
        0 => ExpireCond::Always,
        1 => ExpireCond::Nx,
        2 => ExpireCond::Xx,
        3 => ExpireCond::Gt,
        4 => ExpireCond::Lt,
        5 => ExpireCond::XxGt,
        _ => ExpireCond::XxLt,
    });
    prop_oneof![
        (arb_bytes(), arb_bytes(), cond, any::<bool>(), arb_expire()).prop_map(
            |(key, value, cond, get, expire)| WriteOp::Set {
                key,
                value,
                cond,
                get,
                expire
            }
        ),
        (arb_bytes(), arb_bytes()).prop_map(|(key, value)| WriteOp::SetNx { key, value }),
        arb_bytes().prop_map(|key| WriteOp::GetDel { key }),
        (arb_bytes(), arb_expire()).prop_map(|(key, expire)| WriteOp::GetEx { key, expire }),
        pairs.clone().prop_map(|pairs| WriteOp::MSet { pairs }),
        pairs.prop_map(|pairs| WriteOp::MSetNx { pairs }),
        (arb_bytes(), any::<i64>()).prop_map(|(key, delta)| WriteOp::IncrBy { key, delta }),
        (arb_bytes(), arb_bytes()).prop_map(|(key, delta)| WriteOp::IncrByFloat { key, delta }),
        (arb_bytes(), arb_bytes()).prop_map(|(key, value)| WriteOp::Append { key, value }),
        (arb_bytes(), any::<u64>(), arb_bytes())
            .prop_map(|(key, offset, value)| WriteOp::SetRange { key, offset, value }),
        keys.clone().prop_map(|keys| WriteOp::Del { keys }),
        (arb_bytes(), any::<i64>(), econd).prop_map(|(key, at_ms, cond)| WriteOp::Expire {
            key,
            at_ms,
            cond
        }),
        arb_bytes().prop_map(|key| WriteOp::Persist { key }),
        (arb_bytes(), arb_bytes(), any::<bool>()).prop_map(|(src, dst, nx)| WriteOp::Rename {
            src,
            dst,
            nx
        }),
        (arb_bytes(), arb_bytes(), any::<bool>()).prop_map(|(src, dst, replace)| WriteOp::Copy {
            src,
            dst,
            replace
        }),
        (arb_bytes(), arb_bytes(), any::<u64>(), any::<bool>()).prop_map(
            |(key, payload, expire_at, replace)| WriteOp::Restore {
                key,
                payload,
                expire_at,
                replace
            }
        ),
        Just(WriteOp::FlushAll),
        keys.clone().prop_map(|keys| WriteOp::DelExpired { keys }),
        (arb_bytes(), pairs2, any::<bool>()).prop_map(|(key, pairs, nx)| WriteOp::HSet {
            key,
            pairs,
            nx
        }),
        (arb_bytes(), keys.clone()).prop_map(|(key, fields)| WriteOp::HDel { key, fields }),
        (arb_bytes(), arb_bytes(), any::<i64>()).prop_map(|(key, field, delta)| WriteOp::HIncrBy {
            key,
            field,
            delta
        }),
        (arb_bytes(), keys.clone(), any::<bool>()).prop_map(|(key, members, count)| {
            WriteOp::SPop {
                key,
                members,
                count,
            }
        }),
        (
            arb_bytes(),
            proptest::option::of(any::<u64>()),
            any::<u64>()
        )
            .prop_map(|(key, count, seed)| WriteOp::SPopAt { key, count, seed }),
        (arb_bytes(), arb_bytes(), arb_bytes()).prop_map(|(src, dst, member)| WriteOp::SMove {
            src,
            dst,
            member
        }),
        (
            arb_bytes(),
            any::<bool>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(key, left, count)| WriteOp::LPop { key, left, count }),
        (arb_bytes(), any::<i64>(), any::<i64>()).prop_map(|(key, start, stop)| WriteOp::LTrim {
            key,
            start,
            stop
        }),
        (keys.clone(), any::<bool>(), any::<u64>())
            .prop_map(|(keys, left, count)| WriteOp::LMPop { keys, left, count }),
        (arb_bytes(), keys).prop_map(|(dst, keys)| WriteOp::SStore {
            kind: SetOpKind::Union,
            dst,
            keys
        }),
    ]
}

proptest! {
    #[test]
    fn encode_decode_round_trip(now_ms in any::<u64>(), op in arb_op()) {
        let cmd = WriteCommand { now_ms, op };
        prop_assert_eq!(WriteCommand::decode(cmd.encode()), Ok(cmd));
    }

    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = WriteCommand::decode(Bytes::from(data));
    }
}

#[test]
fn replaying_the_log_on_another_replica_gives_the_same_state_and_replies() {
    use crate::storage::Db;
    let t = 1_700_000_000_000u64;
    let entries: Vec<WriteCommand> = vec![
        WriteCommand {
            now_ms: t,
            op: WriteOp::MSet {
                pairs: vec![(b("a"), b("1")), (b("b"), b("x"))],
            },
        },
        WriteCommand {
            now_ms: t + 1,
            op: WriteOp::IncrBy {
                key: b("a"),
                delta: 41,
            },
        },
        WriteCommand {
            now_ms: t + 2,
            op: WriteOp::IncrByFloat {
                key: b("f"),
                delta: b("0.1"),
            },
        },
        WriteCommand {
            now_ms: t + 3,
            op: WriteOp::Expire {
                key: b("b"),
                at_ms: (t + 10) as i64,
                cond: ExpireCond::Always,
            },
        },
        // Stamped by a leader whose clock is behind: still applied at t + 3 or later.
        WriteCommand {
            now_ms: t - 100,
            op: WriteOp::Append {
                key: b("b"),
                value: b("y"),
            },
        },
        WriteCommand {
            now_ms: t + 20,
            op: WriteOp::SetNx {
                key: b("b"),
                value: b("new"),
            },
        },
        WriteCommand {
            now_ms: t + 21,
            op: WriteOp::Rename {
                src: b("a"),
                dst: b("c"),
                nx: false,
            },
        },
        WriteCommand {
            now_ms: t + 22,
            op: WriteOp::DelExpired { keys: vec![b("c")] },
        },
    ];
    let leader = Db::in_memory();
    let follower = Db::in_memory();
    let mut replies = Vec::new();
    for e in &entries {
        replies.push(leader.apply(e));
    }
    for (e, want) in entries.iter().zip(&replies) {
        let got = follower.apply_encoded(e.encode()).expect("decodes");
        assert_eq!(&got, want, "{e:?}");
    }
    assert_eq!(replies[1], Reply::Integer(42));
    assert_eq!(
        replies[5],
        Reply::Integer(1),
        "b expired at t+10, so SETNX at t+20 wins"
    );
    let at = t + 30;
    for key in ["a", "b", "c", "f"] {
        assert_eq!(
            leader.get(key.as_bytes(), at).expect("read"),
            follower.get(key.as_bytes(), at).expect("read"),
            "{key}"
        );
    }
    assert!(follower.get(b"c", at).expect("read").is_some());
}

#[test]
fn mset_repeated_keys_keep_the_last_value() {
    let db = crate::storage::Db::in_memory();
    let mut pairs = vec![(b("k"), b("1")), (b("j"), b("x")), (b("k"), b("2"))];
    let cmd = |pairs: Vec<(Bytes, Bytes)>| WriteCommand {
        now_ms: 1,
        op: WriteOp::MSet { pairs },
    };
    assert_eq!(db.apply(&cmd(pairs.clone())), Reply::ok());
    assert_eq!(db.get(b"k", 1).expect("read").expect("k").value, b("2"));
    assert_eq!(db.get(b"j", 1).expect("read").expect("j").value, b("x"));
    // Past the small-input path: 40 pairs over 3 keys.
    for i in 0..40 {
        pairs.push((b(["a", "b", "k"][i % 3]), Bytes::from(i.to_string())));
    }
    assert_eq!(db.apply(&cmd(pairs)), Reply::ok());
    for (key, want) in [("a", "39"), ("b", "37"), ("k", "38"), ("j", "x")] {
        let got = db.get(key.as_bytes(), 1).expect("read").expect("present");
        assert_eq!(got.value, b(want), "{key}");
    }
}
