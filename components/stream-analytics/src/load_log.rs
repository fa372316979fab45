//! A window's loads in arrival order, compactly: what Q2 keeps to know which values leave a
//! window next (the values themselves are counted in the plugs' and the global median sets).
//!
//! Why not fixed entries: one FIFO of 16-byte (ts, plug, value) entries per window was 70 % of
//! Q2's state (44.8 of 63.5 MiB for a house of 53 plugs after 25 h), ~1.5 GB at the full
//! challenge's 24 h window, half of what a wasm32 component can address. Here the loads of one
//! timestamp are one run (ts, count), and each load is its plug index (unsigned LEB128) and its
//! difference to the same plug's previous load in the log (signed LEB128, wrapping, so any i64
//! round-trips; `leb128fmt`). The writer keeps each plug's last value written, the reader each
//! plug's last value read: two dense arrays of one i64 per plug. A full-scale load (2,125 plugs,
//! loads changing by less than ±8 W) takes 3–4 bytes.
//!
//! One log per window, not one per plug: writes and reads stay sequential, as with the 16-byte
//! FIFO. A FIFO per plug (tried; 3 bytes a load) touched a cache line per plug on every push, pop
//! and evaluation, and cost 17 % of the pipeline's throughput.
//!
//! The bytes live in blocks of [`BLOCK`] that an entry never straddles, so an entry decodes from
//! one slice, memory follows the length and no buffer doubles. Serialized as the reader's bases,
//! the runs and the encoded bytes; deserializing decodes every entry again, so bytes that do not
//! decode, or name a plug the log does not know, are an error, never a panic later.

use std::collections::VecDeque;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, Serializer};

/// Bytes per block.
pub const BLOCK: usize = 64 * 1024;
/// The longest entry: a plug index (5 bytes) and a signed 64-bit difference (10 bytes).
const MAX_ENTRY: usize = 15;

/// Loads `(ts, plug, value)` in arrival order, first in first out by timestamp.
#[derive(Clone, Debug, Default)]
pub struct LoadLog {
    /// (ts, loads) in arrival order.
    runs: VecDeque<(u32, u32)>,
    blocks: VecDeque<Vec<u8>>,
    /// Read position in the front block.
    head: usize,
    len: usize,
    /// By plug: the base of its next written load.
    written: Vec<i64>,
    /// By plug: the base of its next read load.
    read: Vec<i64>,
}

