//! Applying consumer-group ops ([`GroupOp`]) deterministically: the entry's `now_ms` is the
//! only clock (delivery, seen and idle times), and every read goes through the [`Tx`].

use super::group::{self, GroupRec, Nack};
use super::group_op::{ClaimTime, GroupOp, GroupStart};
use super::group_state::{entry, scan, Group};
use super::{entry_reply, StreamId, StreamState};
use crate::storage::apply::{Tx, WRONGTYPE};
use crate::storage::encoding::{self, KeyType, Meta};
use crate::storage::{Result, StorageError};
use bytes::Bytes;
use pinnacle_resp::Reply;

/// `NOGROUP` of XGROUP SETID / CREATECONSUMER / DELCONSUMER and XINFO CONSUMERS.
pub fn nogroup_for_key(group: &[u8], key: &[u8]) -> Reply {
    Reply::error(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ))
}

/// `NOGROUP` of XPENDING / XCLAIM / XAUTOCLAIM.
pub fn nogroup_key_or_group(key: &[u8], group: &[u8]) -> Reply {
    Reply::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// `NOGROUP` of XREADGROUP.
pub fn nogroup_readgroup(key: &[u8], group: &[u8]) -> Reply {
    Reply::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// The XGROUP error for a missing key.
pub const NEED_KEY: &str = "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.";

fn stream(tx: &mut Tx<'_>, key: &Bytes) -> Result<std::result::Result<Option<Meta>, Reply>> {
    tx.get_coll(key, KeyType::Stream)
}

/// Applies a consumer-group op.
pub(in crate::storage) fn apply(tx: &mut Tx<'_>, op: &GroupOp) -> Result<Reply> {
    let now = tx.now;
    Ok(match op {
        GroupOp::Create {
            key,
            group: name,
            start,
            mkstream,
            entries_read,
        } => {
            let m = match stream(tx, key)? {
                Err(r) => return Ok(r),
                Ok(Some(m)) => m,
                Ok(None) if !*mkstream => return Ok(Reply::error(NEED_KEY)),
                Ok(None) => {
                    let v = tx.alloc_version();
                    let mut m = crate::storage::coll::new_meta(KeyType::Stream, v);
                    m.value = StreamState::default().encode();
                    tx.put(key, m.clone());
                    m
                }
            };
            if Group::load(tx, key, &m, name)?.is_some() {
                return Ok(Reply::error("BUSYGROUP Consumer Group name already exists"));
            }
            let last = match start {
                GroupStart::Last => StreamState::decode(&m.value).last,
                GroupStart::Id(id) => *id,
            };
            let rec = GroupRec {
                last,
                entries_read: *entries_read,
                pel: 0,
                consumers: 0,
            };
            tx.sub_put(key, m.version, &group::group_field(name), rec.encode());
            Reply::ok()
        }
        GroupOp::SetId {
            key,
            group: name,
            start,
            entries_read,
        } => {
            let (m, mut g) = match existing(tx, key, name)? {
                Ok(x) => x,
                Err(r) => return Ok(r),
            };
            g.rec.last = match start {
                GroupStart::Last => StreamState::decode(&m.value).last,
                GroupStart::Id(id) => *id,
            };
            g.rec.entries_read = *entries_read;
            g.flush(tx);
            Reply::ok()
        }
        GroupOp::Destroy { key, group: name } => {
            let m = match stream(tx, key)? {
                Err(r) => return Ok(r),
                Ok(None) => return Ok(Reply::error(NEED_KEY)),
                Ok(Some(m)) => m,
            };
            if Group::load(tx, key, &m, name)?.is_none() {
                return Ok(Reply::Integer(0));
            }
            tx.sub_del(key, m.version, &group::group_field(name));
            for p in [
                group::consumers_prefix(name),
                group::pel_prefix(name),
                group::cpels_prefix(name),
            ] {
                // One range tombstone per record kind: O(1) whatever the PEL size.
                tx.batch.delete_range(
                    encoding::sub_key(key, m.version, &p),
                    encoding::sub_key(key, m.version, &group::prefix_end(&p)),
                );
            }
            Reply::Integer(1)
        }
        GroupOp::CreateConsumer {
            key,
            group: name,
            consumer,
        } => {
            let (_, mut g) = match existing(tx, key, name)? {
                Ok(x) => x,
                Err(r) => return Ok(r),
            };
            if g.consumer(tx, consumer)?.is_some() {
                return Ok(Reply::Integer(0));
            }
            g.touch_consumer(tx, consumer)?;
            g.flush(tx);
            Reply::Integer(1)
        }
        GroupOp::DelConsumer {
            key,
            group: name,
            consumer,
        } => {
            let (m, mut g) = match existing(tx, key, name)? {
                Ok(x) => x,
                Err(r) => return Ok(r),
            };
            let Some(c) = g.consumer(tx, consumer)? else {
                return Ok(Reply::Integer(0));
            };
            let p = group::cpel_prefix(name, consumer);
            let owned = scan(tx, key, m.version, &p, &group::prefix_end(&p), usize::MAX)?;
            for (f, _) in &owned {
                if let Some(id) = group::id_suffix(f) {
                    tx.sub_del(key, m.version, &group::pel_field(name, id));
                }
                tx.sub_del(key, m.version, f);
            }
            g.rec.pel = g.rec.pel.saturating_sub(owned.len() as u64);
            g.rec.consumers = g.rec.consumers.saturating_sub(1);
            g.consumers.remove(consumer);
            tx.sub_del(key, m.version, &group::consumer_field(name, consumer));
            g.flush(tx);
            Reply::Integer(c.pel as i64)
        }
        GroupOp::Ack {
            key,
            group: name,
            ids,
        } => {
            let m = match stream(tx, key)? {
                Err(r) => return Ok(r),
                Ok(None) => return Ok(Reply::Integer(0)),
                Ok(Some(m)) => m,
            };
            let Some(mut g) = Group::load(tx, key, &m, name)? else {
                return Ok(Reply::Integer(0));
            };
            let mut n = 0;
            for id in ids {
                if let Some(nack) = g.nack(tx, *id)? {
                    g.drop_nack(tx, *id, &nack)?;
                    n += 1;
                }
            }
            if n > 0 {
                g.flush(tx);
            }
            Reply::Integer(n)
        }
        GroupOp::ReadGroup {
            group: name,
            consumer,
            count,
            noack,
            streams,
        } => {
            // Validate every stream first, as Redis does before serving any.
            let mut metas = Vec::with_capacity(streams.len());
            for (key, _) in streams {
                let m = match stream(tx, key)? {
                    Err(r) => return Ok(r),
                    Ok(m) => m,
                };
                let has_group = match &m {
                    Some(m) => tx
                        .sub_get(key, m.version, &group::group_field(name))?
                        .is_some(),
                    None => false,
                };
                if !has_group {
                    return Ok(nogroup_readgroup(key, name));
                }
                metas.push(m);
            }
            let mut out = Vec::new();
            for ((key, from), m) in streams.iter().zip(metas) {
                let Some(m) = m else { continue };
                let Some(mut g) = Group::load(tx, key, &m, name)? else {
                    continue;
                };
                let entries = match from {
                    Some(after) => history(tx, &mut g, consumer, *after, *count)?,
                    None => match deliver_new(tx, &m, &mut g, consumer, *count, *noack)? {
                        Some(e) => e,
                        None => continue,
                    },
                };
                g.flush(tx);
                out.push(Reply::Array(vec![
                    Reply::Bulk(key.clone()),
                    Reply::Array(entries),
                ]));
            }
            if out.is_empty() {
                Reply::NullArray
            } else {
                Reply::Array(out)
            }
        }
        GroupOp::Claim {
            key,
            group: name,
            consumer,
            min_idle,
            ids,
            time,
            retry,
            force,
            justid,
            last_id,
        } => {
            let (m, mut g) = match claim_target(tx, key, name)? {
                Ok(x) => x,
                Err(r) => return Ok(r),
            };
            if *last_id > g.rec.last {
                g.rec.last = *last_id;
            }
            let delivery = match time {
                ClaimTime::Now => now as i64,
                ClaimTime::Idle(ms) => (now as i64).saturating_sub(*ms),
                ClaimTime::Time(t) => *t,
            };
            let delivery = if delivery < 0 || delivery > now as i64 {
                now
            } else {
                delivery as u64
            };
            let mut out = Vec::new();
            let mut touched = false;
            for id in ids {
                let nack = g.nack(tx, *id)?;
                let Some(fields) = entry(tx, key, m.version, *id)? else {
                    if let Some(n) = nack {
                        g.drop_nack(tx, *id, &n)?;
                    }
                    continue;
                };
                // FORCE creates a missing PEL entry (count 1, owned by no one yet).
                let (old, old_count) = match nack {
                    Some(n) => {
                        if *min_idle > 0 && (now as i64 - n.time as i64) < *min_idle {
                            continue;
                        }
                        let c = n.count;
                        (Some(n), c)
                    }
                    None if *force => (None, 1),
                    None => continue,
                };
                if !touched {
                    g.touch_consumer(tx, consumer)?;
                    touched = true;
                }
                let count = if *retry >= 0 {
                    *retry as u64
                } else if !*justid {
                    old_count + 1
                } else {
                    old_count
                };
                g.assign(tx, *id, old.as_ref(), consumer, delivery, count)?;
                out.push(if *justid {
                    Reply::Bulk(id.text())
                } else {
                    entry_reply(*id, &fields)
                });
            }
            g.flush(tx);
            Reply::Array(out)
        }
        GroupOp::AutoClaim {
            key,
            group: name,
            consumer,
            min_idle,
            start,
            count,
            justid,
        } => {
            let (m, mut g) = match claim_target(tx, key, name)? {
                Ok(x) => x,
                Err(r) => return Ok(r),
            };
            let mut attempts = count.saturating_mul(10);
            let mut left = *count;
            let p = group::pel_prefix(name);
            let mut from = p.clone();
            from.extend_from_slice(&start.to_field());
            let limit = usize::try_from(attempts.saturating_add(1)).unwrap_or(usize::MAX);
            let pel = scan(tx, key, m.version, &from, &group::prefix_end(&p), limit)?;
            let mut claimed = Vec::new();
            let mut deleted = Vec::new();
            let mut idx = 0;
            let mut touched = false;
            while attempts > 0 && left > 0 && idx < pel.len() {
                attempts -= 1;
                let (f, v) = &pel[idx];
                idx += 1;
                let (Some(id), Some(n)) = (group::id_suffix(f), Nack::decode(v)) else {
                    return Err(StorageError::Corrupt("stream PEL record"));
                };
                let Some(fields) = entry(tx, key, m.version, id)? else {
                    g.drop_nack(tx, id, &n)?;
                    deleted.push(Reply::Bulk(id.text()));
                    left -= 1;
                    continue;
                };
                if *min_idle > 0 && (now as i64 - n.time as i64) < *min_idle {
                    continue;
                }
                if !touched {
                    g.touch_consumer(tx, consumer)?;
                    touched = true;
                }
                let c = if *justid { n.count } else { n.count + 1 };
                g.assign(tx, id, Some(&n), consumer, now, c)?;
                claimed.push(if *justid {
                    Reply::Bulk(id.text())
                } else {
                    entry_reply(id, &fields)
                });
                left -= 1;
            }
            let cursor = pel
                .get(idx)
                .and_then(|(f, _)| group::id_suffix(f))
                .unwrap_or_default();
            g.flush(tx);
            Reply::Array(vec![
                Reply::Bulk(cursor.text()),
                Reply::Array(claimed),
                Reply::Array(deleted),
            ])
        }
    })
}

/// The stream and group of XGROUP SETID/CREATECONSUMER/DELCONSUMER, or their error.
fn existing(
    tx: &mut Tx<'_>,
    key: &Bytes,
    name: &Bytes,
) -> Result<std::result::Result<(Meta, Group), Reply>> {
    let m = match stream(tx, key)? {
        Err(r) => return Ok(Err(r)),
        Ok(None) => return Ok(Err(Reply::error(NEED_KEY))),
        Ok(Some(m)) => m,
    };
    Ok(match Group::load(tx, key, &m, name)? {
        Some(g) => Ok((m, g)),
        None => Err(nogroup_for_key(name, key)),
    })
}

/// The stream and group of XCLAIM/XAUTOCLAIM, or their error.
fn claim_target(
    tx: &mut Tx<'_>,
    key: &Bytes,
    name: &Bytes,
) -> Result<std::result::Result<(Meta, Group), Reply>> {
    let m = match stream(tx, key)? {
        Err(_) => return Ok(Err(Reply::error(WRONGTYPE))),
        Ok(None) => return Ok(Err(nogroup_key_or_group(key, name))),
        Ok(Some(m)) => m,
    };
    Ok(match Group::load(tx, key, &m, name)? {
        Some(g) => Ok((m, g)),
        None => Err(nogroup_key_or_group(key, name)),
    })
}

/// `>`: entries after the group's last id go to `consumer` (and its PEL unless NOACK).
/// `None` when there is nothing new (the stream is then left out of the reply).
fn deliver_new(
    tx: &mut Tx<'_>,
    m: &Meta,
    g: &mut Group,
    consumer: &Bytes,
    count: u64,
    noack: bool,
) -> Result<Option<Vec<Reply>>> {
    let Some(lo) = g.rec.last.incr() else {
        return Ok(None);
    };
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count).unwrap_or(usize::MAX)
    };
    let got = scan(tx, &g.key, m.version, &lo.to_field(), &group::AUX, limit)?;
    let got: Vec<(StreamId, Bytes)> = got
        .into_iter()
        .filter(|(f, _)| f.len() == 16)
        .filter_map(|(f, v)| Some((StreamId::from_field(&f)?, v)))
        .collect();
    // An entry with id MAX-MAX has the field AUX itself: the scan's end excludes it.
    let mut got = got;
    if got.len() < limit && g.rec.last < super::MAX_ID {
        if let Some(v) = entry(tx, &g.key, m.version, super::MAX_ID)? {
            got.push((super::MAX_ID, v));
        }
    }
    if got.is_empty() {
        return Ok(None);
    }
    let st = StreamState::decode(&m.value);
    g.touch_consumer(tx, consumer)?;
    let mut out = Vec::with_capacity(got.len());
    for (id, v) in got {
        if id > g.rec.last {
            group::advance_read(&st, m.size, &mut g.rec, id);
        }
        out.push(entry_reply(id, &v));
        if !noack {
            let old = g.nack(tx, id)?;
            g.assign(tx, id, old.as_ref(), consumer, tx.now, 1)?;
        }
    }
    Ok(Some(out))
}

