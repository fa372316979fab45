//! Q2, outliers, over a time-sorted stream (see [`crate::reorder`]).
//!
//! Windows of 1 h and 24 h; the window at t holds the load values with ts in (t − W, t]. The
//! query is evaluated at every distinct timestamp t of a load event (work events play no part),
//! once all loads with that ts are in: when a load with a greater ts arrives, and at `finish`.
//! At t, per window: each plug's exact median over its values in the window, the global median
//! over all values of all plugs in the window, and per house `above` = its plugs whose median is
//! strictly greater than the global one, `plugs` = its plugs with at least one value in the
//! window, `percent = 100·above/plugs`.
//!
//! A row is emitted when (above, plugs) differs from the last row of that (window, house), the
//! first time always. A house whose window is empty at an evaluation emits nothing and forgets its
//! last row: when it has values again, its first row is emitted as a first appearance. Rows of
//! one evaluation are in (window, house) order.
//!
//! State: per window its loads in arrival order, compactly ([`LoadLog`]: runs per timestamp, a
//! load as its plug and the difference to that plug's previous load, 3–4 bytes; it says which
//! values leave next), per plug a [`MedianSet`] (O(distinct values)), and one global
//! [`BlockedMedianSet`] (counts per value in blocks: the global set holds every value of the
//! window).

use serde::{Deserialize, Serialize};

use crate::Outputs;
use crate::entities::Entities;
use crate::load_log::LoadLog;
use crate::median::{BlockedMedianSet, MedianSet};

/// Window lengths, seconds.
pub const WINDOWS: [u32; 2] = [3_600, 86_400];

/// A house's share of plugs above the global median, when it changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outlier {
    pub ts: u32,
    pub window: u32,
    pub house: u32,
    pub above: u32,
    pub plugs: u32,
    pub percent: f64,
}

/// 100·above/plugs, the one rounding rule.
pub fn percent(above: u32, plugs: u32) -> f64 {
    100.0 * f64::from(above) / f64::from(plugs)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Window {
    len: u32,
    log: LoadLog,
    /// By plug index.
    plugs: Vec<MedianSet>,
    global: BlockedMedianSet,
    /// The last (above, plugs) emitted, by house index.
    last: Vec<Option<(u32, u32)>>,
}

impl Window {
    fn new(len: u32) -> Self {
        Window {
            len,
            log: LoadLog::new(),
            plugs: Vec::new(),
            global: BlockedMedianSet::new(),
            last: Vec::new(),
        }
    }

    fn add(&mut self, ts: u32, plug: u32, value: i64) {
        if self.plugs.len() <= plug as usize {
            self.plugs.resize_with(plug as usize + 1, MedianSet::new);
        }
        self.plugs[plug as usize].insert(value);
        self.global.insert(value);
        self.log.push(ts, plug, value);
    }

    fn evaluate(
        &mut self,
        t: u32,
        ent: &Entities,
        counts: &mut Vec<(u32, u32)>,
        out: &mut Outputs,
    ) {
        while let Some(ts) = self.log.front_ts() {
            if u64::from(ts) + u64::from(self.len) > u64::from(t) {
                break;
            }
            let (plugs, global) = (&mut self.plugs, &mut self.global);
            self.log.pop_front_run(|plug, value| {
                plugs[plug as usize].remove(value);
                global.remove(value);
            });
        }
        counts.clear();
        counts.resize(ent.house_count(), (0, 0));
        if self.last.len() < ent.house_count() {
            self.last.resize(ent.house_count(), None);
        }
        if let Some(global) = self.global.median2() {
            for (p, set) in self.plugs.iter().enumerate() {
                if let Some(m) = set.median2() {
                    let c = &mut counts[ent.house_of(p as u32) as usize];
                    c.1 += 1;
                    if m > global {
                        c.0 += 1;
                    }
                }
            }
        }
        for &h in ent.house_order() {
            let (above, plugs) = counts[h as usize];
            let last = &mut self.last[h as usize];
            if plugs == 0 {
                *last = None;
            } else if *last != Some((above, plugs)) {
                *last = Some((above, plugs));
                out.outliers.push(Outlier {
                    ts: t,
                    window: self.len,
                    house: ent.house_id(h),
                    above,
                    plugs,
                    percent: percent(above, plugs),
                });
            }
        }
    }
}

/// The Q2 operator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outliers {
    windows: Vec<Window>,
    /// The timestamp of the loads taken but not yet evaluated.
    pending: Option<u32>,
    #[serde(skip)]
    counts: Vec<(u32, u32)>,
}

impl Default for Outliers {
    fn default() -> Self {
        Self::new()
    }
}

impl Outliers {
    pub fn new() -> Self {
        Outliers {
            windows: WINDOWS.iter().map(|&w| Window::new(w)).collect(),
            pending: None,
            counts: Vec::new(),
        }
    }

    /// Takes the next load of the sorted stream (`plug` is its index).
    pub fn push(&mut self, ts: u32, plug: u32, value: i64, ent: &Entities, out: &mut Outputs) {
        if let Some(t) = self.pending
            && ts > t
        {
            self.evaluate(t, ent, out);
        }
        for w in &mut self.windows {
            w.add(ts, plug, value);
        }
        self.pending = Some(ts);
    }

    /// Evaluates the last timestamp.
    pub fn finish(&mut self, ent: &Entities, out: &mut Outputs) {
        if let Some(t) = self.pending.take() {
            self.evaluate(t, ent, out);
        }
    }

    fn evaluate(&mut self, t: u32, ent: &Entities, out: &mut Outputs) {
        for w in &mut self.windows {
            w.evaluate(t, ent, &mut self.counts, out);
        }
    }

    /// The invariants of a decoded state (see `Pipeline::check`).
    pub(crate) fn check(&self, ent: &Entities) -> Result<(), String> {
        let lengths: Vec<u32> = self.windows.iter().map(|w| w.len).collect();
        if lengths != WINDOWS {
            return Err(format!("Q2 windows {lengths:?}"));
        }
        for w in &self.windows {
            if w.plugs.len() > ent.plug_count() || w.last.len() > ent.house_count() {
                return Err(format!(
                    "Q2 window of {} s: more entities than known",
                    w.len
                ));
            }
            // The log's decoding checked its plug indices against its own plug count.
            if w.log.plugs() != w.plugs.len() {
                return Err(format!(
                    "Q2 window of {} s: loads of {} plugs, sets of {}",
                    w.len,
                    w.log.plugs(),
                    w.plugs.len()
                ));
            }
            let held: u64 = w.plugs.iter().map(MedianSet::len).sum();
            if held != w.log.len() as u64 || w.global.len() != held {
                return Err(format!(
                    "Q2 window of {} s: {} values in the window, {held} in the plugs' sets, {} \
                     in the global one",
                    w.len,
                    w.log.len(),
                    w.global.len()
                ));
            }
        }
        Ok(())
    }

    /// Values held in the 24 h window (the memory driver).
    pub fn values_held(&self) -> usize {
        self.windows.iter().map(|w| w.log.len()).max().unwrap_or(0)
    }
}
