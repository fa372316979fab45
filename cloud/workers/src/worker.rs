//! `wattlet worker nialm`: fetch items, compute them with the nialm component (NIALM items) or
//! the stream component (load forecast items, [`crate::forecast`]), persist the results, and
//! only then acknowledge.
//!
//! The order is what makes a crash harmless at any instant:
//! 1. fetch a batch (the items stay in the stream until acknowledged);
//! 2. compute them (progress signals keep the batch from being redelivered meanwhile);
//! 3. store the results through the Data API (`POST /api/worker/disaggregation`, forecasts
//!    `POST /api/worker/forecast`: idempotent by item, each write checked against consent in
//!    the same statement); a redelivered item whose result is stored already comes back as a
//!    duplicate and changes nothing;
//! 4. double-ack each item (the server confirms the ack, so a lost ack is seen and the item,
//!    coming back, is found stored in step 2).
//!
//! A worker killed before 4 leaves its items to be redelivered after the ack wait; one killed
//! during 3 leaves either every result of the call stored or none (one SQL statement in the Data
//! API). Items a worker can never compute (undecodable, refused by the component, or delivered
//! `max_attempts` times) go to the dead-letter stream with the reason and are then
//! acknowledged. When the Data API cannot be reached, the batch is handed back for later.
//!
//! An item the component cannot finish within [`WorkerOptions::limits`] (a call that runs past
//! its time, or wants more memory) is stopped there like a trap: the instance is replaced, the
//! item is delivered again later, and after `max_attempts` deliveries it is dead-lettered; the
//! rest of the batch goes on meanwhile.
//!
//! Failpoints (`FAILPOINTS=name=action`, the `fail` crate) mark the crash points the crash tests
//! use: `nialm::before-step`, `nialm::mid-step` (SIGKILL at a random instant within the first
//! few milliseconds of the store call, while it is in flight) and `nialm::after-persist`; the
//! action `return` SIGKILLs the worker there. `nialm::compute` (e.g. `sleep(2500)`) slows a
//! batch down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{AckKind, Context, Message, consumer::PullConsumer};
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use wattlet_runtime::nialm::{NialmComponent, NialmInstance};
use wattlet_runtime::sandbox::Limits;
use wattlet_runtime::stream::{StreamComponent, StreamInstance};

use wattlet_sealing::{Purpose, Sealed};

use crate::api::{
    ApiOptions, ComputedForecast, ComputedResult, DataApi, HouseholdKey, Stored, Submission,
};
use crate::confidential::{Confidential, ConfidentialError, ConfidentialMetrics};
use crate::item::{self, ForecastItem, Job, OUTPUT_SAMPLES, WorkItem};
use crate::{DEAD_REASON_HEADER, DEAD_SUBJECT, QueueSettings};

/// How long a batch waits before it is delivered again when the Data API could not be reached.
const API_RETRY: Duration = Duration::from_secs(5);

pub struct WorkerOptions {
    pub nats: crate::Nats,
    /// The Data API's worker endpoints (results are stored there).
    pub api: ApiOptions,
    pub component: PathBuf,
    /// The stream operators component (`wattlet-stream-analytics`): forecast items.
    pub stream_component: PathBuf,
    /// What one item's call into the component may use (time, memory).
    pub limits: Limits,
    pub settings: QueueSettings,
    /// Items fetched and stored together.
    pub batch: usize,
    /// Items computed at once, each by its own component instance.
    pub concurrency: usize,
    pub metrics_listen: Option<SocketAddr>,
    /// The key broker and the attester: a confidential worker opens sealed items. `None` runs
    /// without keys (then only `plaintext` items can be computed).
    pub confidential: Option<ConfidentialOptions>,
    /// Accept plaintext items too (measurements and controls only; `--plaintext`).
    pub plaintext: bool,
}

pub use crate::confidential::ConfidentialOptions;

