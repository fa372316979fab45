//! `wattlet worker stream`: the coordinator (membership, leases, fair share) and the task
//! runner (restore, replay, publish each row once, checkpoint). See the module above.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, Context, stream};
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wattlet_sealing::{KeyId, Purpose};
use wattlet_stream_analytics::event::parse_line;

use crate::confidential::{
    Confidential, ConfidentialError, ConfidentialMetrics, ConfidentialOptions,
};

use super::checkpoint::{Checkpoints, Manifest};
use super::lease::{Lease, Leases, fair_share};
use super::metrics::StreamMetrics;
use super::operator::{Operator, Operators, Row};
use super::replay::end_item;
use super::sealed::{BatchItem, Payloads, RunKey};
use super::{
    DEAD_SUBJECT, END_HEADER, EVENTS_STREAM, INDEX_HEADER, OUT_STREAM, OUT_SUBJECT, ROWS_HEADER,
    StreamMeta, TaskKind, ensure_streams, events_meta, now_ms, partition_of, tasks,
};

/// Rows (and dead letters) awaiting their acknowledgement before the runner waits for them.
const MAX_PENDING: usize = 4096;
/// Rows in one output message: a message per row cost the queue more than the operators.
const ROWS_PER_MESSAGE: usize = 256;
/// Events past which no further received message joins a call into the operators.
const MAX_BATCH_EVENTS: usize = 4096;

#[derive(Clone, Debug)]
pub struct StreamWorkerOptions {
    pub nats: crate::Nats,
    /// Unique among live workers; a restarted worker with the same id takes its leases back at
    /// once.
    pub id: String,
    /// A checkpoint after this many input messages …
    pub checkpoint_every: u64,
    /// … or this long after the last one, whichever first.
    pub checkpoint_interval: Duration,
    /// A lease not renewed for this long is free.
    pub lease_time: Duration,
    /// Leases and membership are renewed (and the share rebalanced) this often.
    pub renew_every: Duration,
    /// The operators' implementation.
    pub operators: Operators,
    /// Where the worker counts what its tasks do (`--metrics-listen` serves them).
    pub metrics: Arc<StreamMetrics>,
}

impl StreamWorkerOptions {
    pub fn new(nats: impl Into<crate::Nats>, id: &str) -> Self {
        StreamWorkerOptions {
            nats: nats.into(),
            id: id.to_owned(),
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(5),
            lease_time: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
            operators: Operators::Native,
            metrics: Arc::default(),
        }
    }
}

/// How a task runner ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every row is published and the final checkpoint written.
    Done,
    /// Asked to stop: checkpointed.
    Stopped,
}

struct Held {
    lease_seq: u64,
    valid_until: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<anyhow::Result<Outcome>>,
}

/// Where a worker gets a sealed run's dataset key.
pub enum RunKeys {
    /// Nowhere: the worker takes part in runs in the clear only.
    None,
    /// From the key broker, after attestation (`wattlet worker stream --key-broker`).
    Broker(ConfidentialOptions),
    /// A key the caller holds already: how the benchmark measures the sealing without a
    /// broker. A deployed worker gets keys from the broker only.
    Held(RunKey),
}

