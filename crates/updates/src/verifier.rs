//! The device's side: verify the repository through TUF and pick the component version to
//! install.
//!
//! tough runs the TUF client workflow (root chain, timestamp, snapshot, targets, delegations;
//! signatures and thresholds, hashes, lengths, versions, expiry). This module adds what a
//! device without a real-time clock and with installed components needs around it: the trusted
//! root kept across restarts, a time floor below which expiry is not judged, and a version
//! floor per component.

use crate::publisher::dir_url;
use crate::{ComponentMeta, Error, METADATA_DIR, TARGETS_DIR};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tough::schema::{Signed, Snapshot, Targets, Timestamp as TimestampRole};
use tough::{
    ExpirationEnforcement, FilesystemTransport, IntoVec, Limits, RepositoryLoader, TargetName,
    Transport, TransportError, TransportStream,
};
use url::Url;

/// Where the device reads the time. The system clock in production; tests step it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A verified component version, ready to be staged.
#[derive(Debug, Clone)]
pub struct Update {
    /// What it is, as the release role signed it.
    pub meta: ComponentMeta,
    /// Its target name (`components/<name>/<version>.wasm`).
    pub target: String,
    /// SHA-256 of `bytes` (hex), as signed.
    pub sha256: String,
    /// The component, its length and hash checked against signed metadata.
    pub bytes: Vec<u8>,
}

/// The versions of the metadata the device trusts (from its datastore).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustedVersions {
    pub root: u64,
    pub timestamp: u64,
    pub snapshot: u64,
    pub targets: u64,
}

/// What the verifier keeps besides tough's metadata.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The time of the last successful check: the clock may not go back before it.
    time_floor: Option<Timestamp>,
    /// Per component, the newest version installed: never offered again, nor anything older.
    installed: BTreeMap<String, semver::Version>,
}

/// The device's update checker for one repository.
#[derive(Clone)]
pub struct Verifier {
    trusted_root: Vec<u8>,
    datastore: PathBuf,
    metadata_url: Url,
    targets_url: Url,
    transport: Shared,
    host_version: semver::Version,
    build_time: Timestamp,
    clock: Clock,
    limits: Limits,
    max_component_size: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("datastore", &self.datastore)
            .field("metadata_url", &self.metadata_url)
            .field("host_version", &self.host_version)
            .field("build_time", &self.build_time)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier trusting `trusted_root` (the root.json shipped with the device), keeping its
    /// state in `datastore` (created if missing; must persist across restarts), for the
    /// repository at `repository` (its `metadata/` and `targets/` are below it), on a host of
    /// version `host_version`.
    pub fn new(
        trusted_root: impl Into<Vec<u8>>,
        datastore: impl Into<PathBuf>,
        repository: &Url,
        host_version: semver::Version,
    ) -> Result<Self, Error> {
        let base = if repository.as_str().ends_with('/') {
            repository.clone()
        } else {
            Url::parse(&format!("{repository}/"))
                .map_err(|e| Error::Invalid(format!("repository URL {repository}: {e}")))?
        };
        let join = |dir: &str| {
            base.join(&format!("{dir}/"))
                .map_err(|e| Error::Invalid(format!("repository URL {base}: {e}")))
        };
        let metadata_url = join(METADATA_DIR)?;
        Ok(Verifier {
            trusted_root: trusted_root.into(),
            datastore: datastore.into(),
            transport: Shared {
                inner: Arc::new(FilesystemTransport),
                counters: Arc::default(),
                metadata_url: metadata_url.clone(),
            },
            metadata_url,
            targets_url: join(TARGETS_DIR)?,
            host_version,
            build_time: Timestamp::UNIX_EPOCH,
            clock: Arc::new(Timestamp::now),
            limits: default_limits(),
            max_component_size: 64 * 1024 * 1024,
        })
    }

    /// A verifier for a repository directory on this machine.
    pub fn for_directory(
        trusted_root: impl Into<Vec<u8>>,
        datastore: impl Into<PathBuf>,
        repository: &Path,
        host_version: semver::Version,
    ) -> Result<Self, Error> {
        Self::new(trusted_root, datastore, &dir_url(repository)?, host_version)
    }

    /// Fetches through `transport` (the default reads `file://` URLs). The device passes a
    /// transport over its mutual-TLS link to the cloud.
    #[must_use]
    pub fn transport(mut self, transport: impl Transport + 'static) -> Self {
        self.transport.inner = Arc::new(transport);
        self
    }

    /// What this verifier (and its clones) fetched so far: on a metered link, what updates
    /// cost.
    pub fn fetched(&self) -> Fetched {
        let counters = &self.transport.counters;
        Fetched {
            metadata_bytes: counters.metadata.load(Ordering::Relaxed),
            component_bytes: counters.component.load(Ordering::Relaxed),
            fetches: counters.fetches.load(Ordering::Relaxed),
        }
    }

