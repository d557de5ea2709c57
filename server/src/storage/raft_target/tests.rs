use super::*;
use crate::storage::reply_codec::decode_list;
use crate::storage::WriteOp;
use pinnacle_lsm::SyncPolicy;

fn cmd(op: WriteOp) -> Bytes {
    WriteCommand { now_ms: 1_000, op }.encode()
}

fn incr(key: &str) -> Bytes {
    cmd(WriteOp::IncrBy {
        key: Bytes::copy_from_slice(key.as_bytes()),
        delta: 1,
    })
}

fn open(dir: &std::path::Path) -> Db {
    Db::open(dir, SyncPolicy::Never).expect("open")
}

fn replies(raw: &[u8]) -> Vec<Reply> {
    decode_list(raw.to_vec()).expect("reply list")
}

fn string(db: &Db, key: &str) -> Option<Bytes> {
    db.get(key.as_bytes(), 2_000).expect("get").map(|m| m.value)
}

#[test]
fn applies_every_command_of_a_proposal_and_replies_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let p = encode_proposal(&[incr("a"), incr("a"), incr("b")]);
    let out = ApplyTarget::apply(
        &db,
        &[Command {
            index: 5,
            payload: &p,
        }],
        b"meta-5",
    )
    .expect("apply");
    assert_eq!(
        replies(&out[0]),
        vec![Reply::Integer(1), Reply::Integer(2), Reply::Integer(1)]
    );
    assert_eq!(db.applied_meta().expect("meta"), Some(b"meta-5".to_vec()));
}

#[test]
fn a_replayed_entry_is_not_applied_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p1 = encode_proposal(&[incr("n")]);
    let p2 = encode_proposal(&[incr("n"), incr("n")]);
    {
        let db = open(dir.path());
        ApplyTarget::apply(
            &db,
            &[Command {
                index: 1,
                payload: &p1,
            }],
            b"m1",
        )
        .expect("apply");
        // The second call's writes land but its meta is lost (a crash before the meta batch).
        let mut progress = db.inner.raft_progress.lock();
        for (j, raw) in decode_proposal(&p2)
            .expect("decodes")
            .into_iter()
            .enumerate()
        {
            let c = WriteCommand::decode(raw).expect("command");
            let extra = (system_key(RAFT_PROGRESS), progress_record((2, j as u32)));
            db.apply_core(&c, Some(extra), None).expect("apply");
            *progress = (2, j as u32);
        }
        drop(progress);
        db.engine().flush().expect("flush");
    }
    let db = open(dir.path());
    // The order of a real restart: the group opens (reads the meta) and replays at once;
    // replication is switched on for clients only afterwards.
    assert_eq!(db.applied_meta().expect("meta"), Some(b"m1".to_vec()));
    // Raft replays entry 2 from the stored meta: nothing may change.
    let out = ApplyTarget::apply(
        &db,
        &[Command {
            index: 2,
            payload: &p2,
        }],
        b"m2",
    )
    .expect("replay");
    assert_eq!(replies(&out[0]), vec![Reply::Null, Reply::Null]);
    assert_eq!(string(&db, "n").as_deref(), Some(&b"3"[..]));
    // A new entry applies normally.
    let p3 = encode_proposal(&[incr("n")]);
    let out = ApplyTarget::apply(
        &db,
        &[Command {
            index: 3,
            payload: &p3,
        }],
        b"m3",
    )
    .expect("apply");
    assert_eq!(replies(&out[0]), vec![Reply::Integer(4)]);
}

