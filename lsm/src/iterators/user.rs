//! The user-facing iterator: one value per live key as of a snapshot.

use super::{InternalIterator, MergeIter};
use crate::key::{self, Fragments, Kind};
use crate::Result;
use bytes::Bytes;
use std::ops::Bound;

/// Yields `(key, value)` for every key in range visible at `snap`, hiding older versions,
/// point tombstones and keys covered by a newer visible range tombstone.
pub(crate) struct UserIter {
    inner: MergeIter,
    snap: u64,
    tombs: Fragments,
    start: Bound<Bytes>,
    started: bool,
    done: bool,
    /// Yield empty keys (callers that want only the values save a key copy per record).
    values_only: bool,
    /// Scratch for a user key whose versions are being skipped (reused across records).
    cur: Vec<u8>,
    // Keeps the memtables and the version (and so the files) alive while iterating.
    _pin: Box<dyn Send + Sync>,
}

impl UserIter {
    /// `tombs` must hold the range tombstones of every source (filtered to `<= snap` here).
    pub(crate) fn new(
        mut inner: MergeIter,
        snap: u64,
        mut tombs: Vec<key::RangeTombstone>,
        range: (Bound<Bytes>, Bound<Bytes>),
        pin: Box<dyn Send + Sync>,
    ) -> UserIter {
        tombs.retain(|t| t.seq <= snap);
        // The merge stops at the end itself (so it can drop sources that lie beyond it).
        inner.set_end(range.1);
        UserIter {
            inner,
            snap,
            tombs: Fragments::new(&tombs),
            start: range.0,
            started: false,
            done: false,
            values_only: false,
            cur: Vec::new(),
            _pin: pin,
        }
    }

    /// Yields `(Bytes::new(), value)`: no key is copied out.
    pub(crate) fn values_only(mut self) -> UserIter {
        self.values_only = true;
        self
    }

    fn start(&mut self) -> Result<()> {
        match &self.start {
            Bound::Unbounded => self.inner.seek(&key::encode(b"", key::MAX_SEQ, Kind::Put)),
            Bound::Included(s) => self.inner.seek(&key::encode(s, key::MAX_SEQ, Kind::Put)),
            Bound::Excluded(s) => {
                let s = s.clone();
                self.inner.seek(&key::encode(&s, 0, Kind::Delete))?;
                while self.inner.valid() && key::user_key(self.inner.key()) == s.as_ref() {
                    self.inner.next()?;
                }
                Ok(())
            }
        }
    }

    fn step(&mut self) -> Result<Option<(Bytes, Bytes)>> {
        if !self.started {
            self.started = true;
            self.start()?;
        }
        loop {
            if !self.inner.valid() {
                return Ok(None);
            }
            let (u, seq, kind) = key::split(self.inner.key());
            if seq > self.snap {
                self.inner.next()?;
                continue;
            }
            let live = kind == Kind::Put as u8
                && (!self.tombs.may_cover(seq) || self.tombs.max_covering(u, self.snap) < seq);
            let found = if !live {
                None
            } else if self.values_only {
                Some((Bytes::new(), self.inner.take_value()))
            } else {
                let user = Bytes::copy_from_slice(u);
                Some((user, self.inner.take_value()))
            };
            // Skip the older versions of this key.
            self.inner.skip_user(&mut self.cur)?;
            if found.is_some() {
                return Ok(found);
            }
        }
    }
}

impl Iterator for UserIter {
    type Item = Result<(Bytes, Bytes)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iterators::VecIter;
    use crate::key::{encode, RangeTombstone};

    fn rec(k: &str, s: u64, kind: Kind, v: &str) -> (Vec<u8>, Vec<u8>) {
        (encode(k.as_bytes(), s, kind), v.as_bytes().to_vec())
    }

    fn collect(
        snap: u64,
        tombs: Vec<RangeTombstone>,
        range: (Bound<Bytes>, Bound<Bytes>),
    ) -> Vec<(String, String)> {
        let recs = vec![
            rec("a", 1, Kind::Put, "a1"),
            rec("a", 4, Kind::Put, "a4"),
            rec("b", 2, Kind::Put, "b2"),
            rec("b", 5, Kind::Delete, ""),
            rec("c", 3, Kind::Put, ""),
            rec("d", 8, Kind::Put, "d8"),
            rec("e", 7, Kind::Put, "e7"),
        ];
        let m = MergeIter::new(vec![Box::new(VecIter::new(recs))]);
        UserIter::new(m, snap, tombs, range, Box::new(()))
            .map(|r| {
                let (k, v) = r.unwrap();
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn s(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn snapshot_versions_and_point_tombstones() {
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(
            collect(3, vec![], all.clone()),
            s(&[("a", "a1"), ("b", "b2"), ("c", "")])
        );
        assert_eq!(
            collect(9, vec![], all),
            s(&[("a", "a4"), ("c", ""), ("d", "d8"), ("e", "e7")])
        );
    }

    #[test]
    fn range_tombstone_visibility() {
        let t = RangeTombstone {
            start: Bytes::from_static(b"b"),
            end: Bytes::from_static(b"e"),
            seq: 6,
        };
        let all = (Bound::Unbounded, Bound::Unbounded);
        // Tombstone at seq 6 hides c@3 but not the newer d@8 nor e (outside the range).
        assert_eq!(
            collect(9, vec![t.clone()], all.clone()),
            s(&[("a", "a4"), ("d", "d8"), ("e", "e7")])
        );
        // Invisible to an older snapshot.
        assert_eq!(collect(5, vec![t], all), s(&[("a", "a4"), ("c", "")]));
    }

    #[test]
    fn bounds() {
        let r = (
            Bound::Excluded(Bytes::from_static(b"a")),
            Bound::Excluded(Bytes::from_static(b"e")),
        );
        assert_eq!(collect(9, vec![], r), s(&[("c", ""), ("d", "d8")]));
        let r = (
            Bound::Included(Bytes::from_static(b"c")),
            Bound::Included(Bytes::from_static(b"e")),
        );
        assert_eq!(
            collect(9, vec![], r),
            s(&[("c", ""), ("d", "d8"), ("e", "e7")])
        );
    }
}
