//! The exact sliding median against sorting.

use wattlet_stream_analytics::generate::SplitMix64;
use wattlet_stream_analytics::median::{MedianSet, SlidingMedian};

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

/// Random inserts and removals of present values; `spread` small means many duplicates.
fn random_ops(seed: u64, spread: u64, ops: usize) {
    let mut rng = SplitMix64::new(seed);
    let mut set = MedianSet::new();
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
        random_ops(seed, 1_000_000, 2_000);
    }
}

#[test]
fn heavy_duplicates_match_sorting() {
    for seed in 100..120 {
        random_ops(seed, 3, 2_000);
    }
}

#[test]
fn even_and_odd_counts_and_empty() {
    let mut s = MedianSet::new();
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
    assert!(s.is_empty());
    assert_eq!(s.median2(), None);
}

#[test]
fn extreme_values_do_not_overflow() {
    let mut s = MedianSet::new();
    s.insert(i64::MAX);
    s.insert(i64::MAX);
    assert_eq!(s.median2(), Some(2 * i128::from(i64::MAX)));
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
