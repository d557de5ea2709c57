//! Merges many sorted sources into one sorted stream with a binary heap.

use super::InternalIterator;
use crate::key;
use crate::Result;
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Bound;

struct Item {
    // Lower index = newer source; breaks ties between equal keys.
    idx: usize,
    it: Box<dyn InternalIterator>,
    /// The source may yield records past the merge's end (see [`MergeIter::set_end`]).
    check_end: bool,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    // Reversed so the max-heap pops the smallest key.
    fn cmp(&self, other: &Self) -> Ordering {
        key::compare(self.it.key(), other.it.key())
            .then(self.idx.cmp(&other.idx))
            .reverse()
    }
}

/// Heap merge of sources given newest first.
///
/// With an end bound ([`MergeIter::set_end`]) a source whose next record is past the end is
/// parked as if exhausted: a scan of one list in the memtable then has an empty heap instead
/// of comparing every record with an SST's first key beyond the list (~100 instructions per
/// record of LRANGE), and a lone source skips a key's versions in place.
pub(crate) struct MergeIter {
    heap: BinaryHeap<Item>,
    current: Option<Item>,
    parked: Vec<Item>,
    /// User keys from here on are past the end of the scan.
    end: Bound<Bytes>,
}

impl MergeIter {
    /// Merges `sources` (newest first); call `seek` before reading.
    pub(crate) fn new(sources: Vec<Box<dyn InternalIterator>>) -> MergeIter {
        MergeIter {
            heap: BinaryHeap::new(),
            current: None,
            parked: sources
                .into_iter()
                .enumerate()
                .map(|(idx, it)| Item {
                    idx,
                    it,
                    check_end: true,
                })
                .collect(),
            end: Bound::Unbounded,
        }
    }

    /// Ends the stream before the first record whose user key is past `end`.
    pub(crate) fn set_end(&mut self, end: Bound<Bytes>) {
        // A source built with the same bound (a memtable's) is not checked record by record.
        let items = self.parked.iter_mut().chain(self.current.as_mut());
        for item in items {
            item.check_end = !item.it.bounded_by(&end);
        }
        for item in std::mem::take(&mut self.heap).into_vec() {
            let mut item = item;
            item.check_end = !item.it.bounded_by(&end);
            self.heap.push(item);
        }
        self.end = end;
    }

    /// True when `ikey` lies past the end bound.
    #[inline]
    fn past_end(&self, ikey: &[u8]) -> bool {
        let user = key::user_key(ikey);
        match &self.end {
            Bound::Unbounded => false,
            Bound::Included(e) => key::compare_bytes(user, e) == Ordering::Greater,
            Bound::Excluded(e) => key::compare_bytes(user, e) != Ordering::Less,
        }
    }

    /// True when `item` has a record within the end bound.
    #[inline]
    fn live(&self, item: &Item) -> bool {
        item.it.valid() && !(item.check_end && self.past_end(item.it.key()))
    }
}

