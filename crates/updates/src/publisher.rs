//! The publisher: creates the repository, adds component versions, refreshes expiry and rotates
//! keys. Everything is signed with tough's editors; this module only decides versions,
//! expiries, paths and which keys sign what.

use crate::keys::{self, KeyRole, PemKeySource};
use crate::{ComponentMeta, Error, METADATA_DIR, RELEASE_PATHS, RELEASE_ROLE, TARGETS_DIR};
use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::editor::targets::TargetsEditor;
use tough::schema::{
    Hashes, KeyHolder, Metafile, PathPattern, PathSet, RoleKeys, RoleType, Root, Snapshot, Target,
    Timestamp as TimestampRole,
};
use tough::{ExpirationEnforcement, FilesystemTransport, Repository, RepositoryLoader, TargetName};
use url::Url;

const SPEC_VERSION: &str = "1.0.0";
const DAY: i64 = 24 * 3600;

/// How long each role's metadata stays valid once signed. Timestamp and snapshot are short
/// (they bound how long a device can be kept on a frozen repository) and are re-signed by
/// `refresh`; targets, release and root are signed rarely, with offline keys.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub root: SignedDuration,
    pub targets: SignedDuration,
    pub release: SignedDuration,
    pub snapshot: SignedDuration,
    pub timestamp: SignedDuration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            root: SignedDuration::from_secs(365 * DAY),
            targets: SignedDuration::from_secs(180 * DAY),
            release: SignedDuration::from_secs(180 * DAY),
            snapshot: SignedDuration::from_secs(30 * DAY),
            timestamp: SignedDuration::from_secs(2 * DAY),
        }
    }
}

/// How a new repository's roles are keyed.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    /// Signatures each role needs.
    pub threshold: NonZeroU64,
    /// Keys generated for each role (at least the threshold).
    pub keys_per_role: NonZeroU64,
    pub lifetimes: Lifetimes,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            threshold: NonZeroU64::MIN,
            keys_per_role: NonZeroU64::MIN,
            lifetimes: Lifetimes::default(),
        }
    }
}

/// What `refresh` re-signs besides snapshot and timestamp (which it always re-signs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Refresh {
    /// The top-level targets role (needs the targets keys).
    pub targets: bool,
    /// The release role (needs the release keys).
    pub release: bool,
}

/// A repository directory and the directory of its keys.
#[derive(Debug, Clone)]
pub struct Publisher {
    repo: PathBuf,
    keys: PathBuf,
    lifetimes: Lifetimes,
}

impl Publisher {
    /// A publisher for an existing repository.
    pub fn open(repo: impl Into<PathBuf>, keys: impl Into<PathBuf>) -> Self {
        Publisher {
            repo: repo.into(),
            keys: keys.into(),
            lifetimes: Lifetimes::default(),
        }
    }

    /// Signs with these lifetimes from now on.
    #[must_use]
    pub fn with_lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    pub fn metadata_dir(&self) -> PathBuf {
        self.repo.join(METADATA_DIR)
    }

    pub fn targets_dir(&self) -> PathBuf {
        self.repo.join(TARGETS_DIR)
    }

    /// Creates a repository in `repo` (which must not hold one) and its keys in `keys`: root,
    /// targets, snapshot and timestamp keys, and the release role's own keys, to which targets
    /// delegates `components/*/*.wasm`.
    pub async fn init(
        repo: impl Into<PathBuf>,
        keys: impl Into<PathBuf>,
        options: InitOptions,
    ) -> Result<Self, Error> {
        if options.threshold > options.keys_per_role {
            return Err(Error::Invalid(format!(
                "a threshold of {} needs at least {} keys per role, not {}",
                options.threshold, options.threshold, options.keys_per_role
            )));
        }
        let publisher = Publisher::open(repo, keys).with_lifetimes(options.lifetimes);
        let metadata = publisher.metadata_dir();
        if metadata.join("1.root.json").exists() {
            return Err(Error::Invalid(format!(
                "{} already holds a repository",
                publisher.repo.display()
            )));
        }
        create_private_dir(&publisher.keys)?;
        for role in KeyRole::ALL {
            if !keys::role_keys(&publisher.keys, role)?.is_empty() {
                return Err(Error::Invalid(format!(
                    "{} already holds {role} keys: give a new repository an empty key directory",
                    publisher.keys.display()
                )));
            }
        }
        for dir in [&metadata, &publisher.targets_dir()] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }

