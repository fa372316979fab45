//! Prometheus metrics of a stream worker (`wattlet_stream_worker_…`, `wattlet worker stream
//! --metrics-listen`): what its tasks take in, publish, dead-letter and checkpoint, by query.
//! Every label value is created at start (the set is closed: `q1`, `q2`), so dashboards and
//! alerts see zeros before the first event.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::TaskKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    /// `q1` (load forecast, one task per partition) or `q2` (outliers).
    query: &'static str,
}

fn query(kind: TaskKind) -> QueryLabels {
    QueryLabels {
        query: match kind {
            TaskKind::Forecast { .. } => "q1",
            TaskKind::Outliers => "q2",
        },
    }
}

pub struct StreamMetrics {
    registry: Registry,
    events: Family<QueryLabels, Counter>,
    rows: Family<QueryLabels, Counter>,
    dead_letters: Family<QueryLabels, Counter>,
    task_failures: Family<QueryLabels, Counter>,
    checkpoint_seconds: Family<QueryLabels, Histogram>,
    tasks_held: Gauge,
}

impl std::fmt::Debug for StreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMetrics").finish_non_exhaustive()
    }
}

impl Default for StreamMetrics {
    fn default() -> Self {
        let mut metrics = StreamMetrics {
            registry: Registry::with_prefix("wattlet_stream_worker"),
            events: Family::default(),
            rows: Family::default(),
            dead_letters: Family::default(),
            task_failures: Family::default(),
            // 1 ms … ~16 s: a checkpoint writes the operators' state in chunks.
            checkpoint_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 15))
            }),
            tasks_held: Gauge::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "events",
            "Events taken into the operators (a replay after a restart counts again)",
            metrics.events.clone(),
        );
        registry.register(
            "rows",
            "Result rows published to the output stream (a row not acknowledged before a failure is published again and counted again)",
            metrics.rows.clone(),
        );
        registry.register(
            "dead_letters",
            "Input messages that were not batches of events, set aside in the dead-letter stream",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "task_failures",
            "Task runs that failed (a component trap, a store error); the task is taken again later",
            metrics.task_failures.clone(),
        );
        registry.register(
            "checkpoint_seconds",
            "Time to write a task's checkpoint (rows acknowledged before)",
            metrics.checkpoint_seconds.clone(),
        );
        registry.register(
            "tasks_held",
            "Tasks this worker holds the lease of",
            metrics.tasks_held.clone(),
        );
        for kind in [TaskKind::Forecast { partition: 0 }, TaskKind::Outliers] {
            let labels = query(kind);
            let _ = metrics.events.get_or_create(&labels);
            let _ = metrics.rows.get_or_create(&labels);
            let _ = metrics.dead_letters.get_or_create(&labels);
            let _ = metrics.task_failures.get_or_create(&labels);
            let _ = metrics.checkpoint_seconds.get_or_create(&labels);
        }
        metrics
    }
}

impl StreamMetrics {
    pub fn events(&self, kind: TaskKind, n: u64) {
        self.events.get_or_create(&query(kind)).inc_by(n);
    }

    pub fn rows(&self, kind: TaskKind, n: u64) {
        self.rows.get_or_create(&query(kind)).inc_by(n);
    }

    pub fn dead_letter(&self, kind: TaskKind) {
        self.dead_letters.get_or_create(&query(kind)).inc();
    }

    pub fn task_failed(&self, kind: TaskKind) {
        self.task_failures.get_or_create(&query(kind)).inc();
    }

    pub fn checkpoint(&self, kind: TaskKind, took: Duration) {
        self.checkpoint_seconds
            .get_or_create(&query(kind))
            .observe(took.as_secs_f64());
    }

    pub fn tasks_held(&self, n: usize) {
        self.tasks_held.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

impl wattlet_runtime::metrics::MetricsSource for StreamMetrics {
    fn encode(&self) -> String {
        wattlet_runtime::metrics::encode_registry(&self.registry)
    }
}
