//! Q1, the load forecast, over a time-sorted stream (see [`crate::reorder`]).
//!
//! Slices are aligned to the epoch: slice i of length `len` covers `[i·len, (i+1)·len)`; k =
//! 86400 / len slices per day. Only load events count.
//!
//! Output points are the multiples b of 30 s of event time with `first_ts < b <= end`, where
//! `end` is the first multiple of 30 after the last event (so the last events are included; no
//! point further). A point b is emitted when the stream reaches an event with `ts >= b` (all
//! events with `ts < b` are then in) or at `finish`. At b, per slice length, the current slice is
//! `i = (b − 1) div len`, and for each plug with at least one load in s_i:
//! `avg(s_i) = sum / count` (an exact i128 sum, no overflow even on hostile values, then
//! `sum_mw as f64 / (count as f64 · 1000)`, W); a house's avg is the sum of its plugs'
//! averages, added in (household, plug) order (the house load is the sum of its plugs' loads);
//! the forecast for s_{i+2} is `avg(s_i)` when no earlier
//! slice at the same time of day (s_{i+2−n·k}, n ≥ 1) has data, else `(avg(s_i) + median)/2`
//! over those slices' averages (even count: mean of the two middle ones).
//!
//! Empty cases: an entity without load in s_i gets no row at b; so in a gap, rows stop once the
//! slices holding the last data have ended. The operator then jumps to the next event instead of
//! walking the gap's points (which would all be empty), so a months-long gap costs nothing.
//!
//! State: per entity and slice length, a map slot-of-day → the sorted averages of that slot on
//! past days: Σ k = 1,860 slots a day for the five lengths. Per plug that is a fixed ~100 KB once
//! every slot has been seen (hash entry, list header and allocation per slot; an estimate, not
//! measured) plus 8 bytes per slot and day, ~15 KB a day: 2,125 plugs ≈ 0.2 GB + 32 MB a day,
//! ~1.2 GB after the challenge's 30 days. The definition uses every past day, so none is dropped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::entities::Entities;
use crate::event::Event;

/// Slice lengths, seconds.
pub const SLICE_LENGTHS: [u32; 5] = [60, 300, 900, 3600, 7200];
/// Output every 30 s of event time.
pub const OUTPUT_PERIOD: u32 = 30;
const DAY: u64 = 86_400;

/// The forecast for a house's slice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HouseForecast {
    /// The output point (event time) that produced it.
    pub at: u64,
    /// The start of the forecast slice s_{i+2}: (i + 2)·len.
    pub ts: u64,
    pub house: u32,
    pub slice_len: u32,
    pub load_w: f64,
}

/// The forecast for a plug's slice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlugForecast {
    pub at: u64,
    pub ts: u64,
    pub house: u32,
    pub household: u32,
    pub plug: u32,
    pub slice_len: u32,
    pub load_w: f64,
}

/// The average load of a slice, W, from its exact sum (mW) and count: the one rounding rule.
pub fn mean_w(sum_mw: i128, count: u64) -> f64 {
    sum_mw as f64 / (count as f64 * 1000.0)
}

/// `avg(s_i)` alone without history, else its mean with the history's median.
pub fn combine(avg: f64, median: Option<f64>) -> f64 {
    match median {
        None => avg,
        Some(m) => (avg + m) / 2.0,
    }
}

/// Past days' averages of one entity, per slot of the day, each list sorted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct History {
    slots: HashMap<u32, Vec<f64>>,
}

impl History {
    fn insert(&mut self, slot: u32, v: f64) {
        let list = self.slots.entry(slot).or_default();
        let at = list.partition_point(|x| x.total_cmp(&v).is_lt());
        list.insert(at, v);
    }

    fn median(&self, slot: u32) -> Option<f64> {
        let list = self.slots.get(&slot)?;
        let n = list.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(list[n / 2]),
            _ => Some((list[n / 2 - 1] + list[n / 2]) / 2.0),
        }
    }
}

