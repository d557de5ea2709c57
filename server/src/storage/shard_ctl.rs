//! What a shard's Raft log carries besides plain writes, for slot migration.
//!
//! - A client write is proposed *tagged* with the slot it was routed for. A shard refuses
//!   (deterministically, at apply) tagged writes to a *fenced* slot: one it is handing over, or
//!   has handed over. The refusal is `-TRYAGAIN`: not applied, the client retries and is routed
//!   again (to the new owner once the move is done). Writes a migration itself makes (the copy,
//!   the drop) are untagged and never refused.
//! - Control entries fence slots (the source, before copying a slot) and accept them (the
//!   target, before receiving a slot it may have given away earlier).
//!
//! - While a slot migrates, the source's leader proposes client writes to it *guarded* with
//!   the keys they touch. Applied, a guarded write runs only if all its keys exist here, is
//!   refused with [`ABSENT`] (the client is sent to the target with `ASK`) if none does, and
//!   `-TRYAGAIN` if some do. The first guarded write marks the slot *exporting*: from then on
//!   unguarded writes to it (from a node that has not yet seen the migration) are refused too.
//!   So once a key was found missing here, it can never be created here again, and a client
//!   that wrote it at the target through `ASK` never has its write shadowed by the copy.
//!   (Deciding `ASK` when routing, from the applied state, was not enough: a write to the same
//!   key still in flight could create it here after the client had been sent away.)
//!
//! The fence set is stored under one system key, written in the same batch as the change and
//! its Raft progress record, so a restart replays exactly as the first run applied.

use super::encoding::system_key;
use super::slot::SLOTS;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// First byte of a tagged write (an encoded `WriteCommand` starts with its format version 1).
const TAGGED: u8 = 0xE0;
/// First byte of a control entry.
const CONTROL: u8 = 0xE1;
/// First byte of a migration's copy of a record into the target shard.
const INGEST: u8 = 0xE2;
/// First byte of a group of writes applied as one (a transaction), inside an optional tag.
const ATOMIC: u8 = 0xE3;
/// First byte of a guarded write (a tagged write that needs its keys present here).
const GUARDED: u8 = 0xE4;
/// First byte of a migration's copy of a record a client is waiting for, ahead of its slot's
/// scan (see [`pulled`]).
const PULLED: u8 = 0xE5;
/// Prefix (after the system byte) of the records naming keys copied ahead of their slot's scan.
const PULL_GUARDS: &[u8] = b"pull-guard";
/// System key holding the fence bitmap.
pub(super) const FENCES: &[u8] = b"shard-fences";
/// What a refused write answers (Redis's text; every cluster client retries it).
pub const REFUSED: &str = "TRYAGAIN Multiple keys request during rehashing of slot";
/// What a guarded write whose keys are all missing answers, followed by the slot; the
/// connection turns it into `ASK <slot> <target>` (never sent to a client as is).
pub const ABSENT: &str = "PINNACLE-ABSENT ";

const WORDS: usize = SLOTS as usize / 64;

/// A shard's control operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Refuse tagged writes to these slots from now on (the source of a move).
    Fence(Vec<u16>),
    /// Accept tagged writes and ingests for these slots again (the target, before a move).
    Accept(Vec<u16>),
    /// Refuse ingests for these slots (the target, once its copy is complete: a late copy
    /// from a deposed driver must not overwrite what clients write after the flip).
    Seal(Vec<u16>),
    /// Delete every record of these slots (the source after the flip; the target's leftovers
    /// of an earlier attempt).
    Drop(Vec<u16>),
}