    /// When this software was built: a clock earlier than that is certainly wrong.
    #[must_use]
    pub fn build_time(mut self, build_time: Timestamp) -> Self {
        self.build_time = build_time;
        self
    }

    #[must_use]
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Size limits for metadata files (endless-data protection).
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The largest component this device downloads, whatever its metadata says.
    #[must_use]
    pub fn max_component_size(mut self, bytes: u64) -> Self {
        self.max_component_size = bytes;
        self
    }

    /// Verifies the repository and returns the newest version of `component` that is newer than
    /// `installed` and than every version recorded as installed, and that this host can run;
    /// `None` if there is none. Refused (with the guarantee that failed) if anything does not
    /// verify; what the device trusted before stays trusted.
    pub async fn check(
        &self,
        component: &str,
        installed: Option<&semver::Version>,
    ) -> Result<Option<Update>, Error> {
        self.check_up_to(component, installed, None).await
    }

    /// [`Verifier::check`], among the versions up to `ceiling` only: what a staged rollout
    /// admits this device to (the repository may already hold newer ones).
    pub async fn check_up_to(
        &self,
        component: &str,
        installed: Option<&semver::Version>,
        ceiling: Option<&semver::Version>,
    ) -> Result<Option<Update>, Error> {
        crate::validate_name(component)?;
        let now = (self.clock)();
        let mut state = self.read_state()?;
        let floor = state
            .time_floor
            .map_or(self.build_time, |t| t.max(self.build_time));
        if now < floor {
            return Err(Error::ClockBehindFloor { now, floor });
        }

        let tuf = self.tuf_dir();
        create_dir(&tuf)?;
        // tough keeps a clock floor of its own: the start time of every load, recorded even when
        // the load then fails. One boot with a clock far ahead would lock the device out until
        // that date. The floor above replaces it: it moves only on success, and never past the
        // signed timestamp's expiry.
        match std::fs::remove_file(tuf.join("latest_known_time.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&tuf, e)),
        }
        let persisted = std::fs::read(tuf.join("root.json")).ok();
        let root = newest_root(persisted.as_deref(), &self.trusted_root);
        let repo =
            RepositoryLoader::new(&root, self.metadata_url.clone(), self.targets_url.clone())
                .transport(self.transport.clone())
                .datastore(&tuf)
                .limits(self.limits)
                .expiration_enforcement(ExpirationEnforcement::Safe)
                .load()
                .await?;

        // A success means no role has expired, so this is at most the timestamp's expiry.
        let seen = now.min(repo.timestamp().signed.expires);
        let mut floor_version = state.installed.get(component).cloned();
        if let Some(v) = installed
            && floor_version.as_ref().is_none_or(|f| v > f)
        {
            floor_version = Some(v.clone());
        }
        let prefix = format!("components/{component}/");
        let mut best: Option<(TargetName, ComponentMeta, u64, String)> = None;
        for (name, target) in repo.all_targets() {
            if !name.raw().starts_with(&prefix) {
                continue;
            }
            // A signed target with unusable metadata is never installed, and does not block the
            // others.
            let Ok(meta) = ComponentMeta::from_custom(name.raw(), &target.custom) else {
                continue;
            };
            let newer = floor_version.as_ref().is_none_or(|f| meta.version > *f);
            let runs_here = meta.min_host <= self.host_version;
            let admitted = ceiling.is_none_or(|c| meta.version <= *c);
            let best_so_far = best
                .as_ref()
                .is_none_or(|(_, b, _, _)| meta.version > b.version);
            if newer && runs_here && admitted && best_so_far {
                let sha256 = hex::encode(&target.hashes.sha256);
                best = Some((name.clone(), meta, target.length, sha256));
            }
        }

        let update = match best {
            None => None,
            Some((name, meta, length, sha256)) => {
                if length > self.max_component_size {
                    return Err(Error::TooLarge {
                        what: name.raw().into(),
                        max: self.max_component_size,
                        by: "the device's component size limit".into(),
                    });
                }
                let stream = repo
                    .read_target(&name)
                    .await?
                    .ok_or_else(|| Error::Transport {
                        url: name.raw().into(),
                        detail: "listed in verified metadata but not found".into(),
                    })?;
                let bytes = stream.into_vec().await?;
                Some(Update {
                    meta,
                    target: name.raw().into(),
                    sha256,
                    bytes,
                })
            }
        };

        state.time_floor = Some(state.time_floor.map_or(seen, |t| t.max(seen)));
        self.write_state(&state)?;
        Ok(update)
    }

    /// Records that `version` of `component` is installed (committed): it and every older
    /// version are never offered again.
    pub fn record_installed(
        &self,
        component: &str,
        version: &semver::Version,
    ) -> Result<(), Error> {
        crate::validate_name(component)?;
        let mut state = self.read_state()?;
        let entry = state
            .installed
            .entry(component.to_owned())
            .or_insert_with(|| version.clone());
        if version > entry {
            *entry = version.clone();
        }
        self.write_state(&state)
    }

    /// The newest version recorded as installed.
    pub fn installed(&self, component: &str) -> Result<Option<semver::Version>, Error> {
        Ok(self.read_state()?.installed.get(component).cloned())
    }

    /// The earliest time the clock may show for a check to proceed.
    pub fn time_floor(&self) -> Result<Timestamp, Error> {
        let state = self.read_state()?;
        Ok(state
            .time_floor
            .map_or(self.build_time, |t| t.max(self.build_time)))
    }

    /// The metadata versions the device trusts now (0 where it trusts none yet).
    pub fn trusted(&self) -> Result<TrustedVersions, Error> {
        let tuf = self.tuf_dir();
        let root = match read_json::<Signed<tough::schema::Root>>(&tuf.join("root.json"))? {
            Some(root) => root.signed.version.get(),
            None => 0,
        };
        Ok(TrustedVersions {
            root,
            timestamp: read_json::<Signed<TimestampRole>>(&tuf.join("timestamp.json"))?
                .map_or(0, |t| t.signed.version.get()),
            snapshot: read_json::<Signed<Snapshot>>(&tuf.join("snapshot.json"))?
                .map_or(0, |s| s.signed.version.get()),
            targets: read_json::<Signed<Targets>>(&tuf.join("targets.json"))?
                .map_or(0, |t| t.signed.version.get()),
        })
    }

    fn tuf_dir(&self) -> PathBuf {
        self.datastore.join("tuf")
    }

    fn state_path(&self) -> PathBuf {
        self.datastore.join("state.json")
    }

    fn read_state(&self) -> Result<State, Error> {
        Ok(read_json(&self.state_path())?.unwrap_or_default())
    }

    /// Written to a temporary file and renamed: a power cut leaves the old state or the new.
    fn write_state(&self, state: &State) -> Result<(), Error> {
        create_dir(&self.datastore)?;
        let path = self.state_path();
        let text = serde_json::to_vec_pretty(state).map_err(|e| Error::Tuf(e.to_string()))?;
        let tmp = self.datastore.join(".state.json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(&path, e))
    }
}

/// Metadata limits sized for this repository (a handful of roles and a few hundred
/// component versions), far below tough's defaults of 1–10 MiB.
pub fn default_limits() -> Limits {
    Limits {
        max_root_size: 64 * 1024,
        max_targets_size: 1024 * 1024,
        max_timestamp_size: 16 * 1024,
        max_snapshot_size: 64 * 1024,
        max_root_updates: 64,
    }
}

/// The root to start from: the newest root this device verified (kept by tough in its
/// datastore), not the one it shipped with, or a restart would trust keys a later root revoked.
/// The shipped root wins only if it is newer (new software) or the kept one is unreadable (tough
/// writes it in place, and a power cut can truncate it): from there the chain is walked forward
/// again.
fn newest_root<'a>(persisted: Option<&'a [u8]>, shipped: &'a [u8]) -> &'a [u8] {
    let version = |bytes: &[u8]| {
        serde_json::from_slice::<Signed<tough::schema::Root>>(bytes)
            .ok()
            .map(|r| r.signed.version.get())
    };
    match persisted {
        Some(kept) if version(kept) >= version(shipped) && version(kept).is_some() => kept,
        _ => shipped,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Malformed {
                what: path.display().to_string(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Bytes fetched from the repository, counted as they arrive (a fetch cut short counts what
/// came).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Role metadata (root, timestamp, snapshot, targets, delegated roles).
    pub metadata_bytes: u64,
    /// Component files.
    pub component_bytes: u64,
    /// Fetches started, the probe for a next root (usually absent) included.
    pub fetches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    metadata: AtomicU64,
    component: AtomicU64,
    fetches: AtomicU64,
}

/// A transport shared between checks (tough takes transports by value), counting what it
/// fetches.
#[derive(Debug, Clone)]
struct Shared {
    inner: Arc<dyn Transport>,
    counters: Arc<Counters>,
    /// Fetches below it are metadata; the rest components.
    metadata_url: Url,
}

#[tough::async_trait]
impl Transport for Shared {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        use futures::StreamExt;
        let metadata = url.as_str().starts_with(self.metadata_url.as_str());
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let counters = self.counters.clone();
        let stream = self.inner.fetch(url).await?;
        Ok(Box::pin(stream.inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                let counter = if metadata {
                    &counters.metadata
                } else {
                    &counters.component
                };
                counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        })))
    }
}