/// Runs until `shutdown` resolves (then finishes the batch in hand) or an error stops it.
pub async fn run(
    options: WorkerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let engine = wattlet_runtime::engine::engine()?;
    let component = Arc::new(Components {
        nialm: NialmComponent::load(&engine, &options.component)?.with_limits(options.limits),
        stream: StreamComponent::load(&engine, &options.stream_component)?
            .with_limits(options.limits),
    });
    let api = DataApi::connect(&options.api)?;
    let metrics = Arc::new(WorkerMetrics::new());
    // The metrics address is taken before anything slow, so that a taken port is said at once.
    if let Some(addr) = options.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tokio::spawn(wattlet_runtime::metrics::serve_admin(
            metrics.clone(),
            listener,
        ));
    }
    // Attestation comes first: a worker the broker refuses fetches no item.
    let confidential = match options.confidential {
        Some(confidential) => Some(Arc::new(
            Confidential::start_or_refuse(confidential, metrics.confidential.clone(), "item")
                .await?,
        )),
        None => {
            tracing::warn!(
                "no key broker: sealed items cannot be opened; only plaintext items are computed"
            );
            None
        }
    };
    let js = crate::connect(options.nats.clone()).await?;
    crate::ensure_streams(&js, &options.settings).await?;
    let consumer = crate::ensure_consumer(&js, &options.settings).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let lane = Lane {
            js: js.clone(),
            consumer: consumer.clone(),
            component: component.clone(),
            api: api.clone(),
            settings: options.settings.clone(),
            batch: options.batch.max(1),
            metrics: metrics.clone(),
            confidential: confidential.clone(),
            plaintext: options.plaintext,
        };
        let stop = stop_rx.clone();
        tasks.spawn(async move { lane.run(stop).await });
    }
    tracing::info!(
        concurrency = options.concurrency,
        batch = options.batch,
        "nialm worker consuming {}",
        crate::STREAM
    );
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        _ = &mut shutdown => {
            let _ = stop_tx.send(true);
            Ok(())
        }
        Some(joined) = tasks.join_next() => joined.context("worker task panicked")?,
    };
    let _ = stop_tx.send(true);
    while let Some(joined) = tasks.join_next().await {
        joined.context("worker task panicked")??;
    }
    outcome
}

/// Kills the process at a named crash point when `FAILPOINTS` arms it (tests only).
fn crash_point(name: &str) {
    fail::fail_point!(name, |_| kill_self());
}

fn kill_self() {
    tracing::warn!("failpoint: SIGKILL");
    // SAFETY: raise() has no memory-safety preconditions; SIGKILL ends the process at once,
    // exactly as an external `kill -9` would.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}

/// Arms [`kill_soon`] at a named crash point when `FAILPOINTS` arms it (tests only).
fn crash_point_in_flight(name: &str) {
    fail::fail_point!(name, |_| kill_soon());
}

/// Kills the process from another thread within the next few milliseconds, whatever this one
/// is doing then (the crash tests arm it just before a call to the Data API is sent).
fn kill_soon() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let delay = Duration::from_micros(u64::from(nanos % 4000));
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        kill_self();
    });
}

/// The components a worker computes with.
struct Components {
    nialm: NialmComponent,
    stream: StreamComponent,
}

/// One fetch–compute–store–ack loop with its own component instances.
struct Lane {
    js: Context,
    consumer: PullConsumer,
    component: Arc<Components>,
    api: DataApi,
    settings: QueueSettings,
    batch: usize,
    metrics: Arc<WorkerMetrics>,
    confidential: Option<Arc<Confidential>>,
    plaintext: bool,
}

/// An item as it came off the queue.
enum Incoming {
    Sealed(Sealed),
    Plain(Job),
}

fn decode(payload: &[u8]) -> Result<Incoming, String> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if value.get("ciphertext").is_some() {
        serde_json::from_value(value)
            .map(Incoming::Sealed)
            .map_err(|e| format!("sealed item: {e}"))
    } else {
        Job::from_json(value).map(Incoming::Plain)
    }
}

/// What [`Lane::open`] made of one message.
enum Opened {
    Item(Job, Option<HouseholdKey>),
    /// Dead-letter it with this reason.
    Dead(String),
    /// Give it back for later (the broker is unavailable, or this worker has no keys).
    Later(String),
}

/// Per item, what the blocking step decided.
enum Outcome {
    Stored,
    AlreadyStored,
    /// The Data API refused the result for good (consent revoked meanwhile): the item is done.
    Refused(String),
    /// The component refused the item: it will refuse it again.
    Poison(String),
    /// The component trapped: worth another delivery.
    Failed(String),
}

