//! Challenge-shaped data from a seed: houses × households × plugs, a device class per plug with a
//! daily profile (fridge cycles, kettle spikes, evening lights, TV/computer evenings, standby), a
//! load event every `interval` seconds per plug with jitter, cumulative work (integrated from the
//! load, monotone) every few loads, missing stretches, events delivered out of order within the
//! lateness bound and a few beyond it. Deterministic: the same config gives the same events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;

use crate::event::{Event, Property};

/// SplitMix64: small, fast, good enough for synthetic data and randomized tests.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi] (inclusive; hi >= lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A stateless hash of a few numbers (for per-day decisions that must not depend on call order).
fn hash(parts: &[u64]) -> u64 {
    let mut r = SplitMix64::new(0x5EED);
    for &p in parts {
        r.0 ^= p;
        r.next_u64();
    }
    r.next_u64()
}

#[derive(Clone, Debug)]
pub struct GenConfig {
    pub seed: u64,
    pub houses: u32,
    /// Plugs in all, spread over the houses.
    pub plugs: u32,
    /// Households per house, at most (each house gets 1..=this).
    pub max_households: u32,
    /// Unix seconds of the first event.
    pub start: u32,
    /// Seconds of data.
    pub duration: u32,
    /// Seconds between a plug's loads, uniform in [min, max].
    pub interval: (u32, u32),
    /// Timestamps are multiples of this (1: any second; REFIT-like data: 30). Coarser ticks put
    /// many plugs on one timestamp.
    pub tick: u32,
    /// A work event after every this many loads of a plug.
    pub work_every: u32,
    /// Missing stretches (the plug silent for 5 min to 2 h) per plug and day, on average.
    pub gaps_per_day: f64,
    /// Per event: the chance it is delayed by 1..=lateness s (still accepted).
    pub late_within: f64,
    /// Per event: the chance it is delayed by more than the lateness (most get dropped).
    pub late_beyond: f64,
    pub lateness: u32,
}

