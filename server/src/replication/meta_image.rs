//! The metadata group's snapshot image ([`MetaState`] as bytes) and the byte helpers its
//! commands share. Older image versions still load: 1 (before `leaving`), 2 (before
//! `tls_ports`), 3 (before `shard_info`).

use super::meta::{MetaState, MigState, Migration};
use super::shard_info::ShardInfo;
use super::slot_map::SlotMap;
use crate::storage::slot::SLOTS;
use bytes::{Buf, BufMut, BytesMut};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn encode_state(st: &MetaState) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(4);
    b.put_u64(st.map.epoch);
    for s in 0..SLOTS {
        b.put_u16(st.map.owner(s) as u16);
    }
    b.put_u32(st.migrating.len() as u32);
    for (s, id) in &st.migrating {
        b.put_u16(*s);
        b.put_u64(*id);
    }
    b.put_u32(st.migrations.len() as u32);
    for m in st.migrations.values() {
        b.put_u64(m.id);
        put_ranges(&mut b, &m.slots);
        b.put_u16(m.from as u16);
        b.put_u16(m.to as u16);
        b.put_u8(u8::from(m.state == MigState::Done));
        b.put_u64(m.started_ms);
        b.put_u64(m.finished_ms.unwrap_or(u64::MAX));
        b.put_u64(m.keys);
        b.put_u64(m.bytes);
        put_str(&mut b, &m.planner);
    }
    b.put_u32(st.leaving.len() as u32);
    for id in &st.leaving {
        b.put_u64(*id);
    }
    b.put_u32(st.tls_ports.len() as u32);
    for (id, port) in &st.tls_ports {
        b.put_u64(*id);
        b.put_u16(*port);
    }
    b.put_u32(st.shard_info.len() as u32);
    for (shard, info) in &st.shard_info {
        b.put_u16(*shard as u16);
        info.encode(&mut b);
    }
    b.to_vec()
}

pub(super) fn decode_state(mut b: &[u8]) -> Option<MetaState> {
    // Version 1 images (before `leaving`), 2 (before `tls_ports`) and 3 (before
    // `shard_info`) still load.
    let version = get_u8(&mut b)?;
    if !(1..=4).contains(&version) {
        return None;
    }
    let epoch = get_u64(&mut b)?;
    let mut owners = Vec::with_capacity(SLOTS as usize);
    for _ in 0..SLOTS {
        owners.push(get_u16(&mut b)?);
    }
    let mut migrating = BTreeMap::new();
    for _ in 0..get_u32(&mut b)? {
        let s = get_u16(&mut b)?;
        migrating.insert(s, get_u64(&mut b)?);
    }
    let mut migrations = BTreeMap::new();
    for _ in 0..get_u32(&mut b)? {
        let id = get_u64(&mut b)?;
        let slots = get_ranges(&mut b)?;
        let from = get_u16(&mut b)? as usize;
        let to = get_u16(&mut b)? as usize;
        let state = if get_u8(&mut b)? == 1 {
            MigState::Done
        } else {
            MigState::Running
        };
        let started_ms = get_u64(&mut b)?;
        let finished_ms = Some(get_u64(&mut b)?).filter(|v| *v != u64::MAX);
        let keys = get_u64(&mut b)?;
        let bytes = get_u64(&mut b)?;
        let planner = get_str(&mut b)?;
        migrations.insert(
            id,
            Migration {
                id,
                slots,
                from,
                to,
                state,
                started_ms,
                finished_ms,
                keys,
                bytes,
                planner,
            },
        );
    }
    let mut leaving = BTreeSet::new();
    if version >= 2 {
        for _ in 0..get_u32(&mut b)? {
            leaving.insert(get_u64(&mut b)?);
        }
    }
    let mut tls_ports = BTreeMap::new();
    if version >= 3 {
        for _ in 0..get_u32(&mut b)? {
            let id = get_u64(&mut b)?;
            tls_ports.insert(id, get_u16(&mut b)?);
        }
    }
    let mut shard_info = BTreeMap::new();
    if version >= 4 {
        for _ in 0..get_u32(&mut b)? {
            let shard = get_u16(&mut b)? as usize;
            shard_info.insert(shard, ShardInfo::decode(&mut b)?);
        }
    }
    Some(MetaState {
        map: SlotMap::from_owners(owners, epoch),
        migrating,
        migrations,
        leaving,
        tls_ports,
        shard_info,
    })
}

pub(super) fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len().min(u16::MAX as usize) as u16);
    b.put_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
}

pub(super) fn put_ranges(b: &mut BytesMut, r: &[(u16, u16)]) {
    b.put_u32(r.len() as u32);
    for (a, z) in r {
        b.put_u16(*a);
        b.put_u16(*z);
    }
}

pub(super) fn get_u8(b: &mut &[u8]) -> Option<u8> {
    (b.remaining() >= 1).then(|| b.get_u8())
}

pub(super) fn get_u16(b: &mut &[u8]) -> Option<u16> {
    (b.remaining() >= 2).then(|| b.get_u16())
}

pub(super) fn get_u32(b: &mut &[u8]) -> Option<u32> {
    (b.remaining() >= 4).then(|| b.get_u32())
}

pub(super) fn get_u64(b: &mut &[u8]) -> Option<u64> {
    (b.remaining() >= 8).then(|| b.get_u64())
}

pub(super) fn get_str(b: &mut &[u8]) -> Option<String> {
    let n = get_u16(b)? as usize;
    if b.remaining() < n {
        return None;
    }
    let s = String::from_utf8_lossy(&b[..n]).into_owned();
    b.advance(n);
    Some(s)
}

pub(super) fn get_ranges(b: &mut &[u8]) -> Option<Vec<(u16, u16)>> {
    let n = get_u32(b)? as usize;
    if b.remaining() < n * 4 {
        return None;
    }
    Some((0..n).map(|_| (b.get_u16(), b.get_u16())).collect())
}