#[test]
fn snapshot_install_reproduces_the_state() {
    let src_dir = tempfile::tempdir().expect("tempdir");
    let dst_dir = tempfile::tempdir().expect("tempdir");
    let src = open(src_dir.path());
    let mut cmds = Vec::new();
    for i in 0..500 {
        cmds.push(cmd(WriteOp::Set {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from(format!("v{i}")),
            cond: crate::storage::SetCond::Always,
            get: false,
            expire: crate::storage::ExpireSpec::Clear,
        }));
    }
    cmds.push(cmd(WriteOp::HSet {
        key: Bytes::from_static(b"h"),
        pairs: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"x"))],
        nx: false,
    }));
    let p = encode_proposal(&cmds);
    ApplyTarget::apply(
        &src,
        &[Command {
            index: 7,
            payload: &p,
        }],
        b"meta-7",
    )
    .expect("apply");
    let mut image = Vec::new();
    let meta = ApplyTarget::snapshot(&src, &mut image).expect("snapshot");
    assert_eq!(meta, b"meta-7".to_vec());

    let dst = open(dst_dir.path());
    // Old data in the destination must disappear.
    let junk = encode_proposal(&[incr("junk")]);
    ApplyTarget::apply(
        &dst,
        &[Command {
            index: 1,
            payload: &junk,
        }],
        b"old",
    )
    .expect("apply");
    ApplyTarget::install(&dst, &mut image.as_slice(), &meta).expect("install");
    assert_eq!(dst.applied_meta().expect("meta"), Some(b"meta-7".to_vec()));
    assert_eq!(string(&dst, "junk"), None);
    for i in [0, 250, 499] {
        assert_eq!(
            string(&dst, &format!("k{i}")),
            Some(Bytes::from(format!("v{i}")))
        );
    }
    assert_eq!(dst.dbsize().expect("dbsize"), 501);
    // The next entry applies on top of the installed state and skips nothing it shouldn't.
    let p = encode_proposal(&[incr("after")]);
    let out = ApplyTarget::apply(
        &dst,
        &[Command {
            index: 8,
            payload: &p,
        }],
        b"meta-8",
    )
    .expect("apply");
    assert_eq!(replies(&out[0]), vec![Reply::Integer(1)]);
}

#[test]
fn an_interrupted_install_reports_no_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let p = encode_proposal(&[incr("a")]);
    ApplyTarget::apply(
        &db,
        &[Command {
            index: 1,
            payload: &p,
        }],
        b"m1",
    )
    .expect("apply");
    // An image cut short: install fails half way, leaving the mark.
    let mut image = Vec::new();
    ApplyTarget::snapshot(&db, &mut image).expect("snapshot");
    image.truncate(image.len() - 6);
    assert!(ApplyTarget::install(&db, &mut image.as_slice(), b"m9").is_err());
    assert_eq!(db.applied_meta().expect("meta"), None);
}

#[test]
fn garbage_proposals_get_an_empty_reply_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let out = ApplyTarget::apply(
        &db,
        &[Command {
            index: 1,
            payload: b"\x07junk",
        }],
        b"m",
    )
    .expect("apply");
    assert_eq!(replies(&out[0]), Vec::<Reply>::new());
}

fn set(key: &str, value: &str) -> Bytes {
    cmd(WriteOp::Set {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        cond: crate::storage::SetCond::Always,
        get: false,
        expire: crate::storage::ExpireSpec::Clear,
    })
}

#[test]
fn blind_writes_batched_together_are_seen_by_later_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let p1 = encode_proposal(&[set("a", "5"), incr("a"), set("a", "7"), set("b", "x")]);
    let p2 = encode_proposal(&[incr("a"), set("c", "1")]);
    let out = ApplyTarget::apply(
        &db,
        &[
            Command {
                index: 1,
                payload: &p1,
            },
            Command {
                index: 2,
                payload: &p2,
            },
        ],
        b"m2",
    )
    .expect("apply");
    assert_eq!(
        replies(&out[0]),
        vec![Reply::ok(), Reply::Integer(6), Reply::ok(), Reply::ok()]
    );
    assert_eq!(replies(&out[1]), vec![Reply::Integer(8), Reply::ok()]);
    assert_eq!(string(&db, "a").as_deref(), Some(&b"8"[..]));
    assert_eq!(string(&db, "c").as_deref(), Some(&b"1"[..]));
    // The last blind write's position is recorded: replaying entry 2 changes nothing.
    assert_eq!(*db.inner.raft_progress.lock(), (2, 1));
    let out = ApplyTarget::apply(
        &db,
        &[Command {
            index: 2,
            payload: &p2,
        }],
        b"m2",
    )
    .expect("replay");
    assert_eq!(replies(&out[0]), vec![Reply::Null, Reply::Null]);
    assert_eq!(string(&db, "a").as_deref(), Some(&b"8"[..]));
}

