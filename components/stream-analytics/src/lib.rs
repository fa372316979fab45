//! The DEBS 2014 Grand Challenge queries over smart-plug events, as pure deterministic operators:
//! bounded-lateness reordering ([`reorder`]), Q1 the load forecast ([`forecast`]) and Q2 the
//! outliers ([`outliers`]), composed by [`Pipeline`]. Every module's comment states its reading of
//! the challenge's ambiguous points. No threads, files or clocks in the operators: they build for
//! `wasm32-wasip2` and all their state serializes, so that a worker can checkpoint it.
//!
//! Also: the event CSV format ([`event`]), the exact sliding median ([`median`]), a generator of
//! challenge-shaped data ([`generate`]), a converter from REFIT ([`refit`]) and the slow
//! from-scratch implementation the operators are tested against ([`reference`]).
//!
//! Built for `wasm32-wasip2`, the crate is also the WIT component `wattlet:stream/operators`
//! (`wit/stream/stream.wit`): `component` is the thin export over [`Pipeline`], `conversions` its
//! `From` impls. [`Pipeline::snapshot`] is the same bytes on both sides.

#[cfg(target_family = "wasm")]
mod component;
#[cfg(target_family = "wasm")]
mod conversions;
pub mod entities;
pub mod event;
pub mod forecast;
pub mod generate;
pub mod load_log;
pub mod median;
pub mod outliers;
pub mod reference;
pub mod refit;
pub mod reorder;
pub mod snapshot;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use event::{Event, PlugKey, Property};
pub use forecast::{HouseForecast, PlugForecast};
pub use outliers::Outlier;

/// What the queries emitted, each list in its deterministic order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    /// Q1 per house, by (output point, slice length, house).
    pub houses: Vec<HouseForecast>,
    /// Q1 per plug, by (output point, slice length, house, household, plug).
    pub plugs: Vec<PlugForecast>,
    /// Q2, by (ts, window, house).
    pub outliers: Vec<Outlier>,
}

impl Outputs {
    pub fn len(&self) -> usize {
        self.houses.len() + self.plugs.len() + self.outliers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn append(&mut self, other: &mut Outputs) {
        self.houses.append(&mut other.houses);
        self.plugs.append(&mut other.plugs);
        self.outliers.append(&mut other.outliers);
    }

    pub fn clear(&mut self) {
        self.houses.clear();
        self.plugs.clear();
        self.outliers.clear();
    }
}

/// Counts since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Events pushed.
    pub events: u64,
    /// Events dropped as late.
    pub late: u64,
    /// Rows emitted.
    pub outputs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Seconds an event may be older than the newest one (see [`reorder`]).
    pub lateness: u32,
    /// Which queries run (both by default).
    #[serde(default)]
    pub queries: Queries,
    /// One reordering and one set of operators per house, each house's lateness measured against
    /// its own newest event: Q1 as a distributed run reads it (a house's forecasts then do not
    /// depend on which other houses share its pipeline). Rows are those of one pipeline per house
    /// fed that house's events, emitted in arrival order of the events that caused them.
    #[serde(default)]
    pub per_house: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lateness: reorder::DEFAULT_LATENESS,
            queries: Queries::default(),
            per_house: false,
        }
    }
}

/// Which queries a [`Pipeline`] runs. A query that is off keeps no state and emits nothing; the
/// other's rows are exactly those of a run with both (the queries share only the reordering).
/// A distributed run uses this: Q1 depends on a house's events only, so it runs per house; Q2
/// compares every plug with all plugs, so it runs once over all events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queries {
    /// Q1, the load forecast.
    pub forecast: bool,
    /// Q2, the outliers.
    pub outliers: bool,
}

impl Default for Queries {
    fn default() -> Self {
        Queries {
            forecast: true,
            outliers: true,
        }
    }
}