/// One item of a shard proposal, decoded.
pub(super) enum Item {
    /// An encoded `WriteCommand` (after the 3-byte tag if tagged), with the slot it was
    /// routed for if tagged.
    Write(Option<u16>),
    /// A guarded write to `slot`: it needs `keys` present; the body starts at `body_at`.
    Guarded {
        /// The slot it was routed for.
        slot: u16,
        /// The keys it touches.
        keys: Vec<Bytes>,
        /// Offset of the encoded `WriteCommand` (or atomic group).
        body_at: usize,
    },
    /// A migration's copy of a record of this slot (the `WriteCommand` after 3 bytes);
    /// `pulled` if it was copied ahead of the slot's scan for a waiting client.
    Ingest {
        /// The slot it belongs to.
        slot: u16,
        /// Copied ahead of the scan ([`pulled`]).
        pulled: bool,
    },
    /// A control operation.
    Control(Control),
    /// Unreadable.
    Bad,
}

/// `cmd` (an encoded `WriteCommand`) tagged with the slot a client's request was routed for.
pub fn tag(slot: u16, cmd: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(3 + cmd.len());
    b.put_u8(TAGGED);
    b.put_u16(slot);
    b.put_slice(cmd);
    b.freeze()
}

/// `cmd` (an encoded `WriteCommand`, or an [`atomic`] group) tagged with the slot it was
/// routed for and guarded with the keys it touches (see the module docs).
pub fn guarded(slot: u16, keys: &[Bytes], cmd: &[u8]) -> Bytes {
    let len = 5 + keys.iter().map(|k| 4 + k.len()).sum::<usize>() + cmd.len();
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(GUARDED);
    b.put_u16(slot);
    b.put_u16(keys.len() as u16);
    for k in keys {
        b.put_u32(k.len() as u32);
        b.put_slice(k);
    }
    b.put_slice(cmd);
    b.freeze()
}

/// Decodes a [`guarded`] item's header: (slot, keys, body offset).
fn decode_guarded(raw: &[u8]) -> Option<(u16, Vec<Bytes>, usize)> {
    let head = raw.get(1..5)?;
    let slot = u16::from_be_bytes([head[0], head[1]]);
    let n = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut at = 5;
    // Bounded by the bytes present, not by the declared count.
    let mut keys = Vec::with_capacity(n.min(raw.len() / 4));
    for _ in 0..n {
        let l = raw.get(at..at + 4)?;
        let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
        at += 4;
        let end = at.checked_add(len).filter(|e| *e <= raw.len())?;
        keys.push(Bytes::copy_from_slice(&raw[at..end]));
        at = end;
    }
    Some((slot, keys, at))
}

/// `cmd` (an encoded `WriteCommand`) as a migration's copy into slot `slot` of the target.
pub fn ingest(slot: u16, cmd: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(3 + cmd.len());
    b.put_u8(INGEST);
    b.put_u16(slot);
    b.put_slice(cmd);
    b.freeze()
}

/// `cmd` (an encoded `RESTORE`) as a migration's copy of a key a client waits for, made ahead
/// of its slot's scan. The target records that the key was pulled: the scan's copy of it
/// (read before the source deleted it) is then skipped, so it cannot bring back a key the
/// client deleted at the target after being sent there with `ASK`.
pub fn pulled(slot: u16, cmd: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(3 + cmd.len());
    b.put_u8(PULLED);
    b.put_u16(slot);
    b.put_slice(cmd);
    b.freeze()
}

/// The record marking `key` of `slot` as pulled (see [`pulled`]).
pub(super) fn pull_guard(slot: u16, key: &[u8]) -> Bytes {
    let mut name = Vec::with_capacity(PULL_GUARDS.len() + 2 + key.len());
    name.extend_from_slice(PULL_GUARDS);
    name.extend_from_slice(&slot.to_be_bytes());
    name.extend_from_slice(key);
    system_key(&name)
}

/// The range of `slot`'s pull records, and the length of their prefix before the key.
pub(super) fn pull_guards_of(slot: u16) -> (Bytes, Bytes, usize) {
    let start = pull_guard(slot, b"");
    let mut name = PULL_GUARDS.to_vec();
    name.extend_from_slice(&(u32::from(slot) + 1).to_be_bytes()[2..]);
    let len = start.len();
    (start, system_key(&name), len)
}

