//! Bounded-lateness reordering: events in arrival order in, events in (ts, id) order out.
//!
//! The rule, precisely. Let `max` be the largest timestamp among the events accepted so far and
//! `watermark = max − lateness`.
//! - An arriving event with `ts < watermark` (computed before it is counted into `max`) is late:
//!   dropped and counted. So an event may be up to `lateness` seconds older than the newest one.
//! - Otherwise it is buffered, `max` is updated, and every buffered event with `ts < watermark`
//!   (the new watermark) is released in (ts, id, arrival) order.
//!
//! Released events are strictly older than the watermark and every later accepted event is at
//! least the watermark, so the output is sorted by (ts, id) across calls (ties on (ts, id) keep
//! arrival order). An event exactly `lateness` seconds old is accepted. `finish` releases the rest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The default bound on lateness, seconds.
pub const DEFAULT_LATENESS: u32 = 10;

/// Whether an event `ts` is late when the newest accepted timestamp is `max` (the one rule the
/// operator and the reference share by definition).
pub fn is_late(ts: u32, max: Option<u32>, lateness: u32) -> bool {
    max.is_some_and(|max| u64::from(ts) + u64::from(lateness) < u64::from(max))
}

/// The buffer is one bucket per timestamp (at most `lateness + 1` of them, a small tree): an
/// event costs a tiny tree lookup and a push; a released bucket is sorted by id, in one pass when
/// ids arrive in order (a binary heap of events cost a sixth of the pipeline's time).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reorder {
    lateness: u32,
    max: Option<u32>,
    late: u64,
    buffered: usize,
    buckets: BTreeMap<u32, Vec<Event>>,
}

impl Reorder {
    pub fn new(lateness: u32) -> Self {
        Reorder {
            lateness,
            max: None,
            late: 0,
            buffered: 0,
            buckets: BTreeMap::new(),
        }
    }

    /// The bound it was made with, seconds.
    pub fn lateness(&self) -> u32 {
        self.lateness
    }

    /// Events dropped as late so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Events held back.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Takes one arriving event; appends what it releases to `out`. False if it was late.
    pub fn push(&mut self, event: &Event, out: &mut Vec<Event>) -> bool {
        if is_late(event.ts, self.max, self.lateness) {
            self.late += 1;
            return false;
        }
        let max = self.max.map_or(event.ts, |m| m.max(event.ts));
        self.buckets.entry(event.ts).or_default().push(*event);
        self.buffered += 1;
        if self.max != Some(max) {
            self.max = Some(max);
            while let Some(entry) = self.buckets.first_entry() {
                if u64::from(*entry.key()) + u64::from(self.lateness) >= u64::from(max) {
                    break;
                }
                self.buffered -= release(entry.remove(), out);
            }
        }
        true
    }

    /// Releases everything still held, in order.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        while let Some((_, bucket)) = self.buckets.pop_first() {
            self.buffered -= release(bucket, out);
        }
    }
}

/// Appends a bucket sorted by id; returns its size.
fn release(mut bucket: Vec<Event>, out: &mut Vec<Event>) -> usize {
    // Stable: equal ids keep their arrival order.
    bucket.sort_by_key(|e| e.id);
    let n = bucket.len();
    out.append(&mut bucket);
    n
}