/// The state of one slice length.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sliced {
    len: u32,
    k: u64,
    /// The slice the sums are for.
    cur: Option<u64>,
    /// (sum mW, count) by plug index.
    acc: Vec<(i128, u64)>,
    /// Plugs with data in `cur`; sorted by key when `sorted`.
    touched: Vec<u32>,
    sorted: bool,
    plug_hist: Vec<History>,
    /// By house id.
    house_hist: HashMap<u32, History>,
}

impl Sliced {
    fn new(len: u32) -> Self {
        Sliced {
            len,
            k: DAY / u64::from(len),
            cur: None,
            acc: Vec::new(),
            touched: Vec::new(),
            sorted: true,
            plug_hist: Vec::new(),
            house_hist: HashMap::new(),
        }
    }

    fn sort(&mut self, ent: &Entities) {
        if !self.sorted {
            // Stable sort: almost sorted input (a plug appended) is one merge.
            self.touched.sort_by_key(|&p| ent.plug(p));
            self.sorted = true;
        }
    }

    /// Moves to slice `i`, storing the finished slice's averages as history.
    fn advance(&mut self, i: u64, ent: &Entities) {
        let Some(cur) = self.cur else {
            self.cur = Some(i);
            return;
        };
        if cur == i {
            return;
        }
        self.cur = Some(i);
        if self.touched.is_empty() {
            return;
        }
        self.sort(ent);
        let slot = (cur % self.k) as u32;
        if self.plug_hist.len() < ent.plug_count() {
            self.plug_hist
                .resize_with(ent.plug_count(), History::default);
        }
        let mut house: Option<(u32, f64)> = None;
        for &p in &self.touched {
            let (sum, count) = std::mem::take(&mut self.acc[p as usize]);
            let avg = mean_w(sum, count);
            self.plug_hist[p as usize].insert(slot, avg);
            let h = ent.plug(p).house;
            house = match house {
                Some((id, total)) if id == h => Some((id, total + avg)),
                Some((id, total)) => {
                    self.house_hist.entry(id).or_default().insert(slot, total);
                    Some((h, avg))
                }
                None => Some((h, avg)),
            };
        }
        if let Some((id, total)) = house {
            self.house_hist.entry(id).or_default().insert(slot, total);
        }
        self.touched.clear();
    }

    fn add(&mut self, ts: u32, plug: u32, value: i64, ent: &Entities) {
        self.advance(u64::from(ts) / u64::from(self.len), ent);
        if self.acc.len() <= plug as usize {
            self.acc.resize(plug as usize + 1, (0, 0));
        }
        let a = &mut self.acc[plug as usize];
        if a.1 == 0 {
            self.touched.push(plug);
            self.sorted = false;
        }
        a.0 += i128::from(value);
        a.1 += 1;
    }

    /// The rows of output point `b`.
    fn emit(&mut self, b: u64, ent: &Entities, out: &mut Outputs) {
        let i = (b - 1) / u64::from(self.len);
        self.advance(i, ent);
        if self.touched.is_empty() {
            return;
        }
        self.sort(ent);
        let slot = ((i + 2) % self.k) as u32;
        let ts = (i + 2) * u64::from(self.len);
        let mut house: Option<(u32, f64)> = None;
        let empty = History::default();
        for &p in &self.touched {
            let key = ent.plug(p);
            let (sum, count) = self.acc[p as usize];
            let avg = mean_w(sum, count);
            let hist = self.plug_hist.get(p as usize).unwrap_or(&empty);
            out.plugs.push(PlugForecast {
                at: b,
                ts,
                house: key.house,
                household: key.household,
                plug: key.plug,
                slice_len: self.len,
                load_w: combine(avg, hist.median(slot)),
            });
            house = match house {
                Some((id, total)) if id == key.house => Some((id, total + avg)),
                Some((id, total)) => {
                    self.push_house(b, ts, slot, id, total, out);
                    Some((key.house, avg))
                }
                None => Some((key.house, avg)),
            };
        }
        if let Some((id, total)) = house {
            self.push_house(b, ts, slot, id, total, out);
        }
    }

