//! The compaction executor: merges input tables into new, size-bounded output tables.

use crate::iterators::{InternalIterator, MergeIter};
use crate::key::{self, Fragments, Kind, RangeTombstone};
use crate::options::{CompactionFilter, FilterDecision};
use crate::sstable::builder::TableBuilder;
use crate::sstable::FileMeta;
use crate::Result;
use bytes::Bytes;

/// What decides which records survive a merge.
pub(crate) struct MergePolicy<'a> {
    /// Live snapshot sequence numbers, ascending.
    pub(crate) snapshots: &'a [u64],
    /// No level below the output holds data in this key range.
    pub(crate) bottommost: bool,
    pub(crate) filter: Option<&'a dyn CompactionFilter>,
    /// Output level (passed to the filter).
    pub(crate) level: usize,
    pub(crate) target_file_size: u64,
}

impl MergePolicy<'_> {
    // Some snapshot x with lo <= x < hi.
    fn snapshot_in(&self, lo: u64, hi: u64) -> bool {
        snapshot_in(self.snapshots, lo, hi)
    }
    // No snapshot reads below `seq`.
    fn none_below(&self, seq: u64) -> bool {
        self.snapshots.first().is_none_or(|&x| x >= seq)
    }
}

/// True when some snapshot `x` in `snapshots` (ascending) has `lo <= x < hi`: a version at
/// `lo` shadowed by one at `hi` is still read by that snapshot.
pub(crate) fn snapshot_in(snapshots: &[u64], lo: u64, hi: u64) -> bool {
    let i = snapshots.partition_point(|&x| x < lo);
    snapshots.get(i).is_some_and(|&x| x < hi)
}

/// Creates the next output table: returns its id and builder.
pub(crate) type NewOutput<'a> = dyn FnMut() -> Result<(u64, TableBuilder)> + 'a;

fn clip(tombs: &[RangeTombstone], lo: Option<&Bytes>, hi: Option<&Bytes>, b: &mut TableBuilder) {
    for t in tombs {
        let start = match lo {
            Some(l) if *l > t.start => l.clone(),
            _ => t.start.clone(),
        };
        let end = match hi {
            Some(h) if *h < t.end => h.clone(),
            _ => t.end.clone(),
        };
        if start < end {
            b.add_tombstone(RangeTombstone {
                start,
                end,
                seq: t.seq,
            });
        }
    }
}

