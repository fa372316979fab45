//! The obvious, slow implementation of both queries, for tests on small data: drop late events by
//! the arrival rule, sort the rest, and at every output point recompute everything from the event
//! list (filter by time, sum, sort, take medians). It shares no code with the operators, only
//! the two rounding formulas ([`crate::forecast::mean_w`]'s and [`crate::outliers::percent`]'s
//! expressions are written out again here).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::Outputs;
use crate::event::{Event, PlugKey, Property};
use crate::forecast::{HouseForecast, OUTPUT_PERIOD, PlugForecast, SLICE_LENGTHS};
use crate::outliers::{Outlier, WINDOWS};

/// Both queries over `events` in arrival order.
pub fn run(events: &[Event], lateness: u32) -> Outputs {
    let mut max: Option<u32> = None;
    let mut kept = Vec::new();
    for e in events {
        if let Some(m) = max
            && u64::from(e.ts) + u64::from(lateness) < u64::from(m)
        {
            continue;
        }
        max = Some(max.map_or(e.ts, |m| m.max(e.ts)));
        kept.push(*e);
    }
    kept.sort_by_key(|e| (e.ts, e.id)); // stable: equal (ts, id) stay in arrival order
    let mut out = Outputs::default();
    q1(&kept, &mut out);
    q2(&kept, &mut out);
    out
}

fn loads(sorted: &[Event]) -> Vec<Event> {
    sorted
        .iter()
        .filter(|e| e.property == Property::Load)
        .copied()
        .collect()
}

/// Events with lo <= ts < hi.
fn range(loads: &[Event], lo: u64, hi: u64) -> &[Event] {
    let a = loads.partition_point(|e| u64::from(e.ts) < lo);
    let b = loads.partition_point(|e| u64::from(e.ts) < hi);
    &loads[a..b]
}

/// Groups by plug with a linear search: test data has few plugs, and this is quicker than a tree
/// in the unoptimised test build. Sorted by key at the end.
fn group<T>(
    events: &[Event],
    init: impl Fn() -> T,
    mut add: impl FnMut(&mut T, &Event),
) -> Vec<(PlugKey, T)> {
    let mut groups: Vec<(PlugKey, T)> = Vec::new();
    for e in events {
        let key = e.key();
        let i = match groups.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                groups.push((key, init()));
                groups.len() - 1
            }
        };
        add(&mut groups[i].1, e);
    }
    groups.sort_by_key(|(k, _)| *k);
    groups
}

fn averages(events: &[Event]) -> BTreeMap<PlugKey, f64> {
    let sums = group(
        events,
        || (0i128, 0u64),
        |a, e| {
            a.0 += i128::from(e.value_mw);
            a.1 += 1;
        },
    );
    sums.into_iter()
        .map(|(k, (s, c))| (k, s as f64 / (c as f64 * 1000.0)))
        .collect()
}

/// House loads: the sum of the plug averages, in key order.
fn house_sums(avgs: &BTreeMap<PlugKey, f64>) -> BTreeMap<u32, f64> {
    let mut sums: BTreeMap<u32, f64> = BTreeMap::new();
    for (k, v) in avgs {
        match sums.get_mut(&k.house) {
            Some(s) => *s += v,
            None => {
                sums.insert(k.house, *v);
            }
        }
    }
    sums
}