/// Runs a worker until `shutdown`, then checkpoints and releases its tasks. A sealed run
/// needs `keys`: with [`RunKeys::Broker`] the worker attests and gets the run's dataset key
/// before it reads any event; when the broker no longer has the key (deleted: the run is to
/// be unreadable), the worker stops its tasks and fails.
pub async fn run(
    options: StreamWorkerOptions,
    keys: RunKeys,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !options.id.is_empty() && !options.id.contains(['.', '*', '>', ' ']),
        "the worker id {:?} must be a non-empty NATS subject token",
        options.id
    );
    // Each task bounds its own unacknowledged publishes (MAX_PENDING). A limit shared by the
    // tasks would deadlock them: a task holding part of it awaits nothing while another waits
    // for it (the awaiting-acknowledgement futures hold their permits until awaited).
    let js = crate::connect_with_inflight(&options.nats, 1 << 24).await?;
    ensure_streams(&js).await?;
    let leases = Leases::open(&js).await?;
    tokio::pin!(shutdown);
    let meta = loop {
        if let Some(meta) = events_meta(&js).await? {
            break meta;
        }
        tracing::info!("waiting for the input stream {EVENTS_STREAM} (wattlet stream replay)");
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let (payloads, attested) = run_key(&meta, keys).await?;
    let checkpoints = Arc::new(Checkpoints::open(&js).await?);
    let all = tasks(meta.partitions);
    // Where this worker starts looking for free tasks: spread by its id.
    let offset = options
        .id
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize);
    let lease_ms = options.lease_time.as_millis() as u64;
    let mut held: BTreeMap<TaskKind, Held> = BTreeMap::new();
    // Tasks that failed here: consecutive failures and when this worker may take it again.
    let mut failed: BTreeMap<TaskKind, (u32, u64)> = BTreeMap::new();
    let mut tick = tokio::time::interval(options.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(id = %options.id, run = %meta, operators = ?options.operators, "stream worker started");
    let mut key_gone = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        // The broker is asked again whenever the worker's token expires: a deleted key stops
        // the run here within a token's lifetime.
        if let Some((confidential, id)) = &attested {
            match confidential.dataset_key(id).await {
                Ok(_) => {}
                Err(e @ ConfidentialError::KeyNotFound(_)) => {
                    key_gone = Some(e);
                    break;
                }
                Err(e) => tracing::warn!("cannot confirm the run's dataset key: {e}"),
            }
        }
        let now = now_ms();
        if let Err(e) = leases.heartbeat(&options.id, now + lease_ms).await {
            tracing::warn!("cannot announce the worker: {e:#}");
            continue;
        }
        // Runners that ended.
        let ended: Vec<TaskKind> = held
            .iter()
            .filter(|(_, h)| h.handle.is_finished())
            .map(|(k, _)| *k)
            .collect();
        for kind in ended {
            let h = held.remove(&kind).expect("held");
            let done = match h.handle.await {
                Ok(Ok(Outcome::Done)) => {
                    tracing::info!(task = %kind.name(), "task complete");
                    failed.remove(&kind);
                    true
                }
                Ok(Ok(Outcome::Stopped)) => {
                    failed.remove(&kind);
                    false
                }
                Ok(Err(e)) => {
                    options.metrics.task_failed(kind);
                    let failures = failed.get(&kind).map_or(0, |f| f.0) + 1;
                    let wait = retry_after(failures);
                    failed.insert(kind, (failures, now + wait.as_millis() as u64));
                    tracing::warn!(task = %kind.name(), failures, "task failed: {e:#}; this worker takes it again in {} s at the earliest", wait.as_secs());
                    false
                }
                Err(e) => {
                    tracing::warn!(task = %kind.name(), "task ended: {e}");
                    false
                }
            };
            let lease = Lease {
                done,
                ..Lease::default()
            };
            if let Err(e) = leases.write(&kind.name(), h.lease_seq, &lease).await {
                tracing::warn!(task = %kind.name(), "cannot release the lease: {e:#}");
            }
        }
        // Renewals.
        let mine = Lease {
            owner: options.id.clone(),
            expires_ms: now + lease_ms,
            done: false,
        };
        let kinds: Vec<TaskKind> = held.keys().copied().collect();
        for kind in kinds {
            let h = held.get_mut(&kind).expect("held");
            match leases.write(&kind.name(), h.lease_seq, &mine).await {
                Ok(Some(seq)) => {
                    h.lease_seq = seq;
                    h.valid_until
                        .store(valid_until(now, lease_ms), Ordering::SeqCst);
                }
                Ok(None) => {
                    tracing::warn!(task = %kind.name(), "lost the lease: stopping the task");
                    h.handle.abort();
                    held.remove(&kind);
                }
                // The runner stops by itself when the lease would have expired.
                Err(e) => tracing::warn!(task = %kind.name(), "cannot renew the lease: {e:#}"),
            }
        }
        // The fair share.
        let members = match leases.members(now).await {
            Ok(members) => members.len().max(1),
            Err(e) => {
                tracing::warn!("cannot list the members: {e:#}");
                continue;
            }
        };
        let share = fair_share(all.len(), members);
        if held.len() > share {
            let extra: Vec<TaskKind> = held
                .keys()
                .rev()
                .take(held.len() - share)
                .copied()
                .collect();
            for kind in extra {
                let h = held.remove(&kind).expect("held");
                tracing::info!(task = %kind.name(), share, members, "worker {} releases a task (a worker joined)", options.id);
                stop_and_release(&leases, kind, h, options.lease_time).await;
            }
        } else {
            for i in 0..all.len() {
                if held.len() >= share {
                    break;
                }
                let kind = all[(offset + i) % all.len()];
                if held.contains_key(&kind) || failed.get(&kind).is_some_and(|f| now < f.1) {
                    continue;
                }
                let name = kind.name();
                let read = match leases.read(&name).await {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::warn!(task = %name, "cannot read the lease: {e:#}");
                        continue;
                    }
                };
                if !read.lease.takeable(&options.id, now) {
                    continue;
                }
                match leases.write(&name, read.seq, &mine).await {
                    Ok(Some(seq)) => {
                        tracing::info!(task = %name, "worker {} took the task", options.id);
                        let valid = Arc::new(AtomicU64::new(valid_until(now, lease_ms)));
                        let (stop, stopped) = watch::channel(false);
                        let runner = Runner {
                            js: js.clone(),
                            checkpoints: checkpoints.clone(),
                            kind,
                            meta: meta.clone(),
                            payloads: payloads.clone(),
                            options: options.clone(),
                            valid_until: valid.clone(),
                            lease_seq: seq,
                        };
                        let handle = tokio::spawn(runner.run(stopped));
                        held.insert(
                            kind,
                            Held {
                                lease_seq: seq,
                                valid_until: valid,
                                stop,
                                handle,
                            },
                        );
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(task = %name, "cannot take the lease: {e:#}"),
                }
            }
        }
        options.metrics.tasks_held(held.len());
    }
    options.metrics.tasks_held(0);
    tracing::info!(
        tasks = held.len(),
        "stopping: checkpointing and releasing every task"
    );
    for (kind, h) in std::mem::take(&mut held) {
        stop_and_release(&leases, kind, h, options.lease_time).await;
    }
    let _ = leases.heartbeat(&options.id, 0).await;
    match key_gone {
        Some(e) => Err(anyhow::Error::new(e).context(
            "the run's dataset key was deleted at the key broker: its data is to be unreadable; \
             the worker stopped its tasks",
        )),
        None => Ok(()),
    }
}

