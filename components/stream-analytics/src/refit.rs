//! Challenge events from a REFIT CSV (`shared/testdata/nialm/refit/houseN.csv`, header
//! `timestamp_utc,mains_w,kettle_w,dishwasher_w,washing_machine_w,microwave_w`, one row per 30 s
//! mean, ISO timestamps like `2013-09-17T22:08:00Z`; the caller decompresses the `.gz`).
//!
//! A REFIT house is one house with one household (0); each appliance column is a plug (numbered
//! from 0 in column order); every row gives a load event per plug, and every `work_every` rows of
//! a plug a work event, integrated from its loads: each row is a 30 s mean, so it adds
//! `load · 30 s` (exact, in mW·s; work = that / 3.6e6 Wh).
//!
//! The mains column is excluded: it is the whole house, the sum of the appliances plus everything
//! unmonitored, so as a plug it would be counted twice in the house's load (Q1 sums the plugs) and
//! it would sit far above the global median in every window (Q2), a permanent outlier that says
//! nothing about the appliances.
//!
//! The real files have gaps as missing rows (no cell is empty); an empty cell is still handled:
//! that plug has no event in that row. Event ids count up from `first_id`.

use std::collections::VecDeque;
use std::io::BufRead;

use crate::event::{Event, Property, parse_milli};

const TS_COLUMN: &str = "timestamp_utc";
const MAINS_COLUMN: &str = "mains_w";

#[derive(Debug, thiserror::Error)]
pub enum RefitError {
    #[error("line {line}: {source}")]
    Io { line: u64, source: std::io::Error },
    #[error("empty input: no header")]
    NoHeader,
    #[error("line 1: header starts with {0:?}, expected `timestamp_utc,mains_w,...`")]
    BadHeader(String),
    #[error("line {line}: column {column}: {reason}")]
    Cell {
        line: u64,
        column: String,
        reason: String,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct RefitConfig {
    pub house: u32,
    /// A work event per plug every this many rows (0: none).
    pub work_every: u32,
    pub first_id: u64,
    /// Stop after this many seconds from the first row (None: the whole file).
    pub max_seconds: Option<u32>,
}

impl Default for RefitConfig {
    fn default() -> Self {
        RefitConfig {
            house: 0,
            work_every: 10,
            first_id: 0,
            max_seconds: None,
        }
    }
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` (REFIT's form: whole seconds, UTC), through humantime's
/// RFC 3339 parser; other forms (fractions, offsets, a space for the `T`) and times before 1970
/// or after 2106 are None.
pub fn parse_iso(s: &str) -> Option<u32> {
    if s.len() != 20 {
        return None;
    }
    let time = humantime::parse_rfc3339(s).ok()?;
    let seconds = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    u32::try_from(seconds).ok()
}

/// Events of a REFIT file, in time order.
pub struct RefitReader<R> {
    reader: R,
    config: RefitConfig,
    line: u64,
    buf: String,
    plugs: usize,
    /// Per plug: energy (mW·s), rows seen.
    state: Vec<(i128, u32)>,
    next_id: u64,
    first_ts: Option<u32>,
    queue: VecDeque<Event>,
    started: bool,
    done: bool,
}

impl<R: BufRead> RefitReader<R> {
    pub fn new(reader: R, config: RefitConfig) -> Self {
        RefitReader {
            reader,
            config,
            line: 0,
            buf: String::new(),
            plugs: 0,
            state: Vec::new(),
            next_id: config.first_id,
            first_ts: None,
            queue: VecDeque::new(),
            started: false,
            done: false,
        }
    }

    fn read_line(&mut self) -> Result<bool, RefitError> {
        self.buf.clear();
        self.line += 1;
        match self.reader.read_line(&mut self.buf) {
            Ok(n) => Ok(n > 0),
            Err(source) => Err(RefitError::Io {
                line: self.line,
                source,
            }),
        }
    }

    fn header(&mut self) -> Result<(), RefitError> {
        if !self.read_line()? {
            return Err(RefitError::NoHeader);
        }
        let cols: Vec<&str> = self.buf.trim_end().split(',').collect();
        if cols.len() < 2 || cols[0] != TS_COLUMN || cols[1] != MAINS_COLUMN {
            return Err(RefitError::BadHeader(
                self.buf.trim_end().chars().take(60).collect(),
            ));
        }
        self.plugs = cols.len() - 2;
        self.state = vec![(0, 0); self.plugs];
        Ok(())
    }

    fn row(&mut self) -> Result<(), RefitError> {
        let line = self.line;
        let text = self.buf.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return Ok(());
        }
        let cell = |column: &str, reason: String| RefitError::Cell {
            line,
            column: column.to_string(),
            reason,
        };
        let cols: Vec<&str> = text.split(',').collect();
        if cols.len() != self.plugs + 2 {
            return Err(cell(
                "*",
                format!("{} columns, expected {}", cols.len(), self.plugs + 2),
            ));
        }
        let ts = parse_iso(cols[0])
            .ok_or_else(|| cell(TS_COLUMN, format!("not an ISO UTC time: {:?}", cols[0])))?;
        let first = *self.first_ts.get_or_insert(ts);
        if self
            .config
            .max_seconds
            .is_some_and(|m| u64::from(ts) >= u64::from(first) + u64::from(m))
        {
            self.done = true;
            return Ok(());
        }
        // The whole row first: a bad cell must not leave half a row of events behind.
        let mut values = Vec::with_capacity(self.plugs);
        for (p, text) in cols[2..].iter().enumerate() {
            let text = text.trim();
            if text.is_empty() {
                values.push(None);
                continue;
            }
            let mw = parse_milli(text)
                .map_err(|e| cell(&format!("{} (plug {p})", p + 2), e.to_string()))?;
            values.push(Some(mw));
        }
        for (p, mw) in values.into_iter().enumerate() {
            let Some(mw) = mw else { continue };
            let base = Event {
                id: 0,
                ts,
                value_mw: mw,
                property: Property::Load,
                plug: p as u32,
                household: 0,
                house: self.config.house,
            };
            self.queue.push_back(Event {
                id: self.next_id,
                ..base
            });
            self.next_id += 1;
            let s = &mut self.state[p];
            s.0 += i128::from(mw) * 30;
            s.1 += 1;
            if self.config.work_every > 0 && s.1.is_multiple_of(self.config.work_every) {
                let wh = i64::try_from(s.0 / 3_600_000).unwrap_or(i64::MAX);
                self.queue.push_back(Event {
                    id: self.next_id,
                    value_mw: wh,
                    property: Property::Work,
                    ..base
                });
                self.next_id += 1;
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Iterator for RefitReader<R> {
    type Item = Result<Event, RefitError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let step = if self.started {
                match self.read_line() {
                    Ok(false) => {
                        self.done = true;
                        Ok(())
                    }
                    Ok(true) => self.row(),
                    Err(e) => Err(e),
                }
            } else {
                self.started = true;
                self.header()
            };
            if let Err(e) = step {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