/// An id: the consumer's own pending entries after `after` (a deleted entry shows as
/// `[id, nil]`), each counted as delivered again.
fn history(
    tx: &mut Tx<'_>,
    g: &mut Group,
    consumer: &Bytes,
    after: StreamId,
    count: u64,
) -> Result<Vec<Reply>> {
    g.touch_consumer(tx, consumer)?;
    let Some(lo) = after.incr() else {
        return Ok(Vec::new());
    };
    let p = group::cpel_prefix(&g.name, consumer);
    let mut from = p.clone();
    from.extend_from_slice(&lo.to_field());
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count).unwrap_or(usize::MAX)
    };
    let owned = scan(tx, &g.key, g.version, &from, &group::prefix_end(&p), limit)?;
    let mut out = Vec::with_capacity(owned.len());
    for (f, _) in owned {
        let Some(id) = group::id_suffix(&f) else {
            continue;
        };
        match entry(tx, &g.key, g.version, id)? {
            Some(v) => {
                out.push(entry_reply(id, &v));
                if let Some(mut n) = g.nack(tx, id)? {
                    n.time = tx.now;
                    n.count += 1;
                    tx.sub_put(
                        &g.key,
                        g.version,
                        &group::pel_field(&g.name, id),
                        n.encode(),
                    );
                }
            }
            None => out.push(Reply::Array(vec![Reply::Bulk(id.text()), Reply::NullArray])),
        }
    }
    Ok(out)
}