#[test]
fn a_transaction_applies_as_one_item_and_sees_its_own_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let txn = shard_ctl::atomic(&[set("t", "1"), incr("t"), incr("t")]);
    let tagged = shard_ctl::tag(crate::storage::slot::key_slot(b"t"), &txn);
    let p = encode_proposal(&[incr("x"), tagged, txn.clone()]);
    let out = ApplyTarget::apply(
        &db,
        &[Command {
            index: 3,
            payload: &p,
        }],
        b"m3",
    )
    .expect("apply");
    let three = Reply::Array(vec![Reply::ok(), Reply::Integer(2), Reply::Integer(3)]);
    assert_eq!(
        replies(&out[0]),
        vec![Reply::Integer(1), three.clone(), three]
    );
    assert_eq!(string(&db, "t").as_deref(), Some(&b"3"[..]));
    // Replaying the entry applies nothing twice.
    let out = ApplyTarget::apply(
        &db,
        &[Command {
            index: 3,
            payload: &p,
        }],
        b"m3",
    )
    .expect("replay");
    assert_eq!(replies(&out[0]), vec![Reply::Null; 3]);
    assert_eq!(string(&db, "t").as_deref(), Some(&b"3"[..]));
}

#[test]
fn malformed_transactions_are_refused_whole() {
    let txn = shard_ctl::atomic(&[set("t", "1"), incr("t")]);
    assert_eq!(shard_ctl::atomic_parts(&txn).map(|p| p.len()), Some(2));
    for cut in [1, 4, 6, txn.len() - 1] {
        assert!(
            shard_ctl::atomic_parts(&txn.slice(..cut)).is_none(),
            "cut {cut}"
        );
    }
    let mut long = txn.to_vec();
    long.push(0);
    assert!(shard_ctl::atomic_parts(&Bytes::from(long)).is_none());
}

fn ingest(key: &str, value: &str) -> Bytes {
    let key = Bytes::copy_from_slice(key.as_bytes());
    let slot = crate::storage::slot::key_slot(&key);
    let payload = crate::storage::dump::encode_value(&crate::storage::dump::Value::String(
        Bytes::copy_from_slice(value.as_bytes()),
    ));
    shard_ctl::ingest(
        slot,
        &cmd(WriteOp::Restore {
            key,
            payload,
            expire_at: 0,
            replace: false,
        }),
    )
}

/// A migration's copy: consecutive ingest items are applied as one batch, but each sees the
/// ones before it, any other item sees all of them, replies stay in order, and a replay after
/// a restart applies none of them again.
#[test]
fn ingest_runs_apply_in_order_as_one_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p1 = encode_proposal(&[
        ingest("k1", "v1"),
        ingest("k2", "v2"),
        ingest("k1", "other"), // present: RESTORE without REPLACE refuses it
        incr("n"),
        ingest("k3", "v3"),
        cmd(WriteOp::Append {
            key: Bytes::from_static(b"k3"),
            value: Bytes::from_static(b"+"),
        }),
    ]);
    {
        let db = open(dir.path());
        let out = ApplyTarget::apply(
            &db,
            &[Command {
                index: 1,
                payload: &p1,
            }],
            b"m1",
        )
        .expect("apply");
        let r = replies(&out[0]);
        assert_eq!(r.len(), 6, "{r:?}");
        assert_eq!((&r[0], &r[1]), (&Reply::ok(), &Reply::ok()), "{r:?}");
        assert!(r[2].is_error(), "{r:?}");
        assert_eq!(r[3], Reply::Integer(1));
        assert_eq!(r[4], Reply::ok());
        assert_eq!(r[5], Reply::Integer(3));
        assert_eq!(string(&db, "k1").as_deref(), Some(&b"v1"[..]));
        assert_eq!(string(&db, "k3").as_deref(), Some(&b"v3+"[..]));
        db.engine().flush().expect("flush");
    }
    let db = open(dir.path());
    assert_eq!(db.applied_meta().expect("meta"), Some(b"m1".to_vec()));
    // Replayed as if the meta had been lost: nothing is applied twice.
    ApplyTarget::apply(
        &db,
        &[Command {
            index: 1,
            payload: &p1,
        }],
        b"m1",
    )
    .expect("replay");
    assert_eq!(string(&db, "n").as_deref(), Some(&b"1"[..]));
    assert_eq!(string(&db, "k3").as_deref(), Some(&b"v3+"[..]));
}

/// Applies one entry (`index`, `payload`) and returns its replies per command.
fn apply_one(db: &Db, index: u64, payload: &[u8], meta: &[u8]) -> Vec<Vec<u8>> {
    ApplyTarget::apply(db, &[Command { index, payload }], meta).expect("apply")
}