/// What the blocking step owns, handed to it and back for every batch.
struct LaneState {
    instance: NialmInstance,
    stream: StreamInstance,
    model_sha256: HashMap<String, String>,
}

/// How long a lane waits for a fetch (a pull request of at most 5 s) before it gives up on it.
const FETCH_DEADLINE: Duration = Duration::from_secs(15);
impl Lane {
    async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
        let component = self.component.clone();
        let mut engine = Some(
            tokio::task::spawn_blocking(move || -> anyhow::Result<LaneState> {
                let mut instance = component.nialm.instantiate()?;
                let models = instance.models()?;
                for m in &models {
                    item::check_model(&m.id, m.window, m.step_seconds)
                        .map_err(anyhow::Error::msg)?;
                }
                let model_sha256 = models.into_iter().map(|m| (m.id, m.sha256)).collect();
                Ok(LaneState {
                    instance,
                    stream: component.stream.instantiate()?,
                    model_sha256,
                })
            })
            .await??,
        );
        while !*stop.borrow() {
            // A pull request that went to a server of the cluster that then died is never
            // answered (the client reconnects elsewhere, the request is not resent): a fetch
            // has a deadline well past its own 5 s expiry.
            let batch = tokio::select! {
                batch = tokio::time::timeout(FETCH_DEADLINE, self.fetch()) => batch,
                _ = stop.changed() => break,
            };
            // A server of the cluster going away, or its stream leader moving, fails a fetch
            // for a moment; the client reconnects by itself. The lane waits and goes on.
            let batch = match batch
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer in {FETCH_DEADLINE:?}")))
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!("cannot fetch work items ({e:#}); trying again in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.changed() => break,
                    }
                }
            };
            if batch.is_empty() {
                continue;
            }
            engine = Some(
                self.process(batch, engine.take().context("engine lost")?)
                    .await?,
            );
        }
        Ok(())
    }

    /// What is there now, up to a batch; when nothing is, waits a few seconds for one item.
    async fn fetch(&self) -> anyhow::Result<Vec<Message>> {
        let mut batch = collect(
            self.consumer
                .fetch()
                .max_messages(self.batch)
                .messages()
                .await?,
        )
        .await;
        if batch.is_empty() {
            batch = collect(
                self.consumer
                    .batch()
                    .max_messages(1)
                    .expires(Duration::from_secs(5))
                    .messages()
                    .await?,
            )
            .await;
        }
        Ok(batch)
    }

    async fn process(&self, batch: Vec<Message>, engine: LaneState) -> anyhow::Result<LaneState> {
        let mut work = Vec::with_capacity(batch.len());
        for message in batch {
            let deliveries = match message.info() {
                Ok(info) => {
                    self.metrics.pending.set(info.pending as i64);
                    info.delivered
                }
                Err(_) => 1,
            };
            if deliveries > 1 {
                self.metrics.redeliveries.inc();
            }
            // Checked first: an item that cannot even be opened for long (the broker down) is
            // dead-lettered too, not left behind once JetStream stops delivering it.
            if deliveries > i64::from(self.settings.max_attempts) {
                let id = match decode(&message.payload) {
                    Ok(Incoming::Plain(item)) => item.id(),
                    Ok(Incoming::Sealed(sealed)) => sealed.item,
                    Err(_) => "(undecodable)".to_owned(),
                };
                let reason = format!("item {id} failed {} deliveries", deliveries - 1);
                self.dead_letter(&message, &reason).await?;
                continue;
            }
            let (item, key) = match self.open(&message.payload).await? {
                Opened::Item(item, key) => (item, key),
                Opened::Dead(reason) => {
                    self.dead_letter(&message, &reason).await?;
                    continue;
                }
                Opened::Later(reason) => {
                    tracing::warn!("{reason}; the item will be delivered again");
                    let _ = message.ack_with(AckKind::Nak(Some(API_RETRY))).await;
                    continue;
                }
            };
            if let Err(reason) = item.validate() {
                self.dead_letter(&message, &format!("invalid item {}: {reason}", item.id()))
                    .await?;
                continue;
            }
            work.push((message, item, key));
        }
        if work.is_empty() {
            return Ok(engine);
        }
        crash_point("nialm::before-step");

        let items: Vec<(Job, Option<HouseholdKey>)> = work
            .iter()
            .map(|(_, item, key)| (item.clone(), key.clone()))
            .collect();
        let step = self.step(items, engine);
        tokio::pin!(step);
        // Long batches tell the server they are alive, so it does not redeliver them meanwhile.
        let mut progress =
            tokio::time::interval((self.settings.ack_wait / 3).max(Duration::from_millis(10)));
        progress.tick().await;
        let (engine, outcomes) = loop {
            tokio::select! {
                done = &mut step => break done?,
                _ = progress.tick() => {
                    for (message, ..) in &work {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
            }
        };
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    items = work.len(),
                    "the Data API failed; the batch will be delivered again"
                );
                for (message, ..) in &work {
                    let _ = message.ack_with(AckKind::Nak(Some(API_RETRY))).await;
                }
                return Ok(engine);
            }
        };
        crash_point("nialm::after-persist");

        let mut acks = Vec::new();
        for ((message, item, _), outcome) in work.iter().zip(outcomes) {
            match outcome {
                Outcome::Stored => {
                    self.metrics.count("stored");
                    acks.push(message);
                }
                Outcome::AlreadyStored => {
                    self.metrics.count("already_stored");
                    tracing::info!(
                        item = item.id(),
                        "result already stored; acknowledging again"
                    );
                    acks.push(message);
                }
                Outcome::Refused(reason) => {
                    self.metrics.count("refused");
                    tracing::info!(item = item.id(), "result not stored: {reason}");
                    acks.push(message);
                }
                Outcome::Poison(reason) => {
                    self.dead_letter(message, &format!("item {}: {reason}", item.id()))
                        .await?;
                }
                Outcome::Failed(reason) => {
                    self.metrics.count("failed");
                    tracing::warn!(item = item.id(), "{reason}; it will be redelivered");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
        }
        let results = futures::future::join_all(acks.iter().map(|m| m.double_ack())).await;
        for result in results {
            if let Err(e) = result {
                // The result is stored: a redelivery is acknowledged without recomputing.
                tracing::warn!("acknowledgement not confirmed ({e}); the item may come back");
            }
        }
        Ok(engine)
    }

    /// Moves an item to the dead-letter stream (with the reason), then removes it from the queue.
    async fn dead_letter(&self, message: &Message, reason: &str) -> anyhow::Result<()> {
        tracing::error!("dead-lettering: {reason}");
        let mut headers = HeaderMap::new();
        // Header values are one line.
        headers.insert(
            DEAD_REASON_HEADER,
            reason.replace(['\r', '\n'], " ").as_str(),
        );
        if let Ok(info) = message.info() {
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("dead-{}", info.stream_sequence).as_str(),
            );
        }
        self.js
            .send_publish(
                DEAD_SUBJECT,
                PublishMessage::build()
                    .payload(message.payload.clone())
                    .headers(headers),
            )
            .await?
            .await
            .context("cannot publish to the dead-letter stream")?;
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("cannot acknowledge a dead-lettered item: {e}"))?;
        self.metrics.count("dead_lettered");
        Ok(())
    }
}

