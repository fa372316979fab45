//! `wattlet stream replay`: events in arrival order onto the input stream, then the end markers.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishAckFuture;
use wattlet_stream_analytics::Event;

use super::{END_HEADER, EVENTS_SUBJECT, StreamMeta, ensure_events_stream, partition_of};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Events and end markers sent.
    pub sent: u64,
    /// Of these, dropped by JetStream as already published (same message id).
    pub duplicates: u64,
}

/// Publishes `events` (in order) to partition `house % P`, message id `e<event id>`, then one
/// end marker per partition. `rate`: event time runs this many times faster than wall time
/// (None: as fast as acknowledgements come). `progress` is called about once a second.
pub async fn replay(
    js: &Context,
    events: impl Iterator<Item = anyhow::Result<Event>>,
    meta: StreamMeta,
    rate: Option<f64>,
    mut progress: impl FnMut(&ReplayStats),
) -> anyhow::Result<ReplayStats> {
    ensure_events_stream(js, meta).await?;
    let mut stats = ReplayStats::default();
    let mut pending: Vec<PublishAckFuture> = Vec::new();
    let started = Instant::now();
    let mut first_ts: Option<u32> = None;
    let mut max_ts = 0u32;
    let mut last_report = Instant::now();
    for event in events {
        let event = event?;
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            let t0 = *first_ts.get_or_insert(event.ts);
            max_ts = max_ts.max(event.ts);
            let due = Duration::from_secs_f64(f64::from(max_ts.saturating_sub(t0)) / rate);
            let elapsed = started.elapsed();
            if due > elapsed {
                settle(&mut pending, &mut stats).await?;
                tokio::time::sleep(due - elapsed).await;
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("e{}", event.id).as_str(),
        );
        let subject = format!(
            "{EVENTS_SUBJECT}.{}",
            partition_of(event.house, meta.partitions)
        );
        pending.push(
            js.publish_with_headers(subject, headers, event.to_csv().into())
                .await?,
        );
        stats.sent += 1;
        if pending.len() >= 8192 {
            settle(&mut pending, &mut stats).await?;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(&stats);
        }
    }
    for p in 0..meta.partitions {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("end-{p}").as_str(),
        );
        headers.insert(END_HEADER, p.to_string().as_str());
        pending.push(
            js.publish_with_headers(format!("{EVENTS_SUBJECT}.{p}"), headers, Vec::new().into())
                .await?,
        );
        stats.sent += 1;
    }
    settle(&mut pending, &mut stats).await?;
    progress(&stats);
    Ok(stats)
}

async fn settle(
    pending: &mut Vec<PublishAckFuture>,
    stats: &mut ReplayStats,
) -> anyhow::Result<()> {
    for ack in pending.drain(..) {
        if ack.await?.duplicate {
            stats.duplicates += 1;
        }
    }
    Ok(())
}