/// How the run's payloads are opened: a sealed run attests (when the worker may) and gets the
/// dataset key; the attested handle and key id stay to confirm the key later.
async fn run_key(
    meta: &StreamMeta,
    keys: RunKeys,
) -> anyhow::Result<(Payloads, Option<(Confidential, KeyId)>)> {
    let Some(key_id) = &meta.key_id else {
        if !matches!(keys, RunKeys::None) {
            tracing::warn!("the run is not sealed: its events are in the clear on NATS");
        }
        return Ok((Payloads::Plain, None));
    };
    let key_id = KeyId::parse(key_id)
        .with_context(|| format!("the run's key id {key_id:?} in {EVENTS_STREAM}"))?;
    let options = match keys {
        RunKeys::Broker(options) => options,
        RunKeys::Held(key) if key.id == key_id => return Ok((Payloads::sealed(key), None)),
        RunKeys::Held(key) => {
            anyhow::bail!(
                "the run is sealed under dataset key {key_id}, not {}",
                key.id
            )
        }
        RunKeys::None => anyhow::bail!(
            "the run is sealed under dataset key {key_id}: start the worker with --key-broker \
             (it attests there and gets the key)"
        ),
    };
    let attested =
        Confidential::start_or_refuse(options, ConfidentialMetrics::default(), "event").await?;
    let key = attested.dataset_key(&key_id).await.with_context(|| {
        format!("cannot get the run's dataset key {key_id} from the key broker")
    })?;
    tracing::info!(key_id = %key_id, "attested: the run's dataset key was released to this worker");
    Ok((
        Payloads::sealed(RunKey::new(key_id.clone(), key)),
        Some((attested, key_id)),
    ))
}

