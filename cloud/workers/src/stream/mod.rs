//! The DEBS 2014 queries (`wattlet-stream-analytics`) on NATS JetStream: exactly once, elastic.
//!
//! **Input.** `wattlet stream replay` publishes the events, in the file's (arrival) order, to the
//! stream [`EVENTS_STREAM`] (limits retention, file storage), subject `debs.events.<p>` with
//! `p = house % P`. `P` (default [`DEFAULT_PARTITIONS`]) and the lateness bound are fixed when the
//! stream is created and kept in its description ([`StreamMeta`]). A message carries a batch of
//! a partition's events, one challenge CSV line each ([`replay`]: at most
//! [`replay::MAX_EVENTS_PER_MESSAGE`], and none waits past the next second of event time): a
//! message per event cost the server and the workers 30 times the operators' CPU
//! (BENCHMARKS.md). The same parser as the files, so a malformed message is refused with the
//! line format's own reason; at ~50 bytes an event is not worth a binary format. The batches
//! depend on the file alone and the message id (`Nats-Msg-Id`) is `e<first event id>.<count>`,
//! so a replay repeated within the duplicate window publishes nothing twice. After the events,
//! one end marker per partition (header [`END_HEADER`], empty payload) lets a finite replay
//! finish.
//!
//! **Tasks.** Q1 depends on a house's events only (and a house's lateness is measured against its
//! own newest event), so it runs as a Q1-only pipeline with `per_house` (one reordering and one
//! forecast per house inside) in the tasks `q1-<p>` that read `debs.events.<p>`; Q2 compares every plug with all plugs and runs as one
//! Q2-only pipeline in the task [`OUTLIERS_TASK`], reading `debs.events.>` in stream order
//! (= arrival order). A task completes at its end markers (Q1: its partition's; Q2: all P): it
//! calls `finish()`, publishes the last rows and writes a final checkpoint marked done.
//!
//! **Exactly once.** A task's rows are a deterministic function of its input sequence, numbered
//! from 0, in an order that does not depend on how events were batched
//! ([`operator::Row::extend_from`]). They go to [`OUT_STREAM`], subject `debs.out.<t>`, up to 256
//! a message (one CSV line each; a message per row cost the queue more than the operators), the
//! message carrying the index `i` of its first row in header [`INDEX_HEADER`] and
//! `Nats-Msg-Id: <t>-<i>`. A task (re)starts from its last checkpoint (operator state, the input
//! stream sequence it covers, rows produced so far; [`checkpoint`]), replays its input from
//! there and publishes no row whose index is ≤ the highest index already in `debs.out.<t>` (read
//! from its last message at start). JetStream's duplicate window is only the second guard (a
//! stale owner still publishing from the same first index is dropped); the first is that an
//! owner stops publishing before its lease can expire. A checkpoint is written only after every
//! row it counts is acknowledged, so nothing is lost.
//!
//! **Ownership** ([`lease`]): a task belongs to one worker at a time through a lease message
//! written compare-and-set; workers heartbeat a membership message and aim at a fair share
//! ceil(tasks / live members), releasing extra tasks (after a checkpoint) when a worker joins and
//! taking expired leases when one dies. A worker whose lease renewal fails stops that task at
//! once; a task also stops by itself when its lease would have expired without renewal. A task
//! that fails releases its lease, and the worker leaves it alone for a while (1 s, doubling with
//! each failure in a row, at most a minute), so a task that always fails does not spin.
//!
//! **Sealed runs** ([`sealed`]): when the input stream's description names a dataset key, every
//! batch, end marker, row message and checkpoint is sealed under it, each for its place; workers
//! get the key from the key broker after attestation ([`task::RunKeys`]).
//!
//! **Bad input.** A message that is not a batch of events (a line that is not an event, or a Q1
//! event on another partition's subject: the whole message, none of its events are taken)
//! goes to [`DEAD_STREAM`] (`debs.dead.<task>`, reason in [`crate::DEAD_REASON_HEADER`],
//! `Nats-Msg-Id: <task>-<input seq>`), is counted, and the task goes on. A checkpoint that fails
//! its checks (a chunk missing, a SHA-256 mismatch, undecodable) is ignored: the task replays
//! its input from the start, still publishing each row once.

pub mod checkpoint;
pub mod lease;
pub mod metrics;
pub mod operator;
pub mod replay;
pub mod results;
pub mod sealed;
pub mod task;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{Context, stream};
use serde::{Deserialize, Serialize};

pub const EVENTS_STREAM: &str = "DEBS_EVENTS";
pub const EVENTS_SUBJECT: &str = "debs.events";
pub const OUT_STREAM: &str = "DEBS_OUT";
pub const OUT_SUBJECT: &str = "debs.out";
/// Checkpoints: manifests `debs.state.<task>`, chunks `debs.state.<task>.<gen>.<k>`.
pub const STATE_STREAM: &str = "DEBS_STATE";
pub const STATE_SUBJECT: &str = "debs.state";
/// Leases (`debs.lease.<task>`) and members (`debs.member.<id>`), one message per subject.
pub const COORD_STREAM: &str = "DEBS_COORD";
pub const LEASE_SUBJECT: &str = "debs.lease";
pub const MEMBER_SUBJECT: &str = "debs.member";
pub const DEAD_STREAM: &str = "DEBS_DEAD";
pub const DEAD_SUBJECT: &str = "debs.dead";
/// The index within its task of an output message's first row (the others follow, one a line).
pub const INDEX_HEADER: &str = "Debs-Index";
/// The number of rows in an output message (readable without the key of a sealed run).
pub const ROWS_HEADER: &str = "Debs-Rows";
/// On an end marker: its partition.
pub const END_HEADER: &str = "Debs-End";
pub const DEFAULT_PARTITIONS: u32 = 8;
pub const OUTLIERS_TASK: &str = "outliers";
/// How long JetStream drops a republished message id (events, rows).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(20 * 60);

