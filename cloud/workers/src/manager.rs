//! `wattlet manager nialm`: turns "meter M has unprocessed data from t" into work items.
//!
//! Per meter and model a cursor (the next window start) lives in JetStream ([`Cursors`]).
//! A pass publishes the items from the cursor up to the last window whose input is complete,
//! waits for JetStream to acknowledge every publish, and only then advances the cursor. A manager
//! that dies in between re-publishes the same items next time: with the same `Nats-Msg-Id`, which
//! JetStream drops within its duplicate window, and with the same result key beyond it.
//!
//! A pass is bounded ([`MeterSpan::pass_range`]: nothing after the present, at most a month of
//! windows per meter) and a meter the planner cannot plan (its data unreadable, its reads
//! refused) is skipped with a log line while the others are planned.
//!
//! Load forecasts ([`forecast_pass`]) share the queue: per meter at most one forecast item a
//! pass, for the end of the last complete minute of data once it moved on by five minutes
//! since the last one published (the cursor `nialm.cursor.<meter>.forecast` holds that `at`),
//! carrying up to a week of the meter's 60 s series ([`MeterSpan::forecast_range`]).

use std::future::IntoFuture;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::Context;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use wattlet_sealing::{Purpose, Sealed};

use crate::api::{ApiOptions, DataApi, HouseholdKey};
use crate::item::{self, FORECAST, Job, WINDOW_SECONDS, WorkItem};
use crate::plan::{MAX_WINDOWS_PER_STEP, MeterSpan, Planner};
use crate::{Cursors, QueueSettings};

pub struct ManagerOptions {
    pub nats: crate::Nats,
    /// The Data API's worker endpoints.
    pub api: ApiOptions,
    pub models: Vec<String>,
    pub settings: QueueSettings,
    /// Time between passes; `None` runs one pass and returns.
    pub interval: Option<Duration>,
    /// Publish items in the clear instead of sealed under the household's key: for
    /// measurements and controls only (workers must be told `--plaintext` too).
    pub plaintext: bool,
    /// Also plan a load forecast item per meter ([`forecast_pass`]).
    pub forecast: bool,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub meters: usize,
    pub published: usize,
    /// Publishes JetStream recognised as already in the stream (same `Nats-Msg-Id`).
    pub duplicates: usize,
    /// Meters skipped because they could not be planned (logged).
    pub skipped: usize,
}

/// Items published per round trip of acknowledgements (below the context's in-flight limit).
const ITEMS_PER_CHUNK: usize = 8192;

pub async fn run(
    options: ManagerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if options.plaintext {
        tracing::warn!(
            "PLAINTEXT ITEMS: --plaintext publishes the readings in the clear on NATS \
             (measurements and controls only)"
        );
    }
    let planner = Planner::new(DataApi::connect(&options.api)?);
    // A wrong URL or token is reported before anything else.
    planner
        .meters()
        .await
        .context("cannot read the meters from the Data API")?;
    let js = crate::connect(options.nats.clone()).await?;
    crate::ensure_streams(&js, &options.settings).await?;
    let cursors = crate::Cursors::open(&js, &options.settings).await?;
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        let report = pass(
            &js,
            &planner,
            &cursors,
            &options.models,
            Sealing::of(options.plaintext),
        )
        .await?;
        let forecasts = if options.forecast {
            forecast_pass(&js, &planner, &cursors, Sealing::of(options.plaintext)).await?
        } else {
            PassReport::default()
        };
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            meters = forecasts.meters,
            published = forecasts.published,
            duplicates = forecasts.duplicates,
            skipped = forecasts.skipped,
            "manager pass: forecast items"
        );
        tracing::info!(
            meters = report.meters,
            published = report.published,
            duplicates = report.duplicates,
            skipped = report.skipped,
            seconds,
            "manager pass: {:.0} items/s",
            report.published as f64 / seconds.max(1e-9)
        );
        let Some(interval) = options.interval else {
            return Ok(());
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// How items go on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// Sealed under the household's data key (`Purpose::Item`, bound to the item id).
    Sealed,
    /// In the clear (`--plaintext`).
    Plaintext,
}

impl Sealing {
    pub fn of(plaintext: bool) -> Sealing {
        if plaintext {
            Sealing::Plaintext
        } else {
            Sealing::Sealed
        }
    }
}

/// The payload of `item` on the queue: the item's JSON, sealed under `key` unless plaintext.
pub fn payload(
    item: &WorkItem,
    sealing: Sealing,
    key: Option<&HouseholdKey>,
) -> anyhow::Result<Bytes> {
    job_payload(&Job::Nialm(item.clone()), sealing, key)
}

/// [`payload`] of an item of any kind.
pub fn job_payload(
    job: &Job,
    sealing: Sealing,
    key: Option<&HouseholdKey>,
) -> anyhow::Result<Bytes> {
    let json = job.to_json()?;
    match sealing {
        Sealing::Plaintext => Ok(Bytes::from(json)),
        Sealing::Sealed => {
            let key = key.context(
                "the Data API sent no household key with the readings: the manager needs a \
                 `manager` access token (or --plaintext, for measurements only)",
            )?;
            let sealed = Sealed::seal(&key.key, &key.id, &job.id(), Purpose::Item, &json)?;
            Ok(Bytes::from(serde_json::to_vec(&sealed)?))
        }
    }
}