        let now = Timestamp::now();
        let mut root = Root {
            spec_version: SPEC_VERSION.into(),
            consistent_snapshot: true,
            version: NonZeroU64::MIN,
            expires: after(now, publisher.lifetimes.root)?,
            keys: HashMap::new(),
            roles: HashMap::new(),
            _extra: HashMap::new(),
        };
        let mut generated = HashMap::new();
        for role in KeyRole::ALL {
            let mut role_keys = Vec::new();
            for _ in 0..options.keys_per_role.get() {
                let index = keys::next_index(&publisher.keys, role)?;
                role_keys.push(keys::generate(&keys::key_path(
                    &publisher.keys,
                    role,
                    index,
                ))?);
            }
            if let Some(role_type) = top_level(role) {
                trust(&mut root, role_type, &role_keys, options.threshold)?;
            }
            generated.insert(role, role_keys);
        }
        let root_keys = keys::sources(&generated[&KeyRole::Root]);
        let signed_root = SignedRole::new(
            root.clone(),
            &KeyHolder::Root(root),
            &root_keys,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .await?;
        let staging = publisher.staging()?;
        signed_root.write(staging.path(), true).await?;
        let root_path = staging.path().join("1.root.json");

        let mut editor = RepositoryEditor::new(&root_path).await?;
        let release_keys = keys::sources(&generated[&KeyRole::Release]);
        editor
            .targets_version(NonZeroU64::MIN)?
            .targets_expires(after(now, publisher.lifetimes.targets)?)?
            .delegate_role(
                RELEASE_ROLE,
                &release_keys,
                PathSet::Paths(vec![PathPattern::new(RELEASE_PATHS)?]),
                true,
                options.threshold,
                after(now, publisher.lifetimes.release)?,
                NonZeroU64::MIN,
            )
            .await?;
        editor
            .snapshot_version(NonZeroU64::MIN)
            .snapshot_expires(after(now, publisher.lifetimes.snapshot)?)
            .timestamp_version(NonZeroU64::MIN)
            .timestamp_expires(after(now, publisher.lifetimes.timestamp)?);
        let mut all = Vec::new();
        for role in [KeyRole::Targets, KeyRole::Snapshot, KeyRole::Timestamp] {
            all.extend(keys::sources(&generated[&role]));
        }
        let signed = editor.sign(&all).await?;
        signed.write(staging.path()).await?;
        publisher.publish_staged(staging.path())?;
        Ok(publisher)
    }