async fn collect<S, E>(stream: S) -> Vec<Message>
where
    S: futures::Stream<Item = Result<Message, E>>,
    E: std::fmt::Display,
{
    let mut messages = Vec::new();
    tokio::pin!(stream);
    while let Some(next) = stream.next().await {
        match next {
            Ok(message) => messages.push(message),
            Err(e) => tracing::debug!("fetch ended: {e}"),
        }
    }
    messages
}

impl Lane {
    /// Decodes a message and, for a sealed item, gets its household key from the broker and
    /// opens it. An item that is not authentic (forged or altered on NATS) is dead-lettered;
    /// the outer error stops the worker (the broker refused a re-attestation).
    async fn open(&self, payload: &[u8]) -> anyhow::Result<Opened> {
        let sealed = match decode(payload) {
            Err(e) => return Ok(Opened::Dead(format!("undecodable item: {e}"))),
            Ok(Incoming::Plain(item)) if self.plaintext => return Ok(Opened::Item(item, None)),
            Ok(Incoming::Plain(item)) => {
                return Ok(Opened::Dead(format!(
                    "plaintext item {} refused: this worker takes sealed items only \
                     (--plaintext is for measurements)",
                    item.id()
                )));
            }
            Ok(Incoming::Sealed(sealed)) => sealed,
        };
        let Some(confidential) = &self.confidential else {
            return Ok(Opened::Later(format!(
                "sealed item {}: this worker has no key broker",
                sealed.item
            )));
        };
        let Ok(id) = sealed.key_id() else {
            return Ok(Opened::Dead(format!(
                "not authentic: item {} names no valid key id",
                sealed.item
            )));
        };
        let key = match confidential.key(&id).await {
            Ok(key) => key,
            Err(ConfidentialError::KeyNotFound(_)) => {
                // Shredded when the household revoked consent, or never made: either way the
                // item can never be opened, and it is done.
                return Ok(Opened::Dead(format!(
                    "not authentic or revoked: item {} is sealed under key {id}, which the key \
                     broker does not have (destroyed on consent revocation, or never issued)",
                    sealed.item
                )));
            }
            Err(error @ ConfidentialError::Refused { .. }) => {
                return Err(anyhow::Error::new(error)
                    .context("the key broker refused this worker's re-attestation"));
            }
            Err(error @ ConfidentialError::Unavailable(_)) => {
                return Ok(Opened::Later(format!("item {}: {error}", sealed.item)));
            }
        };
        let started = Instant::now();
        let opened = sealed.open(&key, Purpose::Item);
        confidential.metrics().observe("open_item", started);
        let plaintext = match opened {
            Ok(plaintext) => plaintext,
            Err(e) => {
                return Ok(Opened::Dead(format!(
                    "not authentic: item {}: {e}",
                    sealed.item
                )));
            }
        };
        let item = match Job::from_slice(&plaintext) {
            Ok(item) => item,
            Err(e) => return Ok(Opened::Dead(format!("undecodable sealed item: {e}"))),
        };
        if item.id() != sealed.item {
            return Ok(Opened::Dead(format!(
                "not authentic: sealed as item {}, holds item {}",
                sealed.item,
                item.id()
            )));
        }
        Ok(Opened::Item(item, Some(HouseholdKey { id, key })))
    }