/// What the input stream was created with, kept as JSON in its description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub partitions: u32,
    pub lateness: u32,
    /// A sealed run: the dataset key every payload is sealed under ([`sealed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl Default for StreamMeta {
    fn default() -> Self {
        StreamMeta {
            partitions: DEFAULT_PARTITIONS,
            lateness: wattlet_stream_analytics::reorder::DEFAULT_LATENESS,
            key_id: None,
        }
    }
}

impl std::fmt::Display for StreamMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} partitions, lateness {} s, ",
            self.partitions, self.lateness
        )?;
        match &self.key_id {
            Some(id) => write!(f, "sealed under dataset key {id}"),
            None => write!(f, "in the clear"),
        }
    }
}

/// A task: Q1 of the houses of one partition, or Q2 of all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskKind {
    Forecast { partition: u32 },
    Outliers,
}

impl TaskKind {
    pub fn name(&self) -> String {
        match self {
            TaskKind::Forecast { partition } => format!("q1-{partition}"),
            TaskKind::Outliers => OUTLIERS_TASK.to_owned(),
        }
    }

    pub fn parse(name: &str) -> Option<TaskKind> {
        if name == OUTLIERS_TASK {
            return Some(TaskKind::Outliers);
        }
        let partition = name.strip_prefix("q1-")?.parse().ok()?;
        Some(TaskKind::Forecast { partition })
    }

    /// The input subject it reads.
    pub fn filter(&self) -> String {
        match self {
            TaskKind::Forecast { partition } => format!("{EVENTS_SUBJECT}.{partition}"),
            TaskKind::Outliers => format!("{EVENTS_SUBJECT}.>"),
        }
    }
}

/// Every task of a run with `partitions` partitions: `outliers`, then `q1-0` … `q1-<P-1>`.
pub fn tasks(partitions: u32) -> Vec<TaskKind> {
    std::iter::once(TaskKind::Outliers)
        .chain((0..partitions).map(|partition| TaskKind::Forecast { partition }))
        .collect()
}

pub fn partition_of(house: u32, partitions: u32) -> u32 {
    house % partitions.max(1)
}

/// Creates (or updates) the output, checkpoint, coordination and dead-letter streams.
/// Idempotent.
pub async fn ensure_streams(js: &Context) -> anyhow::Result<()> {
    crate::create_or_update_stream(
        js,
        stream::Config {
            name: OUT_STREAM.to_owned(),
            subjects: vec![format!("{OUT_SUBJECT}.>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        },
    )
    .await
    .context("cannot create the DEBS output stream (does the server have JetStream enabled?)")?;
    for (name, subjects) in [
        (STATE_STREAM, vec![format!("{STATE_SUBJECT}.>")]),
        (
            COORD_STREAM,
            vec![format!("{LEASE_SUBJECT}.>"), format!("{MEMBER_SUBJECT}.>")],
        ),
    ] {
        let config = stream::Config {
            name: name.to_owned(),
            subjects,
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        crate::create_or_update_stream(js, config)
            .await
            .with_context(|| format!("cannot create the stream {name}"))?;
    }
    crate::create_or_update_stream(
        js,
        stream::Config {
            name: DEAD_STREAM.to_owned(),
            subjects: vec![format!("{DEAD_SUBJECT}.>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        },
    )
    .await
    .context("cannot create the DEBS dead-letter stream")?;
    Ok(())
}

/// Creates the input stream with `meta`, or checks that the existing one has it.
pub async fn ensure_events_stream(js: &Context, meta: &StreamMeta) -> anyhow::Result<()> {
    if let Some(existing) = events_meta(js).await? {
        anyhow::ensure!(
            existing == *meta,
            "the stream {EVENTS_STREAM} exists with {existing}, not {meta} (delete the DEBS_* \
             streams for a new run)"
        );
        return Ok(());
    }
    js.create_stream(stream::Config {
        name: EVENTS_STREAM.to_owned(),
        description: Some(serde_json::to_string(meta)?),
        subjects: vec![format!("{EVENTS_SUBJECT}.>")],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .context("cannot create the DEBS input stream")?;
    Ok(())
}

/// The input stream's [`StreamMeta`], or None while it does not exist.
pub async fn events_meta(js: &Context) -> anyhow::Result<Option<StreamMeta>> {
    match js.get_stream(EVENTS_STREAM).await {
        Ok(mut s) => {
            let info = s.info().await?;
            let description = info.config.description.clone().unwrap_or_default();
            let meta = serde_json::from_str(&description).with_context(|| {
                format!("the stream {EVENTS_STREAM} has no partition count in its description")
            })?;
            Ok(Some(meta))
        }
        Err(e) => match e.kind() {
            async_nats::jetstream::context::GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(e).context("cannot look up the DEBS input stream"),
        },
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_round_trip() {
        let all = tasks(3);
        assert_eq!(all.len(), 4);
        for t in all {
            assert_eq!(TaskKind::parse(&t.name()), Some(t));
        }
        assert_eq!(TaskKind::parse("q1-x"), None);
        assert_eq!(TaskKind::Outliers.filter(), "debs.events.>");
        assert_eq!(
            TaskKind::Forecast { partition: 2 }.filter(),
            "debs.events.2"
        );
    }
}
