//! The cluster's metadata: Raft group 0, on every node, holding slot → shard (with its config
//! epoch) and the slot migrations. Every node routes from its own applied copy.
//!
//! The state is small (16384 owners and a bounded migration history), so it lives in memory:
//! a restart rebuilds it from the group's snapshot file and log.

use super::meta_image::{
    decode_state, encode_state, get_ranges, get_str, get_u16, get_u32, get_u64, get_u8, put_ranges,
    put_str,
};
use super::shard_info::ShardInfo;
use super::slot_map::SlotMap;
use crate::storage::slot::SLOTS;
use bytes::{BufMut, BytesMut};
use parking_lot::{Mutex, RwLock};
use pinnacle_raft::{ApplyError, ApplyTarget, Command};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Finished migrations kept for `PINN.MIGRATIONS`.
const HISTORY: usize = 256;

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigState {
    /// Slots are being moved (resumed by the source shard's leader after any failure).
    Running,
    /// Every slot moved.
    Done,
}

impl MigState {
    /// The name `PINN.MIGRATIONS` shows.
    pub fn name(self) -> &'static str {
        match self {
            MigState::Running => "running",
            MigState::Done => "done",
        }
    }
}

/// One migration of slots from one shard to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its id (the metadata log index that began it).
    pub id: u64,
    /// Slot ranges moved (inclusive).
    pub slots: Vec<(u16, u16)>,
    /// Source shard.
    pub from: usize,
    /// Target shard.
    pub to: usize,
    /// State.
    pub state: MigState,
    /// Leader time it began (Unix ms).
    pub started_ms: u64,
    /// Leader time it finished.
    pub finished_ms: Option<u64>,
    /// Keys and bytes copied.
    pub keys: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Who asked (`manual`, `pinn`, `reactive`).
    pub planner: String,
}

impl Migration {
    /// Every slot it moves.
    pub fn slot_list(&self) -> Vec<u16> {
        self.slots.iter().flat_map(|&(a, b)| a..=b).collect()
    }
}

/// Slot ownership and migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaState {
    /// Slot → shard.
    pub map: SlotMap,
    /// Slots under migration → migration id.
    pub migrating: BTreeMap<u16, u64>,
    /// Migrations by id (running ones and recent history).
    pub migrations: BTreeMap<u64, Migration>,
    /// Nodes `CLUSTER FORGET` is taking out: they hand their shard leaderships away, shard
    /// leaders drop them, then the metadata leader removes them from group 0.
    pub leaving: BTreeSet<u64>,
    /// Each node's TLS client port, as it announced it (CLUSTER SLOTS/SHARDS/NODES and
    /// redirects for TLS clients); a node without one has no entry.
    pub tls_ports: BTreeMap<u64, u16>,
    /// What each shard's leader last published about its group (for nodes outside it).
    pub shard_info: BTreeMap<usize, ShardInfo>,
}

impl MetaState {
    /// The state of a new cluster: `shards` equal ranges, nothing moving.
    pub fn initial(shards: usize) -> MetaState {
        MetaState {
            map: SlotMap::even(shards),
            migrating: BTreeMap::new(),
            migrations: BTreeMap::new(),
            leaving: BTreeSet::new(),
            tls_ports: BTreeMap::new(),
            shard_info: BTreeMap::new(),
        }
    }

    /// The migration moving `slot`, if any.
    pub fn migration_of(&self, slot: u16) -> Option<&Migration> {
        self.migrating
            .get(&slot)
            .and_then(|id| self.migrations.get(id))
    }
}

