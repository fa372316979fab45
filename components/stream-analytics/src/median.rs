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
//! order (needed to know what expires) are a FIFO beside it ([`SlidingMedian`]), or one FIFO shared
//! by many multisets (the outlier query).
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