/// Reordering, then Q1 and Q2, over events in arrival order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pipeline {
    reorder: reorder::Reorder,
    entities: entities::Entities,
    forecast: forecast::Forecast,
    outliers: outliers::Outliers,
    stats: Stats,
    #[serde(default)]
    queries: Queries,
    /// With [`Config::per_house`]: a pipeline per house (created at its first event), and this
    /// one's own operators stay empty.
    #[serde(default)]
    houses: Option<BTreeMap<u32, Pipeline>>,
    // Scratch: events released by the reorder buffer.
    #[serde(skip)]
    released: Vec<Event>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Pipeline {
    pub fn new(config: Config) -> Self {
        Pipeline {
            reorder: reorder::Reorder::new(config.lateness),
            entities: entities::Entities::default(),
            forecast: forecast::Forecast::new(),
            outliers: outliers::Outliers::new(),
            stats: Stats::default(),
            queries: config.queries,
            houses: config.per_house.then(BTreeMap::new),
            released: Vec::new(),
        }
    }

    /// The configuration this pipeline was made with.
    pub fn config(&self) -> Config {
        Config {
            lateness: self.reorder.lateness(),
            queries: self.queries,
            per_house: self.houses.is_some(),
        }
    }

    pub fn stats(&self) -> Stats {
        match &self.houses {
            None => self.stats,
            Some(houses) => houses.values().fold(Stats::default(), |sum, p| Stats {
                events: sum.events + p.stats.events,
                late: sum.late + p.stats.late,
                outputs: sum.outputs + p.stats.outputs,
            }),
        }
    }

    /// The whole operator state as bytes, for [`Pipeline::restore`]: a checkpoint a worker
    /// stores beside its input position. See [`snapshot`] for the format.
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(self)
    }

    /// The pipeline a [`Pipeline::snapshot`] was taken of. Bytes that are not a snapshot of this
    /// format (garbage, truncated, altered) are an error, never a panic.
    pub fn restore(bytes: &[u8]) -> Result<Pipeline, snapshot::RestoreError> {
        snapshot::decode(bytes)
    }

    /// Structural invariants a decoded state must hold before the operators index with it.
    fn check(&self) -> Result<(), String> {
        if let Some(houses) = &self.houses {
            for (&house, p) in houses {
                if p.config()
                    != (Config {
                        per_house: false,
                        ..self.config()
                    })
                {
                    return Err(format!(
                        "house {house}'s pipeline is configured differently"
                    ));
                }
                let entities = &p.entities;
                if (0..entities.house_count()).any(|i| entities.house_id(i as u32) != house) {
                    return Err(format!("house {house}'s pipeline holds another house"));
                }
                p.check()?;
            }
        }
        self.entities.check()?;
        self.forecast.check(&self.entities)?;
        self.outliers.check(&self.entities)
    }

    /// Takes one event in arrival order; returns the rows it caused.
    pub fn push(&mut self, event: &Event) -> Outputs {
        let mut out = Outputs::default();
        self.push_into(event, &mut out);
        out
    }

    /// As [`Pipeline::push`], appending to `out` (no allocation when nothing is emitted).
    pub fn push_into(&mut self, event: &Event, out: &mut Outputs) {
        if let Some(houses) = &mut self.houses {
            let config = Config {
                lateness: self.reorder.lateness(),
                queries: self.queries,
                per_house: false,
            };
            let house = houses
                .entry(event.house)
                .or_insert_with(|| Pipeline::new(config));
            return house.push_into(event, out);
        }
        let before = out.len();
        self.stats.events += 1;
        let mut released = std::mem::take(&mut self.released);
        if !self.reorder.push(event, &mut released) {
            self.stats.late += 1;
        }
        for e in released.drain(..) {
            self.process(&e, out);
        }
        self.released = released;
        self.stats.outputs += (out.len() - before) as u64;
    }

    /// Ends the stream: releases the reorder buffer and emits the last points.
    pub fn finish(&mut self) -> Outputs {
        if let Some(houses) = &mut self.houses {
            let mut out = Outputs::default();
            for p in houses.values_mut() {
                out.append(&mut p.finish());
            }
            return out;
        }
        let mut out = Outputs::default();
        let mut released = std::mem::take(&mut self.released);
        self.reorder.finish(&mut released);
        for e in released.drain(..) {
            self.process(&e, &mut out);
        }
        self.released = released;
        if self.queries.forecast {
            self.forecast.finish(&self.entities, &mut out);
        }
        if self.queries.outliers {
            self.outliers.finish(&self.entities, &mut out);
        }
        self.stats.outputs += out.len() as u64;
        out
    }

    fn process(&mut self, e: &Event, out: &mut Outputs) {
        let plug = e.is_load().then(|| self.entities.intern(e.key()));
        if self.queries.forecast {
            self.forecast.push(e, plug, &self.entities, out);
        }
        if let (Some(p), true) = (plug, self.queries.outliers) {
            self.outliers.push(e.ts, p, e.value_mw, &self.entities, out);
        }
    }
}
