//! The edge daemon's cycles: consent, measurement and report.
//!
//! - **Consent** is fetched from the cloud every consent cycle and cached in the buffer file, so
//!   a device that restarts offline still knows it. Without granted consent no probe is read
//!   and nothing is measured or sent; once revoked, the device discards what it had not sent
//!   and stops for good (DESIGN.md, "Consent").
//! - **Measurement**: every measurement cycle, each meter's newest telegram (if it is newer
//!   than the one measured before) becomes one measurement row, committed before anything else
//!   happens; nothing is measured while the clock is not plausibly set ([`crate::clock`]).
//! - **Report**: every report cycle the buffer is sent in batches through the upload component;
//!   exactly the acknowledged rows are deleted, and the rows the cloud refused one by one are
//!   set aside (kept, counted, no longer sent), so one bad meter does not hold back the others.
//!   Then the device reports its status.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use anyhow::Context;
use tokio::time::{Instant, MissedTickBehavior};
use wasmtime::Engine;

use wattlet_runtime::locate;
use wattlet_runtime::meter::ParserComponent;
use wattlet_survey::measurement::MAX_BATCH;
use wattlet_survey::{ConsentState, Measurement, RefusalCode, Use};

use crate::buffer::Buffer;
use crate::clock;
use crate::config::EdgeConfig;
use crate::metrics::{EdgeMetrics, MeterLabels, OutcomeLabels, unix_seconds};
use crate::reader::{self, MeterFeed, ReaderCounters};
use crate::service::ServiceManager;
use crate::uplink::{DeviceStatus, MeterStatus, Uplink, UplinkError};

/// Why the daemon returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to (Ctrl-C, SIGTERM, or the caller's shutdown future).
    Shutdown,
    /// The household revoked consent: this device measures nothing ever again.
    ConsentRevoked,
}

/// The components the daemon runs, and the versions it reports.
pub struct EdgeComponents {
    pub parser: Arc<ParserComponent>,
    pub uplink: Uplink,
    pub versions: Vec<(String, String)>,
}

impl EdgeComponents {
    /// Loads the parser and upload components from `dir` (or the default search path) and the
    /// device identity for the upload component's TLS.
    pub fn load(engine: &Engine, config: &EdgeConfig, dir: Option<&Path>) -> anyhow::Result<Self> {
        let parser_path = locate::locate("wattlet-meter-parser", dir)?;
        let upload_path = locate::locate("wattlet-upload", dir)?;
        let tls = wattlet_tls::client_tls_config(
            &config.identity.certificate,
            &config.identity.key,
            &config.identity.cloud_ca,
        )
        .context("cannot load the device identity")?;
        let parser = Arc::new(ParserComponent::load(engine, &parser_path)?);
        let uplink = Uplink::load(engine, &upload_path, &config.cloud, Arc::new(tls))?;
        let versions = vec![
            ("meter-parser".to_owned(), component_version(&parser_path)?),
            ("upload".to_owned(), component_version(&upload_path)?),
        ];
        Ok(EdgeComponents {
            parser,
            uplink,
            versions,
        })
    }
}

/// A component's version: the build's version and the first 12 hex digits of the file's
/// SHA-256, so two builds of one version are told apart.
fn component_version(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok(format!(
        "{}+sha256.{}",
        env!("CARGO_PKG_VERSION"),
        &hex::encode(digest.as_ref())[..12]
    ))
}

/// The probe reader threads, started once consent is granted.
struct Readers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

pub struct Daemon {
    config: EdgeConfig,
    components: EdgeComponents,
    buffer: Buffer,
    feeds: Vec<Arc<MeterFeed>>,
    /// Per meter, the telegram sequence number measured last.
    measured: Vec<u64>,
    /// Per meter, whether it was reported locked (logged once, not every cycle).
    locked: Vec<bool>,
    readers: Option<Readers>,
    consent: ConsentState,
    metrics: Arc<EdgeMetrics>,
    /// The newest measurement's time: a clock before it stepped back.
    last_measured: Option<SystemTime>,
    /// Whether the clock was plausible at the last look (`None` before the first).
    clock_ok: Option<bool>,
    /// Meters with a measurement the cloud acknowledged since the start.
    delivering: HashSet<String>,
    /// systemd: readiness and the watchdog, fed only by the main loop.
    service: ServiceManager,
}

