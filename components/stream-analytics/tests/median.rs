//! The exact sliding median against sorting.

use wattlet_stream_analytics::generate::SplitMix64;
use wattlet_stream_analytics::median::{BlockedMedianSet, MedianSet, SlidingMedian};

fn sorted_median2(values: &[i64]) -> Option<i128> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(2 * i128::from(v[n / 2])),
        _ => Some(i128::from(v[n / 2 - 1]) + i128::from(v[n / 2])),
    }
}

/// The two exact median structures, checked by the same sequences.
trait Median: Default {
    fn insert(&mut self, v: i64);
    fn remove(&mut self, v: i64) -> bool;
    fn len(&self) -> u64;
    fn median2(&self) -> Option<i128>;
}

macro_rules! median_impl {
    ($t:ty) => {
        impl Median for $t {
            fn insert(&mut self, v: i64) {
                <$t>::insert(self, v)
            }
            fn remove(&mut self, v: i64) -> bool {
                <$t>::remove(self, v)
            }
            fn len(&self) -> u64 {
                <$t>::len(self)
            }
            fn median2(&self) -> Option<i128> {
                <$t>::median2(self)
            }
        }
    };
}
median_impl!(MedianSet);
median_impl!(BlockedMedianSet);

/// Random inserts and removals of present values; `spread` small means many duplicates.
fn random_ops<M: Median>(seed: u64, spread: u64, ops: usize) {
    let mut rng = SplitMix64::new(seed);
    let mut set = M::default();
    let mut values: Vec<i64> = Vec::new();
    for step in 0..ops {
        let insert = values.is_empty() || rng.range(0, 99) < 55;
        if insert {
            let v = rng.range(0, spread) as i64 - (spread / 3) as i64;
            set.insert(v);
            values.push(v);
        } else {
            let i = rng.range(0, values.len() as u64 - 1) as usize;
            let v = values.swap_remove(i);
            assert!(set.remove(v), "seed {seed} step {step}: {v} not removed");
        }
        assert_eq!(set.len(), values.len() as u64);
        assert_eq!(
            set.median2(),
            sorted_median2(&values),
            "seed {seed} step {step}"
        );
    }
}

#[test]
fn random_inserts_and_removals_match_sorting() {
    for seed in 0..20 {
        random_ops::<MedianSet>(seed, 1_000_000, 2_000);
        random_ops::<BlockedMedianSet>(seed, 1_000_000, 2_000);
    }
}

#[test]
fn heavy_duplicates_match_sorting() {
    for seed in 100..120 {
        random_ops::<MedianSet>(seed, 3, 2_000);
        random_ops::<BlockedMedianSet>(seed, 3, 2_000);
    }
}

#[test]
fn even_and_odd_counts_and_empty() {
    even_and_odd::<MedianSet>();
    even_and_odd::<BlockedMedianSet>();
}

fn even_and_odd<M: Median>() {
    let mut s = M::default();
    assert_eq!(s.median2(), None);
    s.insert(5);
    assert_eq!(s.median2(), Some(10));
    s.insert(8);
    assert_eq!(s.median2(), Some(13)); // (5 + 8) / 2 = 6.5, doubled
    s.insert(-3);
    assert_eq!(s.median2(), Some(10));
    assert!(s.remove(5));
    assert_eq!(s.median2(), Some(5)); // (-3 + 8)
    assert!(!s.remove(42), "removing an absent value must fail");
    assert!(s.remove(-3) && s.remove(8));
    assert_eq!(s.len(), 0);
    assert_eq!(s.median2(), None);
}

#[test]
fn extreme_values_do_not_overflow() {
    extremes::<MedianSet>();
    extremes::<BlockedMedianSet>();
}

fn extremes<M: Median>() {
    let mut s = M::default();
    s.insert(i64::MAX);
    s.insert(i64::MAX);
    assert_eq!(s.median2(), Some(2 * i128::from(i64::MAX)));
    s.insert(i64::MIN);
    s.insert(i64::MIN);
    s.insert(i64::MIN);
    assert_eq!(s.median2(), Some(2 * i128::from(i64::MIN)));
    assert!(s.remove(i64::MIN) && s.remove(i64::MIN) && s.remove(i64::MAX));
    assert_eq!(
        s.median2(),
        Some(i128::from(i64::MIN) + i128::from(i64::MAX))
    );
}

#[test]
fn blocked_set_frees_emptied_blocks_of_a_hostile_spread() {
    let mut s = BlockedMedianSet::new();
    let spread: Vec<i64> = (0..20_000i64)
        .map(|i| i * 1_000_003 - 7_000_000_000)
        .collect();
    for &v in &spread {
        s.insert(v);
    }
    assert_eq!(s.blocks(), spread.len());
    for &v in &spread[1..] {
        assert!(s.remove(v));
    }
    assert!(
        s.blocks() <= 2 + 1_024,
        "{} blocks kept for one value",
        s.blocks()
    );
    assert_eq!(s.median2(), Some(2 * i128::from(spread[0])));
}

#[test]
fn blocked_set_checkpoints_its_values_not_its_blocks() {
    let mut rng = SplitMix64::new(11);
    let mut s = BlockedMedianSet::new();
    for _ in 0..5_000 {
        s.insert(rng.range(0, 4_000_000) as i64 - 1_000);
    }
    for v in [-1_000_000, 3, 3, 3] {
        s.insert(v);
    }
    assert!(s.remove(3));
    let json = serde_json::to_string(&s).expect("serialize");
    let back: BlockedMedianSet = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, s);
    assert_eq!(back.median2(), s.median2());
    assert!(
        json.len() < 5_004 * 30,
        "{} bytes: the zeros of {} blocks were written",
        json.len(),
        s.blocks()
    );
}

#[test]
fn memory_is_distinct_values() {
    let mut s = MedianSet::new();
    for i in 0..10_000 {
        s.insert(i % 3);
    }
    assert!(
        s.distinct() <= 4,
        "{} entries for 3 distinct values",
        s.distinct()
    );
}

#[test]
fn sliding_window_matches_recomputation() {
    let mut rng = SplitMix64::new(7);
    let mut w = SlidingMedian::new(100);
    let mut all: Vec<(u32, i64)> = Vec::new();
    let mut ts = 0u32;
    for _ in 0..3_000 {
        ts += rng.range(0, 3) as u32;
        let v = rng.range(0, 50) as i64;
        w.push(ts, v);
        all.push((ts, v));
        w.advance(ts);
        let inside: Vec<i64> = all
            .iter()
            .filter(|(t, _)| t + 100 > ts)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(w.len(), inside.len());
        assert_eq!(w.median2(), sorted_median2(&inside));
    }
}
