//! The window's values in arrival order, in fixed blocks.
//!
//! Why not a `VecDeque`: its buffer doubles as it grows, so at the full challenge's 24 h window
//! (~92 million values of 16 bytes, 1.5 GB) it holds a 2 GiB buffer and, while it grows, a second
//! one it copies into: past what a wasm32 component can address. Blocks of [`BLOCK`] entries
//! make the memory follow the length (one partly filled block at each end) and never move an
//! entry. It serializes as the plain sequence of its entries, as a `VecDeque` does, so the
//! snapshot format does not change.

use std::collections::VecDeque;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Entries per block (64 KiB of 16-byte entries).
pub const BLOCK: usize = 4096;

/// A first-in first-out queue of `Copy` entries in blocks of [`BLOCK`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockFifo<T> {
    blocks: VecDeque<Vec<T>>,
    /// Entries of the front block already taken.
    head: usize,
    len: usize,
}

impl<T> Default for BlockFifo<T> {
    fn default() -> Self {
        BlockFifo {
            blocks: VecDeque::new(),
            head: 0,
            len: 0,
        }
    }
}

impl<T: Copy> BlockFifo<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push_back(&mut self, entry: T) {
        match self.blocks.back_mut() {
            Some(block) if block.len() < BLOCK => block.push(entry),
            _ => {
                let mut block = Vec::with_capacity(BLOCK);
                block.push(entry);
                self.blocks.push_back(block);
            }
        }
        self.len += 1;
    }

    pub fn front(&self) -> Option<&T> {
        self.blocks.front().and_then(|block| block.get(self.head))
    }

    pub fn pop_front(&mut self) -> Option<T> {
        let block = self.blocks.front()?;
        let entry = *block.get(self.head)?;
        self.head += 1;
        self.len -= 1;
        if self.head == block.len() {
            self.blocks.pop_front();
            self.head = 0;
        }
        Some(entry)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks
            .iter()
            .enumerate()
            .flat_map(move |(i, block)| block[if i == 0 { self.head } else { 0 }..].iter())
    }
}

impl<T: Copy + Serialize> Serialize for BlockFifo<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for entry in self.iter() {
            seq.serialize_element(entry)?;
        }
        seq.end()
    }
}

impl<'de, T: Copy + Deserialize<'de>> Deserialize<'de> for BlockFifo<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<T>(std::marker::PhantomData<T>);

        impl<'de, T: Copy + Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = BlockFifo<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of window entries")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut fifo = BlockFifo::new();
                while let Some(entry) = seq.next_element()? {
                    fifo.push_back(entry);
                }
                Ok(fifo)
            }
        }

        deserializer.deserialize_seq(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_a_fifo_across_blocks_and_serializes_like_a_vecdeque() {
        let mut fifo = BlockFifo::new();
        let mut model = VecDeque::new();
        // Pushes and pops interleaved so that the front moves through several blocks while the
        // back fills others, down to empty and up again.
        let mut next = 0u64;
        for round in 0..6 {
            for _ in 0..(BLOCK * 2 + 17 * round) {
                fifo.push_back((next as u32, next));
                model.push_back((next as u32, next));
                next += 1;
            }
            let take = if round % 2 == 0 {
                model.len()
            } else {
                BLOCK + 5
            };
            for _ in 0..take {
                assert_eq!(fifo.front(), model.front());
                assert_eq!(fifo.pop_front(), model.pop_front());
            }
            assert_eq!(fifo.len(), model.len());
            assert_eq!(fifo.is_empty(), model.is_empty());
            assert!(fifo.iter().eq(model.iter()));
            assert!(fifo.blocks.len() <= model.len().div_ceil(BLOCK) + 1);
            let bytes = postcard::to_allocvec(&fifo).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&model).unwrap());
            let back: BlockFifo<(u32, u64)> = postcard::from_bytes(&bytes).unwrap();
            assert!(back.iter().eq(model.iter()));
        }
        assert_eq!(BlockFifo::<u8>::new().pop_front(), None);
    }
}