/// Encoded `WriteCommand`s to apply as one: each sees the earlier ones' effects and readers
/// see all or none of them (`MULTI`/`EXEC`). The reply is an array of their replies.
pub fn atomic(cmds: &[Bytes]) -> Bytes {
    let len = 5 + cmds.iter().map(|c| 4 + c.len()).sum::<usize>();
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(ATOMIC);
    b.put_u32(cmds.len() as u32);
    for c in cmds {
        b.put_u32(c.len() as u32);
        b.put_slice(c);
    }
    b.freeze()
}

/// The commands of an [`atomic`] group (`raw` after any tag); `None` if `raw` is not one or
/// is malformed.
pub(super) fn atomic_parts(raw: &Bytes) -> Option<Vec<Bytes>> {
    if raw.first() != Some(&ATOMIC) || raw.len() < 5 {
        return None;
    }
    let n = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
    let mut at = 5;
    // Bounded by the bytes present, not by the declared count.
    let mut out = Vec::with_capacity(n.min(raw.len() / 4));
    for _ in 0..n {
        let head = raw.get(at..at + 4)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        at += 4;
        let end = at.checked_add(len).filter(|e| *e <= raw.len())?;
        out.push(raw.slice(at..end));
        at = end;
    }
    (at == raw.len()).then_some(out)
}

impl Control {
    /// The proposal item for this operation.
    pub fn encode(&self) -> Bytes {
        let (op, slots) = match self {
            Control::Fence(s) => (1u8, s),
            Control::Accept(s) => (2u8, s),
            Control::Seal(s) => (3u8, s),
            Control::Drop(s) => (4u8, s),
        };
        let mut b = BytesMut::with_capacity(2 + 2 * slots.len());
        b.put_u8(CONTROL);
        b.put_u8(op);
        for s in slots {
            b.put_u16(*s);
        }
        b.freeze()
    }
}

pub(super) fn decode(raw: &[u8]) -> Item {
    match raw.first() {
        Some(&TAGGED) if raw.len() >= 3 => Item::Write(Some(u16::from_be_bytes([raw[1], raw[2]]))),
        Some(&INGEST) if raw.len() >= 3 => Item::Ingest {
            slot: u16::from_be_bytes([raw[1], raw[2]]),
            pulled: false,
        },
        Some(&PULLED) if raw.len() >= 3 => Item::Ingest {
            slot: u16::from_be_bytes([raw[1], raw[2]]),
            pulled: true,
        },
        Some(&GUARDED) => match decode_guarded(raw) {
            Some((slot, keys, body_at)) => Item::Guarded {
                slot,
                keys,
                body_at,
            },
            None => Item::Bad,
        },
        Some(&CONTROL) if raw.len() >= 2 && raw.len().is_multiple_of(2) => {
            let slots: Vec<u16> = raw[2..]
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .filter(|s| *s < SLOTS)
                .collect();
            match raw[1] {
                1 => Item::Control(Control::Fence(slots)),
                2 => Item::Control(Control::Accept(slots)),
                3 => Item::Control(Control::Seal(slots)),
                4 => Item::Control(Control::Drop(slots)),
                _ => Item::Bad,
            }
        }
        Some(&TAGGED) | Some(&CONTROL) | Some(&INGEST) | Some(&PULLED) => Item::Bad,
        // A transaction without a tag (a node outside cluster routing): applied as a write.
        _ => Item::Write(None),
    }
}

/// A set of slots; lock-free to read.
pub(crate) struct SlotSet {
    bits: Box<[AtomicU64]>,
    count: AtomicUsize,
}

impl Default for SlotSet {
    fn default() -> SlotSet {
        SlotSet {
            bits: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicUsize::new(0),
        }
    }
}