impl Daemon {
    pub fn new(
        config: EdgeConfig,
        components: EdgeComponents,
        metrics: Arc<EdgeMetrics>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
        let buffer = Buffer::open(&config.state_dir.join("buffer.sqlite"), config.journal)?;
        let consent = buffer.consent()?.unwrap_or(ConsentState::NotGranted);
        let feeds = config.meters.iter().map(|_| Arc::default()).collect();
        let measured = vec![0; config.meters.len()];
        let locked = vec![false; config.meters.len()];
        metrics.set_consent(consent);
        metrics
            .buffered
            .set(i64::try_from(buffer.pending_count()?).unwrap_or(i64::MAX));
        metrics.set_set_aside(&buffer.set_aside()?);
        let last_measured = buffer.last_measurement()?.as_deref().and_then(clock::parse);
        let clock_ok = clock::check(SystemTime::now(), clock::built_at(), last_measured).is_ok();
        metrics.clock_plausible.set(i64::from(clock_ok));
        Ok(Daemon {
            config,
            components,
            buffer,
            feeds,
            measured,
            locked,
            readers: None,
            consent,
            metrics,
            last_measured,
            clock_ok: None,
            delivering: HashSet::new(),
            service: ServiceManager::from_env(),
        })
    }

    /// Runs the cycles until `shutdown` resolves or consent is revoked.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<Stopped> {
        if self.consent == ConsentState::Revoked {
            tracing::warn!("consent was revoked: this device no longer measures");
            // A clean exit, not a failed start: systemd must not restart it.
            self.service
                .ready("consent revoked: this device measures nothing");
            self.service.stopping();
            return Ok(Stopped::ConsentRevoked);
        }
        tracing::info!(
            cloud = %self.config.cloud,
            meters = self.config.meters.len(),
            pending = self.buffer.pending_count()?,
            consent = self.consent.as_str(),
            "edge daemon started"
        );
        let start = Instant::now();
        let mut consent_tick = tokio::time::interval_at(start, self.config.consent_every);
        let mut measure_tick =
            tokio::time::interval_at(start + self.config.measure_every, self.config.measure_every);
        let mut report_tick =
            tokio::time::interval_at(start + self.config.report_every, self.config.report_every);
        // The watchdog is fed here, in the loop, and nowhere else (a thread of its own would
        // feed it while the loop hangs). Without a watchdog the tick is never taken.
        let watchdog_every = self.service.watchdog_every();
        let mut watchdog_tick =
            tokio::time::interval(watchdog_every.unwrap_or(std::time::Duration::from_secs(3600)));
        for tick in [
            &mut consent_tick,
            &mut measure_tick,
            &mut report_tick,
            &mut watchdog_tick,
        ] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        self.service.ready(&format!(
            "reading {} meter(s), consent {}",
            self.config.meters.len(),
            self.consent.as_str()
        ));
        tokio::pin!(shutdown);
        let stopped = loop {
            self.service.alive();
            let outcome = tokio::select! {
                () = &mut shutdown => break Stopped::Shutdown,
                _ = watchdog_tick.tick(), if watchdog_every.is_some() => Ok(None),
                _ = consent_tick.tick() => self.refresh_consent().await,
                _ = measure_tick.tick() => self.measure().map(|()| None),
                _ = report_tick.tick() => self.report().await,
            };
            if let Some(stopped) = outcome? {
                break stopped;
            }
        };
        self.service.stopping();
        if let Some(readers) = self.readers.take() {
            readers.stop();
        }
        Ok(stopped)
    }

    /// Asks the cloud for the consent; an unreachable cloud leaves the cached state in force.
    async fn refresh_consent(&mut self) -> anyhow::Result<Option<Stopped>> {
        match self.components.uplink.fetch_consent().await? {
            Ok(reported) => self.apply_consent(reported),
            Err(error) => {
                tracing::warn!(%error, consent = self.consent.as_str(), "cannot fetch consent; keeping the cached state");
                Ok(None)
            }
        }
    }

    fn apply_consent(&mut self, reported: ConsentState) -> anyhow::Result<Option<Stopped>> {
        let next = self.consent.advance(reported);
        if next != self.consent {
            self.buffer.set_consent(next)?;
            tracing::info!(
                from = self.consent.as_str(),
                to = next.as_str(),
                "consent changed"
            );
            self.consent = next;
            self.metrics.set_consent(next);
        } else if self.buffer.consent()?.is_none() {
            self.buffer.set_consent(next)?;
        }
        if self.consent.permits(Use::Measure) && self.readers.is_none() {
            self.start_readers();
        }
        if self.consent != ConsentState::Revoked {
            return Ok(None);
        }
        if let Some(readers) = self.readers.take() {
            readers.stop();
        }
        let discarded = self.buffer.discard_pending()?;
        self.metrics.buffered.set(0);
        self.metrics.set_aside.clear();
        tracing::warn!(
            discarded,
            "consent revoked: measurements not yet sent are deleted and this device stops for good"
        );
        Ok(Some(Stopped::ConsentRevoked))
    }

    fn start_readers(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = self
            .config
            .meters
            .iter()
            .zip(&self.feeds)
            .map(|(meter, feed)| {
                let labels = MeterLabels {
                    meter: meter.uuid.clone(),
                };
                let counters = ReaderCounters {
                    telegrams: self.metrics.telegrams.get_or_create(&labels).clone(),
                    parser_failures: self.metrics.parser_failures.get_or_create(&labels).clone(),
                };
                reader::spawn(
                    meter.clone(),
                    self.components.parser.clone(),
                    feed.clone(),
                    counters,
                    stop.clone(),
                )
            })
            .collect();
        self.readers = Some(Readers { stop, threads });
    }

    /// Whether the clock is plausibly set now; logs and reports each change.
    fn clock_is_set(&mut self) -> bool {
        let verdict = clock::check(SystemTime::now(), clock::built_at(), self.last_measured);
        let ok = verdict.is_ok();
        if self.clock_ok != Some(ok) {
            match &verdict {
                Err(error) => {
                    tracing::warn!(%error, "the clock is not set: nothing is measured until it is")
                }
                Ok(()) if self.clock_ok.is_some() => {
                    tracing::info!("the clock is set: measuring again")
                }
                Ok(()) => {}
            }
            self.clock_ok = Some(ok);
            self.metrics.clock_plausible.set(i64::from(ok));
        }
        ok
    }

    /// One measurement per meter that delivered a new telegram since the last cycle.
    fn measure(&mut self) -> anyhow::Result<()> {
        if !self.consent.permits(Use::Measure) {
            return Ok(());
        }
        if !self.clock_is_set() {
            return Ok(());
        }
        // Every new telegram arrived after the previous cycle, so after every measurement
        // taken so far (meters of one cycle are not compared with each other).
        let floor = self.last_measured;
        for (i, meter) in self.config.meters.iter().enumerate() {
            let Some(latest) = self.feeds[i].latest() else {
                tracing::warn!(meter = %meter.uuid, "no telegram from this meter yet");
                continue;
            };
            if latest.sequence == self.measured[i] {
                tracing::warn!(meter = %meter.uuid, "no new telegram since the last measurement");
                continue;
            }
            self.measured[i] = latest.sequence;
            let locked = !latest.missing.is_empty();
            if locked && !self.locked[i] {
                tracing::warn!(meter = %meter.uuid, model = meter.model.as_deref().unwrap_or("unknown"), missing = ?latest.missing, "meter is locked: it needs its PIN (wattlet meter unlock)");
            }
            self.locked[i] = locked;
            self.metrics
                .locked
                .get_or_create(&MeterLabels {
                    meter: meter.uuid.clone(),
                })
                .set(i64::from(locked));
            if latest.values.is_empty() {
                tracing::warn!(meter = %meter.uuid, missing = ?latest.missing, "telegram without any reading of interest");
                continue;
            }
            // A telegram that arrived before the clock was set carries a wrong time.
            if let Err(error) = clock::check(latest.received_at, clock::built_at(), floor) {
                tracing::warn!(meter = %meter.uuid, %error, "telegram stamped by an unset clock: not measured");
                continue;
            }
            let measurement = Measurement {
                uuid: uuid::Uuid::new_v4().to_string(),
                meter: meter.uuid.clone(),
                measured_at: rfc3339(latest.received_at),
                values: latest.values,
            };
            self.buffer.insert(&measurement)?;
            self.last_measured = self.last_measured.max(Some(latest.received_at));
            self.metrics
                .measurements
                .get_or_create(&MeterLabels {
                    meter: meter.uuid.clone(),
                })
                .inc();
            self.metrics.buffered.inc();
            self.metrics
                .last_measurement
                .set(unix_seconds(latest.received_at));
            tracing::info!(meter = %meter.uuid, uuid = %measurement.uuid, at = %measurement.measured_at, "measured");
        }
        Ok(())
    }

    /// Sends the buffer in batches, deleting exactly what the cloud acknowledged, then reports
    /// the device's status.
    async fn report(&mut self) -> anyhow::Result<Option<Stopped>> {
        if !self.consent.permits(Use::Upload) {
            return Ok(None);
        }
        loop {
            // Each upload may take its full time limit: the loop is alive between them.
            self.service.alive();
            let batch = self.buffer.pending(MAX_BATCH)?;
            if batch.is_empty() {
                break;
            }
            let started = std::time::Instant::now();
            let result = self.components.uplink.upload(&batch).await?;
            self.metrics
                .upload_duration
                .observe(started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(outcome) if outcome.refused.is_empty() => "acknowledged",
                Ok(_) => "set_aside",
                Err(error) if error.is_retryable() => "failed",
                Err(_) => "refused",
            };
            self.metrics
                .uploads
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            match result {
                Ok(outcome) => {
                    let settled = self.buffer.settle(
                        &outcome.acknowledged,
                        &outcome.refused,
                        &rfc3339(SystemTime::now()),
                    )?;
                    let meters: HashMap<&str, &str> = batch
                        .iter()
                        .map(|m| (m.uuid.as_str(), m.meter.as_str()))
                        .collect();
                    for uuid in &outcome.acknowledged {
                        if let Some(meter) = meters.get(uuid.as_str()) {
                            self.delivering.insert((*meter).to_owned());
                        }
                    }
                    // One line per meter and code, not per measurement.
                    let mut refused: BTreeMap<(&str, &str), (usize, &str)> = BTreeMap::new();
                    for refusal in &outcome.refused {
                        let meter = meters.get(refusal.uuid.as_str()).copied().unwrap_or("?");
                        let code = refusal.code.map_or("unknown", RefusalCode::as_str);
                        refused
                            .entry((meter, code))
                            .or_insert((0, &refusal.message))
                            .0 += 1;
                    }
                    for ((meter, code), (count, message)) in refused {
                        tracing::warn!(
                            meter,
                            code,
                            count,
                            example = message,
                            "the cloud refused these measurements: set aside, no longer sent"
                        );
                    }
                    self.metrics.uploaded.inc_by(settled.deleted as u64);
                    self.metrics
                        .buffered
                        .set(i64::try_from(self.buffer.pending_count()?).unwrap_or(i64::MAX));
                    self.metrics.set_set_aside(&self.buffer.set_aside()?);
                    self.metrics
                        .last_upload
                        .set(unix_seconds(SystemTime::now()));
                    tracing::info!(
                        sent = batch.len(),
                        acknowledged = settled.deleted,
                        set_aside = settled.set_aside,
                        "uploaded"
                    );
                    if settled.deleted + settled.set_aside == 0
                        || (outcome.refused.is_empty() && outcome.acknowledged.len() < batch.len())
                    {
                        // Nothing moved, or the cloud kept some back: they stay buffered for
                        // the next cycle. (After a refusal of some, the others go again now.)
                        break;
                    }
                }
                Err(UplinkError::Refused(refusal))
                    if refusal.is(RefusalCode::ConsentNotGranted)
                        || refusal.is(RefusalCode::ConsentRevoked) =>
                {
                    tracing::warn!(%refusal, "the cloud refused the upload for lack of consent");
                    return self.refresh_consent().await;
                }
                Err(error) => {
                    tracing::warn!(%error, pending = batch.len(), "upload failed; measurements stay buffered");
                    return Ok(None);
                }
            }
        }
        self.service.alive();
        let status = self.status()?;
        if let Err(error) = self.components.uplink.report_status(&status).await? {
            tracing::warn!(%error, "cannot report the device status");
        }
        Ok(None)
    }

    fn status(&self) -> anyhow::Result<DeviceStatus> {
        let set_aside = self.buffer.set_aside()?;
        // A meter the cloud does not know as this device's is left out of the meter states
        // (the cloud would refuse the whole report), unless it delivered since.
        let unknown: HashSet<&str> = set_aside
            .iter()
            .filter(|s| {
                s.code == Some(RefusalCode::MeterNotWired) && !self.delivering.contains(&s.meter)
            })
            .map(|s| s.meter.as_str())
            .collect();
        let meters = self
            .config
            .meters
            .iter()
            .zip(&self.feeds)
            .filter(|(meter, _)| !unknown.contains(meter.uuid.as_str()))
            .map(|(meter, feed)| {
                let missing = feed.latest().map(|l| l.missing).unwrap_or_default();
                MeterStatus {
                    uuid: meter.uuid.clone(),
                    locked: !missing.is_empty(),
                    missing,
                }
            })
            .collect();
        Ok(DeviceStatus {
            components: self.components.versions.clone(),
            last_measurement: self.buffer.last_measurement()?,
            meters,
            set_aside,
            clock_plausible: clock::check(SystemTime::now(), clock::built_at(), self.last_measured)
                .is_ok(),
        })
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T16:00:00.250Z`: measurements of one
/// meter stay in order even when cycles are shorter than a second (as in tests). Never panics
/// (see [`clock::show`]; a measurement is only stamped by a plausible clock).
pub fn rfc3339(time: SystemTime) -> String {
    clock::show(time)
}