/// A metadata change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaCmd {
    /// Start moving `slots` (all owned by one shard, none moving) to shard `to`.
    Begin {
        /// Slot ranges.
        slots: Vec<(u16, u16)>,
        /// Target shard.
        to: usize,
        /// Who asked.
        planner: String,
        /// Leader time.
        now_ms: u64,
    },
    /// Migration `id` copied `slots`: the target owns them now (epoch + 1).
    Flip {
        /// Migration id.
        id: u64,
        /// The slots.
        slots: Vec<u16>,
        /// Keys and bytes copied for them.
        keys: u64,
        /// Bytes.
        bytes: u64,
    },
    /// Migration `id` moved every slot.
    Finish {
        /// Migration id.
        id: u64,
        /// Leader time.
        now_ms: u64,
    },
    /// Node `id` starts leaving the cluster (`CLUSTER FORGET`), or with `leaving: false` is
    /// welcome again (`CLUSTER MEET` of a node with that id).
    Leaving {
        /// The node's Raft id.
        id: u64,
        /// Leaving or (re)joining.
        leaving: bool,
    },
    /// Node `id` serves TLS clients on `port` (0: no TLS port). Each node announces its own.
    TlsPort {
        /// The node's Raft id.
        id: u64,
        /// Its TLS client port.
        port: u16,
    },
    /// Shard `shard`'s leader publishes its term, itself and its group's members.
    ShardInfo {
        /// Shard index.
        shard: usize,
        /// What it published.
        info: ShardInfo,
    },
}

impl MetaCmd {
    /// Wire form (a proposal payload of group 0).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = BytesMut::new();
        match self {
            MetaCmd::Begin {
                slots,
                to,
                planner,
                now_ms,
            } => {
                b.put_u8(1);
                b.put_u16(*to as u16);
                b.put_u64(*now_ms);
                put_str(&mut b, planner);
                put_ranges(&mut b, slots);
            }
            MetaCmd::Flip {
                id,
                slots,
                keys,
                bytes,
            } => {
                b.put_u8(2);
                b.put_u64(*id);
                b.put_u64(*keys);
                b.put_u64(*bytes);
                b.put_u32(slots.len() as u32);
                for s in slots {
                    b.put_u16(*s);
                }
            }
            MetaCmd::Finish { id, now_ms } => {
                b.put_u8(3);
                b.put_u64(*id);
                b.put_u64(*now_ms);
            }
            MetaCmd::Leaving { id, leaving } => {
                b.put_u8(4);
                b.put_u64(*id);
                b.put_u8(u8::from(*leaving));
            }
            MetaCmd::TlsPort { id, port } => {
                b.put_u8(5);
                b.put_u64(*id);
                b.put_u16(*port);
            }
            MetaCmd::ShardInfo { shard, info } => {
                b.put_u8(6);
                b.put_u16(*shard as u16);
                info.encode(&mut b);
            }
        }
        b.to_vec()
    }

    fn decode(mut b: &[u8]) -> Option<MetaCmd> {
        let cmd = match get_u8(&mut b)? {
            1 => {
                let to = get_u16(&mut b)? as usize;
                let now_ms = get_u64(&mut b)?;
                let planner = get_str(&mut b)?;
                let slots = get_ranges(&mut b)?;
                MetaCmd::Begin {
                    slots,
                    to,
                    planner,
                    now_ms,
                }
            }
            2 => {
                let id = get_u64(&mut b)?;
                let keys = get_u64(&mut b)?;
                let bytes = get_u64(&mut b)?;
                let n = get_u32(&mut b)? as usize;
                let mut slots = Vec::with_capacity(n.min(SLOTS as usize));
                for _ in 0..n {
                    slots.push(get_u16(&mut b)?);
                }
                MetaCmd::Flip {
                    id,
                    slots,
                    keys,
                    bytes,
                }
            }
            3 => MetaCmd::Finish {
                id: get_u64(&mut b)?,
                now_ms: get_u64(&mut b)?,
            },
            4 => MetaCmd::Leaving {
                id: get_u64(&mut b)?,
                leaving: get_u8(&mut b)? == 1,
            },
            5 => MetaCmd::TlsPort {
                id: get_u64(&mut b)?,
                port: get_u16(&mut b)?,
            },
            6 => MetaCmd::ShardInfo {
                shard: get_u16(&mut b)? as usize,
                info: ShardInfo::decode(&mut b)?,
            },
            _ => return None,
        };
        b.is_empty().then_some(cmd)
    }
}

