//! Internal keys: a user key plus an 8-byte trailer holding the sequence number and the kind.
//!
//! Encoded as `user_key ++ be64(!(seq << 8 | kind))`, compared by user key ascending, then
//! sequence number descending (the inverted trailer makes newer versions sort first).

use bytes::Bytes;
use std::borrow::Borrow;
use std::cmp::Ordering;

/// Largest sequence number (56 bits: the low byte of the trailer holds the kind).
pub(crate) const MAX_SEQ: u64 = (1 << 56) - 1;

/// What a record does to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Point delete (a tombstone is a kind, never an empty value).
    Delete = 0,
    /// Put of a value (possibly empty).
    Put = 1,
}

impl Kind {
    #[inline]
    pub(crate) fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Delete),
            1 => Some(Kind::Put),
            _ => None,
        }
    }
}

#[inline]
pub(crate) fn trailer(seq: u64, kind: Kind) -> u64 {
    !((seq << 8) | kind as u64)
}

/// Appends the internal key for `(user, seq, kind)` to `buf`.
#[inline]
pub(crate) fn encode_into(buf: &mut Vec<u8>, user: &[u8], seq: u64, kind: Kind) {
    buf.extend_from_slice(user);
    buf.extend_from_slice(&trailer(seq, kind).to_be_bytes());
}

/// The internal key for `(user, seq, kind)`.
pub(crate) fn encode(user: &[u8], seq: u64, kind: Kind) -> Vec<u8> {
    let mut v = Vec::with_capacity(user.len() + 8);
    encode_into(&mut v, user, seq, kind);
    v
}

/// The internal key a point lookup seeks to: `(user, snap)`, on the stack for short keys.
pub(crate) struct LookupKey {
    small: [u8; 64],
    big: Vec<u8>,
    len: usize,
    seq: u64,
}

impl LookupKey {
    pub(crate) fn new(user: &[u8], snap: u64) -> LookupKey {
        let len = user.len() + 8;
        let mut lk = LookupKey {
            small: [0u8; 64],
            big: Vec::new(),
            len,
            seq: snap,
        };
        if len <= lk.small.len() {
            lk.small[..user.len()].copy_from_slice(user);
            lk.small[user.len()..len].copy_from_slice(&trailer(snap, Kind::Put).to_be_bytes());
        } else {
            lk.big = encode(user, snap, Kind::Put);
        }
        lk
    }
    /// The internal key.
    #[inline]
    pub(crate) fn ikey(&self) -> &[u8] {
        if self.big.is_empty() {
            &self.small[..self.len]
        } else {
            &self.big
        }
    }
    /// The user key.
    #[inline]
    pub(crate) fn user(&self) -> &[u8] {
        let k = self.ikey();
        &k[..k.len() - 8]
    }
    /// The snapshot sequence number.
    #[inline]
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

/// Splits an internal key into user key, sequence and raw kind byte.
#[inline]
pub(crate) fn split(ikey: &[u8]) -> (&[u8], u64, u8) {
    debug_assert!(ikey.len() >= 8);
    let n = ikey.len() - 8;
    let mut t = [0u8; 8];
    t.copy_from_slice(&ikey[n..]);
    let raw = !u64::from_be_bytes(t);
    (&ikey[..n], raw >> 8, raw as u8)
}

/// The user-key part of an internal key.
#[inline]
pub(crate) fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len() - 8]
}

/// True when internal key `ikey` is a version of user key `user`. Compares the last word
/// first: neighbours in a scan (a list's elements, a hash's fields) share a long prefix and
/// differ near the end.
#[inline]
pub(crate) fn same_user(ikey: &[u8], user: &[u8]) -> bool {
    if ikey.len() != user.len() + 8 {
        return false;
    }
    let (a, n) = (&ikey[..user.len()], user.len());
    if n < 8 {
        return a == user;
    }
    be64(&a[n - 8..]) == be64(&user[n - 8..])
        && compare_bytes(&a[..n - 8], &user[..n - 8]) == Ordering::Equal
}

/// Orders internal keys: user key ascending, then sequence descending.
#[inline]
pub(crate) fn compare(a: &[u8], b: &[u8]) -> Ordering {
    let (ua, ta) = a.split_at(a.len() - 8);
    let (ub, tb) = b.split_at(b.len() - 8);
    match compare_bytes(ua, ub) {
        Ordering::Equal => be64(ta).cmp(&be64(tb)),
        o => o,
    }
}

#[inline]
fn be64(b: &[u8]) -> u64 {
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[..8]);
    u64::from_be_bytes(t)
}

