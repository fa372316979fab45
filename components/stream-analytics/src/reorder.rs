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

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The default bound on lateness, seconds.
pub const DEFAULT_LATENESS: u32 = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    ts: u32,
    id: u64,
    seq: u64,
    event: Event,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts, self.id, self.seq).cmp(&(other.ts, other.id, other.seq))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether an event `ts` is late when the newest accepted timestamp is `max` (the one rule the
/// operator and the reference share by definition).
pub fn is_late(ts: u32, max: Option<u32>, lateness: u32) -> bool {
    max.is_some_and(|max| u64::from(ts) + u64::from(lateness) < u64::from(max))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reorder {
    lateness: u32,
    max: Option<u32>,
    seq: u64,
    late: u64,
    buffer: BinaryHeap<Reverse<Pending>>,
}

impl Reorder {
    pub fn new(lateness: u32) -> Self {
        Reorder {
            lateness,
            max: None,
            seq: 0,
            late: 0,
            buffer: BinaryHeap::new(),
        }
    }

    /// Events dropped as late so far.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Events held back.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Takes one arriving event; appends what it releases to `out`. False if it was late.
    pub fn push(&mut self, event: &Event, out: &mut Vec<Event>) -> bool {
        if is_late(event.ts, self.max, self.lateness) {
            self.late += 1;
            return false;
        }
        let max = self.max.map_or(event.ts, |m| m.max(event.ts));
        self.max = Some(max);
        self.seq += 1;
        self.buffer.push(Reverse(Pending {
            ts: event.ts,
            id: event.id,
            seq: self.seq,
            event: *event,
        }));
        while let Some(Reverse(p)) = self.buffer.peek() {
            if u64::from(p.ts) + u64::from(self.lateness) >= u64::from(max) {
                break;
            }
            if let Some(Reverse(p)) = self.buffer.pop() {
                out.push(p.event);
            }
        }
        true
    }

    /// Releases everything still held, in order.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        while let Some(Reverse(p)) = self.buffer.pop() {
            out.push(p.event);
        }
    }
}