    /// The newest root metadata file (`metadata/<n>.root.json`): what a new device ships with.
    pub fn root_path(&self) -> Result<PathBuf, Error> {
        let dir = self.metadata_dir();
        let mut newest: Option<(u64, PathBuf)> = None;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(no_repository(&self.repo));
            }
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".root.json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if newest.as_ref().is_none_or(|(v, _)| version > *v) {
                newest = Some((version, entry.path()));
            }
        }
        newest
            .map(|(_, path)| path)
            .ok_or_else(|| no_repository(&self.repo))
    }

    /// Every component version in the repository.
    pub async fn components(&self) -> Result<Vec<ComponentMeta>, Error> {
        let repo = self.load().await?;
        let mut found = Vec::new();
        for (name, target) in repo.all_targets() {
            found.push(ComponentMeta::from_custom(name.raw(), &target.custom)?);
        }
        found.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(found)
    }

    /// Adds a component version (signed by the release keys) and re-signs snapshot and
    /// timestamp. Versions are immutable: publishing one twice is refused.
    pub async fn add(&self, meta: &ComponentMeta, wasm: &Path) -> Result<String, Error> {
        meta.validate()?;
        let repo = self.load().await?;
        let name = meta.target_name();
        let target_name = TargetName::new(name.clone())?;
        if repo.all_targets().any(|(n, _)| n.raw() == name) {
            return Err(Error::Invalid(format!(
                "{} {} is already published; versions are immutable, publish a new version",
                meta.name, meta.version
            )));
        }
        let mut target = Target::from_path(wasm).await?;
        target.custom = meta.to_custom()?;

        // The target's bytes go first: metadata never names a file the server lacks.
        let stored =
            self.targets_dir()
                .join(format!("{}.{}", hex::encode(&target.hashes.sha256), name));
        if let Some(parent) = stored.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::copy(wasm, &stored).map_err(|e| Error::io(wasm, e))?;

        let root = repo.root().signed.clone();
        self.sign_and_publish(
            repo,
            &root,
            Some((target_name, target)),
            Refresh {
                targets: false,
                release: true,
            },
        )
        .await?;
        Ok(name)
    }

    /// Re-signs snapshot and timestamp with fresh expiry (and targets or release if asked):
    /// run it well within the timestamp lifetime, or devices refuse the repository as frozen.
    pub async fn refresh(&self, what: Refresh) -> Result<(), Error> {
        let repo = self.load().await?;
        let root = repo.root().signed.clone();
        self.sign_and_publish(repo, &root, None, what).await
    }

    /// Replaces every key of a top-level role with new ones (same count and threshold) in a new
    /// root version, signed by the current root keys (and the new ones when rotating root), then
    /// re-signs what the new keys sign. Retired keys move to `<keys>/retired/`. This is how a
    /// repository recovers from a compromised key; devices follow the root chain.
    pub async fn rotate(&self, role: KeyRole) -> Result<(), Error> {
        let Some(role_type) = top_level(role) else {
            return Err(Error::Invalid(
                "only root, targets, snapshot and timestamp keys rotate through root".into(),
            ));
        };
        // Loaded under the current root: once the new root is out, the current snapshot and
        // timestamp no longer verify (their keys may be the ones replaced).
        let repo = self.load().await?;
        let old = repo.root().clone();
        let old_root_keys = self.keys_for(KeyRole::Root, &old.signed.roles[&RoleType::Root])?;

        let mut root = old.signed.clone();
        let current = root.roles[&role_type].clone();
        let retiring = keys::role_keys(&self.keys, role)?;
        let retired_dir = self.keys.join("retired");
        create_private_dir(&retired_dir)?;
        let mut new_keys = Vec::new();
        for _ in 0..current.keyids.len() {
            let index = keys::next_index(&self.keys, role)?;
            new_keys.push(keys::generate(&keys::key_path(&self.keys, role, index))?);
        }
        trust(&mut root, role_type, &new_keys, current.threshold)?;
        // Keys no role names any more leave root.
        let used: Vec<_> = root.roles.values().flat_map(|r| r.keyids.clone()).collect();
        root.keys.retain(|id, _| used.contains(id));
        root.version = NonZeroU64::new(root.version.get() + 1).unwrap_or(NonZeroU64::MAX);
        root.expires = after(Timestamp::now(), self.lifetimes.root)?;

        let rng = aws_lc_rs::rand::SystemRandom::new();
        let new_root_keys = keys::sources(&keys::role_keys(&self.keys, KeyRole::Root)?);
        let mut signed = SignedRole::new(
            root.clone(),
            &KeyHolder::Root(root.clone()),
            &new_root_keys,
            &rng,
        )
        .await?;
        if role == KeyRole::Root {
            // A new root must also carry a threshold of the old root's signatures.
            let by_old =
                SignedRole::new(root, &KeyHolder::Root(old.signed), &old_root_keys, &rng).await?;
            signed = signed.add_old_signatures(by_old.signed().signatures.clone())?;
        }
        let staging = self.staging()?;
        signed.write(staging.path(), true).await?;
        self.publish_staged(staging.path())?;
        let root = signed.signed().signed.clone();
        self.sign_and_publish(
            repo,
            &root,
            None,
            Refresh {
                targets: role == KeyRole::Targets,
                release: false,
            },
        )
        .await?;
        // Retired only now: the old root keys had to sign the new root.
        for key in &retiring {
            if let Some(file) = key.path.file_name() {
                let to = retired_dir.join(file);
                std::fs::rename(&key.path, &to).map_err(|e| Error::io(&key.path, e))?;
            }
        }
        Ok(())
    }

    /// Loads the repository as it is on disk, verified from its newest root. Expiry is not
    /// enforced here: refreshing an expired repository is exactly what the publisher must do.
    async fn load(&self) -> Result<Repository, Error> {
        let root_path = self.root_path()?;
        let root = std::fs::read(&root_path).map_err(|e| Error::io(&root_path, e))?;
        let repo = RepositoryLoader::new(
            &root,
            dir_url(&self.metadata_dir())?,
            dir_url(&self.targets_dir())?,
        )
        .transport(FilesystemTransport)
        .expiration_enforcement(ExpirationEnforcement::Unsafe)
        .load()
        .await?;
        Ok(repo)
    }

    /// Signs the release role (with a new target if given) and targets if asked, then new
    /// snapshot and timestamp versions pinning the files as they are on disk, and publishes
    /// them. Unchanged roles are not rewritten: a file of a given version never changes, so a
    /// client following an older timestamp still finds what it pins.
    async fn sign_and_publish(
        &self,
        repo: Repository,
        root: &Root,
        new_target: Option<(TargetName, Target)>,
        what: Refresh,
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        let staging = self.staging()?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let holder = KeyHolder::Root(root.clone());

        let release_version = repo
            .delegated_role(RELEASE_ROLE)
            .and_then(|r| r.targets.as_ref())
            .map(|t| t.signed.version)
            .ok_or_else(|| Error::Invalid("the repository has no release role".into()))?;
        let release_version = if what.release || new_target.is_some() {
            let mut editor = TargetsEditor::from_repo(repo.clone(), RELEASE_ROLE)?;
            if let Some((name, target)) = new_target {
                editor.add_target(name, target)?;
            }
            let lifetime = self.lifetimes.release;
            self.sign_targets(
                editor,
                KeyRole::Release,
                release_version,
                lifetime,
                staging.path(),
            )
            .await?
        } else {
            release_version
        };
        let targets_version = repo.targets().signed.version;
        let targets_version = if what.targets {
            // Checked against the root being published (a rotation's new targets keys).
            let editor = TargetsEditor::from_targets(
                "targets",
                repo.targets().signed.clone(),
                holder.clone(),
            );
            let lifetime = self.lifetimes.targets;
            self.sign_targets(
                editor,
                KeyRole::Targets,
                targets_version,
                lifetime,
                staging.path(),
            )
            .await?
        } else {
            targets_version
        };

        let mut snapshot = Snapshot::new(
            SPEC_VERSION.into(),
            bump(repo.snapshot().signed.version),
            after(now, self.lifetimes.snapshot)?,
        );
        for (role, version) in [
            ("targets", targets_version),
            (RELEASE_ROLE, release_version),
        ] {
            let file = format!("{version}.{role}.json");
            let bytes = self.staged_or_published(staging.path(), &file)?;
            snapshot
                .meta
                .insert(format!("{role}.json"), metafile(version, &bytes));
        }
        let keys = keys::sources(&keys::role_keys(&self.keys, KeyRole::Snapshot)?);
        let snapshot = SignedRole::new(snapshot, &holder, &keys, &rng)
            .await
            .map_err(|e| self.missing(KeyRole::Snapshot, e))?;
        snapshot.write(staging.path(), true).await?;

        let mut timestamp = TimestampRole::new(
            SPEC_VERSION.into(),
            bump(repo.timestamp().signed.version),
            after(now, self.lifetimes.timestamp)?,
        );
        timestamp.meta.insert(
            "snapshot.json".into(),
            metafile(snapshot.signed().signed.version, snapshot.buffer()),
        );
        let keys = keys::sources(&keys::role_keys(&self.keys, KeyRole::Timestamp)?);
        let timestamp = SignedRole::new(timestamp, &holder, &keys, &rng)
            .await
            .map_err(|e| self.missing(KeyRole::Timestamp, e))?;
        timestamp.write(staging.path(), true).await?;
        self.publish_staged(staging.path())
    }

    /// Signs a targets role (top-level or release) at the version after `current` with the
    /// role's keys and stages it; returns the new version.
    async fn sign_targets(
        &self,
        mut editor: TargetsEditor,
        role: KeyRole,
        current: NonZeroU64,
        lifetime: SignedDuration,
        staging: &Path,
    ) -> Result<NonZeroU64, Error> {
        let keys = keys::sources(&keys::role_keys(&self.keys, role)?);
        editor
            .version(bump(current))
            .expires(after(Timestamp::now(), lifetime)?);
        let signed = editor
            .sign(&keys)
            .await
            .map_err(|e| self.missing(role, e))?;
        signed.write(staging, true).await?;
        Ok(bump(current))
    }

    /// The bytes of a metadata file just signed (staged) or already published.
    fn staged_or_published(&self, staged: &Path, file: &str) -> Result<Vec<u8>, Error> {
        let staged = staged.join(file);
        let path = if staged.exists() {
            staged
        } else {
            self.metadata_dir().join(file)
        };
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    }

    /// Moves staged metadata into place, `timestamp.json` last: a client reading meanwhile sees
    /// the old timestamp, which still names files that exist.
    fn publish_staged(&self, staged: &Path) -> Result<(), Error> {
        let metadata = self.metadata_dir();
        let mut files: Vec<PathBuf> = std::fs::read_dir(staged)
            .map_err(|e| Error::io(staged, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort_by_key(|p| p.file_name().is_some_and(|n| n == "timestamp.json"));
        for file in files {
            let Some(name) = file.file_name() else {
                continue;
            };
            let to = metadata.join(name);
            std::fs::rename(&file, &to).map_err(|e| Error::io(&to, e))?;
        }
        Ok(())
    }

    /// A scratch directory inside the repository (same filesystem, so publishing is renames).
    fn staging(&self) -> Result<tempfile::TempDir, Error> {
        std::fs::create_dir_all(&self.repo).map_err(|e| Error::io(&self.repo, e))?;
        tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&self.repo)
            .map_err(|e| Error::io(&self.repo, e))
    }

    /// The key files of `role` whose ids `role_keys` names.
    fn keys_for(
        &self,
        role: KeyRole,
        role_keys: &RoleKeys,
    ) -> Result<Vec<Box<dyn tough::key_source::KeySource>>, Error> {
        let mut found: Vec<PemKeySource> = Vec::new();
        for key in keys::role_keys(&self.keys, role)? {
            if role_keys.keyids.contains(&key.public()?.key_id()?) {
                found.push(key);
            }
        }
        if (found.len() as u64) < role_keys.threshold.get() {
            return Err(Error::MissingKeys {
                role: role.to_string(),
                dir: self.keys.clone(),
            });
        }
        Ok(keys::sources(&found))
    }

    /// tough says "signing keys not found" (or "no key matches root"); say which directory
    /// lacks which role's keys.
    fn missing(&self, role: KeyRole, error: tough::error::Error) -> Error {
        match error {
            tough::error::Error::SigningKeysNotFound { .. }
            | tough::error::Error::KeysNotFoundInRoot { .. } => Error::MissingKeys {
                role: role.to_string(),
                dir: self.keys.clone(),
            },
            other => other.into(),
        }
    }
}