fn median_f64(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn forecast(avg: f64, past: Vec<f64>) -> f64 {
    match median_f64(past) {
        None => avg,
        Some(m) => (avg + m) / 2.0,
    }
}

fn q1(sorted: &[Event], out: &mut Outputs) {
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return;
    };
    let period = u64::from(OUTPUT_PERIOD);
    let first = u64::from(first.ts);
    let end = (u64::from(last.ts) / period + 1) * period;
    let loads = loads(sorted);
    let mut past_cache: HashMap<(u64, u64), BTreeMap<PlugKey, f64>> = HashMap::new();
    let mut b = (first / period + 1) * period;
    while b <= end {
        for len in SLICE_LENGTHS {
            let len = u64::from(len);
            let k = 86_400 / len;
            let i = (b - 1) / len;
            let current = averages(range(&loads, i * len, b));
            if current.is_empty() {
                continue;
            }
            let mut past = Vec::new();
            let mut n = 1;
            while n * k <= i + 2 {
                let j = i + 2 - n * k;
                if (j + 1) * len <= first {
                    break;
                }
                let avgs = past_cache
                    .entry((len, j))
                    .or_insert_with(|| averages(range(&loads, j * len, (j + 1) * len)));
                past.push(avgs.clone());
                n += 1;
            }
            let ts = (i + 2) * len;
            for (h, avg) in house_sums(&current) {
                let history: Vec<f64> = past
                    .iter()
                    .filter_map(|a| house_sums(a).get(&h).copied())
                    .collect();
                out.houses.push(HouseForecast {
                    at: b,
                    ts,
                    house: h,
                    slice_len: len as u32,
                    load_w: forecast(avg, history),
                });
            }
            for (key, avg) in &current {
                let history: Vec<f64> = past.iter().filter_map(|a| a.get(key).copied()).collect();
                out.plugs.push(PlugForecast {
                    at: b,
                    ts,
                    house: key.house,
                    household: key.household,
                    plug: key.plug,
                    slice_len: len as u32,
                    load_w: forecast(*avg, history),
                });
            }
        }
        b += period;
    }
}

/// Twice the median, by selection.
fn median2(v: &mut [i64]) -> Option<i128> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let (left, mid, _) = v.select_nth_unstable(n / 2);
    let mid = i128::from(*mid);
    if n % 2 == 1 {
        Some(2 * mid)
    } else {
        let lower = left.iter().copied().max()?;
        Some(i128::from(lower) + mid)
    }
}

fn q2(sorted: &[Event], out: &mut Outputs) {
    let loads = loads(sorted);
    let times: BTreeSet<u32> = loads.iter().map(|e| e.ts).collect();
    // Timestamps and values as flat columns, all plugs and per plug, so that a window's values
    // are one slice copy (quick even unoptimised); the medians are still taken from scratch.
    let all_ts: Vec<u32> = loads.iter().map(|e| e.ts).collect();
    let all_values: Vec<i64> = loads.iter().map(|e| e.value_mw).collect();
    let mut per_plug: BTreeMap<PlugKey, (Vec<u32>, Vec<i64>)> = BTreeMap::new();
    for e in &loads {
        let (ts, values) = per_plug.entry(e.key()).or_default();
        ts.push(e.ts);
        values.push(e.value_mw);
    }
    let window = |ts: &[u32], t: u32, w: u32| {
        let a = ts.partition_point(|&x| u64::from(x) + u64::from(w) <= u64::from(t));
        let b = ts.partition_point(|&x| x <= t);
        a..b
    };
    let mut last: BTreeMap<(u32, u32), (u32, u32)> = BTreeMap::new();
    let mut houses_seen: BTreeSet<u32> = BTreeSet::new();
    let mut seen_upto = 0;
    for t in times {
        while seen_upto < loads.len() && loads[seen_upto].ts <= t {
            houses_seen.insert(loads[seen_upto].house);
            seen_upto += 1;
        }
        for w in WINDOWS {
            let global = median2(&mut all_values[window(&all_ts, t, w)].to_vec());
            let mut counts: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
            for (key, (ts, values)) in &per_plug {
                let r = window(ts, t, w);
                if r.is_empty() {
                    continue;
                }
                let c = counts.entry(key.house).or_default();
                c.1 += 1;
                if median2(&mut values[r].to_vec()) > global {
                    c.0 += 1;
                }
            }
            for &h in &houses_seen {
                match counts.get(&h) {
                    None => {
                        last.remove(&(w, h));
                    }
                    Some(&(above, plugs)) => {
                        if last.get(&(w, h)) != Some(&(above, plugs)) {
                            last.insert((w, h), (above, plugs));
                            out.outliers.push(Outlier {
                                ts: t,
                                window: w,
                                house: h,
                                above,
                                plugs,
                                percent: 100.0 * f64::from(above) / f64::from(plugs),
                            });
                        }
                    }
                }
            }
        }
    }
}
