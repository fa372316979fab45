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
//!   Then the device reports its status and health (uptime, buffer depth, free disk, clock,
//!   per meter the last reading and probe statistics); when the answer says an administrator
//!   asked for diagnostics, it uploads a bundle (recent log lines, configuration without
//!   secrets, probe statistics, skipped ranges; never readings).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use anyhow::Context;
use tokio::time::{Instant, MissedTickBehavior};
use wasmtime::Engine;

use wattlet_runtime::meter::ParserComponent;
use wattlet_survey::measurement::MAX_BATCH;
use wattlet_survey::{ConsentState, Measurement, RefusalCode, Use};

use crate::buffer::Buffer;
use crate::clock;
use crate::config::EdgeConfig;
use crate::logring;
use crate::metrics::{EdgeMetrics, MeterLabels, OutcomeLabels, unix_seconds};
use crate::reader::{self, MeterFeed, ReaderCounters};
use crate::service::ServiceManager;
use crate::update::machine::Outcome;
use crate::update::slots::Source;
use crate::update::{Admission, Agent, Applied, Kind, agent};
use crate::uplink::{
    BufferDepth, DeviceStatus, DiagnosticsBundle, MeterStatus, ProbeStats, SkippedRange,
    UpdateState, Uplink, UplinkError,
};

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
    /// The update agent: which installed version runs, and new ones from the repository.
    pub agent: Agent,
    tls: Arc<rustls::ClientConfig>,
    cloud: String,
}

impl EdgeComponents {
    /// Loads the parser and upload components — the installed versions the update agent
    /// resolves ([`crate::update::slots::resolve`]), else the shipped ones from `dir` (or the
    /// default search path) — and the device identity for the upload component's TLS.
    pub fn load(engine: &Engine, config: &EdgeConfig, dir: Option<&Path>) -> anyhow::Result<Self> {
        let tls = Arc::new(
            wattlet_tls::client_tls_config(
                &config.identity.certificate,
                &config.identity.key,
                &config.identity.cloud_ca,
            )
            .context("cannot load the device identity")?,
        );
        let agent = Agent::new(
            engine,
            &config.state_dir,
            config.updates.clone(),
            Some(tls.clone()),
            dir,
        )?;
        // Resolving counts a start for a trial: once per component and start.
        let (parser, parser_version) = load_parser(&agent, true)?;
        let (uplink, upload_version) = load_uplink(&agent, &config.cloud, &tls, true)?;
        Ok(EdgeComponents {
            parser: Arc::new(parser),
            uplink,
            versions: vec![
                (Kind::MeterParser.name().to_owned(), parser_version),
                (Kind::Upload.name().to_owned(), upload_version),
            ],
            agent,
            tls,
            cloud: config.cloud.clone(),
        })
    }

    /// Loads `kind` again as the agent resolves it now (after a switch, commit or roll back).
    pub fn reload(&mut self, kind: Kind) -> anyhow::Result<()> {
        let version = match kind {
            Kind::MeterParser => {
                let (parser, version) = load_parser(&self.agent, false)?;
                self.parser = Arc::new(parser);
                version
            }
            Kind::Upload => {
                let (uplink, version) = load_uplink(&self.agent, &self.cloud, &self.tls, false)?;
                self.uplink = uplink;
                version
            }
        };
        self.versions.retain(|(name, _)| name != kind.name());
        self.versions.push((kind.name().to_owned(), version));
        self.versions.sort();
        Ok(())
    }
}

/// The component of `kind` the agent resolves, loaded; the shipped one if an installed
/// version cannot be loaded after all. Returns it with its version for the status report.
fn load_resolved<T>(
    agent: &Agent,
    kind: Kind,
    start: bool,
    make: impl Fn(&wasmtime::component::Component) -> anyhow::Result<T>,
) -> anyhow::Result<(T, String)> {
    let resolved = if start {
        agent.resolve(kind)
    } else {
        agent.current(kind)
    };
    if let Source::Slot(installed, _) = &resolved.source {
        let loaded = resolved
            .source
            .load(agent.engine(), Path::new(""))
            .and_then(|component| make(&component));
        match loaded {
            Ok(value) => {
                tracing::info!(component = kind.name(), version = %installed.version, slot = installed.slot.dir_name(), "running an installed version");
                let version = format!(
                    "{}+sha256.{}",
                    installed.version,
                    installed.wasm_sha256.get(..12).unwrap_or_default()
                );
                return Ok((value, version));
            }
            Err(error) => {
                tracing::error!(component = kind.name(), version = %installed.version, error = format!("{error:#}"), "installed version does not load; running the shipped one")
            }
        }
    }
    let path = agent.shipped(kind)?;
    let component = Source::Shipped.load(agent.engine(), &path)?;
    Ok((make(&component)?, component_version(&path)?))
}

