//! The exact sliding median.
//!
//! A counted multiset (`BTreeMap<value, count>`) split into a low and a high half with their
//! sizes: insert and remove are O(log d) for d distinct values, the median is the low half's
//! maximum (and the high half's minimum), O(log d) from the tree's ends.
//!
//! Why this structure: memory is O(distinct values), not O(values), and plug loads repeat a lot
//! (standby, a fridge's two states, REFIT's 0 W); a window's expiry removes arbitrary values, which
//! two binary heaps could only do with lazy deletion (garbage that grows with the window); an
//! order-statistic tree gives the same bounds with more code. The window's values in arrival
//! order (needed to know what expires) are a FIFO beside it ([`SlidingMedian`]), or one log shared
//! by many multisets (the outlier query's [`LoadLog`](crate::load_log::LoadLog)).
//!
//! Tried: one tree with a cursor on the lower median (an insert is one tree update and sometimes
//! a step of the cursor): the steps' neighbour lookups (`BTreeMap::range` descends to both ends
//! of the range) took 23 % of the pipeline, what the second tree had cost; no gain at full scale.
//!
//! The median is returned doubled (`a + b`, or `2a` for an odd count) so that comparing medians
//! stays exact integer arithmetic.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// A multiset of integers with its exact median.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MedianSet {
    low: BTreeMap<i64, u32>,
    high: BTreeMap<i64, u32>,
    // Invariant: low_len == high_len or low_len == high_len + 1; every low value <= every high one.
    low_len: u64,
    high_len: u64,
}

fn add(map: &mut BTreeMap<i64, u32>, v: i64) {
    *map.entry(v).or_insert(0) += 1;
}

/// Removes one copy of `v`; false if there is none.
fn take(map: &mut BTreeMap<i64, u32>, v: i64) -> bool {
    match map.get_mut(&v) {
        None => false,
        Some(c) if *c > 1 => {
            *c -= 1;
            true
        }
        Some(_) => {
            map.remove(&v);
            true
        }
    }
}

impl MedianSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> u64 {
        self.low_len + self.high_len
    }

    pub fn is_empty(&self) -> bool {
        self.low_len == 0
    }

    /// Tree entries held (the memory cost): the distinct values, one possibly in both halves.
    pub fn distinct(&self) -> usize {
        self.low.len() + self.high.len()
    }

    pub fn insert(&mut self, v: i64) {
        match self.low.last_key_value() {
            Some((&max, _)) if v > max => {
                add(&mut self.high, v);
                self.high_len += 1;
            }
            _ => {
                add(&mut self.low, v);
                self.low_len += 1;
            }
        }
        self.rebalance();
    }

    /// Removes one copy of `v`; false (and no change) if the set holds none.
    pub fn remove(&mut self, v: i64) -> bool {
        let in_low = self.low.last_key_value().is_some_and(|(&max, _)| v <= max);
        if in_low && take(&mut self.low, v) {
            self.low_len -= 1;
        } else if take(&mut self.high, v) {
            self.high_len -= 1;
        } else {
            return false;
        }
        self.rebalance();
        true
    }

    fn rebalance(&mut self) {
        if self.low_len > self.high_len + 1 {
            if let Some(mut e) = self.low.last_entry() {
                let v = *e.key();
                if *e.get() > 1 {
                    *e.get_mut() -= 1;
                } else {
                    e.remove();
                }
                add(&mut self.high, v);
                self.low_len -= 1;
                self.high_len += 1;
            }
        } else if self.high_len > self.low_len
            && let Some(mut e) = self.high.first_entry()
        {
            let v = *e.key();
            if *e.get() > 1 {
                *e.get_mut() -= 1;
            } else {
                e.remove();
            }
            add(&mut self.low, v);
            self.high_len -= 1;
            self.low_len += 1;
        }
    }

    /// Twice the median (the mean of the two middle values for an even count); None when empty.
    pub fn median2(&self) -> Option<i128> {
        let (&lo, _) = self.low.last_key_value()?;
        if self.low_len > self.high_len {
            Some(2 * i128::from(lo))
        } else {
            let (&hi, _) = self.high.first_key_value()?;
            Some(i128::from(lo) + i128::from(hi))
        }
    }
}

/// A time window's values (ts ∈ (t − len, t]) with their exact median.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlidingMedian {
    len: u32,
    fifo: VecDeque<(u32, i64)>,
    set: MedianSet,
}

impl SlidingMedian {
    pub fn new(len: u32) -> Self {
        SlidingMedian {
            len,
            fifo: VecDeque::new(),
            set: MedianSet::new(),
        }
    }

    /// Adds a value; timestamps must not decrease.
    pub fn push(&mut self, ts: u32, v: i64) {
        self.fifo.push_back((ts, v));
        self.set.insert(v);
    }

    /// Drops values that are out of the window ending at `t` (ts <= t − len).
    pub fn advance(&mut self, t: u32) {
        while let Some(&(ts, v)) = self.fifo.front() {
            if u64::from(ts) + u64::from(self.len) > u64::from(t) {
                break;
            }
            self.fifo.pop_front();
            self.set.remove(v);
        }
    }