/// How long a worker leaves a task alone after its `failures`-th consecutive failure there (a
/// component trap, a store error): 1 s, doubling, at most a minute, so that a task that fails
/// every time (its state past the component's memory limit, say) does not spin.
fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Stops publishing half a second before the lease expires, so that a successor never overlaps.
fn valid_until(now: u64, lease_ms: u64) -> u64 {
    now + lease_ms.saturating_sub(500)
}

async fn stop_and_release(leases: &Leases, kind: TaskKind, h: Held, limit: Duration) {
    let _ = h.stop.send(true);
    let mut handle = h.handle;
    let outcome = match tokio::time::timeout(limit, &mut handle).await {
        Ok(Ok(Ok(outcome))) => Some(outcome),
        Ok(Ok(Err(e))) => {
            tracing::warn!(task = %kind.name(), "task failed while stopping: {e:#}");
            None
        }
        Ok(Err(_)) => None,
        Err(_) => {
            handle.abort();
            tracing::warn!(task = %kind.name(), "the task did not stop in time");
            None
        }
    };
    let lease = Lease {
        done: outcome == Some(Outcome::Done),
        ..Lease::default()
    };
    if let Err(e) = leases.write(&kind.name(), h.lease_seq, &lease).await {
        tracing::warn!(task = %kind.name(), "cannot release the lease: {e:#}");
    }
}

/// One task's run under one lease.
struct Runner {
    js: Context,
    checkpoints: Arc<Checkpoints>,
    kind: TaskKind,
    meta: StreamMeta,
    payloads: Payloads,
    options: StreamWorkerOptions,
    valid_until: Arc<AtomicU64>,
    lease_seq: u64,
}

/// The runner's position and output state.
struct Progress {
    name: String,
    pos: Manifest,
    /// Rows with an index up to this are already in the output stream.
    published: Option<u64>,
    pending: Vec<PublishAckFuture>,
    previous_generation: Option<String>,
    generation: u64,
    since_checkpoint: u64,
}

