//! Merges many sorted sources into one sorted stream with a binary heap.

use super::InternalIterator;
use crate::key;
use crate::Result;
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Item {
    // Lower index = newer source; breaks ties between equal keys.
    idx: usize,
    it: Box<dyn InternalIterator>,
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
pub(crate) struct MergeIter {
    heap: BinaryHeap<Item>,
    current: Option<Item>,
    parked: Vec<Item>,
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
                .map(|(idx, it)| Item { idx, it })
                .collect(),
        }
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
        if cur.it.valid() {
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
    fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        let mut all: Vec<Item> = self.parked.drain(..).collect();
        all.extend(self.heap.drain());
        all.extend(self.current.take());
        for mut item in all {
            item.it.seek(ikey)?;
            if item.it.valid() {
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
}
