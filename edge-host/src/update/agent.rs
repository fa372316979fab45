//! One update from the repository to a commit or a roll back.
//!
//! `check` → `stage` (inactive slot: `.wasm`, precompiled `.cwasm`, link check with the host's
//! real linker) → `switch` (the state file names the new slot: a trial) → health check →
//! `commit` (recorded as the version floor) or `roll_back` (with the reason, kept in the state
//! for `wattlet-edge update status` and the log). The parser's health check runs at once; the
//! upload's is its first acknowledged batch, which the daemon reports with
//! [`Agent::upload_acknowledged`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use url::Url;
use wasmtime::Engine;
use wattlet_runtime::meter::{MeterDecoder, NativeDecoder, ParserComponent};
use wattlet_updates::{Update, Verifier};

use super::Kind;
use super::health;
use super::machine::{Event, Outcome, Phase, State};
use super::slots::{self, Resolved, Source, Store};
use crate::uplink::{RolloutAdmission, UpdateOutcome, Uplink};

/// The `[updates]` section of the device configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSettings {
    /// The repository: `https://…` over the device's mutual-TLS link, or `file://…` (a local
    /// directory, e.g. for a device without network).
    pub repository: Url,
    /// The root metadata the device trusts first (`1.root.json`, shipped with it).
    pub root: PathBuf,
    pub poll_every: Duration,
    /// How long a switched component has to prove healthy.
    pub trial_deadline: Duration,
    /// Restarts a trial may take before it is rolled back.
    pub max_tries: u32,
    /// Install only what the cloud's staged rollouts admit this device to (`[updates]
    /// rollouts`, default true); false: the newest signed version.
    pub rollouts: bool,
}

/// Which versions of a component the device may install now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// No rollout gate: the newest signed version this host runs.
    Any,
    /// A staged rollout admits the device up to this version.
    UpTo(semver::Version),
    /// No rollout admits the device: nothing is installed.
    Nothing,
}

/// How an apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// No newer version this host can run.
    UpToDate,
    Committed(semver::Version),
    /// Switched to now; healthy once the daemon's first upload with it is acknowledged.
    OnTrial(semver::Version),
    /// An upload switched to before, still waiting for its first acknowledged upload.
    Waiting(semver::Version),
    /// Not switched to: it does not link, or its files could not be written.
    Refused {
        version: semver::Version,
        reason: String,
    },
    RolledBack {
        version: semver::Version,
        reason: String,
    },
}