/// One pass over every consenting meter with data.
pub async fn pass(
    js: &Context,
    planner: &Planner,
    cursors: &Cursors,
    models: &[String],
    sealing: Sealing,
) -> anyhow::Result<PassReport> {
    let mut report = PassReport::default();
    if models.is_empty() {
        return Ok(report);
    }
    let windows_per_chunk = (ITEMS_PER_CHUNK / models.len()).clamp(1, MAX_WINDOWS_PER_STEP) as i64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for span in planner.meters().await? {
        report.meters += 1;
        let mut next = Vec::with_capacity(models.len());
        for cursor in
            futures::future::join_all(models.iter().map(|m| cursors.get(&span.meter, m))).await
        {
            next.push(cursor?.unwrap_or_else(|| span.first_window()));
        }
        let Some(cursor) = next.iter().copied().min() else {
            continue;
        };
        let windows = span.pass_range(cursor, now);
        let (mut from, end) = (windows.start, windows.end);
        while from < end {
            let to = (from + windows_per_chunk * WINDOW_SECONDS).min(end);
            // Consent may have been revoked since the meter list was read: the Data API then
            // refuses the meter's readings.
            let (items, key) = match planner.planned(&span.meter, models, from, to).await {
                Ok(Some(planned)) => (planned.items, planned.key),
                Ok(None) => break,
                Err(error) => {
                    skip(&span, &mut report, &error);
                    break;
                }
            };
            // Every item of the step is sealed before any is published: a meter whose key is
            // missing publishes nothing and keeps its cursor.
            let mut payloads = Vec::with_capacity(items.len());
            for item in items {
                let position = models.iter().position(|m| *m == item.model);
                if position.is_some_and(|p| item.window_start < next[p]) {
                    continue;
                }
                payloads.push((payload(&item, sealing, key.as_ref()), item));
            }
            if let Some(Err(error)) = payloads.iter().map(|(p, _)| p).find(|p| p.is_err()) {
                skip(&span, &mut report, error);
                break;
            }
            let mut acks = Vec::with_capacity(payloads.len());
            for (payload, item) in payloads {
                let payload = payload?;
                let ack = js
                    .send_publish(
                        item::subject(&item.model),
                        PublishMessage::build()
                            .payload(payload)
                            .message_id(item.id()),
                    )
                    .await
                    .context("cannot publish a work item")?;
                acks.push(ack);
            }
            for ack in futures::future::join_all(acks.into_iter().map(|a| a.into_future())).await {
                let ack = ack.context("JetStream did not acknowledge a work item")?;
                report.published += 1;
                report.duplicates += usize::from(ack.duplicate);
            }
            let advanced = models
                .iter()
                .zip(&next)
                .filter(|(_, cursor)| **cursor < to)
                .map(|(model, _)| cursors.set(&span.meter, model, to));
            for result in futures::future::join_all(advanced).await {
                result?;
            }
            for cursor in &mut next {
                *cursor = (*cursor).max(to);
            }
            from = to;
        }
    }
    Ok(report)
}

/// One pass of forecast items over every consenting meter with data (module documentation):
/// each published item is acknowledged by JetStream before the meter's cursor moves to its
/// `at`, so a manager that dies in between publishes the same item (the same id) again.
pub async fn forecast_pass(
    js: &Context,
    planner: &Planner,
    cursors: &Cursors,
    sealing: Sealing,
) -> anyhow::Result<PassReport> {
    let mut report = PassReport::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for span in planner.meters().await? {
        report.meters += 1;
        let cursor = cursors.get(&span.meter, FORECAST).await?;
        let Some(range) = span.forecast_range(cursor, now) else {
            continue;
        };
        let (item, key) = match planner.forecast(&span.meter, range).await {
            Ok(Some(planned)) => planned,
            // Consent revoked since the meter list was read: nothing to plan.
            Ok(None) => continue,
            Err(error) => {
                skip(&span, &mut report, &error);
                continue;
            }
        };
        let at = item.at;
        let job = Job::Forecast(item);
        let payload = match job_payload(&job, sealing, key.as_ref()) {
            Ok(payload) => payload,
            Err(error) => {
                skip(&span, &mut report, &error);
                continue;
            }
        };
        let ack = js
            .send_publish(
                job.subject(),
                PublishMessage::build()
                    .payload(payload)
                    .message_id(job.id()),
            )
            .await
            .context("cannot publish a forecast item")?
            .await
            .context("JetStream did not acknowledge a forecast item")?;
        report.published += 1;
        report.duplicates += usize::from(ack.duplicate);
        cursors.set(&span.meter, FORECAST, at).await?;
    }
    Ok(report)
}

/// Logs a meter the pass cannot plan; the pass goes on with the next one.
fn skip(span: &MeterSpan, report: &mut PassReport, error: &anyhow::Error) {
    tracing::warn!(meter = %span.meter, error = format!("{error:#}"), "cannot plan this meter; skipped in this pass");
    report.skipped += 1;
}