    /// Computes the items (on a blocking thread), then stores the new results. The engine comes
    /// back whatever happens; the outer error is the worker's own failure, the inner one the
    /// Data API's (the batch is then handed back).
    async fn step(
        &self,
        items: Vec<(Job, Option<HouseholdKey>)>,
        engine: LaneState,
    ) -> anyhow::Result<(LaneState, anyhow::Result<Vec<Outcome>>)> {
        let component = self.component.clone();
        let metrics = self.metrics.clone();
        let (engine, outcomes, computed) = tokio::task::spawn_blocking(move || {
            let mut engine = engine;
            let (outcomes, computed) = compute(&mut engine, &component, &items, &metrics);
            (engine, outcomes, computed)
        })
        .await
        .context("the compute step panicked")?;
        let mut outcomes = outcomes?;
        if computed.is_empty() {
            return Ok((engine, Ok(outcomes)));
        }
        crash_point_in_flight("nialm::mid-step");
        // Each kind to its endpoint; the outcomes come back in order per kind.
        let kinds: Vec<bool> = computed.iter().map(|(forecast, _)| *forecast).collect();
        let (forecasts, results): (Vec<_>, Vec<_>) =
            computed.into_iter().partition(|(forecast, _)| *forecast);
        let results: Vec<Submission> = results.into_iter().map(|(_, s)| s).collect();
        let forecasts: Vec<Submission> = forecasts.into_iter().map(|(_, s)| s).collect();
        let stored = match self.api.store(&results).await {
            Ok(stored) => stored,
            Err(error) => return Ok((engine, Err(error))),
        };
        let stored_forecasts = match self.api.store_forecasts(&forecasts).await {
            Ok(stored) => stored,
            Err(error) => return Ok((engine, Err(error))),
        };
        // Another worker stored the same item between our check and our call, or the household
        // revoked its consent meanwhile (then nothing is stored; the item is done).
        let mut stored = stored.into_iter();
        let mut stored_forecasts = stored_forecasts.into_iter();
        let mut kinds = kinds.into_iter();
        for outcome in &mut outcomes {
            if matches!(outcome, Outcome::Stored) {
                let next = if kinds.next().unwrap_or(false) {
                    stored_forecasts.next()
                } else {
                    stored.next()
                };
                match next {
                    Some(Stored::New) => {}
                    Some(Stored::Duplicate) => *outcome = Outcome::AlreadyStored,
                    Some(Stored::Refused(code)) => {
                        *outcome = Outcome::Refused(code.map_or_else(
                            || "refused by the Data API".to_owned(),
                            |c| format!("refused by the Data API: {c}"),
                        ))
                    }
                    None => anyhow::bail!("the Data API answered for fewer results than sent"),
                }
            }
        }
        Ok((engine, Ok(outcomes)))
    }
}