/// Bytewise comparison, eight bytes at a time (short keys dominate; a libc call per compare
/// showed up in memtable profiles).
#[inline]
pub(crate) fn compare_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let (x, y) = (be64(&a[i..]), be64(&b[i..]));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    // The up to seven bytes left: a slice compare here is a libc `memcmp` call, which costs
    // more than the word loop itself. With eight or more in common, one word ending at `n`
    // covers them (its first bytes were already found equal, so the first difference in it
    // decides); shorter keys go byte by byte.
    if i < n {
        if n >= 8 {
            let (x, y) = (be64(&a[n - 8..]), be64(&b[n - 8..]));
            if x != y {
                return x.cmp(&y);
            }
        } else {
            for (x, y) in a[i..n].iter().zip(&b[i..n]) {
                if x != y {
                    return x.cmp(y);
                }
            }
        }
    }
    a.len().cmp(&b.len())
}

/// Internal keys up to this many bytes are stored inside the skiplist node itself: 38 is
/// what fits beside the tag and length in the 40 bytes the `Heap` variant takes anyway (a
/// list's element keys under a short name fit; a heap key costs a shared-count update per
/// copy, and iterators copy keys out in batches).
const INLINE: usize = 38;

// Inline keys must not make every memtable entry bigger.
const _: () = assert!(std::mem::size_of::<MemKey>() == 40);

/// An owned internal key as stored in the memtable's skiplist. Short keys live inline so a
/// skiplist search does not chase a second pointer per node it compares.
#[derive(Clone, Debug)]
pub(crate) enum MemKey {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Bytes),
}

impl MemKey {
    /// Builds the internal key for `(user, seq, kind)`.
    pub(crate) fn new(user: &[u8], seq: u64, kind: Kind) -> MemKey {
        let n = user.len() + 8;
        if n <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..user.len()].copy_from_slice(user);
            buf[user.len()..n].copy_from_slice(&trailer(seq, kind).to_be_bytes());
            MemKey::Inline { len: n as u8, buf }
        } else {
            MemKey::Heap(Bytes::from(encode(user, seq, kind)))
        }
    }

    /// The encoded internal key.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            MemKey::Inline { len, buf } => &buf[..*len as usize],
            MemKey::Heap(b) => b,
        }
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for MemKey {}

/// A borrowed internal key, so the skiplist can be searched without building a `MemKey`.
#[derive(Debug, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct MemKeyRef(pub(crate) [u8]);

impl MemKeyRef {
    pub(crate) fn new(b: &[u8]) -> &MemKeyRef {
        // SAFETY: MemKeyRef is repr(transparent) over [u8], so the layouts are identical.
        unsafe { &*(b as *const [u8] as *const MemKeyRef) }
    }
}

impl Ord for MemKeyRef {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.0, &other.0)
    }
}
impl PartialOrd for MemKeyRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MemKey {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.as_slice(), other.as_slice())
    }
}
impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Borrow<MemKeyRef> for MemKey {
    #[inline]
    fn borrow(&self) -> &MemKeyRef {
        MemKeyRef::new(self.as_slice())
    }
}

/// A range delete: every key in `[start, end)` with a lower sequence number is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RangeTombstone {
    pub(crate) start: Bytes,
    pub(crate) end: Bytes,
    pub(crate) seq: u64,
}

impl RangeTombstone {
    #[inline]
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        self.start.as_ref() <= key && key < self.end.as_ref()
    }
}

/// Non-overlapping fragments of a set of range tombstones, each carrying the sorted sequence
/// numbers of the tombstones covering it, for fast "which tombstones cover this key" lookups.
#[derive(Debug, Default)]
pub(crate) struct Fragments {
    // Fragment i covers [bounds[i], bounds[i+1]).
    bounds: Vec<Bytes>,
    seqs: Vec<Vec<u64>>,
    // The highest sequence number of any tombstone: a record newer than it is covered by none.
    newest: u64,
}

impl Fragments {
    /// Fragments `tombs` (any order, may overlap).
    pub(crate) fn new(tombs: &[RangeTombstone]) -> Fragments {
        let mut bounds: Vec<Bytes> = tombs
            .iter()
            .filter(|t| t.start < t.end)
            .flat_map(|t| [t.start.clone(), t.end.clone()])
            .collect();
        bounds.sort();
        bounds.dedup();
        let n = bounds.len().saturating_sub(1);
        let mut seqs = vec![Vec::new(); n];
        for t in tombs.iter().filter(|t| t.start < t.end) {
            let i = bounds.partition_point(|b| *b < t.start);
            let j = bounds.partition_point(|b| *b < t.end);
            for s in &mut seqs[i..j] {
                s.push(t.seq);
            }
        }
        for s in &mut seqs {
            s.sort_unstable();
            s.dedup();
        }
        let newest = seqs.iter().flatten().copied().max().unwrap_or(0);
        Fragments {
            bounds,
            seqs,
            newest,
        }
    }

