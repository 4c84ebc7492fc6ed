//! The manager's dict: Python's insertion order, kept through removals.

use std::collections::HashMap;

use serde_bytes::ByteBuf;

/// A dict in insertion order (Python's): slots in order, emptied on removal, and an index from
/// key bytes to slot; the slots are compacted when more than half are empty.
#[derive(Default)]
pub(crate) struct Dict {
    index: HashMap<Vec<u8>, usize>,
    slots: Vec<Option<(ByteBuf, ByteBuf)>>,
}

impl Dict {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&ByteBuf> {
        let slot = *self.index.get(key)?;
        self.slots[slot].as_ref().map(|(_, v)| v)
    }

    pub(crate) fn insert(&mut self, key: ByteBuf, value: ByteBuf) -> Option<ByteBuf> {
        if let Some(&slot) = self.index.get(key.as_slice()) {
            let entry = self.slots[slot].as_mut()?;
            return Some(std::mem::replace(&mut entry.1, value));
        }
        self.index.insert(key.to_vec(), self.slots.len());
        self.slots.push(Some((key, value)));
        None
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<ByteBuf> {
        let slot = self.index.remove(key)?;
        let (_, value) = self.slots[slot].take()?;
        if self.slots.len() > 16 && self.slots.len() > 2 * self.index.len() {
            self.compact();
        }
        Some(value)
    }

    /// Removes the pair inserted last (Python's `popitem`, LIFO).
    pub(crate) fn pop_last(&mut self) -> Option<(ByteBuf, ByteBuf)> {
        while let Some(slot) = self.slots.pop() {
            if let Some((key, value)) = slot {
                self.index.remove(key.as_slice());
                return Some((key, value));
            }
        }
        None
    }

    pub(crate) fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        for (i, (key, _)) in self.slots.iter().flatten().enumerate() {
            if let Some(slot) = self.index.get_mut(key.as_slice()) {
                *slot = i;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &(ByteBuf, ByteBuf)> {
        self.slots.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: u8) -> ByteBuf {
        ByteBuf::from(vec![x])
    }

    #[test]
    fn a_dict_keeps_insertion_order_through_removals_and_compaction() {
        let mut d = Dict::default();
        for i in 0..40 {
            d.insert(b(i), b(i));
        }
        for i in 0..30 {
            assert_eq!(d.remove(&[i]), Some(b(i)));
        }
        d.insert(b(5), b(50));
        d.insert(b(35), b(99));
        let keys: Vec<u8> = d.entries().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, [30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 5]);
        assert_eq!(d.get(&[35]), Some(&b(99)));
        assert_eq!(d.len(), 11);
        assert!(d.slots.len() < 40, "compacted");
        assert_eq!(d.pop_last(), Some((b(5), b(50))));
        assert_eq!(d.remove(&[39]), Some(b(39)));
        assert_eq!(
            d.pop_last(),
            Some((b(38), b(38))),
            "emptied slots are skipped"
        );
        assert_eq!(d.len(), 8);
        d.insert(b(1), b(1));
        assert_eq!(d.entries().last(), Some(&(b(1), b(1))));
    }
}