/// Merges `sources` (newest first) plus `tombs` into output tables.
///
/// Drops versions no snapshot can see (shadowed by a newer version or a covering range
/// tombstone with no snapshot in between), point and range tombstones at the bottommost level
/// when no snapshot is older, and what the compaction filter removes. Range tombstones are
/// clipped to each output's key range so sorted levels stay non-overlapping.
pub(crate) fn merge(
    sources: Vec<Box<dyn InternalIterator>>,
    tombs: Vec<RangeTombstone>,
    policy: &MergePolicy<'_>,
    new_output: &mut NewOutput<'_>,
) -> Result<Vec<FileMeta>> {
    let frags = Fragments::new(&tombs);
    let kept_tombs: Vec<RangeTombstone> = tombs
        .into_iter()
        .filter(|t| t.start < t.end && !(policy.bottommost && policy.none_below(t.seq)))
        .collect();
    let mut outputs = Vec::new();
    let mut cur: Option<(u64, TableBuilder)> = None;
    let mut cur_lo: Option<Bytes> = None;

    let mut it = MergeIter::new(sources);
    it.seek(&key::encode(b"", key::MAX_SEQ, Kind::Put))?;
    let mut cur_user: Vec<u8> = Vec::new();
    let mut prev_seq = u64::MAX;
    let mut first = true;
    let mut rebuilt = Vec::new();
    while it.valid() {
        let (u, s, raw_kind) = key::split(it.key());
        if first || u != cur_user.as_slice() {
            cur_user.clear();
            cur_user.extend_from_slice(u);
            prev_seq = u64::MAX;
            first = false;
        }
        let newest = prev_seq == u64::MAX;
        let needed = newest || policy.snapshot_in(s, prev_seq);
        prev_seq = s;
        if !needed {
            it.next()?;
            continue;
        }
        let cov = frags.covering(u);
        let t_min = cov.get(cov.partition_point(|&t| t <= s)).copied();
        if t_min.is_some_and(|t| !policy.snapshot_in(s, t)) {
            it.next()?;
            continue;
        }
        let mut kind = if raw_kind == Kind::Put as u8 {
            Kind::Put
        } else {
            Kind::Delete
        };
        let mut removed = false;
        if kind == Kind::Put && newest && policy.snapshots.last().is_none_or(|&x| x < s) {
            if let Some(f) = policy.filter {
                if f.filter(policy.level, u, it.value()) == FilterDecision::Remove {
                    kind = Kind::Delete;
                    removed = true;
                }
            }
        }
        if kind == Kind::Delete && policy.bottommost && policy.none_below(s) {
            it.next()?;
            continue;
        }
        // Cut the output between user keys once it is big enough.
        let cut = cur.as_ref().is_some_and(|(_, b)| {
            b.estimated_size() >= policy.target_file_size && b.last_user_key() != u
        });
        if cut {
            if let Some((id, mut b)) = cur.take() {
                let hi = Bytes::copy_from_slice(u);
                clip(&kept_tombs, cur_lo.as_ref(), Some(&hi), &mut b);
                outputs.push(b.finish(id)?);
                cur_lo = Some(hi);
            }
        }
        if cur.is_none() {
            cur = Some(new_output()?);
        }
        if let Some((_, b)) = cur.as_mut() {
            if removed {
                rebuilt.clear();
                key::encode_into(&mut rebuilt, u, s, Kind::Delete);
                b.add(&rebuilt, &[])?;
            } else {
                b.add(it.key(), it.value())?;
            }
        }
        it.next()?;
    }
    if cur.is_none()
        && kept_tombs
            .iter()
            .any(|t| cur_lo.as_ref().is_none_or(|l| t.end > *l))
    {
        cur = Some(new_output()?);
    }
    if let Some((id, mut b)) = cur.take() {
        clip(&kept_tombs, cur_lo.as_ref(), None, &mut b);
        if !b.is_empty() {
            outputs.push(b.finish(id)?);
        }
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counters;
    use crate::iterators::VecIter;
    use crate::sstable::cache::BlockCache;
    use crate::sstable::reader::{Table, TableIter};
    use crate::vfs::{RealFs, Vfs};
    use std::path::Path;
    use std::sync::Arc;

    type Outcome = (Vec<FileMeta>, Vec<(String, u64, u8)>, Vec<RangeTombstone>);

    fn rec(k: &str, s: u64, kind: Kind, v: &str) -> (Vec<u8>, Vec<u8>) {
        (key::encode(k.as_bytes(), s, kind), v.as_bytes().to_vec())
    }

    fn run(
        dir: &Path,
        recs: Vec<(Vec<u8>, Vec<u8>)>,
        tombs: Vec<RangeTombstone>,
        snapshots: &[u64],
        bottommost: bool,
        target: u64,
    ) -> Outcome {
        let mut next = 100u64;
        let mut mk = || {
            next += 1;
            let p = dir.join(format!("{next}.sst"));
            let f = RealFs.create(&p).map_err(|e| crate::Error::io(&p, e))?;
            Ok((next, TableBuilder::new(f, p, 128, 4, 0.01)))
        };
        let policy = MergePolicy {
            snapshots,
            bottommost,
            filter: None,
            level: 1,
            target_file_size: target,
        };
        let metas = merge(vec![Box::new(VecIter::new(recs))], tombs, &policy, &mut mk).unwrap();
        let mut got = Vec::new();
        let mut ts = Vec::new();
        for m in &metas {
            let t = Arc::new(
                Table::open(
                    &RealFs,
                    &dir.join(format!("{}.sst", m.id)),
                    m.id,
                    Arc::new(BlockCache::new(1 << 20)),
                    Arc::new(Counters::default()),
                )
                .unwrap(),
            );
            ts.extend_from_slice(t.range_tombstones());
            let mut it = TableIter::new(t);
            it.seek(&key::encode(b"", key::MAX_SEQ, Kind::Put)).unwrap();
            while it.valid() {
                let (u, s, k) = key::split(it.key());
                got.push((String::from_utf8(u.to_vec()).unwrap(), s, k));
                it.next().unwrap();
            }
        }
        (metas, got, ts)
    }

    fn tomb(s: &str, e: &str, seq: u64) -> RangeTombstone {
        RangeTombstone {
            start: Bytes::copy_from_slice(s.as_bytes()),
            end: Bytes::copy_from_slice(e.as_bytes()),
            seq,
        }
    }

    #[test]
    fn drops_shadowed_keeps_snapshot_versions() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![
            rec("a", 1, Kind::Put, "1"),
            rec("a", 5, Kind::Put, "5"),
            rec("a", 9, Kind::Put, "9"),
            rec("b", 2, Kind::Put, "2"),
            rec("b", 3, Kind::Delete, ""),
        ];
        // No snapshots, not bottommost: newest only, delete kept.
        let (_, got, _) = run(dir.path(), recs.clone(), vec![], &[], false, 1 << 20);
        assert_eq!(got, vec![("a".into(), 9, 1), ("b".into(), 3, 0)]);
        // Bottommost: the delete goes too.
        let (_, got, _) = run(dir.path(), recs.clone(), vec![], &[], true, 1 << 20);
        assert_eq!(got, vec![("a".into(), 9, 1)]);
        // Snapshot at 6 needs a@5; snapshot at 2 needs b@2 and so the delete.
        let (_, got, _) = run(dir.path(), recs, vec![], &[2, 6], true, 1 << 20);
        assert_eq!(
            got,
            vec![
                ("a".into(), 9, 1),
                ("a".into(), 5, 1),
                ("a".into(), 1, 1),
                ("b".into(), 3, 0),
                ("b".into(), 2, 1)
            ]
        );
    }

    #[test]
    fn range_tombstones_drop_covered_and_are_clipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut recs = Vec::new();
        for i in 0..200 {
            recs.push(rec(
                &format!("k{i:03}"),
                10 + i as u64,
                Kind::Put,
                "some value here",
            ));
        }
        // Tombstone at seq 100 covers k050..k150 but only hides versions older than 100.
        let t = tomb("k050", "k150", 100);
        let (metas, got, ts) = run(dir.path(), recs.clone(), vec![t.clone()], &[], false, 600);
        assert!(metas.len() > 2);
        assert!(got
            .iter()
            .all(|(k, s, _)| !(k.as_str() >= "k050" && k.as_str() < "k150" && *s < 100)));
        assert_eq!(got.len(), 200 - 40);
        // Clipped pieces tile the original tombstone exactly and sit inside each file's range.
        let mut pieces: Vec<_> = ts
            .iter()
            .map(|t| (t.start.clone(), t.end.clone()))
            .collect();
        pieces.sort();
        assert_eq!(pieces.first().unwrap().0, t.start);
        assert_eq!(pieces.last().unwrap().1, t.end);
        for w in pieces.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        for w in metas.windows(2) {
            assert!(w[0].before(&w[1].smallest));
        }
        // Bottommost without snapshots: the tombstone itself disappears.
        let (_, got, ts) = run(dir.path(), recs, vec![t], &[], true, 600);
        assert!(ts.is_empty());
        assert_eq!(got.len(), 160);
    }

    #[test]
    fn snapshot_keeps_covered_version() {
        let dir = tempfile::tempdir().unwrap();
        let recs = vec![rec("k", 5, Kind::Put, "v")];
        let (_, got, ts) = run(
            dir.path(),
            recs,
            vec![tomb("a", "z", 8)],
            &[6],
            true,
            1 << 20,
        );
        assert_eq!(got, vec![("k".into(), 5, 1)]);
        assert_eq!(ts.len(), 1);
    }
}