impl InternalIterator for MergeIter {
    fn valid(&self) -> bool {
        self.current.is_some()
    }
    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[][..], |c| c.it.key())
    }
    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[][..], |c| c.it.value())
    }
    fn value_bytes(&self) -> Bytes {
        self.current
            .as_ref()
            .map_or_else(Bytes::new, |c| c.it.value_bytes())
    }
    fn take_value(&mut self) -> Bytes {
        self.current
            .as_mut()
            .map_or_else(Bytes::new, |c| c.it.take_value())
    }
    fn next(&mut self) -> Result<()> {
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        cur.it.next()?;
        if self.live(&cur) {
            // Stay on the same source while it is still the smallest (common for sorted runs).
            let keep = match self.heap.peek() {
                None => true,
                Some(top) => cur > *top,
            };
            if keep {
                self.current = Some(cur);
                return Ok(());
            }
            self.heap.push(cur);
        } else {
            self.parked.push(cur);
        }
        self.current = self.heap.pop();
        Ok(())
    }
    fn skip_user(&mut self, scratch: &mut Vec<u8>) -> Result<()> {
        if !self.heap.is_empty() {
            // Another source may hold older versions of this key: step through the merge.
            scratch.clear();
            scratch.extend_from_slice(key::user_key(self.key()));
            self.next()?;
            while self.valid() && key::same_user(self.key(), scratch) {
                self.next()?;
            }
            return Ok(());
        }
        // Every other source is exhausted or past the end: this one holds all of the key.
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        cur.it.skip_user(scratch)?;
        if self.live(&cur) {
            self.current = Some(cur);
        } else {
            self.parked.push(cur);
        }
        Ok(())
    }
    fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        let mut all: Vec<Item> = self.parked.drain(..).collect();
        all.extend(self.heap.drain());
        all.extend(self.current.take());
        for mut item in all {
            item.it.seek(ikey)?;
            if self.live(&item) {
                self.heap.push(item);
            } else {
                self.parked.push(item);
            }
        }
        self.current = self.heap.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iterators::VecIter;
    use crate::key::{encode, Kind};

    fn src(items: &[(&str, u64)]) -> Box<dyn InternalIterator> {
        Box::new(VecIter::new(
            items
                .iter()
                .map(|(k, s)| {
                    (
                        encode(k.as_bytes(), *s, Kind::Put),
                        s.to_string().into_bytes(),
                    )
                })
                .collect(),
        ))
    }

    #[test]
    fn merges_in_internal_order() {
        let mut m = MergeIter::new(vec![
            src(&[("b", 9), ("d", 8)]),
            src(&[("a", 3), ("b", 4), ("e", 1)]),
            src(&[]),
            src(&[("c", 5), ("d", 2)]),
        ]);
        m.seek(&encode(b"", key::MAX_SEQ, Kind::Put)).unwrap();
        let mut got = Vec::new();
        while m.valid() {
            let (u, s, _) = key::split(m.key());
            got.push((String::from_utf8(u.to_vec()).unwrap(), s));
            m.next().unwrap();
        }
        let want: Vec<(String, u64)> = [
            ("a", 3),
            ("b", 9),
            ("b", 4),
            ("c", 5),
            ("d", 8),
            ("d", 2),
            ("e", 1),
        ]
        .iter()
        .map(|(k, s)| (k.to_string(), *s))
        .collect();
        assert_eq!(got, want);
        m.seek(&encode(b"c", key::MAX_SEQ, Kind::Put)).unwrap();
        assert_eq!(key::user_key(m.key()), b"c");
    }

    #[test]
    fn end_bound_and_skip_user() {
        let users = |end: Bound<Bytes>, skip: bool| {
            let mut m = MergeIter::new(vec![
                src(&[("b", 9), ("d", 8)]),
                src(&[("a", 3), ("b", 4), ("e", 1)]),
                src(&[("f", 5)]),
            ]);
            m.set_end(end);
            m.seek(&encode(b"", key::MAX_SEQ, Kind::Put)).unwrap();
            let mut got = Vec::new();
            let mut scratch = Vec::new();
            while m.valid() {
                got.push(String::from_utf8(key::user_key(m.key()).to_vec()).unwrap());
                if skip {
                    m.skip_user(&mut scratch).unwrap();
                } else {
                    m.next().unwrap();
                }
            }
            got.join(",")
        };
        assert_eq!(users(Bound::Unbounded, false), "a,b,b,d,e,f");
        assert_eq!(users(Bound::Unbounded, true), "a,b,d,e,f");
        assert_eq!(
            users(Bound::Excluded(Bytes::from_static(b"d")), true),
            "a,b"
        );
        assert_eq!(
            users(Bound::Included(Bytes::from_static(b"d")), false),
            "a,b,b,d"
        );
        assert_eq!(
            users(Bound::Included(Bytes::from_static(b"b")), true),
            "a,b"
        );
        assert_eq!(users(Bound::Excluded(Bytes::from_static(b"a")), true), "");
    }
}
