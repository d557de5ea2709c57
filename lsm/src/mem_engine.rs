//! `MemEngine`: a `BTreeMap` engine, the reference model for the LSM.
//!
//! Every version is kept so snapshot reads are exact. `flush` and `checkpoint` write the
//! latest state to one dump file that `open` loads, so reopen behaves like a durable engine
//! that was flushed.

use crate::{
    BatchOp, DbIter, Engine, Error, KeyRange, Options, Result, Snapshot, Stats, WriteBatch,
};
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DUMP_FILE: &str = "MEMENGINE";

type Versions = Vec<(u64, Option<Bytes>)>;

struct State {
    map: BTreeMap<Bytes, Versions>,
    seq: u64,
    user_bytes: u64,
}

/// A `BTreeMap` engine holding every version of every key.
pub struct MemEngine {
    dir: PathBuf,
    state: RwLock<State>,
}

fn visible(versions: &Versions, seq: u64) -> Option<Bytes> {
    versions
        .iter()
        .rev()
        .find(|(s, _)| *s <= seq)
        .and_then(|(_, v)| v.clone())
}

impl MemEngine {
    /// An empty in-memory engine that is never persisted.
    pub fn in_memory() -> Self {
        MemEngine {
            dir: PathBuf::new(),
            state: RwLock::new(State {
                map: BTreeMap::new(),
                seq: 0,
                user_bytes: 0,
            }),
        }
    }

    fn latest(&self) -> Vec<(Bytes, Bytes)> {
        let st = self.state.read();
        st.map
            .iter()
            .filter_map(|(k, vs)| visible(vs, st.seq).map(|v| (k.clone(), v)))
            .collect()
    }

    fn dump_to(&self, dir: &Path) -> Result<()> {
        let path = dir.join(DUMP_FILE);
        let mut buf = Vec::new();
        for (k, v) in self.latest() {
            buf.extend_from_slice(&(k.len() as u64).to_le_bytes());
            buf.extend_from_slice(&k);
            buf.extend_from_slice(&(v.len() as u64).to_le_bytes());
            buf.extend_from_slice(&v);
        }
        let tmp = dir.join("MEMENGINE.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&buf).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    fn load(path: &Path) -> Result<BTreeMap<Bytes, Versions>> {
        let data = Bytes::from(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        let mut map = BTreeMap::new();
        let mut pos = 0usize;
        let take = |pos: &mut usize| -> Result<Bytes> {
            let bad = || Error::corruption(path, *pos as u64, "truncated dump record");
            let len_bytes = data.get(*pos..*pos + 8).ok_or_else(bad)?;
            let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| bad())?) as usize;
            let end = (*pos + 8).checked_add(len).ok_or_else(bad)?;
            if end > data.len() {
                return Err(bad());
            }
            let out = data.slice(*pos + 8..end);
            *pos = end;
            Ok(out)
        };
        while pos < data.len() {
            let k = take(&mut pos)?;
            let v = take(&mut pos)?;
            map.insert(k, vec![(0, Some(v))]);
        }
        Ok(map)
    }
}

/// True when no key can lie inside `range` (start after end, or equal with an excluded side).
fn range_is_empty(range: &KeyRange) -> bool {
    use std::ops::Bound::{Excluded, Included};
    match range {
        (Included(s), Included(e)) => s > e,
        (Included(s), Excluded(e)) | (Excluded(s), Included(e)) | (Excluded(s), Excluded(e)) => {
            s >= e
        }
        _ => false,
    }
}

impl Engine for MemEngine {
    fn open(dir: &Path, _opts: Options) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(DUMP_FILE);
        let map = if path.exists() {
            Self::load(&path)?
        } else {
            BTreeMap::new()
        };
        Ok(MemEngine {
            dir: dir.to_path_buf(),
            state: RwLock::new(State {
                map,
                seq: 0,
                user_bytes: 0,
            }),
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let st = self.state.read();
        Ok(st.map.get(key).and_then(|vs| visible(vs, st.seq)))
    }

    fn get_at(&self, key: &[u8], snap: &Snapshot) -> Result<Option<Bytes>> {
        let st = self.state.read();
        Ok(st.map.get(key).and_then(|vs| visible(vs, snap.seq())))
    }

    fn write(&self, batch: WriteBatch) -> Result<u64> {
        let mut st = self.state.write();
        st.user_bytes += batch.payload_bytes();
        for op in batch.into_ops() {
            st.seq += 1;
            let seq = st.seq;
            match op {
                BatchOp::Put(k, v) => st.map.entry(k).or_default().push((seq, Some(v))),
                BatchOp::Delete(k) => st.map.entry(k).or_default().push((seq, None)),
                BatchOp::DeleteRange(s, e) => {
                    if s < e {
                        for (_, vs) in st.map.range_mut(s..e) {
                            vs.push((seq, None));
                        }
                    }
                }
            }
        }
        Ok(st.seq)
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.state.read().seq, Arc::new(()))
    }

    fn scan(&self, range: KeyRange, snap: Option<&Snapshot>) -> Result<DbIter> {
        let st = self.state.read();
        let seq = snap.map_or(st.seq, |s| s.seq());
        if range_is_empty(&range) {
            // BTreeMap::range panics on inverted bounds; such a range simply holds nothing.
            return Ok(Box::new(std::iter::empty()));
        }
        let items: Vec<Result<(Bytes, Bytes)>> = st
            .map
            .range::<Bytes, _>(range)
            .filter_map(|(k, vs)| visible(vs, seq).map(|v| Ok((k.clone(), v))))
            .collect();
        Ok(Box::new(items.into_iter()))
    }

    fn flush(&self) -> Result<()> {
        if self.dir.as_os_str().is_empty() {
            return Ok(());
        }
        self.dump_to(&self.dir)
    }

    fn compact_range(&self, _start: Option<&[u8]>, _end: Option<&[u8]>) -> Result<()> {
        Ok(())
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.dump_to(dir)
    }

    fn stats(&self) -> Stats {
        let st = self.state.read();
        Stats {
            user_bytes_written: st.user_bytes,
            last_seq: st.seq,
            ..Stats::default()
        }
    }
}