impl SlotSet {
    /// True if `slot` is in the set.
    pub(crate) fn contains(&self, slot: u16) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let (w, b) = (slot as usize / 64, slot % 64);
        self.bits
            .get(w)
            .is_some_and(|x| x.load(Ordering::Acquire) & (1 << b) != 0)
    }

    fn set(&self, slots: &[u16], on: bool) {
        for &s in slots {
            let (w, b) = (s as usize / 64, s % 64);
            if let Some(x) = self.bits.get(w) {
                if on {
                    x.fetch_or(1 << b, Ordering::AcqRel);
                } else {
                    x.fetch_and(!(1 << b), Ordering::AcqRel);
                }
            }
        }
        let n = self
            .bits
            .iter()
            .map(|x| x.load(Ordering::Acquire).count_ones() as usize)
            .sum();
        self.count.store(n, Ordering::Release);
    }

    /// Every slot in the set.
    pub(crate) fn list(&self) -> Vec<u16> {
        (0..SLOTS).filter(|s| self.contains(*s)).collect()
    }

    fn image_into(&self, b: &mut BytesMut) {
        for x in self.bits.iter() {
            b.put_u64(x.load(Ordering::Acquire));
        }
    }

    fn load(&self, image: Option<&[u8]>) {
        let mut slots_on = Vec::new();
        for (i, x) in self.bits.iter().enumerate() {
            let word = image
                .and_then(|img| img.get(i * 8..i * 8 + 8))
                .and_then(|w| w.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            x.store(0, Ordering::Release);
            for b in 0..64 {
                if word & (1 << b) != 0 {
                    slots_on.push((i * 64 + b) as u16);
                }
            }
        }
        self.set(&slots_on, true);
    }
}

/// A shard's migration state: slots whose client writes it refuses, slots whose ingests it
/// refuses, and slots it is exporting (unguarded client writes refused).
#[derive(Default)]
pub(crate) struct Fences {
    /// Client writes refused.
    pub(crate) fenced: SlotSet,
    /// Migration copies refused.
    pub(crate) sealed: SlotSet,
    /// A guarded write was applied: unguarded client writes refused.
    pub(crate) exporting: SlotSet,
}

impl Fences {
    /// Applies a control operation's effect on the sets (`Drop` has none; the caller persists
    /// [`Fences::image`] in the same batch).
    pub(super) fn apply(&self, c: &Control) {
        match c {
            Control::Fence(s) => self.fenced.set(s, true),
            Control::Accept(s) => {
                self.fenced.set(s, false);
                self.sealed.set(s, false);
                self.exporting.set(s, false);
            }
            Control::Seal(s) => self.sealed.set(s, true),
            // The slot is fenced from now on; a later move back starts with `Accept`.
            Control::Drop(s) => self.exporting.set(s, false),
        }
    }

    /// Marks `slot` exporting; true if it was not yet (the caller persists the image).
    pub(super) fn mark_exporting(&self, slot: u16) -> bool {
        if self.exporting.contains(slot) {
            return false;
        }
        self.exporting.set(&[slot], true);
        true
    }

    /// The stored form.
    pub(super) fn image(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(WORDS * 24);
        self.fenced.image_into(&mut b);
        self.sealed.image_into(&mut b);
        self.exporting.image_into(&mut b);
        b.freeze()
    }

    /// Replaces the sets with a stored image (`None` = empty; an image written before the
    /// exporting set existed has none).
    pub(super) fn load(&self, image: Option<&[u8]>) {
        let part = |n: usize| {
            image.and_then(|i| {
                i.get((n * WORDS * 8).min(i.len())..((n + 1) * WORDS * 8).min(i.len()))
            })
        };
        self.fenced.load(part(0));
        self.sealed.load(part(1));
        self.exporting.load(part(2));
    }
}