/// The lost-INCR race of a migration: an unguarded write creating `c` is still in flight when
/// the source leader routes a second write to `c`. Guarded, that second write is decided when
/// applied, after the first: it runs here. A write to a key missing at apply is refused with
/// `ABSENT` (the client is sent to the target), and from then on the source never creates it.
#[test]
fn guarded_writes_decide_ask_when_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
    let slot = crate::storage::slot::key_slot(b"{s}");
    let guarded = |k: &str, c: Bytes| shard_ctl::guarded(slot, &[key(k)], &c);
    let p = encode_proposal(&[
        // In flight from before the migration was seen: unguarded, creates c.
        shard_ctl::tag(slot, &incr("c{s}")),
        // Routed when c looked missing: guarded, and c exists by now.
        guarded("c{s}", incr("c{s}")),
        // d is missing: refused, and the slot is now exporting.
        guarded("d{s}", incr("d{s}")),
        // An unguarded write after that (a node that has not seen the migration): refused.
        shard_ctl::tag(slot, &incr("d{s}")),
        // Two keys, one present: TRYAGAIN, as Redis does for a mixed request.
        guarded("c{s}", incr("c{s}")),
    ]);
    let mixed = shard_ctl::guarded(slot, &[key("c{s}"), key("d{s}")], &incr("c{s}"));
    let p2 = encode_proposal(&[mixed, guarded("c{s}", incr("c{s}"))]);
    let db = open(dir.path());
    let out = ApplyTarget::apply(
        &db,
        &[
            Command {
                index: 1,
                payload: &p,
            },
            Command {
                index: 2,
                payload: &p2,
            },
        ],
        b"m2",
    )
    .expect("apply");
    let absent = Reply::error(format!("{}{slot}", shard_ctl::ABSENT));
    let refused = Reply::error(shard_ctl::REFUSED);
    assert_eq!(
        replies(&out[0]),
        vec![
            Reply::Integer(1),
            Reply::Integer(2),
            absent,
            refused.clone(),
            Reply::Integer(3)
        ]
    );
    assert_eq!(replies(&out[1]), vec![refused.clone(), Reply::Integer(4)]);
    assert_eq!(string(&db, "d{s}"), None);
    // The exporting mark survives a restart; the slot's return (`Accept`) clears it.
    drop(db);
    let db = open(dir.path());
    db.applied_meta().expect("meta");
    let p3 = encode_proposal(&[shard_ctl::tag(slot, &incr("d{s}"))]);
    let out = apply_one(&db, 3, &p3, b"m3");
    assert_eq!(replies(&out[0]), vec![refused]);
    let p4 = encode_proposal(&[
        shard_ctl::Control::Accept(vec![slot]).encode(),
        shard_ctl::tag(slot, &incr("d{s}")),
    ]);
    let out = apply_one(&db, 4, &p4, b"m4");
    assert_eq!(replies(&out[0]), vec![Reply::ok(), Reply::Integer(1)]);
}

/// Once a slot is fenced (its copy to the target has begun), a guarded write whose keys are
/// all missing here is refused as `ABSENT` (the client is sent to the target with `ASK`, as
/// before the fence), not `TRYAGAIN`: the slot's records here are final, so those keys are not
/// in the copy. A write that finds a key is still `TRYAGAIN` (it must wait for the copy), and
/// neither writes anything.
#[test]
fn fenced_slots_refuse_missing_keys_as_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
    let slot = crate::storage::slot::key_slot(b"{f}");
    let guarded = |keys: &[&str], c: Bytes| {
        let keys: Vec<Bytes> = keys.iter().map(|k| key(k)).collect();
        shard_ctl::guarded(slot, &keys, &c)
    };
    let db = open(dir.path());
    let p = encode_proposal(&[
        shard_ctl::tag(slot, &incr("c{f}")),
        shard_ctl::Control::Fence(vec![slot]).encode(),
        // Missing here: the target decides.
        guarded(&["d{f}"], incr("d{f}")),
        // Present, or partly: refused until the slot has moved.
        guarded(&["c{f}"], incr("c{f}")),
        guarded(&["c{f}", "d{f}"], incr("c{f}")),
        // Keyless: nothing to decide by.
        guarded(&[], incr("c{f}")),
    ]);
    let out = apply_one(&db, 1, &p, b"m1");
    let absent = Reply::error(format!("{}{slot}", shard_ctl::ABSENT));
    let refused = Reply::error(shard_ctl::REFUSED);
    assert_eq!(
        replies(&out[0]),
        vec![
            Reply::Integer(1),
            Reply::ok(),
            absent,
            refused.clone(),
            refused.clone(),
            refused
        ]
    );
    assert_eq!(string(&db, "c{f}").as_deref(), Some(&b"1"[..]));
    assert_eq!(string(&db, "d{f}"), None);
}