/// Applies `cmd` (log index `index`) to `st`; the reply is `+id`, `+OK` or `-error`.
fn apply_cmd(st: &mut MetaState, index: u64, cmd: MetaCmd, shards: usize) -> String {
    match cmd {
        MetaCmd::Begin {
            slots,
            to,
            planner,
            now_ms,
        } => {
            if to >= shards {
                return format!("-ERR no shard {to}");
            }
            let list: Vec<u16> = slots.iter().flat_map(|&(a, b)| a..=b).collect();
            let Some(&first) = list.first() else {
                return "-ERR no slots".into();
            };
            if list.iter().any(|s| *s >= SLOTS) {
                return "-ERR Invalid slot".into();
            }
            let from = st.map.owner(first);
            if let Some(s) = list.iter().find(|s| st.map.owner(**s) != from) {
                return format!("-ERR slot {s} is not owned by shard {from} like slot {first}");
            }
            if from == to {
                return format!("-ERR shard {to} already owns slot {first}");
            }
            if let Some(s) = list.iter().find(|s| st.migrating.contains_key(s)) {
                return format!("-ERR slot {s} is already migrating");
            }
            for s in &list {
                st.migrating.insert(*s, index);
            }
            st.migrations.insert(
                index,
                Migration {
                    id: index,
                    slots,
                    from,
                    to,
                    state: MigState::Running,
                    started_ms: now_ms,
                    finished_ms: None,
                    keys: 0,
                    bytes: 0,
                    planner,
                },
            );
            trim_history(st);
            format!("+{index}")
        }
        MetaCmd::Flip {
            id,
            slots,
            keys,
            bytes,
        } => {
            let Some(m) = st.migrations.get_mut(&id) else {
                return format!("-ERR no migration {id}");
            };
            // Idempotent: a resumed driver may flip a slot twice.
            let mut flipped = false;
            for slot in slots {
                if st.migrating.get(&slot) == Some(&id) {
                    st.migrating.remove(&slot);
                    st.map.set_owner(slot, m.to);
                    flipped = true;
                }
            }
            if flipped {
                st.map.epoch += 1;
                m.keys += keys;
                m.bytes += bytes;
            }
            "+OK".into()
        }
        MetaCmd::Finish { id, now_ms } => {
            let Some(m) = st.migrations.get_mut(&id) else {
                return format!("-ERR no migration {id}");
            };
            if st.migrating.values().any(|v| *v == id) {
                return "-ERR slots are still moving".into();
            }
            if m.state == MigState::Running {
                m.state = MigState::Done;
                m.finished_ms = Some(now_ms);
            }
            "+OK".into()
        }
        MetaCmd::Leaving { id, leaving } => {
            if leaving {
                st.leaving.insert(id);
            } else {
                st.leaving.remove(&id);
            }
            "+OK".into()
        }
        MetaCmd::TlsPort { id, port } => {
            if port == 0 {
                st.tls_ports.remove(&id);
            } else {
                st.tls_ports.insert(id, port);
            }
            "+OK".into()
        }
        MetaCmd::ShardInfo { shard, info } => {
            if shard >= shards {
                return format!("-ERR no shard {shard}");
            }
            // A deposed leader's late publication never replaces its successor's.
            if st
                .shard_info
                .get(&shard)
                .is_some_and(|old| old.term > info.term)
            {
                return "+OK".into();
            }
            st.shard_info.insert(shard, info);
            "+OK".into()
        }
    }
}

fn trim_history(st: &mut MetaState) {
    while st.migrations.len() > HISTORY {
        let oldest_done = st
            .migrations
            .iter()
            .find(|(_, m)| m.state != MigState::Running)
            .map(|(id, _)| *id);
        match oldest_done {
            Some(id) => {
                st.migrations.remove(&id);
            }
            None => break,
        }
    }
}