/// The system key of the fence set.
pub(super) fn key() -> Bytes {
    system_key(FENCES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let t = tag(12182, b"\x01abc");
        assert!(matches!(decode(&t), Item::Write(Some(12182))));
        assert_eq!(&t[3..], b"\x01abc");
        assert!(matches!(decode(b"\x01abc"), Item::Write(None)));
        let c = Control::Fence(vec![1, 16383]);
        assert!(matches!(decode(&c.encode()), Item::Control(x) if x == c));
        assert!(matches!(decode(&[CONTROL, 9]), Item::Bad));
    }

    #[test]
    fn fences_set_clear_and_reload() {
        let f = Fences::default();
        assert!(!f.fenced.contains(5));
        f.apply(&Control::Fence(vec![5, 700]));
        f.apply(&Control::Seal(vec![9]));
        assert!(f.fenced.contains(5) && f.fenced.contains(700) && !f.fenced.contains(6));
        let img = f.image();
        f.apply(&Control::Accept(vec![5, 9]));
        assert_eq!(f.fenced.list(), vec![700]);
        assert!(f.sealed.list().is_empty());
        f.load(Some(&img));
        assert_eq!(f.fenced.list(), vec![5, 700]);
        assert_eq!(f.sealed.list(), vec![9]);
        f.load(None);
        assert!(f.fenced.list().is_empty());
        let i = ingest(3, b"\x01x");
        assert!(matches!(
            decode(&i),
            Item::Ingest {
                slot: 3,
                pulled: false
            }
        ));
        let p = pulled(16383, b"\x01x");
        assert!(matches!(
            decode(&p),
            Item::Ingest {
                slot: 16383,
                pulled: true
            }
        ));
        assert!(matches!(decode(&[PULLED, 0]), Item::Bad));
    }

    #[test]
    fn pull_guards_of_a_slot_lie_in_its_range_only() {
        for slot in [0u16, 7, 255, 256, 16383] {
            let (start, end, len) = pull_guards_of(slot);
            let g = pull_guard(slot, b"k{x}");
            assert!(start <= g && g < end, "slot {slot}");
            assert_eq!(&g[len..], b"k{x}");
            if slot < 16383 {
                assert!(pull_guard(slot + 1, b"") >= end);
            }
            if slot > 0 {
                assert!(pull_guard(slot - 1, b"\xff\xff\xff") < start);
            }
        }
    }

    #[test]
    fn guarded_items_round_trip() {
        let keys = vec![Bytes::from_static(b"a{t}"), Bytes::new()];
        let g = guarded(77, &keys, b"\x01body");
        match decode(&g) {
            Item::Guarded {
                slot,
                keys: k,
                body_at,
            } => {
                assert_eq!((slot, k), (77, keys));
                assert_eq!(&g[body_at..], b"\x01body");
            }
            _ => panic!("not decoded as guarded"),
        }
        // A declared key count or length beyond the bytes present is malformed, not a panic.
        assert!(matches!(decode(&[GUARDED, 0, 1, 0, 9]), Item::Bad));
        assert!(matches!(
            decode(&[GUARDED, 0, 1, 0, 1, 0, 0, 0, 200, 1]),
            Item::Bad
        ));
        assert!(matches!(decode(&[GUARDED, 0]), Item::Bad));
    }

    #[test]
    fn exporting_set_persists_and_old_images_load() {
        let f = Fences::default();
        f.apply(&Control::Fence(vec![1]));
        assert!(f.mark_exporting(40));
        assert!(!f.mark_exporting(40));
        let img = f.image();
        f.load(None);
        f.load(Some(&img));
        assert_eq!(f.exporting.list(), vec![40]);
        assert_eq!(f.fenced.list(), vec![1]);
        // An image from before the exporting set: two parts.
        f.load(Some(&img[..WORDS * 16]));
        assert!(f.exporting.list().is_empty());
        assert_eq!(f.fenced.list(), vec![1]);
        f.load(Some(&img));
        f.apply(&Control::Accept(vec![40]));
        assert!(f.exporting.list().is_empty());
        assert!(f.mark_exporting(41));
        f.apply(&Control::Drop(vec![41]));
        assert!(f.exporting.list().is_empty());
    }
}