/// The blocking part of a step: each item through its component. The submissions come with
/// their kind (`true`: a forecast), one per [`Outcome::Stored`], in order.
fn compute(
    engine: &mut LaneState,
    component: &Components,
    items: &[(Job, Option<HouseholdKey>)],
    metrics: &WorkerMetrics,
) -> (anyhow::Result<Vec<Outcome>>, Vec<(bool, Submission)>) {
    // `FAILPOINTS=nialm::compute=sleep(MS)` makes a batch slow (the progress-signal test).
    fail::fail_point!("nialm::compute");
    let mut outcomes = Vec::with_capacity(items.len());
    let mut computed = Vec::new();
    for (job, key) in items {
        let started = Instant::now();
        let result = match job {
            Job::Nialm(item) => compute_nialm(engine, &component.nialm, item),
            Job::Forecast(item) => compute_forecast(engine, &component.stream, item),
        };
        let result = match result {
            Ok(Ok(result)) => result,
            Ok(Err(outcome)) => {
                outcomes.push(outcome);
                continue;
            }
            Err(error) => return (Err(error), computed),
        };
        metrics
            .compute_seconds
            .observe(started.elapsed().as_secs_f64());
        let forecast = matches!(result, Submission::PlainForecast(_));
        match seal_result(result, key.as_ref(), metrics) {
            Ok(submission) => {
                computed.push((forecast, submission));
                outcomes.push(Outcome::Stored);
            }
            Err(error) => outcomes.push(Outcome::Failed(format!(
                "cannot seal the result: {error:#}"
            ))),
        }
    }
    (Ok(outcomes), computed)
}

/// One NIALM item: its result in the clear, or the outcome instead. Outer error: a fresh
/// instance could not be made.
fn compute_nialm(
    engine: &mut LaneState,
    component: &NialmComponent,
    item: &WorkItem,
) -> anyhow::Result<Result<Submission, Outcome>> {
    let Some(sha256) = engine.model_sha256.get(&item.model).cloned() else {
        return Ok(Err(Outcome::Poison(format!(
            "unknown model {:?} (the component has {:?})",
            item.model,
            engine.model_sha256.keys().collect::<Vec<_>>()
        ))));
    };
    Ok(match engine.instance.run(&item.model, &item.aggregate) {
        Ok(Ok(power)) if power.len() == OUTPUT_SAMPLES => Ok(Submission::Plain(ComputedResult {
            item: item.id(),
            meter: item.meter.clone(),
            model: item.model.clone(),
            model_sha256: sha256,
            window_start: item.window_start,
            power_w: power,
        })),
        Ok(Ok(power)) => Err(Outcome::Poison(format!(
            "the component returned {} values, expected {OUTPUT_SAMPLES}",
            power.len()
        ))),
        Ok(Err(refused)) => Err(Outcome::Poison(refused.to_string())),
        Err(trap) => {
            // A trapped instance (past its time or memory limit among them) is not reused.
            engine.instance = component.instantiate()?;
            Err(Outcome::Failed(format!(
                "the nialm component trapped: {trap:#}"
            )))
        }
    })
}