/// A transaction's range reads see its earlier commands (Redis: `ZADD` then `ZPOPMIN` in one
/// `MULTI` pops what was added). These ops walk the LSM's ranges; a Raft node applies the
/// whole transaction as one batch, so they must merge the batch's pending records.
#[test]
fn range_reads_in_a_transaction_see_its_earlier_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let zadd = |key: &str, pairs: &[(f64, &str)]| {
        cmd(WriteOp::ZAdd {
            key: b(key),
            flags: 0,
            pairs: pairs.iter().map(|(s, m)| (*s, b(m))).collect(),
        })
    };
    let zpop = |key: &str, max: bool, count: u64| {
        cmd(WriteOp::ZPop {
            key: b(key),
            max,
            count,
        })
    };
    let push = |key: &str, elems: &[&str]| {
        cmd(WriteOp::LPush {
            key: b(key),
            elems: elems.iter().map(|e| b(e)).collect(),
            left: false,
            xx: false,
        })
    };
    let lrem = |key: &str, value: &str| {
        cmd(WriteOp::LRem {
            key: b(key),
            count: 0,
            elem: b(value),
        })
    };
    // One committed member first, so the pops must merge stored and pending records.
    let first = encode_proposal(&[zadd("{z}a", &[(5.0, "old")])]);
    apply_one(&db, 1, &first, b"m1");
    let txn = shard_ctl::atomic(&[
        zadd("{z}a", &[(1.0, "x"), (9.0, "y")]),
        zpop("{z}a", false, 1),
        zpop("{z}a", true, 1),
        zadd("{z}b", &[(2.0, "p")]),
        zpop("{z}b", false, 5),
        push("{z}l", &["a", "b", "a"]),
        lrem("{z}l", "a"),
    ]);
    let out = apply_one(&db, 2, &encode_proposal(&[txn]), b"m2");
    let pair = |m: &str, s: f64| vec![Reply::Bulk(b(m)), Reply::Double(s)];
    assert_eq!(
        replies(&out[0]),
        vec![Reply::Array(vec![
            Reply::Integer(2),
            Reply::Array(pair("x", 1.0)),
            Reply::Array(pair("y", 9.0)),
            Reply::Integer(1),
            Reply::Array(pair("p", 2.0)),
            Reply::Integer(3),
            Reply::Integer(2),
        ])]
    );
    // What the pops took is gone for good; what they left is there.
    let out = apply_one(&db, 3, &encode_proposal(&[zpop("{z}a", false, 10)]), b"m3");
    assert_eq!(replies(&out[0]), vec![Reply::Array(pair("old", 5.0))]);
    let out = apply_one(&db, 4, &encode_proposal(&[zpop("{z}b", false, 10)]), b"m4");
    assert_eq!(replies(&out[0]), vec![Reply::Array(vec![])]);
    // SPOP on a Raft node chooses when applied: it sees the SADD before it.
    let sadd = cmd(WriteOp::SAdd {
        key: b("{z}s"),
        members: vec![b("m1"), b("m2"), b("m3")],
    });
    let spop = |count, seed| {
        cmd(WriteOp::SPopAt {
            key: b("{z}s"),
            count,
            seed,
        })
    };
    let txn = shard_ctl::atomic(&[sadd, spop(None, 7), spop(Some(5), 8), spop(None, 9)]);
    let out = apply_one(&db, 5, &encode_proposal(&[txn]), b"m5");
    let Reply::Array(r) = &replies(&out[0])[0] else {
        panic!("not an array: {out:?}")
    };
    let (Reply::Bulk(one), Reply::Set(rest)) = (&r[1], &r[2]) else {
        panic!("SPOP replies: {r:?}")
    };
    let mut all: Vec<Bytes> = rest
        .iter()
        .map(|x| match x {
            Reply::Bulk(m) => m.clone(),
            other => panic!("member {other:?}"),
        })
        .collect();
    all.push(one.clone());
    all.sort();
    assert_eq!(all, vec![b("m1"), b("m2"), b("m3")]);
    assert_eq!((&r[0], &r[3]), (&Reply::Integer(3), &Reply::Null));
}
