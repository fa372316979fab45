//! The operators a task runs, natively or as the WIT component, behind one small trait: events
//! in, rows out, `finish`, `snapshot`, `restore`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use wattlet_runtime::stream::{StreamComponent, StreamInstance};
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

    /// Appends `outputs`' rows, emptying it. Q1's rows go by output group, a group being one
    /// house's rows of one output point: its house rows, then its plug rows (a plug has a row
    /// only where its house has one, so the groups of both lists align). The house and the plug
    /// lists of a batch are the concatenations of those of its events, so this order does not
    /// depend on how events were batched: row `i` of a task is the same row in every replay.
    /// Q2's rows follow (a task runs one query or the other).
    pub fn extend_from(rows: &mut Vec<Row>, outputs: &mut Outputs) {
        let mut plugs = outputs.plugs.drain(..).peekable();
        let mut houses = outputs.houses.drain(..).peekable();
        while let Some(first) = houses.next() {
            let group = (first.house, first.at);
            rows.push(Row::House(first));
            while let Some(h) = houses.next_if(|h| (h.house, h.at) == group) {
                rows.push(Row::House(h));
            }
            while let Some(p) = plugs.next_if(|p| (p.house, p.at) == group) {
                rows.push(Row::Plug(p));
            }
        }
        rows.extend(plugs.map(Row::Plug));
        rows.extend(outputs.outliers.drain(..).map(Row::Outlier));
    }
}

/// A task's operators: rows are a deterministic function of the events pushed (split into
/// batches any way). After an error the operator must not be used again: the task restarts from
/// its last checkpoint.
pub trait Operator: Send {
    fn push(&mut self, events: &[Event], out: &mut Vec<Row>) -> anyhow::Result<()>;
    fn finish(&mut self, out: &mut Vec<Row>) -> anyhow::Result<()>;
    /// The state in `wattlet_stream_analytics`' snapshot format, the same for both kinds: a
    /// checkpoint written by one restores in the other.
    fn snapshot(&mut self) -> anyhow::Result<Vec<u8>>;
    fn restore(&mut self, state: &[u8]) -> anyhow::Result<()>;
}

/// The pipeline a task runs: Q1 per house over its partition's houses (each house's lateness
/// against its own newest event), or Q2 over all events.
pub fn config(kind: TaskKind, lateness: u32) -> Config {
    let forecast = kind != TaskKind::Outliers;
    Config {
        lateness,
        queries: Queries {
            forecast,
            outliers: !forecast,
        },
        per_house: forecast,
    }
}

/// Which implementation of the operators a worker runs.
#[derive(Clone)]
pub enum Operators {
    /// The library, compiled into the worker.
    Native,
    /// The WIT component `wattlet:stream/operators` on wasmtime: what a confidential worker
    /// runs and an attestation can name by digest.
    Component(StreamComponent),
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operators::Native => "Native",
            Operators::Component(_) => "Component",
        })
    }
}

impl Operators {
    /// A fresh operator for `kind`.
    pub fn start(&self, kind: TaskKind, lateness: u32) -> anyhow::Result<Box<dyn Operator>> {
        let config = config(kind, lateness);
        Ok(match self {
            Operators::Native => Box::new(Native::new(config)),
            Operators::Component(component) => Box::new(Component::new(component, config)?),
        })
    }
}

/// The native operators.
pub struct Native {
    pipeline: Pipeline,
    scratch: Outputs,
}

impl Native {
    pub fn new(config: Config) -> Self {
        Native {
            pipeline: Pipeline::new(config),
            scratch: Outputs::default(),
        }
    }
}

impl Operator for Native {
    fn push(&mut self, events: &[Event], out: &mut Vec<Row>) -> anyhow::Result<()> {
        for e in events {
            self.pipeline.push_into(e, &mut self.scratch);
        }
        Row::extend_from(out, &mut self.scratch);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Row>) -> anyhow::Result<()> {
        Row::extend_from(out, &mut self.pipeline.finish());
        Ok(())
    }

    fn snapshot(&mut self) -> anyhow::Result<Vec<u8>> {
        Ok(self.pipeline.snapshot())
    }

    fn restore(&mut self, state: &[u8]) -> anyhow::Result<()> {
        let pipeline = Pipeline::restore(state).context("cannot restore the operator state")?;
        anyhow::ensure!(
            pipeline.config() == self.pipeline.config(),
            "the checkpoint was made with {:?}, the task runs {:?}",
            pipeline.config(),
            self.pipeline.config()
        );
        self.pipeline = pipeline;
        Ok(())
    }
}

/// The operators as the WIT component, one instance per task.
pub struct Component {
    instance: StreamInstance,
}

impl Component {
    pub fn new(component: &StreamComponent, config: Config) -> anyhow::Result<Self> {
        let mut instance = component.instantiate()?;
        instance.new_pipeline(config)?;
        Ok(Component { instance })
    }
}

impl Operator for Component {
    fn push(&mut self, events: &[Event], out: &mut Vec<Row>) -> anyhow::Result<()> {
        Row::extend_from(out, &mut self.instance.push(events)?);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Row>) -> anyhow::Result<()> {
        Row::extend_from(out, &mut self.instance.finish()?);
        Ok(())
    }

    fn snapshot(&mut self) -> anyhow::Result<Vec<u8>> {
        self.instance.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> anyhow::Result<()> {
        self.instance
            .restore(state)?
            .map_err(|reason| anyhow::anyhow!("cannot restore the operator state: {reason}"))
    }
}

/// Every task's rows over `events` (arrival order), in process: what the workers must publish.
pub fn run_tasks(
    operators: &Operators,
    events: impl IntoIterator<Item = Event>,
    partitions: u32,
    lateness: u32,
) -> anyhow::Result<BTreeMap<String, Vec<Row>>> {
    let all = tasks(partitions);
    // `tasks` lists the outliers task first, then q1-0, q1-1, …
    let mut inputs: Vec<Vec<Event>> = vec![Vec::new(); all.len()];
    for e in events {
        inputs[0].push(e);
        inputs[1 + partition_of(e.house, partitions) as usize].push(e);
    }
    let mut rows = BTreeMap::new();
    for (kind, input) in all.iter().zip(inputs) {
        let mut op = operators.start(*kind, lateness)?;
        let mut out = Vec::new();
        for batch in input.chunks(4096) {
            op.push(batch, &mut out)?;
        }
        op.finish(&mut out)?;
        rows.insert(kind.name(), out);
    }
    Ok(rows)
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
        let got = run_tasks(&Operators::Native, events.iter().copied(), 2, 10).unwrap();
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
            let mut whole = Native::new(config(kind, 10));
            let mut want = Vec::new();
            whole.push(&mine, &mut want).unwrap();
            whole.finish(&mut want).unwrap();
            let mut got = Vec::new();
            let mut op = Native::new(config(kind, 10));
            for (n, batch) in mine.chunks(777).enumerate() {
                if n % 2 == 1 {
                    let state = op.snapshot().unwrap();
                    op = Native::new(config(kind, 10));
                    op.restore(&state).unwrap();
                }
                op.push(batch, &mut got).unwrap();
            }
            op.finish(&mut got).unwrap();
            assert!(!want.is_empty());
            assert_eq!(got, want, "{kind:?}");
        }
    }
}
