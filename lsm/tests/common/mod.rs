//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod sim;

use bytes::Bytes;
use pinnacle_lsm::{BatchOp, DbIter, Engine, KeyRange, Snapshot, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Drains an iterator, failing the test on the first error.
pub fn collect(it: DbIter) -> Vec<(Bytes, Bytes)> {
    it.map(|r| r.expect("iterator error")).collect()
}

/// Every live pair of `engine` (optionally at `snap`).
pub fn dump<E: Engine>(engine: &E, snap: Option<&Snapshot>) -> Vec<(Bytes, Bytes)> {
    collect(
        engine
            .scan((Bound::Unbounded, Bound::Unbounded), snap)
            .expect("scan"),
    )
}

/// Scans `range` of `engine` into a vector.
pub fn scan_vec<E: Engine>(engine: &E, range: KeyRange) -> Vec<(Bytes, Bytes)> {
    collect(engine.scan(range, None).expect("scan"))
}

/// A plain latest-state model: applies batches the way the engines must.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub map: BTreeMap<Bytes, Bytes>,
}

impl Model {
    /// Applies `batch` in order.
    pub fn apply(&mut self, batch: &WriteBatch) {
        for op in batch.ops() {
            match op {
                BatchOp::Put(k, v) => {
                    self.map.insert(k.clone(), v.clone());
                }
                BatchOp::Delete(k) => {
                    self.map.remove(k);
                }
                BatchOp::DeleteRange(s, e) => {
                    if s < e {
                        let doomed: Vec<Bytes> = self
                            .map
                            .range(s.clone()..e.clone())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            self.map.remove(&k);
                        }
                    }
                }
            }
        }
    }

    /// The model's pairs in order.
    pub fn pairs(&self) -> Vec<(Bytes, Bytes)> {
        self.map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Builds a `Bytes` from anything byte-like.
pub fn b(x: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(x.as_ref())
}