impl Runner {
    async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<Outcome> {
        let name = self.kind.name();
        let mut op = self
            .options
            .operators
            .start(self.kind, self.meta.lateness)?;
        let mut pos = Manifest::default();
        let mut previous_generation = None;
        match self.checkpoints.load(&name).await {
            Ok(Some((manifest, state))) => match self
                .payloads
                .open_item(
                    &state_item(&name, &manifest.generation),
                    Purpose::State,
                    &state,
                )
                .map_err(anyhow::Error::msg)
                .and_then(|state| op.restore(&state))
            {
                Ok(()) => {
                    previous_generation = Some(manifest.generation.clone());
                    pos = manifest;
                }
                Err(e) => {
                    tracing::warn!(task = %name, "checkpoint unusable ({e:#}); replaying the task's input from the start");
                    op = self
                        .options
                        .operators
                        .start(self.kind, self.meta.lateness)?;
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(task = %name, "checkpoint unusable ({e}); replaying the task's input from the start");
            }
        }
        if pos.done {
            return Ok(Outcome::Done);
        }
        let published = last_index(&self.js, &self.payloads, &name).await?;
        tracing::info!(task = %name, from = pos.input_seq, produced = pos.produced, ?published, "task starts");
        let input = self.js.get_stream(EVENTS_STREAM).await?;
        let consumer = input
            .create_consumer(OrderedConfig {
                filter_subject: self.kind.filter(),
                deliver_policy: if pos.input_seq == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence {
                        start_sequence: pos.input_seq + 1,
                    }
                },
                ..Default::default()
            })
            .await
            .context("cannot read the input stream")?;
        let mut messages = consumer.messages().await?;
        let mut progress = Progress {
            name,
            pos,
            published,
            pending: Vec::new(),
            previous_generation,
            generation: 0,
            since_checkpoint: 0,
        };
        let mut rows = Vec::new();
        let mut timer = tokio::time::interval(self.options.checkpoint_interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    self.checkpoint(&mut *op, &mut progress).await?;
                    return Ok(Outcome::Stopped);
                }
                _ = timer.tick() => {
                    if progress.since_checkpoint > 0 {
                        self.checkpoint(&mut *op, &mut progress).await?;
                    }
                }
                message = messages.next() => {
                    // Messages already received go to the operators together (fewer calls into
                    // the component); rows do not depend on the batching.
                    let mut message = Some(message.context("the input stream's consumer ended")??);
                    let mut batch = Vec::new();
                    while let Some(m) = message.take() {
                        let seq = m.info().map_err(|e| anyhow::anyhow!("{e}"))?.stream_sequence;
                        if let Some(end) = m.headers.as_ref().and_then(|h| h.get(END_HEADER)) {
                            let end = end.as_str().parse::<u32>().ok().filter(|p| {
                                let item = end_item(*p);
                                self.payloads.open_item(&item, Purpose::Item, &m.payload).is_ok()
                            });
                            if end.is_none() {
                                let reason =
                                    format!("input message {seq} is not an authentic end marker");
                                self.dead_letter(&m.payload, seq, &reason, &mut progress).await?;
                            } else if let Some(p) = end
                                && !progress.pos.ends.contains(&p)
                            {
                                progress.pos.ends.push(p);
                                progress.pos.ends.sort_unstable();
                            }
                            if self.complete(&progress.pos.ends) {
                                op.push(&batch, &mut rows)?;
                                op.finish(&mut rows)?;
                                self.publish(&mut rows, &mut progress).await?;
                                progress.pos.input_seq = seq;
                                progress.pos.done = true;
                                self.checkpoint(&mut *op, &mut progress).await?;
                                return Ok(Outcome::Done);
                            }
                        } else {
                            let before = batch.len();
                            let last_batches = &mut progress.pos.last_batches;
                            match self.events(&m.subject, &m.payload, seq, &mut batch, last_batches) {
                                Ok(()) => {
                                    let taken = (batch.len() - before) as u64;
                                    progress.pos.events += taken;
                                    self.options.metrics.events(self.kind, taken);
                                }
                                Err(reason) => {
                                    self.dead_letter(&m.payload, seq, &reason, &mut progress).await?;
                                }
                            }
                        }
                        progress.pos.input_seq = seq;
                        progress.since_checkpoint += 1;
                        if batch.len() < MAX_BATCH_EVENTS
                            && let Some(next) = messages.next().now_or_never()
                        {
                            message = Some(next.context("the input stream's consumer ended")??);
                        }
                    }
                    op.push(&batch, &mut rows)?;
                    self.publish(&mut rows, &mut progress).await?;
                    if progress.since_checkpoint >= self.options.checkpoint_every {
                        self.checkpoint(&mut *op, &mut progress).await?;
                    }
                }
            }
        }
    }

    fn complete(&self, ends: &[u32]) -> bool {
        match self.kind {
            TaskKind::Forecast { partition } => ends.contains(&partition),
            TaskKind::Outliers => (0..self.meta.partitions).all(|p| ends.contains(&p)),
        }
    }

    /// Appends the events of an input message (a batch of CSV lines, see [`super::replay`];
    /// sealed in a sealed run) to `batch`; or, appending nothing, why the message is not one.
    /// A message is taken whole or not at all: one bad line makes the rest suspect too.
    fn events(
        &self,
        subject: &str,
        payload: &[u8],
        seq: u64,
        batch: &mut Vec<wattlet_stream_analytics::Event>,
        last_batches: &mut BTreeMap<u32, u64>,
    ) -> Result<(), String> {
        let (item, plaintext) = self
            .payloads
            .open(Purpose::Item, payload)
            .map_err(|e| format!("input message {seq} on {subject}: {e}"))?;
        let text = std::str::from_utf8(&plaintext)
            .map_err(|_| format!("input message {seq} on {subject} is not UTF-8 text"))?;
        let before = batch.len();
        for (i, line) in text.lines().enumerate() {
            let event = match parse_line(line.trim_end(), i as u64 + 1) {
                Ok(event) => event,
                Err(e) => {
                    batch.truncate(before);
                    return Err(format!(
                        "input message {seq} on {subject} is not an event batch (lines \
                         numbered within the message): {e}"
                    ));
                }
            };
            if let TaskKind::Forecast { partition } = self.kind {
                let p = partition_of(event.house, self.meta.partitions);
                if p != partition {
                    batch.truncate(before);
                    return Err(format!(
                        "input message {seq}, line {}: house {} belongs to partition {p}, not \
                         {subject}",
                        i + 1,
                        event.house
                    ));
                }
            }
            batch.push(event);
        }
        if batch.len() == before {
            return Err(format!("input message {seq} on {subject} holds no event"));
        }
        if let Some(item) = item
            && let Err(e) = self.check_sealed_batch(&item, &batch[before..], last_batches)
        {
            batch.truncate(before);
            return Err(format!("input message {seq} on {subject}: {e}"));
        }
        Ok(())
    }

    /// A sealed batch must be the one the replay sealed (its [`BatchItem`]: these events, all
    /// of its partition) and come after the partition's last batch taken ([`super::sealed`]).
    fn check_sealed_batch(
        &self,
        item: &str,
        events: &[wattlet_stream_analytics::Event],
        last_batches: &mut BTreeMap<u32, u64>,
    ) -> Result<(), String> {
        let item: BatchItem = item.parse()?;
        let first = events.first().ok_or("no event")?;
        if (item.first_id, item.count) != (first.id, events.len()) {
            return Err(format!(
                "sealed as {item} but holds e{}.{}: not the batch that was sealed",
                first.id,
                events.len()
            ));
        }
        if let Some(e) = events
            .iter()
            .find(|e| partition_of(e.house, self.meta.partitions) != item.partition)
        {
            return Err(format!(
                "sealed as {item} but holds an event of house {}, not of partition {}",
                e.house, item.partition
            ));
        }
        if let Some(last) = last_batches
            .get(&item.partition)
            .filter(|last| item.number <= **last)
        {
            return Err(format!(
                "replayed: batch {} of partition {} is not past batch {last}, the last taken",
                item.number, item.partition
            ));
        }
        last_batches.insert(item.partition, item.number);
        Ok(())
    }

    fn check_lease(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            now_ms() < self.valid_until.load(Ordering::SeqCst),
            "the lease of {name} was not renewed in time: stopping the task"
        );
        Ok(())
    }

    /// Publishes `rows` (drained) with their indexes, skipping those already published: up to
    /// [`ROWS_PER_MESSAGE`] rows a message, one CSV line each, the first one's index in
    /// [`INDEX_HEADER`] and in the message id.
    async fn publish(&self, rows: &mut Vec<Row>, progress: &mut Progress) -> anyhow::Result<()> {
        let first = progress.pos.produced;
        progress.pos.produced += rows.len() as u64;
        // Rows up to `published` are in the output stream already (a restart replays them).
        let skip = progress
            .published
            .map_or(0, |p| (p + 1).saturating_sub(first).min(rows.len() as u64));
        if skip as usize == rows.len() {
            rows.clear();
            return Ok(());
        }
        self.check_lease(&progress.name)?;
        self.options
            .metrics
            .rows(self.kind, rows.len() as u64 - skip);
        let subject = format!("{OUT_SUBJECT}.{}", progress.name);
        let mut index = first + skip;
        for chunk in rows[skip as usize..].chunks(ROWS_PER_MESSAGE) {
            let mut payload = String::with_capacity(chunk.len() * 48);
            for (i, row) in chunk.iter().enumerate() {
                if i > 0 {
                    payload.push('\n');
                }
                payload.push_str(&row.to_csv());
            }
            let id = format!("{}-{index}", progress.name);
            let mut headers = HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            headers.insert(INDEX_HEADER, index.to_string().as_str());
            headers.insert(ROWS_HEADER, chunk.len().to_string().as_str());
            let payload = self
                .payloads
                .seal(&id, Purpose::Result, payload.as_bytes())?;
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await?;
            progress.pending.push(ack);
            if progress.pending.len() >= MAX_PENDING {
                settle(progress).await?;
            }
            index += chunk.len() as u64;
        }
        rows.clear();
        Ok(())
    }

    async fn dead_letter(
        &self,
        payload: &[u8],
        seq: u64,
        reason: &str,
        progress: &mut Progress,
    ) -> anyhow::Result<()> {
        tracing::warn!(task = %progress.name, "dead-lettered: {reason}");
        self.check_lease(&progress.name)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}-{seq}", progress.name).as_str(),
        );
        headers.insert(crate::DEAD_REASON_HEADER, reason);
        let ack = self
            .js
            .publish_with_headers(
                format!("{DEAD_SUBJECT}.{}", progress.name),
                headers,
                payload.to_vec().into(),
            )
            .await?;
        progress.pending.push(ack);
        progress.pos.dead += 1;
        self.options.metrics.dead_letter(self.kind);
        Ok(())
    }

    /// Waits for every row's acknowledgement, then writes the state with the position.
    async fn checkpoint(
        &self,
        op: &mut dyn Operator,
        progress: &mut Progress,
    ) -> anyhow::Result<()> {
        settle(progress).await?;
        self.check_lease(&progress.name)?;
        let started = Instant::now();
        progress.generation += 1;
        let generation = format!("{}-{}", self.lease_seq, progress.generation);
        let state = self.payloads.seal(
            &state_item(&progress.name, &generation),
            Purpose::State,
            &op.snapshot()?,
        )?;
        let manifest = Manifest {
            generation: generation.clone(),
            ..progress.pos.clone()
        };
        self.checkpoints
            .save(
                &progress.name,
                manifest,
                &state,
                progress.previous_generation.as_deref(),
            )
            .await
            .with_context(|| format!("cannot checkpoint {}", progress.name))?;
        self.options
            .metrics
            .checkpoint(self.kind, started.elapsed());
        tracing::debug!(task = %progress.name, input = progress.pos.input_seq, bytes = state.len(), ms = started.elapsed().as_millis() as u64, "checkpoint");
        progress.previous_generation = Some(generation);
        progress.since_checkpoint = 0;
        Ok(())
    }
}

