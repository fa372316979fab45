//! `wattlet stream replay`: events in arrival order onto the input stream, in batches, then the
//! end markers.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishAckFuture;
use wattlet_sealing::Purpose;
use wattlet_stream_analytics::Event;

use super::sealed::{BatchItem, Payloads};
use super::{END_HEADER, EVENTS_SUBJECT, StreamMeta, ensure_events_stream, partition_of};

/// Most events in one input message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Events published.
    pub events: u64,
    /// Messages sent: event batches and end markers.
    pub sent: u64,
    /// Of these, dropped by JetStream as already published (same message id).
    pub duplicates: u64,
}

/// One partition's events not yet sent: CSV lines.
#[derive(Default)]
struct Batch {
    first_id: u64,
    count: usize,
    lines: String,
    /// Batches of the partition sent so far.
    sent: u64,
}

/// Publishes `events` (in order) to partition `house % P`, then one end marker per partition.
///
/// A message carries a batch of a partition's events, one CSV line each: per event a message
/// would cost the queue and the workers far more than the operators (measured in
/// BENCHMARKS.md). A partition's batch is sent when it holds [`MAX_EVENTS_PER_MESSAGE`] events
/// and, all batches, whenever the newest event time moves on to a later second: a batch waits
/// at most one second of event time, and the batches are a function of the file alone, so a
/// repeated replay sends the same messages under the same ids (`e<first event id>.<count>`)
/// and JetStream drops them. `payloads`: in the clear, or each batch sealed under the run's
/// dataset key for its [`BatchItem`] (the run's key id goes into `meta`). `rate`: event time
/// runs this many times faster than wall time (None: as fast as acknowledgements come).
/// `progress` is called about once a second.
pub async fn replay(
    js: &Context,
    events: impl Iterator<Item = anyhow::Result<Event>>,
    meta: &StreamMeta,
    payloads: &Payloads,
    rate: Option<f64>,
    mut progress: impl FnMut(&ReplayStats),
) -> anyhow::Result<ReplayStats> {
    let meta = StreamMeta {
        key_id: payloads.key_id(),
        ..meta.clone()
    };
    ensure_events_stream(js, &meta).await?;
    let mut out = Sender {
        js,
        payloads,
        stats: ReplayStats::default(),
        pending: Vec::new(),
    };
    let mut batches: Vec<Batch> = (0..meta.partitions).map(|_| Batch::default()).collect();
    let started = Instant::now();
    let mut first_ts: Option<u32> = None;
    let mut max_ts: Option<u32> = None;
    let mut last_report = Instant::now();
    for event in events {
        let event = event?;
        if max_ts.is_some_and(|max| event.ts > max) {
            for (p, batch) in batches.iter_mut().enumerate() {
                out.send_batch(p, batch).await?;
            }
            if let Some(rate) = rate.filter(|r| *r > 0.0) {
                let t0 = *first_ts.get_or_insert(event.ts);
                let due = Duration::from_secs_f64(f64::from(event.ts.saturating_sub(t0)) / rate);
                let elapsed = started.elapsed();
                if due > elapsed {
                    out.settle().await?;
                    tokio::time::sleep(due - elapsed).await;
                }
            }
        }
        first_ts.get_or_insert(event.ts);
        max_ts = Some(max_ts.map_or(event.ts, |max| max.max(event.ts)));
        let p = partition_of(event.house, meta.partitions) as usize;
        let batch = &mut batches[p];
        if batch.count == 0 {
            batch.first_id = event.id;
        } else {
            batch.lines.push('\n');
        }
        batch.lines.push_str(&event.to_csv());
        batch.count += 1;
        out.stats.events += 1;
        if batch.count >= MAX_EVENTS_PER_MESSAGE {
            out.send_batch(p, batch).await?;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(&out.stats);
        }
    }
    for (p, batch) in batches.iter_mut().enumerate() {
        out.send_batch(p, batch).await?;
    }
    for p in 0..meta.partitions {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, end_item(p).as_str());
        headers.insert(END_HEADER, p.to_string().as_str());
        // Sealed too (empty), so that nobody else can end a sealed run's tasks early.
        let payload = payloads.seal(&end_item(p), Purpose::Item, b"")?;
        out.send(format!("{EVENTS_SUBJECT}.{p}"), headers, payload)
            .await?;
    }
    out.settle().await?;
    progress(&out.stats);
    Ok(out.stats)
}

/// The message id (and sealed item) of partition `p`'s end marker.
pub fn end_item(p: u32) -> String {
    format!("end-{p}")
}

/// Publishes with acknowledgements awaited in bulk.
struct Sender<'a> {
    js: &'a Context,
    payloads: &'a Payloads,
    stats: ReplayStats,
    pending: Vec<PublishAckFuture>,
}

impl Sender<'_> {
    async fn send_batch(&mut self, partition: usize, batch: &mut Batch) -> anyhow::Result<()> {
        if batch.count == 0 {
            return Ok(());
        }
        let item = BatchItem {
            first_id: batch.first_id,
            count: batch.count,
            partition: partition as u32,
            number: batch.sent,
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("e{}.{}", item.first_id, item.count).as_str(),
        );
        let payload =
            self.payloads
                .seal(&item.to_string(), Purpose::Item, batch.lines.as_bytes())?;
        batch.lines.clear();
        batch.count = 0;
        batch.sent += 1;
        self.send(format!("{EVENTS_SUBJECT}.{partition}"), headers, payload)
            .await
    }

    async fn send(
        &mut self,
        subject: String,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        self.pending.push(
            self.js
                .publish_with_headers(subject, headers, payload.into())
                .await?,
        );
        self.stats.sent += 1;
        if self.pending.len() >= 1024 {
            self.settle().await?;
        }
        Ok(())
    }

    async fn settle(&mut self) -> anyhow::Result<()> {
        for ack in self.pending.drain(..) {
            if ack.await?.duplicate {
                self.stats.duplicates += 1;
            }
        }
        Ok(())
    }
}