    /// True when no tombstone was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// True when some tombstone may cover a record of sequence number `seq`: a record newer
    /// than every tombstone needs no search (after a FLUSHALL, every later write).
    #[inline]
    pub(crate) fn may_cover(&self, seq: u64) -> bool {
        !self.seqs.is_empty() && seq <= self.newest
    }

    /// Sorted sequence numbers of the tombstones covering `key`.
    pub(crate) fn covering(&self, key: &[u8]) -> &[u64] {
        if self.seqs.is_empty() {
            return &[];
        }
        // Index of the last bound <= key.
        let i = self.bounds.partition_point(|b| b.as_ref() <= key);
        if i == 0 || i > self.seqs.len() {
            return &[];
        }
        &self.seqs[i - 1]
    }

    /// Highest covering tombstone sequence number that is `<= snap`, or 0.
    pub(crate) fn max_covering(&self, key: &[u8], snap: u64) -> u64 {
        let s = self.covering(key);
        let n = s.partition_point(|&x| x <= snap);
        if n == 0 {
            0
        } else {
            s[n - 1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_user_matches_only_the_exact_user_key() {
        let long = b"slot-key-version-0000001".as_slice();
        for user in [&b""[..], b"ab", b"abcdefgh", long] {
            assert!(same_user(&encode(user, 9, Kind::Put), user));
            assert!(same_user(&encode(user, 0, Kind::Delete), user));
        }
        let ik = encode(long, 9, Kind::Put);
        assert!(!same_user(&ik, b"slot-key-version-0000002"));
        assert!(!same_user(&ik, b"Slot-key-version-0000001"));
        assert!(!same_user(&ik, b"slot-key-version-000000"));
        assert!(!same_user(&encode(b"ab", 1, Kind::Put), b"ac"));
    }

    #[test]
    fn ordering_user_then_seq_desc() {
        let a = encode(b"a", 5, Kind::Put);
        let a_old = encode(b"a", 3, Kind::Delete);
        let ab = encode(b"ab", 9, Kind::Put);
        assert_eq!(compare(&a, &a_old), Ordering::Less);
        assert_eq!(compare(&a_old, &ab), Ordering::Less);
        assert_eq!(compare(&encode(b"", 1, Kind::Put), &a), Ordering::Less);
        let (u, s, k) = split(&a_old);
        assert_eq!((u, s, k), (&b"a"[..], 3, 0));
    }

    #[test]
    fn compare_bytes_matches_slice_order() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefgi".to_vec(),
            b"abcdefghijklmnopq".to_vec(),
            b"abcdefghijklmnopr".to_vec(),
            vec![255; 9],
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(compare_bytes(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    proptest::proptest! {
        // Shared prefixes and every tail length, where the word loop hands over to bytes.
        #[test]
        fn compare_bytes_matches_slices_at_every_tail(
            prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
            a in proptest::collection::vec(0u8..3, 0..12),
            b in proptest::collection::vec(0u8..3, 0..12),
        ) {
            let (x, y) = ([&prefix[..], &a].concat(), [&prefix[..], &b].concat());
            proptest::prop_assert_eq!(compare_bytes(&x, &y), x.cmp(&y));
        }
    }

    #[test]
    fn fragments_cover() {
        let t = |s: &str, e: &str, q| RangeTombstone {
            start: Bytes::copy_from_slice(s.as_bytes()),
            end: Bytes::copy_from_slice(e.as_bytes()),
            seq: q,
        };
        let f = Fragments::new(&[t("b", "f", 10), t("d", "h", 5), t("x", "a", 99)]);
        assert!(f.may_cover(10) && f.may_cover(1) && !f.may_cover(11));
        assert!(!Fragments::new(&[]).may_cover(0));
        assert_eq!(f.covering(b"a"), &[] as &[u64]);
        assert_eq!(f.covering(b"b"), &[10]);
        assert_eq!(f.covering(b"e"), &[5, 10]);
        assert_eq!(f.covering(b"f"), &[5]);
        assert_eq!(f.covering(b"h"), &[] as &[u64]);
        assert_eq!(f.max_covering(b"e", 7), 5);
        assert_eq!(f.max_covering(b"e", 4), 0);
    }
}