fn load_parser(agent: &Agent, start: bool) -> anyhow::Result<(ParserComponent, String)> {
    load_resolved(agent, Kind::MeterParser, start, |component| {
        ParserComponent::from_component(agent.engine(), component)
    })
}

/// The upload component that runs now (a trial is not counted as a start), for a command
/// that asks the cloud something outside the daemon.
pub fn current_uplink(
    agent: &Agent,
    cloud: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<Uplink> {
    Ok(load_uplink(agent, cloud, tls, false)?.0)
}

fn load_uplink(
    agent: &Agent,
    cloud: &str,
    tls: &Arc<rustls::ClientConfig>,
    start: bool,
) -> anyhow::Result<(Uplink, String)> {
    load_resolved(agent, Kind::Upload, start, |component| {
        Uplink::from_component(agent.engine(), component, cloud, tls.clone())
    })
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
    /// When the daemon started (uptime in the status report).
    started: std::time::Instant,
    /// systemd: readiness and the watchdog, fed only by the main loop.
    service: ServiceManager,
    /// The update outcome last reported to the cloud's rollouts, per component.
    reported_outcomes: HashMap<Kind, Outcome>,
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
            started: std::time::Instant::now(),
            service: ServiceManager::from_env(),
            reported_outcomes: HashMap::new(),
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
        // The update agent polls the repository when configured (the first poll after one
        // period: a device that restarts in a loop does not hammer the repository).
        let updating = self.config.updates.is_some();
        let poll_every = self
            .config
            .updates
            .as_ref()
            .map_or(std::time::Duration::from_secs(3600), |u| u.poll_every);
        let mut update_tick = tokio::time::interval_at(start + poll_every, poll_every);
        // The watchdog is fed here, in the loop, and nowhere else (a thread of its own would
        // feed it while the loop hangs). Without a watchdog the tick is never taken.
        let watchdog_every = self.service.watchdog_every();
        let mut watchdog_tick =
            tokio::time::interval(watchdog_every.unwrap_or(std::time::Duration::from_secs(3600)));
        for tick in [
            &mut consent_tick,
            &mut measure_tick,
            &mut report_tick,
            &mut update_tick,
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
                _ = update_tick.tick(), if updating => self.poll_updates().await,
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
                    skipped_bytes: self.metrics.skipped_bytes.get_or_create(&labels).clone(),
                    skipped_frames: self.metrics.skipped_frames.get_or_create(&labels).clone(),
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

    /// Checks the repository for every component and installs what it finds and the cloud's
    /// staged rollouts admit. A failure is logged and the running components go on.
    async fn poll_updates(&mut self) -> anyhow::Result<Option<Stopped>> {
        let Some(settings) = self.components.agent.settings() else {
            return Ok(None);
        };
        let admissions = match agent::admissions(&self.components.uplink, settings).await {
            Ok(admissions) => admissions,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "no update installed this time"
                );
                return Ok(None);
            }
        };
        for (kind, admission) in admissions {
            if admission == Admission::Nothing {
                tracing::debug!(component = kind.name(), "no rollout admits this device");
            }
            let applied = match self.components.agent.apply(kind, &admission).await {
                Ok(applied) => applied,
                Err(error) => {
                    tracing::warn!(
                        component = kind.name(),
                        error = format!("{error:#}"),
                        "update check failed; running on"
                    );
                    continue;
                }
            };
            match applied {
                Applied::UpToDate | Applied::Waiting(_) => continue,
                Applied::Committed(version) => {
                    tracing::info!(component = kind.name(), %version, "update committed")
                }
                Applied::OnTrial(version) => {
                    tracing::info!(component = kind.name(), %version, "update switched to; on trial")
                }
                Applied::Refused { version, reason } => {
                    tracing::warn!(component = kind.name(), %version, %reason, "update refused");
                    continue;
                }
                Applied::RolledBack { version, reason } => {
                    tracing::warn!(component = kind.name(), %version, %reason, "update rolled back");
                    continue;
                }
            }
            self.components.reload(kind)?;
            // Reader threads hold the parser they started with.
            if kind == Kind::MeterParser
                && let Some(readers) = self.readers.take()
            {
                readers.stop();
                self.start_readers();
            }
        }
        self.report_update_outcomes().await?;
        Ok(None)
    }

    /// Sends the buffer in batches, deleting exactly what the cloud acknowledged, then reports
    /// the device's status.
    async fn report(&mut self) -> anyhow::Result<Option<Stopped>> {
        if !self.consent.permits(Use::Upload) {
            return Ok(None);
        }
        // An upload component on trial past its deadline: back to the committed one.
        if self.components.agent.tick(Kind::Upload)?.is_some() {
            self.components.reload(Kind::Upload)?;
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
                    if !outcome.acknowledged.is_empty()
                        && let Some(version) = self.components.agent.upload_acknowledged()?
                    {
                        tracing::info!(component = "upload", %version, "update committed: first upload acknowledged");
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
        match self.components.uplink.report_status(&status).await? {
            Ok(None) => {}
            Ok(Some(request)) => {
                tracing::info!(%request, "an administrator asked for diagnostics");
                let bundle = self.diagnostics();
                match self
                    .components
                    .uplink
                    .upload_diagnostics(&request, &bundle)
                    .await?
                {
                    Ok(()) => tracing::info!(%request, "diagnostics uploaded"),
                    // Asked again in the answer to the next report.
                    Err(error) => tracing::warn!(%error, %request, "cannot upload diagnostics"),
                }
            }
            Err(error) => tracing::warn!(%error, "cannot report the device status"),
        }
        Ok(None)
    }

    /// Tells the cloud's rollouts how each update ended, once per outcome and start (the
    /// cloud keeps a device's latest outcome per rollout, so a repeat after a restart is
    /// harmless). Without the rollout gate there is no rollout to tell. Outcomes are the
    /// device's, not the household's: they go whatever the consent (a roll back found by the
    /// trial's deadline goes at the next poll).
    async fn report_update_outcomes(&mut self) -> anyhow::Result<()> {
        if !self
            .components
            .agent
            .settings()
            .is_some_and(|settings| settings.rollouts)
        {
            return Ok(());
        }
        for kind in Kind::ALL {
            let last = match self.components.agent.store().load(kind) {
                Ok(state) => state.last,
                // The agent's own reads say why; the daemon goes on measuring.
                Err(error) => {
                    tracing::warn!(
                        component = kind.name(),
                        error = format!("{error:#}"),
                        "cannot read the update state"
                    );
                    None
                }
            };
            let Some(last) = last else {
                continue;
            };
            if self.reported_outcomes.get(&kind) == Some(&last) {
                continue;
            }
            let report = agent::outcome_report(kind, &last);
            match self.components.uplink.report_update(&report).await? {
                Ok(()) => {
                    tracing::info!(
                        component = kind.name(),
                        version = report.version,
                        committed = report.committed,
                        "update outcome reported"
                    );
                }
                // Installed before its rollout existed, or the rollout was deleted.
                Err(UplinkError::Refused(refusal)) if refusal.is(RefusalCode::NotFound) => {
                    tracing::debug!(component = kind.name(), %refusal, "no rollout for this version");
                }
                Err(error) => {
                    tracing::warn!(component = kind.name(), %error, "cannot report the update outcome");
                    continue;
                }
            }
            self.reported_outcomes.insert(kind, last);
        }
        Ok(())
    }

    /// What the probe reader of `meter` counted.
    fn probe_stats(&self, meter: &str) -> ProbeStats {
        let labels = MeterLabels {
            meter: meter.to_owned(),
        };
        ProbeStats {
            telegrams: self.metrics.telegrams.get_or_create(&labels).get(),
            parser_failures: self.metrics.parser_failures.get_or_create(&labels).get(),
            skipped_bytes: self.metrics.skipped_bytes.get_or_create(&labels).get(),
            skipped_frames: self.metrics.skipped_frames.get_or_create(&labels).get(),
        }
    }

    /// A diagnostics bundle: recent log lines, the configuration without secrets (paths, not
    /// contents), probe statistics and the last skipped ranges. Never readings.
    fn diagnostics(&self) -> DiagnosticsBundle {
        let config = &self.config;
        let meters: Vec<_> = config
            .meters
            .iter()
            .map(|m| {
                serde_json::json!({
                    "uuid": m.uuid,
                    "device": m.device.display().to_string(),
                    "protocol": format!("{:?}", m.protocol),
                    "baud": m.baud,
                    "framing": format!("{:?}", m.framing),
                    "model": m.model,
                    "expected": m.expected,
                })
            })
            .collect();
        let shown = serde_json::json!({
            "cloud": config.cloud,
            "state_dir": config.state_dir.display().to_string(),
            "identity": {
                "certificate": config.identity.certificate.display().to_string(),
                "key": config.identity.key.display().to_string(),
                "cloud_ca": config.identity.cloud_ca.display().to_string(),
            },
            "cycles": {
                "measure_s": config.measure_every.as_secs_f64(),
                "report_s": config.report_every.as_secs_f64(),
                "consent_s": config.consent_every.as_secs_f64(),
            },
            "journal": config.journal,
            "metrics_listen": config.metrics_listen.map(|a| a.to_string()),
            "meters": meters,
            "consent": self.consent.as_str(),
        });
        let mut skipped = Vec::new();
        for (meter, feed) in config.meters.iter().zip(&self.feeds) {
            skipped.extend(feed.skipped().into_iter().map(|s| SkippedRange {
                meter: meter.uuid.clone(),
                at: rfc3339(s.at),
                offset: s.offset,
                length: s.length,
                reason: s.reason.to_owned(),
            }));
        }
        DiagnosticsBundle {
            logs: logring::recent(),
            config: shown.to_string(),
            probes: config
                .meters
                .iter()
                .map(|m| (m.uuid.clone(), self.probe_stats(&m.uuid)))
                .collect(),
            skipped,
        }
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
                let latest = feed.latest();
                let last_reading = latest.as_ref().map(|l| rfc3339(l.received_at));
                let missing = latest.map(|l| l.missing).unwrap_or_default();
                MeterStatus {
                    uuid: meter.uuid.clone(),
                    locked: !missing.is_empty(),
                    missing,
                    last_reading,
                    probe: Some(self.probe_stats(&meter.uuid)),
                }
            })
            .collect();
        let now = SystemTime::now();
        let clock_plausible = clock::check(now, clock::built_at(), self.last_measured).is_ok();
        let buffer = BufferDepth {
            unsent: self.buffer.pending_count()?,
            set_aside: set_aside.iter().map(|s| s.count).sum(),
        };
        Ok(DeviceStatus {
            components: self.components.versions.clone(),
            last_measurement: self.buffer.last_measurement()?,
            meters,
            set_aside,
            clock_plausible,
            uptime_s: Some(self.started.elapsed().as_secs()),
            buffer: Some(buffer),
            free_disk_bytes: free_disk(&self.config.state_dir),
            // An implausible clock's time is still what the cloud wants to see.
            device_time: Some(rfc3339(now)),
            update: update_report(&self.components.agent),
        })
    }
}