    pub fn median2(&self) -> Option<i128> {
        self.set.median2()
    }

    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fifo.is_empty()
    }
}

/// Values per block of [`BlockedMedianSet`]: 1,024 consecutive integers (about 1 W of load).
const BLOCK_BITS: u32 = 10;
const BLOCK: usize = 1 << BLOCK_BITS;

/// A multiset of integers with its exact median, for the global windows that hold millions of
/// values: counts per value in blocks of 1,024 consecutive values, the blocks in a tree by value.
///
/// Why beside [`MedianSet`]: with nearly every load distinct (metering noise), the global 24 h
/// multiset's trees held millions of entries and each insert was a chain of cache misses (half of
/// the pipeline's time). Here insert and remove are a lookup among a few thousand blocks (hot in
/// cache) and an array increment; the median, read once per distinct timestamp rather than per
/// event, walks the blocks' totals and one block. Memory: 8 KB per block of values in use (a load
/// range of 0–4 kW is 4,000 blocks, 32 MB) — too much per plug, right for the one global set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<(i64, u64)>", into = "Vec<(i64, u64)>")]
pub struct BlockedMedianSet {
    blocks: BTreeMap<i64, Block>,
    len: u64,
    /// Blocks holding at least one value. Emptied blocks stay (freeing and zeroing 8 KB again on
    /// the next value cost 30 % of the pipeline) until they outnumber these plus [`SPARE_BLOCKS`]:
    /// then one sweep frees them, so a hostile spread of values cannot grow memory without bound.
    occupied: usize,
}

/// Empty blocks kept beyond the occupied ones (8 MB).
const SPARE_BLOCKS: usize = 1_024;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Block {
    total: u64,
    counts: Box<[u64]>,
}

/// Block key and index in the block: `v >> 10` is floor division, so negative values sort too.
fn block_of(v: i64) -> (i64, usize) {
    (v >> BLOCK_BITS, (v & (BLOCK as i64 - 1)) as usize)
}

impl BlockedMedianSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Blocks allocated (8 KB each), empty ones included.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    pub fn insert(&mut self, v: i64) {
        self.insert_n(v, 1);
    }

    fn insert_n(&mut self, v: i64, n: u64) {
        let (key, i) = block_of(v);
        let block = self.blocks.entry(key).or_insert_with(|| Block {
            total: 0,
            counts: vec![0; BLOCK].into_boxed_slice(),
        });
        if block.total == 0 {
            self.occupied += 1;
        }
        block.counts[i] += n;
        block.total += n;
        self.len += n;
    }

    /// Removes one copy of `v`; false (and no change) if the set holds none.
    pub fn remove(&mut self, v: i64) -> bool {
        let (key, i) = block_of(v);
        let Some(block) = self.blocks.get_mut(&key) else {
            return false;
        };
        if block.counts[i] == 0 {
            return false;
        }
        block.counts[i] -= 1;
        block.total -= 1;
        self.len -= 1;
        if block.total == 0 {
            self.occupied -= 1;
            if self.blocks.len() > 2 * self.occupied + SPARE_BLOCKS {
                self.blocks.retain(|_, block| block.total > 0);
            }
        }
        true
    }

    /// The value of 0-based rank `rank` in sorted order.
    fn nth(&self, mut rank: u64) -> Option<i64> {
        for (&key, block) in &self.blocks {
            if rank >= block.total {
                rank -= block.total;
                continue;
            }
            for (i, &c) in block.counts.iter().enumerate() {
                if rank < c {
                    return Some((key << BLOCK_BITS) | i as i64);
                }
                rank -= c;
            }
        }
        None
    }

    /// Twice the median (the mean of the two middle values for an even count); None when empty.
    pub fn median2(&self) -> Option<i128> {
        let n = self.len;
        let lo = self.nth(n.checked_sub(1)? / 2)?;
        let hi = if n % 2 == 1 { lo } else { self.nth(n / 2)? };
        Some(i128::from(lo) + i128::from(hi))
    }
}

/// Equal when they hold the same values, whatever empty blocks each keeps.
impl PartialEq for BlockedMedianSet {
    fn eq(&self, other: &Self) -> bool {
        let values = |set: &Self| {
            set.blocks
                .iter()
                .filter(|(_, block)| block.total > 0)
                .map(|(&key, block)| (key, block.counts.clone()))
                .collect::<Vec<_>>()
        };
        self.len == other.len && values(self) == values(other)
    }
}

impl Eq for BlockedMedianSet {}

/// Checkpoints hold the (value, count) pairs, not the blocks' zeros.
impl From<BlockedMedianSet> for Vec<(i64, u64)> {
    fn from(set: BlockedMedianSet) -> Self {
        set.blocks
            .iter()
            .flat_map(|(&key, block)| {
                block
                    .counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(move |(i, &c)| ((key << BLOCK_BITS) | i as i64, c))
            })
            .collect()
    }
}

impl From<Vec<(i64, u64)>> for BlockedMedianSet {
    fn from(pairs: Vec<(i64, u64)>) -> Self {
        let mut set = BlockedMedianSet::new();
        for (v, n) in pairs.into_iter().filter(|(_, n)| *n > 0) {
            set.insert_n(v, n);
        }
        set
    }
}