impl LoadLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Plugs the log has a base for (every plug index it has been given, and below).
    pub fn plugs(&self) -> usize {
        self.read.len()
    }

    /// Encoded bytes held, partly filled blocks counted whole (the memory cost).
    pub fn allocated(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum::<usize>() + self.runs.capacity() * 8
    }

    /// Appends a load. Timestamps should not decrease: an older one starts a run of its own
    /// and, as in any FIFO, waits behind the runs before it.
    pub fn push(&mut self, ts: u32, plug: u32, value: i64) {
        let p = plug as usize;
        if self.written.len() <= p {
            self.written.resize(p + 1, 0);
            self.read.resize(p + 1, 0);
        }
        let (index, index_len) = leb128fmt::encode_u32(plug).expect("a u32 fits 32 bits");
        let delta = value.wrapping_sub(self.written[p]);
        let (delta, delta_len) = leb128fmt::encode_s64(delta).expect("an i64 fits 64 bits");
        self.written[p] = value;
        let block = match self.blocks.back_mut() {
            Some(block) if block.len() + MAX_ENTRY <= BLOCK => block,
            _ => {
                self.blocks.push_back(Vec::with_capacity(BLOCK));
                self.blocks.back_mut().expect("just pushed")
            }
        };
        // Byte by byte rather than `extend_from_slice`: a memcpy call per 1–3 byte slice was
        // 4 % of the pipeline in `perf` (measured with the per-plug variant).
        for &byte in index[..index_len].iter().chain(&delta[..delta_len]) {
            block.push(byte);
        }
        match self.runs.back_mut() {
            Some((last, count)) if *last == ts && *count < u32::MAX => *count += 1,
            _ => self.runs.push_back((ts, 1)),
        }
        self.len += 1;
    }

    /// The timestamp of the oldest run.
    pub fn front_ts(&self) -> Option<u32> {
        self.runs.front().map(|&(ts, _)| ts)
    }

    /// Removes the oldest run, handing each of its loads `(plug, value)` to `each`; returns its
    /// timestamp.
    pub fn pop_front_run(&mut self, mut each: impl FnMut(u32, i64)) -> Option<u32> {
        let (ts, count) = self.runs.pop_front()?;
        for _ in 0..count {
            if self.blocks.front().is_some_and(|b| self.head == b.len()) {
                self.blocks.pop_front();
                self.head = 0;
            }
            let block = self.blocks.front().expect("a run's loads are encoded");
            let (plug, delta) = read_entry(block, &mut self.head).expect("loads this log encoded");
            let base = &mut self.read[plug as usize];
            *base = base.wrapping_add(delta);
            each(plug, *base);
        }
        self.len -= count as usize;
        if self.len == 0 {
            // Empty: drop what is read, keep one block for the next loads.
            self.blocks.truncate(1);
            if let Some(block) = self.blocks.front_mut() {
                block.clear();
            }
            self.head = 0;
        }
        Some(ts)
    }

    /// The encoded bytes, oldest first.
    fn encoded(&self) -> impl Iterator<Item = &[u8]> {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| &b[if i == 0 { self.head } else { 0 }..])
    }

    /// Every load `(ts, plug, value)`, oldest first (decodes the bytes; for checks and tests).
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, i64)> + '_ {
        let mut bases = self.read.clone();
        let mut blocks = self.encoded();
        let mut block: &[u8] = &[];
        let mut pos = 0;
        self.runs
            .iter()
            .flat_map(|&(ts, count)| std::iter::repeat_n(ts, count as usize))
            .map_while(move |ts| {
                while pos == block.len() {
                    (block, pos) = (blocks.next()?, 0);
                }
                let (plug, delta) = read_entry(block, &mut pos)?;
                let base = bases.get_mut(plug as usize)?;
                *base = base.wrapping_add(delta);
                Some((ts, plug, *base))
            })
    }
}

fn read_entry(bytes: &[u8], pos: &mut usize) -> Option<(u32, i64)> {
    let plug = leb128fmt::decode_uint_slice::<u32, 32>(bytes, pos).ok()?;
    let delta = leb128fmt::decode_sint_slice::<i64, 64>(bytes, pos).ok()?;
    Some((plug, delta))
}

impl Serialize for LoadLog {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.encoded().collect::<Vec<_>>().concat();
        (&self.read, &self.runs, bytes).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LoadLog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        type Parts = (Vec<i64>, Vec<(u32, u32)>, Vec<u8>);
        let (read, runs, bytes): Parts = Deserialize::deserialize(deserializer)?;
        // Written again load by load, starting from the reader's bases: each load decodes
        // against its plug's writer base (the value written before it), so the result encodes
        // exactly what was decoded.
        let mut log = LoadLog {
            written: read.clone(),
            read,
            ..LoadLog::default()
        };
        let mut pos = 0;
        for (ts, count) in runs {
            if count == 0 {
                return Err(D::Error::custom(format!(
                    "an empty run of loads at ts {ts}"
                )));
            }
            for _ in 0..count {
                let bad = || D::Error::custom(format!("load {} does not decode", log.len()));
                let (plug, delta) = read_entry(&bytes, &mut pos).ok_or_else(bad)?;
                let base = log.written.get(plug as usize).ok_or_else(|| {
                    D::Error::custom(format!("load {} of an unknown plug {plug}", log.len()))
                })?;
                log.push(ts, plug, base.wrapping_add(delta));
            }
        }
        if pos != bytes.len() {
            return Err(D::Error::custom(format!(
                "{} bytes after the last run's loads",
                bytes.len() - pos
            )));
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::SplitMix64;

    /// A load of one of `plugs` plugs: mostly near that plug's last value, sometimes an extreme.
    fn load(rng: &mut SplitMix64, last: &mut [i64]) -> (u32, i64) {
        let plug = rng.range(0, last.len() as u64 - 1) as usize;
        let value = match rng.range(0, 99) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => rng.next_u64() as i64,
            _ => last[plug].wrapping_add(rng.range(0, 16_000) as i64 - 8_000),
        };
        last[plug] = value;
        (plug as u32, value)
    }