    fn push_house(&self, at: u64, ts: u64, slot: u32, house: u32, avg: f64, out: &mut Outputs) {
        let median = self.house_hist.get(&house).and_then(|h| h.median(slot));
        out.houses.push(HouseForecast {
            at,
            ts,
            house,
            slice_len: self.len,
            load_w: combine(avg, median),
        });
    }
}

/// The Q1 operator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Forecast {
    lengths: Vec<Sliced>,
    /// The next output point not yet emitted.
    next: Option<u64>,
    last_ts: Option<u32>,
    last_load: Option<u32>,
}

impl Default for Forecast {
    fn default() -> Self {
        Self::new()
    }
}

fn next_point(ts: u32) -> u64 {
    (u64::from(ts) / u64::from(OUTPUT_PERIOD) + 1) * u64::from(OUTPUT_PERIOD)
}

impl Forecast {
    pub fn new() -> Self {
        Forecast {
            lengths: SLICE_LENGTHS.iter().map(|&l| Sliced::new(l)).collect(),
            next: None,
            last_ts: None,
            last_load: None,
        }
    }

    /// Takes the next event of the sorted stream; `plug` is its index when it is a load.
    pub fn push(&mut self, event: &Event, plug: Option<u32>, ent: &Entities, out: &mut Outputs) {
        match self.next {
            None => self.next = Some(next_point(event.ts)),
            Some(_) => self.emit_through(u64::from(event.ts), ent, out),
        }
        if let Some(p) = plug {
            for s in &mut self.lengths {
                s.add(event.ts, p, event.value_mw, ent);
            }
            self.last_load = Some(event.ts);
        }
        self.last_ts = Some(event.ts);
    }

    /// The invariants of a decoded state (see `Pipeline::check`).
    pub(crate) fn check(&self, ent: &Entities) -> Result<(), String> {
        let lengths: Vec<u32> = self.lengths.iter().map(|s| s.len).collect();
        if lengths != SLICE_LENGTHS {
            return Err(format!("Q1 slice lengths {lengths:?}"));
        }
        let plugs = ent.plug_count();
        for s in &self.lengths {
            if s.k != DAY / u64::from(s.len) {
                return Err(format!("Q1 slices of {} s: {} a day", s.len, s.k));
            }
            if s.acc.len() > plugs || s.plug_hist.len() > plugs {
                return Err(format!("Q1 slices of {} s: more plugs than known", s.len));
            }
            if s.touched.iter().any(|&p| p as usize >= s.acc.len()) {
                return Err(format!("Q1 slices of {} s: plug index out of range", s.len));
            }
        }
        Ok(())
    }

    /// Emits the remaining points, through the first one after the last event.
    pub fn finish(&mut self, ent: &Entities, out: &mut Outputs) {
        if let Some(t) = self.last_ts {
            self.emit_through(next_point(t), ent, out);
        }
    }

    /// Emits every pending point b <= `limit`, skipping the points at which no slice holds data.
    fn emit_through(&mut self, limit: u64, ent: &Entities, out: &mut Outputs) {
        let Some(mut b) = self.next else { return };
        // Past the end of every slice holding the last load, all slices are empty.
        let data_end = self.last_load.map(|t| {
            self.lengths
                .iter()
                .map(|s| (u64::from(t) / u64::from(s.len) + 1) * u64::from(s.len))
                .max()
                .unwrap_or(0)
        });
        while b <= limit {
            if data_end.is_none_or(|end| b > end) {
                break;
            }
            for s in &mut self.lengths {
                s.emit(b, ent, out);
            }
            b += u64::from(OUTPUT_PERIOD);
        }
        let period = u64::from(OUTPUT_PERIOD);
        self.next = Some(b.max((limit / period + 1) * period));
    }
}