/// The sealed item of a task's checkpoint state.
fn state_item(task: &str, generation: &str) -> String {
    format!("{task}/{generation}")
}

async fn settle(progress: &mut Progress) -> anyhow::Result<()> {
    for ack in progress.pending.drain(..) {
        ack.await.context("a row was not stored")?;
    }
    Ok(())
}

/// The highest row index in `debs.out.<task>`, from its last message. In a sealed run that
/// message must open under the run's key for its place: past a forged one (whose large index
/// would make the task skip rows) the index comes from the last authentic message.
pub async fn last_index(
    js: &Context,
    payloads: &Payloads,
    task: &str,
) -> anyhow::Result<Option<u64>> {
    let out: jetstream::stream::Stream = js.get_stream(OUT_STREAM).await?;
    match out
        .get_last_raw_message_by_subject(&format!("{OUT_SUBJECT}.{task}"))
        .await
    {
        Ok(m) => {
            let Some(first) = m
                .headers
                .get(INDEX_HEADER)
                .and_then(|v| v.as_str().parse::<u64>().ok())
            else {
                tracing::warn!(
                    task,
                    "the last output message has no {INDEX_HEADER}: reading back to the last one that has"
                );
                return super::results::last_authentic_index(js, payloads, task).await;
            };
            match payloads.open_item(&format!("{task}-{first}"), Purpose::Result, &m.payload) {
                Ok(rows) => Ok(Some(
                    first.saturating_add(rows.split(|&b| b == b'\n').count() as u64 - 1),
                )),
                Err(e) => {
                    tracing::warn!(
                        task,
                        "the last output message is not authentic ({e}): reading back to the last one that is"
                    );
                    super::results::last_authentic_index(js, payloads, task).await
                }
            }
        }
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e).context("cannot read the output stream"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_task_is_retried_later_and_later_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_after(u32::MAX), Duration::from_secs(60));
    }
}
