//! Slot → shard: which shard owns each of the 16384 hash slots.

use crate::storage::slot::SLOTS;

/// The owner of every slot and the epoch of that assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    owner: Vec<u16>,
    /// Bumped by every ownership change (`cluster_current_epoch`).
    pub epoch: u64,
}

impl SlotMap {
    /// `shards` shards owning equal contiguous ranges: shard `i` owns
    /// `[i·16384/n, (i+1)·16384/n)`.
    pub fn even(shards: usize) -> SlotMap {
        let n = shards.max(1);
        let total = SLOTS as usize;
        let owner = (0..total)
            .map(|s| (s * n / total) as u16)
            .collect::<Vec<_>>();
        SlotMap { owner, epoch: 1 }
    }

    /// A map from explicit owners (one per slot, as stored).
    pub fn from_owners(owner: Vec<u16>, epoch: u64) -> SlotMap {
        SlotMap { owner, epoch }
    }

    /// Hands `slot` to `shard` (the caller bumps the epoch).
    pub fn set_owner(&mut self, slot: u16, shard: usize) {
        if let Some(o) = self.owner.get_mut(slot as usize) {
            *o = shard as u16;
        }
    }

    /// The shard owning `slot`.
    pub fn owner(&self, slot: u16) -> usize {
        self.owner.get(slot as usize).copied().unwrap_or(0) as usize
    }

    /// Contiguous runs `(start, end inclusive, shard)` in slot order, covering every slot.
    pub fn ranges(&self) -> Vec<(u16, u16, usize)> {
        let mut out: Vec<(u16, u16, usize)> = Vec::new();
        for (slot, &shard) in self.owner.iter().enumerate() {
            match out.last_mut() {
                Some((_, end, s)) if *s == shard as usize && *end as usize + 1 == slot => {
                    *end = slot as u16;
                }
                _ => out.push((slot as u16, slot as u16, shard as usize)),
            }
        }
        out
    }

    /// The runs owned by `shard`.
    pub fn ranges_of(&self, shard: usize) -> Vec<(u16, u16)> {
        self.ranges()
            .into_iter()
            .filter(|r| r.2 == shard)
            .map(|(a, b, _)| (a, b))
            .collect()
    }

    /// Number of slots `shard` owns.
    pub fn count(&self, shard: usize) -> usize {
        self.owner.iter().filter(|&&s| s as usize == shard).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_covers_every_slot() {
        let m = SlotMap::even(3);
        assert_eq!(
            m.ranges(),
            vec![(0, 5461, 0), (5462, 10922, 1), (10923, 16383, 2)]
        );
        assert_eq!(m.owner(0), 0);
        assert_eq!(m.owner(16383), 2);
        assert_eq!(m.count(0) + m.count(1) + m.count(2), SLOTS as usize);
        assert_eq!(SlotMap::even(1).ranges(), vec![(0, 16383, 0)]);
        assert_eq!(m.ranges_of(1), vec![(5462, 10922)]);
    }
}