/// The metadata group's state machine; every apply publishes a new [`MetaState`].
pub struct MetaTarget {
    shards: usize,
    state: RwLock<Arc<MetaState>>,
    raft_meta: Mutex<Option<Vec<u8>>>,
}

impl MetaTarget {
    /// A fresh target for a cluster of `shards` shards.
    pub fn new(shards: usize) -> MetaTarget {
        MetaTarget {
            shards,
            state: RwLock::new(Arc::new(MetaState::initial(shards))),
            raft_meta: Mutex::new(None),
        }
    }

    /// The current applied state.
    pub fn state(&self) -> Arc<MetaState> {
        self.state.read().clone()
    }
}

impl ApplyTarget for MetaTarget {
    fn apply(&self, cmds: &[Command<'_>], meta: &[u8]) -> Result<Vec<Vec<u8>>, ApplyError> {
        let mut raft_meta = self.raft_meta.lock();
        let mut st = (*self.state()).clone();
        let mut out = Vec::with_capacity(cmds.len());
        for c in cmds {
            let reply = match MetaCmd::decode(c.payload) {
                Some(cmd) => apply_cmd(&mut st, c.index, cmd, self.shards),
                None => "-ERR undecodable metadata command".into(),
            };
            out.push(reply.into_bytes());
        }
        *self.state.write() = Arc::new(st);
        *raft_meta = Some(meta.to_vec());
        Ok(out)
    }

    fn applied_meta(&self) -> Result<Option<Vec<u8>>, ApplyError> {
        Ok(self.raft_meta.lock().clone())
    }

    fn snapshot(&self, out: &mut dyn Write) -> Result<Vec<u8>, ApplyError> {
        let raft_meta = self.raft_meta.lock();
        out.write_all(&encode_state(&self.state()))?;
        Ok(raft_meta.clone().unwrap_or_default())
    }

    fn install(&self, input: &mut dyn Read, meta: &[u8]) -> Result<(), ApplyError> {
        let mut raw = Vec::new();
        input.read_to_end(&mut raw)?;
        let st = decode_state(&raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad metadata snapshot"))?;
        let mut raft_meta = self.raft_meta.lock();
        *self.state.write() = Arc::new(st);
        *raft_meta = Some(meta.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(t: &MetaTarget, index: u64, c: MetaCmd) -> String {
        let payload = c.encode();
        let out = t
            .apply(
                &[Command {
                    index,
                    payload: &payload,
                }],
                b"m",
            )
            .expect("apply");
        String::from_utf8(out[0].clone()).expect("utf8")
    }

    #[test]
    fn begin_flip_finish_and_snapshot() {
        let t = MetaTarget::new(3);
        let begin = |slots: Vec<(u16, u16)>, to| MetaCmd::Begin {
            slots,
            to,
            planner: "manual".into(),
            now_ms: 5,
        };
        assert_eq!(cmd(&t, 7, begin(vec![(0, 1)], 2)), "+7");
        assert_eq!(
            cmd(&t, 8, begin(vec![(1, 1)], 1)),
            "-ERR slot 1 is already migrating"
        );
        assert!(cmd(&t, 9, begin(vec![(5460, 5463)], 2)).starts_with("-ERR slot 5462"));
        assert!(cmd(&t, 10, begin(vec![(0, 0)], 0)).starts_with("-ERR shard 0 already"));
        assert_eq!(t.state().migration_of(1).map(|m| m.to), Some(2));
        let flip = |slot| MetaCmd::Flip {
            id: 7,
            slots: vec![slot],
            keys: 10,
            bytes: 100,
        };
        assert_eq!(cmd(&t, 11, flip(0)), "+OK");
        assert_eq!(cmd(&t, 12, flip(0)), "+OK");
        assert_eq!(t.state().map.owner(0), 2);
        assert_eq!(
            cmd(&t, 13, MetaCmd::Finish { id: 7, now_ms: 9 }),
            "-ERR slots are still moving"
        );
        assert_eq!(cmd(&t, 14, flip(1)), "+OK");
        assert_eq!(cmd(&t, 15, MetaCmd::Finish { id: 7, now_ms: 9 }), "+OK");
        let st = t.state();
        let m = &st.migrations[&7];
        assert_eq!((m.state, m.keys, m.bytes), (MigState::Done, 20, 200));
        assert_eq!(st.map.epoch, 3);
        let leave = |leaving| MetaCmd::Leaving { id: 4, leaving };
        assert_eq!(cmd(&t, 16, leave(true)), "+OK");
        assert!(t.state().leaving.contains(&4));
        let st = t.state();
        let mut img = Vec::new();
        t.snapshot(&mut img).expect("snapshot");
        let t2 = MetaTarget::new(3);
        t2.install(&mut img.as_slice(), b"m").expect("install");
        assert_eq!(*t2.state(), *st);
        assert_eq!(cmd(&t, 17, leave(false)), "+OK");
        assert!(t.state().leaving.is_empty());
        assert_eq!(MetaCmd::decode(&leave(true).encode()), Some(leave(true)));
    }

    #[test]
    fn tls_ports_apply_snapshot_and_old_images() {
        let t = MetaTarget::new(3);
        let tls = |id, port| MetaCmd::TlsPort { id, port };
        assert_eq!(MetaCmd::decode(&tls(2, 7002).encode()), Some(tls(2, 7002)));
        assert_eq!(cmd(&t, 1, tls(1, 6380)), "+OK");
        assert_eq!(cmd(&t, 2, tls(2, 6381)), "+OK");
        assert_eq!(cmd(&t, 3, tls(2, 0)), "+OK");
        assert_eq!(
            t.state().tls_ports.iter().collect::<Vec<_>>(),
            vec![(&1, &6380)]
        );
        let mut img = Vec::new();
        t.snapshot(&mut img).expect("snapshot");
        let t2 = MetaTarget::new(3);
        t2.install(&mut img.as_slice(), b"m").expect("install");
        assert_eq!(*t2.state(), *t.state());
        // A version 2 image (written before TLS ports existed) still loads, with none; so
        // does a version 3 image (before shard info).
        let mut v3 = encode_state(&MetaState::initial(3));
        let n = v3.len();
        v3.truncate(n - 4);
        v3[0] = 3;
        assert_eq!(decode_state(&v3), Some(MetaState::initial(3)));
        let mut v2 = v3.clone();
        v2.truncate(n - 8);
        v2[0] = 2;
        assert_eq!(decode_state(&v2), Some(MetaState::initial(3)));
    }

    #[test]
    fn shard_info_newer_term_wins_and_survives_snapshots() {
        let t = MetaTarget::new(3);
        let info = |term, leader| MetaCmd::ShardInfo {
            shard: 1,
            info: ShardInfo {
                term,
                leader,
                voters: vec![1, 2, 4],
                learners: vec![],
            },
        };
        assert_eq!(MetaCmd::decode(&info(3, 2).encode()), Some(info(3, 2)));
        assert_eq!(cmd(&t, 1, info(3, 2)), "+OK");
        assert_eq!(cmd(&t, 2, info(5, 4)), "+OK");
        // Late, from the deposed leader: ignored.
        assert_eq!(cmd(&t, 3, info(3, 2)), "+OK");
        assert_eq!(t.state().shard_info[&1].leader, 4);
        let bad = MetaCmd::ShardInfo {
            shard: 3,
            info: t.state().shard_info[&1].clone(),
        };
        assert_eq!(cmd(&t, 4, bad), "-ERR no shard 3");
        let mut img = Vec::new();
        t.snapshot(&mut img).expect("snapshot");
        let t2 = MetaTarget::new(3);
        t2.install(&mut img.as_slice(), b"m").expect("install");
        assert_eq!(*t2.state(), *t.state());
    }
}
