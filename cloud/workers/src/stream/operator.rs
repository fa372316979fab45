//! The operators a task runs, behind a small trait so that the WIT component version can be
//! plugged in beside the native one: events in, rows out, `finish`, `snapshot`, `restore`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use wattlet_stream_analytics::{Config, Event, Outputs, Pipeline, Queries};

use super::{TaskKind, partition_of, tasks};

/// One output row of a task.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    House(wattlet_stream_analytics::HouseForecast),
    Plug(wattlet_stream_analytics::PlugForecast),
    Outlier(wattlet_stream_analytics::Outlier),
}

impl Row {
    /// The row as a CSV line (no newline), first column its kind:
    /// `house,at,ts,house,slice_len,load_w`, `plug,at,ts,house,household,plug,slice_len,load_w`,
    /// `outlier,ts,window,house,above,plugs,percent`. Floats in Rust's shortest round-trip form.
    pub fn to_csv(&self) -> String {
        match self {
            Row::House(r) => format!(
                "house,{},{},{},{},{}",
                r.at, r.ts, r.house, r.slice_len, r.load_w
            ),
            Row::Plug(r) => format!(
                "plug,{},{},{},{},{},{},{}",
                r.at, r.ts, r.house, r.household, r.plug, r.slice_len, r.load_w
            ),
            Row::Outlier(r) => format!(
                "outlier,{},{},{},{},{},{}",
                r.ts, r.window, r.house, r.above, r.plugs, r.percent
            ),
        }
    }

    /// Appends `outputs`' rows in their order (house forecasts, plug forecasts, outliers).
    pub fn extend_from(rows: &mut Vec<Row>, outputs: &mut Outputs) {
        rows.extend(outputs.houses.drain(..).map(Row::House));
        rows.extend(outputs.plugs.drain(..).map(Row::Plug));
        rows.extend(outputs.outliers.drain(..).map(Row::Outlier));
    }
}

/// A task's operators: rows are a deterministic function of the events pushed (split into
/// batches any way).
pub trait Operator: Send {
    fn push(&mut self, events: &[Event], out: &mut Vec<Row>);
    fn finish(&mut self, out: &mut Vec<Row>);
    fn snapshot(&self) -> anyhow::Result<Vec<u8>>;
    fn restore(&mut self, state: &[u8]) -> anyhow::Result<()>;
}

/// The native operators: per house Q1-only pipelines (a forecast task) or one Q2-only pipeline.
pub struct Native {
    kind: TaskKind,
    lateness: u32,
    state: NativeState,
    scratch: Outputs,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NativeState {
    /// Q1: one pipeline per house, in house order.
    houses: BTreeMap<u32, Pipeline>,
    /// Q2: one pipeline over all events.
    all: Option<Pipeline>,
}

impl Native {
    pub fn new(kind: TaskKind, lateness: u32) -> Self {
        let all = (kind == TaskKind::Outliers).then(|| Pipeline::new(config(kind, lateness)));
        Native {
            kind,
            lateness,
            state: NativeState {
                houses: BTreeMap::new(),
                all,
            },
            scratch: Outputs::default(),
        }
    }
}

fn config(kind: TaskKind, lateness: u32) -> Config {
    let forecast = kind != TaskKind::Outliers;
    Config {
        lateness,
        queries: Queries {
            forecast,
            outliers: !forecast,
        },
    }
}

impl Operator for Native {
    fn push(&mut self, events: &[Event], out: &mut Vec<Row>) {
        for e in events {
            let pipeline = match &mut self.state.all {
                Some(all) => all,
                None => {
                    let (kind, lateness) = (self.kind, self.lateness);
                    self.state
                        .houses
                        .entry(e.house)
                        .or_insert_with(|| Pipeline::new(config(kind, lateness)))
                }
            };
            pipeline.push_into(e, &mut self.scratch);
            // Per event, so the row order does not depend on how events are batched.
            Row::extend_from(out, &mut self.scratch);
        }
    }