/// The update agent's state for the status report, in the report's words: an update in
/// progress first, else the latest outcome (a refusal or roll-back with its reason). `None`
/// before any update or when the state cannot be read (the agent logs that itself).
fn update_report(agent: &Agent) -> Option<UpdateState> {
    use crate::update::machine::Phase;
    let states: Vec<(Kind, crate::update::machine::State)> = Kind::ALL
        .into_iter()
        .filter_map(|kind| agent.store().load(kind).ok().map(|state| (kind, state)))
        .collect();
    let report = |kind: Kind, state: &str, from, to, reason: Option<String>| {
        Some(UpdateState {
            state: state.to_owned(),
            component: Some(kind.name().to_owned()),
            from,
            to,
            // The cloud takes at most 512 bytes of reason: a longer one would refuse the report.
            reason: reason.map(|r| truncate(r, 512)),
        })
    };
    for (kind, state) in &states {
        let from = state.committed.as_ref().map(|c| c.version.to_string());
        match &state.phase {
            Phase::Idle => {}
            Phase::Staging { version, .. } => {
                return report(*kind, "downloading", from, Some(version.to_string()), None);
            }
            Phase::Staged { candidate } => {
                return report(
                    *kind,
                    "staged",
                    from,
                    Some(candidate.version.to_string()),
                    None,
                );
            }
            Phase::Trial { candidate, .. } => {
                return report(
                    *kind,
                    "applying",
                    from,
                    Some(candidate.version.to_string()),
                    None,
                );
            }
        }
    }
    states.iter().find_map(|(kind, state)| {
        let to = |v: &semver::Version| Some(v.to_string());
        match state.last.as_ref()? {
            Outcome::Committed { version } => report(*kind, "succeeded", None, to(version), None),
            Outcome::Refused { version, reason } => {
                report(*kind, "failed", None, to(version), Some(reason.clone()))
            }
            Outcome::RolledBack { version, reason } => report(
                *kind,
                "rolled_back",
                None,
                to(version),
                Some(reason.clone()),
            ),
        }
    })
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Free bytes for an unprivileged user in the file system holding `dir`; `None` when unknown.
fn free_disk(dir: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T16:00:00.250Z`: measurements of one
/// meter stay in order even when cycles are shorter than a second (as in tests). Never panics
/// (see [`clock::show`]; a measurement is only stamped by a plausible clock).
pub fn rfc3339(time: SystemTime) -> String {
    clock::show(time)
}