/// One forecast item through Q1 in the stream component ([`crate::forecast`]).
fn compute_forecast(
    engine: &mut LaneState,
    component: &StreamComponent,
    item: &ForecastItem,
) -> anyhow::Result<Result<Submission, Outcome>> {
    Ok(match crate::forecast::compute(&mut engine.stream, item) {
        Ok(forecasts) if forecasts.len() == crate::forecast::SLICES => {
            Ok(Submission::PlainForecast(ComputedForecast {
                item: item.id(),
                meter: item.meter.clone(),
                at: item.at,
                forecasts,
            }))
        }
        // A valid item always reaches every slice length; the component disagrees for good.
        Ok(forecasts) => Err(Outcome::Poison(format!(
            "the stream component forecast {} slice lengths, expected {}",
            forecasts.len(),
            crate::forecast::SLICES
        ))),
        Err(trap) => {
            engine.stream = component.instantiate()?;
            Err(Outcome::Failed(format!(
                "the stream component trapped: {trap:#}"
            )))
        }
    })
}

/// The result as the Data API gets it: sealed under the item's household key (the key the item
/// was sealed with), or in the clear for a plaintext item.
fn seal_result(
    result: Submission,
    key: Option<&HouseholdKey>,
    metrics: &WorkerMetrics,
) -> anyhow::Result<Submission> {
    let Some(key) = key else {
        return Ok(result);
    };
    let started = Instant::now();
    let (item, json) = match &result {
        Submission::Plain(r) => (r.item.clone(), r.to_json()),
        Submission::PlainForecast(r) => (r.item.clone(), r.to_json()),
        Submission::Sealed(_) => return Ok(result),
    };
    let plaintext = serde_json::to_vec(&json)?;
    let sealed = Sealed::seal(&key.key, &key.id, &item, Purpose::Result, &plaintext)?;
    metrics.confidential.observe("seal_result", started);
    Ok(Submission::Sealed(sealed))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `stored`, `already_stored`, `refused` (consent revoked meanwhile), `failed` (redelivered
    /// later) or `dead_lettered`.
    outcome: &'static str,
}

/// Prometheus metrics of a worker.
struct WorkerMetrics {
    registry: Registry,
    /// `wattlet_worker_…`: the confidential-function metrics ([`ConfidentialMetrics`]).
    confidential_registry: Registry,
    confidential: ConfidentialMetrics,
    items: Family<OutcomeLabels, Counter>,
    redeliveries: Counter,
    pending: Gauge,
    compute_seconds: Histogram,
}

impl WorkerMetrics {
    fn new() -> Self {
        let mut metrics = WorkerMetrics {
            registry: Registry::with_prefix("wattlet_nialm_worker"),
            confidential_registry: Registry::with_prefix("wattlet_worker"),
            confidential: ConfidentialMetrics::default(),
            items: Family::default(),
            redeliveries: Counter::default(),
            pending: Gauge::default(),
            // 100 µs … ~3 s: one item through the component.
            compute_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
        };
        metrics.registry.register(
            "items",
            "Work items handled, by outcome",
            metrics.items.clone(),
        );
        metrics.registry.register(
            "redeliveries",
            "Items received again after an earlier delivery was not acknowledged",
            metrics.redeliveries.clone(),
        );
        metrics.registry.register(
            "queue_pending",
            "Items waiting in the queue behind the last one fetched (queue depth)",
            metrics.pending.clone(),
        );
        metrics.registry.register(
            "compute_seconds",
            "Time the component (nialm, or stream for a forecast) took per item",
            metrics.compute_seconds.clone(),
        );
        metrics
            .confidential
            .register(&mut metrics.confidential_registry);
        // Every outcome from 0, so the family is scraped before its first item and an alert's
        // `increase` sees the first dead letter.
        for outcome in [
            "stored",
            "already_stored",
            "refused",
            "failed",
            "dead_lettered",
        ] {
            let _ = metrics.items.get_or_create(&OutcomeLabels { outcome });
        }
        metrics
    }

    fn count(&self, outcome: &'static str) {
        self.items.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

impl wattlet_runtime::metrics::MetricsSource for WorkerMetrics {
    fn encode(&self) -> String {
        // One exposition of both registries: one `# EOF`, at the end.
        let mut text = wattlet_runtime::metrics::encode_registry(&self.registry);
        if let Some(stripped) = text.strip_suffix("# EOF\n") {
            text.truncate(stripped.len());
        }
        text.push_str(&wattlet_runtime::metrics::encode_registry(
            &self.confidential_registry,
        ));
        text
    }
}