    /// Pops the oldest run into the model's terms.
    fn pop(log: &mut LoadLog) -> Vec<(u32, u32, i64)> {
        let mut popped = Vec::new();
        let ts = log.front_ts();
        log.pop_front_run(|plug, value| popped.push((ts.unwrap(), plug, value)));
        popped
    }

    #[test]
    fn it_is_a_fifo_of_runs_across_blocks_for_any_values() {
        let mut rng = SplitMix64::new(16);
        let mut log = LoadLog::new();
        let mut model: VecDeque<(u32, u32, i64)> = VecDeque::new();
        let mut last = vec![0i64; 300];
        let mut ts = 1_000u32;
        // Runs written and read interleaved so that the front moves through several blocks
        // while the back fills others, down to empty and up again.
        for round in 0..6 {
            for _ in 0..(20_000 + 1_700 * round) {
                ts += u32::from(rng.chance(0.01));
                let (plug, value) = load(&mut rng, &mut last);
                log.push(ts, plug, value);
                model.push_back((ts, plug, value));
            }
            let mut take = if round % 2 == 0 { model.len() } else { 9_000 };
            while take > 0 && !model.is_empty() {
                assert_eq!(log.front_ts(), model.front().map(|e| e.0));
                let popped = pop(&mut log);
                let want: Vec<_> = (0..popped.len())
                    .filter_map(|_| model.pop_front())
                    .collect();
                assert_eq!(popped, want);
                assert!(model.front().is_none_or(|e| e.0 > want[0].0), "a whole run");
                take = take.saturating_sub(popped.len());
            }
            assert_eq!(log.len(), model.len());
            assert_eq!(log.is_empty(), model.is_empty());
            assert!(log.iter().eq(model.iter().copied()));
            let bytes = postcard::to_allocvec(&log).unwrap();
            let mut back: LoadLog = postcard::from_bytes(&bytes).unwrap();
            assert!(back.iter().eq(model.iter().copied()));
            // The restored log goes on as the original would.
            back.push(ts + 1, 7, 42);
            log.push(ts + 1, 7, 42);
            assert!(back.iter().eq(log.iter()));
            while log.front_ts().is_some() {
                assert_eq!(pop(&mut back), pop(&mut log));
            }
            model.clear();
        }
        assert_eq!(LoadLog::new().pop_front_run(|_, _| ()), None);
    }

    #[test]
    fn a_full_scale_load_takes_about_four_bytes() {
        let mut rng = SplitMix64::new(3);
        let mut log = LoadLog::new();
        let mut value = vec![120_000i64; 2_125];
        // 2,125 plugs (a 2-byte index), loads changing by less than ±8 W (a 2-byte difference).
        for ts in 0..240u32 {
            for (plug, v) in value.iter_mut().enumerate() {
                *v = (*v + rng.range(0, 8_000) as i64 - 4_000).max(0);
                log.push(1_396_000_000 + ts, plug as u32, *v);
            }
        }
        let per_load = log.allocated() as f64 / log.len() as f64;
        assert!(per_load < 4.2, "{per_load:.2} bytes a load");
    }

    #[test]
    fn bytes_that_do_not_decode_are_an_error() {
        let parts = |read: Vec<i64>, runs: Vec<(u32, u32)>, bytes: Vec<u8>| {
            postcard::from_bytes::<LoadLog>(&postcard::to_allocvec(&(read, runs, bytes)).unwrap())
        };
        // Plug 0, +1: one load.
        assert_eq!(
            parts(vec![5], vec![(10, 1)], vec![0x00, 0x01])
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            [(10, 0, 6)]
        );
        // Cut in the middle of a difference.
        assert!(parts(vec![5], vec![(10, 1)], vec![0x00, 0x81]).is_err());
        // A plug the log has no base for.
        assert!(parts(vec![5], vec![(10, 1)], vec![0x01, 0x01]).is_err());
        // More loads in the runs than in the bytes, and the other way round.
        assert!(parts(vec![5], vec![(10, 2)], vec![0x00, 0x01]).is_err());
        assert!(parts(vec![5], vec![(10, 1)], vec![0x00, 0x01, 0x00, 0x01]).is_err());
        // An empty run.
        assert!(parts(vec![5], vec![(10, 0)], vec![]).is_err());
    }
}