pub struct Agent {
    engine: Engine,
    store: Store,
    verifier: Option<Verifier>,
    settings: Option<UpdateSettings>,
    /// Where the shipped components are found (`--components DIR`, else the default search).
    shipped_dir: Option<PathBuf>,
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Agent {
    /// The agent for the device with state in `state_dir`. Without `settings` it only resolves
    /// what is installed; checking needs the repository. `tls` is the device's mutual-TLS
    /// client configuration, for an `https://` repository.
    pub fn new(
        engine: &Engine,
        state_dir: &Path,
        settings: Option<UpdateSettings>,
        tls: Option<Arc<rustls::ClientConfig>>,
        shipped_dir: Option<&Path>,
    ) -> anyhow::Result<Agent> {
        let store = Store::new(state_dir);
        let verifier = match &settings {
            None => None,
            Some(settings) => Some(verifier(&store, settings, tls)?),
        };
        Ok(Agent {
            engine: engine.clone(),
            store,
            verifier,
            settings,
            shipped_dir: shipped_dir.map(Path::to_path_buf),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn settings(&self) -> Option<&UpdateSettings> {
        self.settings.as_ref()
    }

    /// What the update checks fetched from the repository so far (`None` without settings).
    pub fn fetched(&self) -> Option<wattlet_updates::Fetched> {
        self.verifier.as_ref().map(Verifier::fetched)
    }

    fn max_tries(&self) -> u32 {
        self.settings.as_ref().map_or(3, |s| s.max_tries)
    }

    fn verifier(&self) -> anyhow::Result<&Verifier> {
        self.verifier
            .as_ref()
            .context("no [updates] section in the device configuration: no repository to check")
    }

    /// The shipped component's file.
    pub fn shipped(&self, kind: Kind) -> anyhow::Result<PathBuf> {
        Ok(wattlet_runtime::locate::locate(
            kind.package(),
            self.shipped_dir.as_deref(),
        )?)
    }

    /// Which component runs after a (re)start ([`slots::resolve`]), a parser trial decided at
    /// once by its health check.
    pub fn resolve(&self, kind: Kind) -> Resolved {
        self.decide(kind, true)
    }

    /// What runs now, without counting a start (after an update while running).
    pub fn current(&self, kind: Kind) -> Resolved {
        self.decide(kind, false)
    }

    fn decide(&self, kind: Kind, start: bool) -> Resolved {
        let resolved = if start {
            slots::resolve(&self.store, kind, unix_now(), self.max_tries())
        } else {
            slots::current(&self.store, kind, unix_now())
        };
        if kind == Kind::MeterParser && matches!(resolved.state.phase, Phase::Trial { .. }) {
            match self.check_parser(&resolved.state) {
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "cannot decide the parser's trial"
                    )
                }
            }
            return slots::current(&self.store, kind, unix_now());
        }
        // A commit whose version floor was not recorded before a crash.
        if let (Some(committed), Some(verifier)) = (&resolved.state.committed, &self.verifier)
            && let Err(error) = verifier.record_installed(kind.name(), &committed.version)
        {
            tracing::warn!(%error, "cannot record the installed version");
        }
        resolved
    }

    /// Verifies the repository and returns the newest version of `kind` newer than the
    /// committed one that `admission` allows, if any.
    pub async fn check(&self, kind: Kind, admission: &Admission) -> anyhow::Result<Option<Update>> {
        let ceiling = match admission {
            Admission::Any => None,
            Admission::UpTo(version) => Some(version),
            Admission::Nothing => return Ok(None),
        };
        let state = self.store.load(kind)?;
        let update = self
            .verifier()?
            .check_up_to(kind.name(), state.floor(), ceiling)
            .await
            .with_context(|| format!("the update repository does not verify ({})", kind.name()))?;
        Ok(update)
    }

    /// Checks, and installs what it finds within `admission`: staged, switched, and (a
    /// parser) health checked and committed or rolled back.
    pub async fn apply(&self, kind: Kind, admission: &Admission) -> anyhow::Result<Applied> {
        let mut state = self.store.load(kind)?;
        match &state.phase {
            // An upload on trial waits for its first acknowledged batch.
            Phase::Trial { candidate, .. } if kind == Kind::Upload => {
                return Ok(Applied::Waiting(candidate.version.clone()));
            }
            Phase::Trial { .. } => state = self.check_parser(&state)?,
            // What a crash left half staged is staged again.
            Phase::Staging { .. } | Phase::Staged { .. } => {
                state = self.store.advance(kind, &state, Event::Abandon)?
            }
            Phase::Idle => {}
        }
        tracing::info!(component = kind.name(), phase = "check", "update phase");
        let Some(update) = self.check(kind, admission).await? else {
            return Ok(Applied::UpToDate);
        };
        let version = update.meta.version.clone();
        // A version refused or rolled back here is not tried again at every poll; a newer
        // one is.
        if let Some(
            Outcome::Refused { version: bad, .. } | Outcome::RolledBack { version: bad, .. },
        ) = &state.last
            && *bad == version
        {
            tracing::debug!(component = kind.name(), %version, "newest version was rejected before; waiting for a newer one");
            return Ok(Applied::UpToDate);
        }
        tracing::info!(component = kind.name(), %version, "update found");
        state = self.stage(kind, &state, &update)?;
        if let Some(Outcome::Refused { reason, .. }) = &state.last
            && !matches!(state.phase, Phase::Staged { .. })
        {
            return Ok(Applied::Refused {
                version,
                reason: reason.clone(),
            });
        }
        state = self.switch(kind, &state)?;
        if kind == Kind::Upload {
            return Ok(Applied::OnTrial(version));
        }
        state = self.check_parser(&state)?;
        Ok(match state.last {
            Some(Outcome::Committed { version }) => Applied::Committed(version),
            Some(Outcome::RolledBack { version, reason }) => {
                Applied::RolledBack { version, reason }
            }
            other => anyhow::bail!("the parser's trial ended in {other:?}"),
        })
    }

    /// Writes `update` into the inactive slot, precompiles and link-checks it. A failure is
    /// recorded as refused (nothing was switched) and returned in the state.
    pub fn stage(&self, kind: Kind, state: &State, update: &Update) -> anyhow::Result<State> {
        let version = update.meta.version.clone();
        let state = self.store.advance(
            kind,
            state,
            Event::Stage {
                version: version.clone(),
            },
        )?;
        let Phase::Staging { slot, .. } = state.phase else {
            anyhow::bail!("staging did not start");
        };
        tracing::info!(component = kind.name(), %version, slot = slot.dir_name(), phase = "staging", "update phase");
        let staged = (|| {
            if !kind.worlds().contains(&update.meta.world.as_str()) {
                anyhow::bail!(
                    "it exports {}, not {}",
                    update.meta.world,
                    kind.worlds().join(" or ")
                );
            }
            // Compiled through the engine's on-disk cache (`wattlet_runtime::engine`), so a
            // staging interrupted by a power cut compiles again in milliseconds; `serialize`
            // gives what `Engine::precompile_component` would, for this engine.
            let cwasm = wasmtime::component::Component::new(&self.engine, &update.bytes)
                .and_then(|component| component.serialize())
                .map_err(anyhow::Error::from)
                .context("it does not compile")?;
            tracing::info!(component = kind.name(), %version, phase = "precompiled", "update phase");
            let installed = self
                .store
                .write_slot(kind, slot, &version, &update.bytes, &cwasm)?;
            tracing::info!(component = kind.name(), %version, phase = "written", "update phase");
            let files = self.store.verify(kind, &installed)?;
            let component = slots::deserialize(&self.engine, &files.cwasm)?;
            link_check(&self.engine, kind, &component)?;
            tracing::info!(component = kind.name(), %version, phase = "linked", "update phase");
            Ok(installed)
        })();
        match staged {
            Ok(installed) => self.store.advance(kind, &state, Event::Staged(installed)),
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::warn!(component = kind.name(), %version, %reason, "update refused before the switch");
                self.store.advance(kind, &state, Event::Refused(reason))
            }
        }
    }

    /// Switches to the staged version: from now on it is what runs, on trial.
    pub fn switch(&self, kind: Kind, state: &State) -> anyhow::Result<State> {
        let now = unix_now();
        let deadline = self
            .settings
            .as_ref()
            .map_or(Duration::from_secs(600), |s| s.trial_deadline);
        let state = self.store.advance(
            kind,
            state,
            Event::Switch {
                now,
                deadline: now.saturating_add(deadline.as_secs()),
            },
        )?;
        tracing::info!(component = kind.name(), phase = "switched", "update phase");
        Ok(state)
    }

    /// Commits the trial: the version floor moves to it.
    pub fn commit(&self, kind: Kind, state: &State) -> anyhow::Result<State> {
        let state = self.store.advance(kind, state, Event::Healthy)?;
        if let (Some(committed), Some(verifier)) = (&state.committed, &self.verifier) {
            verifier.record_installed(kind.name(), &committed.version)?;
        }
        if let Some(committed) = &state.committed {
            tracing::info!(component = kind.name(), version = %committed.version, phase = "committed", "update phase");
        }
        Ok(state)
    }

    pub fn roll_back(&self, kind: Kind, state: &State, reason: String) -> anyhow::Result<State> {
        tracing::warn!(component = kind.name(), %reason, phase = "rolled-back", "update rolled back");
        self.store.advance(kind, state, Event::Unhealthy(reason))
    }

    /// Decides a parser trial: golden telegrams through the candidate and the committed (or
    /// shipped) parser.
    fn check_parser(&self, state: &State) -> anyhow::Result<State> {
        let kind = Kind::MeterParser;
        let Phase::Trial { candidate, .. } = &state.phase else {
            return Ok(state.clone());
        };
        tracing::info!(version = %candidate.version, "health check: golden telegrams through the new parser");
        let new = self
            .store
            .verify(kind, candidate)
            .and_then(|files| slots::deserialize(&self.engine, &files.cwasm))
            .and_then(|component| ParserComponent::from_component(&self.engine, &component));
        let new = match new {
            Ok(new) => new,
            Err(error) => return self.roll_back(kind, state, format!("{error:#}")),
        };
        let old = self.running_parser(state);
        let options = health::options();
        let mut make_old = || -> anyhow::Result<Box<dyn MeterDecoder>> {
            Ok(match &old {
                Some(old) => Box::new(old.decoder(&options)?),
                None => Box::new(NativeDecoder::new(options.clone())),
            })
        };
        let mut make_new =
            || -> anyhow::Result<Box<dyn MeterDecoder>> { Ok(Box::new(new.decoder(&options)?)) };
        match health::compare_parsers(&mut make_old, &mut make_new) {
            Ok(()) => self.commit(kind, state),
            Err(reason) => self.roll_back(kind, state, reason),
        }
    }

    /// The parser that ran before the trial (committed, else shipped); `None` if neither
    /// loads, and the native decoder stands in.
    fn running_parser(&self, state: &State) -> Option<ParserComponent> {
        let source = match &state.committed {
            Some(committed) => match self.store.verify(Kind::MeterParser, committed) {
                Ok(files) => Source::Slot(committed.clone(), files),
                Err(_) => Source::Shipped,
            },
            None => Source::Shipped,
        };
        let shipped = self.shipped(Kind::MeterParser).ok();
        if source == Source::Shipped && shipped.is_none() {
            return None;
        }
        source
            .load(&self.engine, shipped.as_deref().unwrap_or(Path::new("")))
            .and_then(|c| ParserComponent::from_component(&self.engine, &c))
            .ok()
    }

    /// The daemon's first acknowledged upload with the upload component on trial commits it.
    pub fn upload_acknowledged(&self) -> anyhow::Result<Option<semver::Version>> {
        let state = self.store.load(Kind::Upload)?;
        if !matches!(state.phase, Phase::Trial { .. }) {
            return Ok(None);
        }
        let state = self.commit(Kind::Upload, &state)?;
        Ok(state.committed.map(|c| c.version))
    }

    /// Rolls back a trial past its deadline; returns the reason if it did.
    pub fn tick(&self, kind: Kind) -> anyhow::Result<Option<String>> {
        let state = self.store.load(kind)?;
        if !matches!(state.phase, Phase::Trial { .. }) {
            return Ok(None);
        }
        let next = self
            .store
            .advance(kind, &state, Event::Tick { now: unix_now() })?;
        Ok(match (&next.phase, next.last) {
            (Phase::Idle, Some(Outcome::RolledBack { reason, .. })) => {
                tracing::warn!(component = kind.name(), %reason, "update rolled back");
                Some(reason)
            }
            _ => None,
        })
    }
}

/// What the cloud's staged rollouts admit for `kind`: the version the newest rollout admits
/// this device to, else nothing (a version that is not semver admits nothing).
pub fn admission(kind: Kind, rollouts: &[RolloutAdmission]) -> Admission {
    rollouts
        .iter()
        .find(|r| r.component == kind.name())
        .and_then(|r| semver::Version::parse(&r.version).ok())
        .map_or(Admission::Nothing, Admission::UpTo)
}

/// Per component, what this device may install now: asked of the cloud's staged rollouts
/// when `settings.rollouts`, else anything signed. Err when the cloud cannot be asked (the
/// caller installs nothing this time).
pub async fn admissions(
    uplink: &Uplink,
    settings: &UpdateSettings,
) -> anyhow::Result<Vec<(Kind, Admission)>> {
    if !settings.rollouts {
        return Ok(Kind::ALL.map(|k| (k, Admission::Any)).to_vec());
    }
    let rollouts = uplink
        .fetch_rollouts()
        .await?
        .map_err(|e| anyhow::anyhow!("cannot ask the cloud's rollouts: {e}"))?;
    Ok(Kind::ALL.map(|k| (k, admission(k, &rollouts))).to_vec())
}

/// The report to the cloud's rollout of how an update of `kind` ended: committed, else rolled
/// back (or refused before the switch) with the reason.
pub fn outcome_report(kind: Kind, outcome: &Outcome) -> UpdateOutcome {
    let (version, committed, reason) = match outcome {
        Outcome::Committed { version } => (version, true, None),
        Outcome::Refused { version, reason } | Outcome::RolledBack { version, reason } => {
            (version, false, Some(reason.clone()))
        }
    };
    UpdateOutcome {
        component: kind.name().to_owned(),
        version: version.to_string(),
        committed,
        reason,
    }
}

/// Links `component` with the host's real linker for `kind`'s world. A parser is also
/// instantiated with a decoder (which checks the exports' types, not only their names); the
/// upload component's calls are typed at their first use, so its trial catches the rest.
pub fn link_check(
    engine: &Engine,
    kind: Kind,
    component: &wasmtime::component::Component,
) -> anyhow::Result<()> {
    match kind {
        Kind::MeterParser => ParserComponent::from_component(engine, component)?
            .decoder(&health::options())
            .map(drop)
            .context("the component does not instantiate as a parser"),
        Kind::Upload => Uplink::link_check(engine, component),
    }
}

fn verifier(
    store: &Store,
    settings: &UpdateSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Verifier> {
    let root = std::fs::read(&settings.root)
        .with_context(|| format!("cannot read the trusted root {}", settings.root.display()))?;
    let host = semver::Version::parse(env!("CARGO_PKG_VERSION")).context("host version")?;
    let verifier = Verifier::new(root, store.verifier_dir(), &settings.repository, host)?
        .build_time(
            jiff::Timestamp::try_from(crate::clock::built_at())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        );
    match settings.repository.scheme() {
        "file" => Ok(verifier),
        "https" => {
            let tls = tls.context("an https:// repository needs the device's TLS identity")?;
            Ok(verifier.transport(wattlet_updates::https::HttpsTransport::new(tls)))
        }
        other => anyhow::bail!(
            "repository {}: {other}:// is not https:// (over the device's mutual TLS) or file://",
            settings.repository
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(component: &str, version: &str) -> RolloutAdmission {
        RolloutAdmission {
            component: component.into(),
            version: version.into(),
            rollout: "r".into(),
        }
    }

    #[test]
    fn rollouts_admit_their_component_only() {
        let v = |t| semver::Version::parse(t).unwrap();
        let list = [
            rollout("upload", "1.2.0"),
            rollout("meter-parser", "nonsense"),
        ];
        assert_eq!(admission(Kind::Upload, &list), Admission::UpTo(v("1.2.0")));
        assert_eq!(admission(Kind::MeterParser, &list), Admission::Nothing);
        assert_eq!(admission(Kind::MeterParser, &[]), Admission::Nothing);
    }

    #[test]
    fn outcomes_report_committed_or_why_not() {
        let version = semver::Version::new(1, 2, 0);
        let committed = outcome_report(
            Kind::Upload,
            &Outcome::Committed {
                version: version.clone(),
            },
        );
        assert_eq!(
            (committed.component.as_str(), committed.version.as_str()),
            ("upload", "1.2.0")
        );
        assert!(committed.committed && committed.reason.is_none());
        for failed in [
            Outcome::Refused {
                version: version.clone(),
                reason: "does not link".into(),
            },
            Outcome::RolledBack {
                version: version.clone(),
                reason: "does not link".into(),
            },
        ] {
            let report = outcome_report(Kind::MeterParser, &failed);
            assert!(!report.committed);
            assert_eq!(report.reason.as_deref(), Some("does not link"));
        }
    }
}