/// Makes `keys` (and only them) the keys of `role` in `root`.
fn trust(
    root: &mut Root,
    role: RoleType,
    keys: &[PemKeySource],
    threshold: NonZeroU64,
) -> Result<(), Error> {
    let mut keyids = Vec::new();
    for key in keys {
        let public = key.public()?;
        let id = public.key_id()?;
        root.keys.insert(id.clone(), public);
        keyids.push(id);
    }
    root.roles.insert(
        role,
        RoleKeys {
            keyids,
            threshold,
            _extra: HashMap::new(),
        },
    );
    Ok(())
}

fn no_repository(repo: &Path) -> Error {
    Error::Invalid(format!(
        "{} holds no repository (no metadata/1.root.json): create one with `wattlet release init`",
        repo.display()
    ))
}

fn top_level(role: KeyRole) -> Option<RoleType> {
    match role {
        KeyRole::Root => Some(RoleType::Root),
        KeyRole::Targets => Some(RoleType::Targets),
        KeyRole::Snapshot => Some(RoleType::Snapshot),
        KeyRole::Timestamp => Some(RoleType::Timestamp),
        KeyRole::Release => None,
    }
}

/// The entry with which snapshot pins a targets file, or timestamp the snapshot: its version,
/// length and SHA-256.
pub fn metafile(version: NonZeroU64, bytes: &[u8]) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
                .as_ref()
                .to_vec()
                .into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

fn bump(version: NonZeroU64) -> NonZeroU64 {
    version.checked_add(1).unwrap_or(NonZeroU64::MAX)
}

fn after(now: Timestamp, lifetime: SignedDuration) -> Result<Timestamp, Error> {
    now.checked_add(lifetime)
        .map_err(|e| Error::Invalid(format!("expiry out of range: {e}")))
}

/// A `file://` URL for a directory (with the trailing slash tough needs).
pub(crate) fn dir_url(dir: &Path) -> Result<Url, Error> {
    let absolute = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    Url::from_directory_path(&absolute)
        .map_err(|()| Error::Invalid(format!("{} is not a usable path", dir.display())))
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| Error::io(dir, e))
}