impl Default for GenConfig {
    /// Full scale (40 houses, 2,125 plugs), one hour from the challenge's first day.
    fn default() -> Self {
        GenConfig {
            seed: 2014,
            houses: 40,
            plugs: 2125,
            max_households: 4,
            start: 1_377_986_400,
            duration: 3_600,
            interval: (1, 2),
            tick: 1,
            work_every: 10,
            gaps_per_day: 1.0,
            late_within: 0.01,
            late_beyond: 0.0005,
            lateness: crate::reorder::DEFAULT_LATENESS,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Fridge,
    Kettle,
    Lights,
    Screen,
    Standby,
}

#[derive(Clone, Debug)]
struct Plug {
    house: u32,
    household: u32,
    plug: u32,
    class: Class,
    /// Per-plug variation: phase (s) and scale.
    phase: u32,
    scale: f64,
    last_ts: Option<u32>,
    last_mw: i64,
    /// mW·s since the plug started (work = this / 3.6e6 Wh).
    energy: i128,
    loads: u32,
}

impl Plug {
    /// The load in W at `t` before noise.
    fn profile(&self, t: u32) -> f64 {
        let day_s = (t + self.phase % 600) % 86_400;
        let hour = f64::from(day_s) / 3600.0;
        match self.class {
            Class::Fridge => {
                let period = 2_400 + self.phase % 1_600;
                if (t + self.phase) % period < period * 35 / 100 {
                    110.0 * self.scale
                } else {
                    1.5
                }
            }
            Class::Kettle => {
                let day = u64::from(t / 86_400);
                // Three boils a day at hashed times in the morning, afternoon and evening.
                let on = [(6.5, 2.0), (12.0, 3.0), (17.5, 5.0)]
                    .iter()
                    .enumerate()
                    .any(|(n, (from, span))| {
                        let h = hash(&[u64::from(self.house), u64::from(self.plug), day, n as u64]);
                        let start = (from * 3600.0) as u64 + h % (span * 3600.0) as u64;
                        (start..start + 150).contains(&u64::from(day_s))
                    });
                if on { 2_000.0 * self.scale } else { 0.0 }
            }
            Class::Lights => {
                if (18.0..23.5).contains(&hour) || (6.5..7.75).contains(&hour) {
                    60.0 * self.scale
                } else {
                    0.0
                }
            }
            Class::Screen => {
                if (19.0..23.0).contains(&hour) {
                    150.0 * self.scale
                } else {
                    0.8
                }
            }
            Class::Standby => 4.0 * self.scale,
        }
    }
}

fn round_up(ts: u32, tick: u32) -> u32 {
    let tick = tick.max(1);
    ts.div_ceil(tick).saturating_mul(tick)
}

/// An iterator of events in arrival order.
pub struct Generator {
    config: GenConfig,
    rng: SplitMix64,
    plugs: Vec<Plug>,
    /// (next load ts, plug index), earliest first.
    due: BinaryHeap<Reverse<(u32, u32)>>,
    /// Events made, in ts order, not yet through the delay stage.
    made: VecDeque<Event>,
    /// (arrival key, id, event): delayed events, released in arrival order.
    delayed: BinaryHeap<Reverse<(u64, u64, EventOrd)>>,
    next_id: u64,
    end: u32,
}

/// `Event` ordered by id only, to sit in a heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EventOrd(Event);

impl Ord for EventOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl PartialOrd for EventOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Generator {
    pub fn new(config: GenConfig) -> Self {
        let mut rng = SplitMix64::new(config.seed);
        let houses = config.houses.max(1);
        let households: Vec<u32> = (0..houses)
            .map(|_| rng.range(1, u64::from(config.max_households.max(1))) as u32)
            .collect();
        let mut next_plug =
            vec![vec![0u32; config.max_households.max(1) as usize]; houses as usize];
        let classes = [
            Class::Fridge,
            Class::Kettle,
            Class::Lights,
            Class::Lights,
            Class::Screen,
            Class::Standby,
        ];
        let mut plugs = Vec::new();
        let mut due = BinaryHeap::new();
        for n in 0..config.plugs {
            let house = n % houses;
            let household = rng.range(0, u64::from(households[house as usize] - 1)) as u32;
            let slot = &mut next_plug[house as usize][household as usize];
            let plug = *slot;
            *slot += 1;
            let class = classes[rng.range(0, classes.len() as u64 - 1) as usize];
            let first = round_up(
                config.start + rng.range(0, u64::from(config.interval.1)) as u32,
                config.tick,
            );
            due.push(Reverse((first, plugs.len() as u32)));
            plugs.push(Plug {
                house,
                household,
                plug,
                class,
                phase: rng.range(0, 86_399) as u32,
                scale: 0.7 + 0.6 * rng.unit(),
                last_ts: None,
                last_mw: 0,
                energy: i128::from(rng.range(0, 50_000)) * 3_600_000,
                loads: 0,
            });
        }
        let end = config.start.saturating_add(config.duration);
        Generator {
            config,
            rng,
            plugs,
            due,
            made: VecDeque::new(),
            delayed: BinaryHeap::new(),
            next_id: 0,
            end,
        }
    }

    /// Makes the next plug's events (a load, maybe a work) in ts order; false when done.
    fn make(&mut self) -> bool {
        let Some(Reverse((ts, i))) = self.due.pop() else {
            return false;
        };
        if ts >= self.end {
            self.due.clear();
            return false;
        }
        let c = &self.config;
        let p = &mut self.plugs[i as usize];
        let noise = 1.0 + 0.06 * (self.rng.unit() - 0.5);
        let mw = (p.profile(ts) * noise * 1000.0).round() as i64;
        if let Some(last) = p.last_ts {
            // Left Riemann sum: the previous load held until now.
            p.energy += i128::from(p.last_mw) * i128::from(ts - last);
        }
        p.last_ts = Some(ts);
        p.last_mw = mw;
        p.loads += 1;
        let base = Event {
            id: 0,
            ts,
            value_mw: mw,
            property: Property::Load,
            plug: p.plug,
            household: p.household,
            house: p.house,
        };
        self.made.push_back(Event {
            id: self.next_id,
            ..base
        });
        self.next_id += 1;
        if c.work_every > 0 && p.loads.is_multiple_of(c.work_every) {
            let wh = (p.energy / 3_600_000) as i64;
            self.made.push_back(Event {
                id: self.next_id,
                value_mw: wh,
                property: Property::Work,
                ..base
            });
            self.next_id += 1;
        }
        let step = self
            .rng
            .range(u64::from(c.interval.0), u64::from(c.interval.1)) as u32;
        let mut next = ts.saturating_add(step);
        if self.rng.chance(c.gaps_per_day * f64::from(step) / 86_400.0) {
            next = next.saturating_add(self.rng.range(300, 7_200) as u32);
        }
        self.due.push(Reverse((round_up(next, c.tick), i)));
        true
    }
}

impl Iterator for Generator {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            // A delayed event is due once nothing made later can arrive before it.
            let horizon = self
                .made
                .front()
                .map(|e| u64::from(e.ts))
                .or_else(|| self.due.peek().map(|Reverse((t, _))| u64::from(*t)));
            if let Some(Reverse((key, _, _))) = self.delayed.peek()
                && horizon.is_none_or(|h| *key <= h)
                && let Some(Reverse((_, _, e))) = self.delayed.pop()
            {
                return Some(e.0);
            }
            if let Some(e) = self.made.pop_front() {
                let c = &self.config;
                let lateness = u64::from(c.lateness);
                let delay = if self.rng.chance(c.late_beyond) {
                    self.rng.range(lateness + 2, lateness + 60)
                } else if self.rng.chance(c.late_within) {
                    self.rng.range(1, lateness.max(1))
                } else {
                    0
                };
                self.delayed
                    .push(Reverse((u64::from(e.ts) + delay, e.id, EventOrd(e))));
                continue;
            }
            if !self.make() && self.made.is_empty() {
                return self.delayed.pop().map(|Reverse((_, _, e))| e.0);
            }
        }
    }
}

/// Writes events as challenge CSV lines; returns how many.
pub fn write_csv<W: Write>(
    events: impl IntoIterator<Item = Event>,
    mut w: W,
) -> std::io::Result<u64> {
    let mut n = 0;
    for e in events {
        writeln!(w, "{}", e.to_csv())?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}