    fn finish(&mut self, out: &mut Vec<Row>) {
        let pipelines = self
            .state
            .all
            .iter_mut()
            .chain(self.state.houses.values_mut());
        for pipeline in pipelines {
            let mut last = pipeline.finish();
            Row::extend_from(out, &mut last);
        }
    }

    fn snapshot(&self) -> anyhow::Result<Vec<u8>> {
        serde_json::to_vec(&self.state).context("cannot serialize the operator state")
    }

    fn restore(&mut self, state: &[u8]) -> anyhow::Result<()> {
        self.state = serde_json::from_slice(state).context("cannot decode the operator state")?;
        Ok(())
    }
}

/// Every task's rows over `events` (arrival order), in process: what the workers must publish.
pub fn native_run(
    events: impl IntoIterator<Item = Event>,
    partitions: u32,
    lateness: u32,
) -> BTreeMap<String, Vec<Row>> {
    let all = tasks(partitions);
    let mut operators: Vec<(Native, Vec<Row>)> = all
        .iter()
        .map(|&kind| (Native::new(kind, lateness), Vec::new()))
        .collect();
    for e in events {
        let p = partition_of(e.house, partitions);
        let batch = std::slice::from_ref(&e);
        let (q2, rest) = operators.split_at_mut(1);
        q2[0].0.push(batch, &mut q2[0].1);
        let (op, rows) = &mut rest[p as usize];
        op.push(batch, rows);
    }
    all.iter()
        .zip(operators)
        .map(|(kind, (mut op, mut rows))| {
            op.finish(&mut rows);
            (kind.name(), rows)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use wattlet_stream_analytics::generate::{GenConfig, Generator};
    use wattlet_stream_analytics::reference;

    use super::*;

    fn events() -> Vec<Event> {
        Generator::new(GenConfig {
            seed: 5,
            houses: 3,
            plugs: 9,
            duration: 40 * 60,
            late_within: 0.05,
            late_beyond: 0.01,
            ..GenConfig::default()
        })
        .collect()
    }

    #[test]
    fn tasks_equal_the_reference_per_house_and_globally() {
        let events = events();
        let got = native_run(events.iter().copied(), 2, 10);
        assert_eq!(got.len(), 3);
        // Q2 over everything.
        let mut want = Vec::new();
        let mut all = reference::run(&events, 10);
        all.houses.clear();
        all.plugs.clear();
        Row::extend_from(&mut want, &mut all);
        // The reference's rows are in output order; a task's are in emission order: compare as
        // sorted sets of lines, and the counts.
        let lines = |rows: &[Row]| {
            let mut v: Vec<String> = rows.iter().map(Row::to_csv).collect();
            v.sort();
            v
        };
        assert_eq!(lines(&got["outliers"]), lines(&want));
        for p in 0..2 {
            let mut want = Vec::new();
            for house in (0..3).filter(|h| h % 2 == p) {
                let mine: Vec<Event> = events
                    .iter()
                    .filter(|e| e.house == house)
                    .copied()
                    .collect();
                let mut out = reference::run(&mine, 10);
                out.outliers.clear();
                Row::extend_from(&mut want, &mut out);
            }
            assert_eq!(
                lines(&got[&format!("q1-{p}")]),
                lines(&want),
                "partition {p}"
            );
        }
    }

    #[test]
    fn batching_and_restoring_do_not_change_the_rows() {
        let events = events();
        for kind in [TaskKind::Outliers, TaskKind::Forecast { partition: 1 }] {
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| kind == TaskKind::Outliers || e.house % 2 == 1)
                .copied()
                .collect();
            let mut whole = Native::new(kind, 10);
            let mut want = Vec::new();
            whole.push(&mine, &mut want);
            whole.finish(&mut want);
            let mut got = Vec::new();
            let mut op = Native::new(kind, 10);
            for (n, batch) in mine.chunks(777).enumerate() {
                if n % 2 == 1 {
                    let state = op.snapshot().unwrap();
                    op = Native::new(kind, 10);
                    op.restore(&state).unwrap();
                }
                op.push(batch, &mut got);
            }
            op.finish(&mut got);
            assert!(!want.is_empty());
            assert_eq!(got, want, "{kind:?}");
        }
    }
}
