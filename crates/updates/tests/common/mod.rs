//! A real repository on disk, written by the publisher, a device verifying it, and an attacker's
//! tools: editing files, and signing forged metadata with keys the attacker stole.
#![allow(dead_code)] // each test binary uses a different part

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::key_source::KeySource;
use tough::schema::{Metafile, Signature, Signed, Snapshot, Targets, Timestamp as TimestampRole};
use wattlet_updates::keys::{self, PemKeySource};
use wattlet_updates::{ComponentMeta, InitOptions, KeyRole, Lifetimes, Publisher, Verifier};

pub const COMPONENT: &str = "meter-parser";
pub const WORLD: &str = "wattlet:meter/parser";

pub fn version(v: &str) -> semver::Version {
    semver::Version::parse(v).expect("test versions parse")
}

pub fn meta(v: &str, min_host: &str) -> ComponentMeta {
    ComponentMeta {
        name: COMPONENT.into(),
        version: version(v),
        world: WORLD.into(),
        min_host: version(min_host),
    }
}

/// Distinct bytes per version, shaped like a component's header.
pub fn component_bytes(v: &str) -> Vec<u8> {
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend(
        format!("component {COMPONENT} {v}")
            .bytes()
            .cycle()
            .take(4096),
    );
    bytes
}

/// A repository and its keys in a temporary directory, with `meter-parser` 1.0.0 published.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub keys: PathBuf,
    pub publisher: Publisher,
    /// The root the devices ship with.
    pub shipped_root: Vec<u8>,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_threshold(1, 1).await
    }

    pub async fn with_threshold(threshold: u64, keys_per_role: u64) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let repo = dir.path().join("repo");
        let keys = dir.path().join("keys");
        let publisher = Publisher::init(
            &repo,
            &keys,
            InitOptions {
                threshold: NonZeroU64::new(threshold).expect("threshold ≥ 1"),
                keys_per_role: NonZeroU64::new(keys_per_role).expect("≥ 1 key"),
                lifetimes: Lifetimes::default(),
            },
        )
        .await
        .expect("init");
        let shipped_root =
            std::fs::read(repo.join("metadata/1.root.json")).expect("1.root.json written");
        let fx = Fixture {
            dir,
            repo,
            keys,
            publisher,
            shipped_root,
        };
        fx.publish("1.0.0", "0.1.0").await;
        fx
    }

    /// Publishes a version of the component with the default lifetimes.
    pub async fn publish(&self, v: &str, min_host: &str) -> Vec<u8> {
        let bytes = component_bytes(v);
        let file = self.dir.path().join(format!("{v}.wasm"));
        std::fs::write(&file, &bytes).expect("write component");
        self.publisher
            .add(&meta(v, min_host), &file)
            .await
            .expect("publish");
        bytes
    }

    /// Re-signs snapshot and timestamp.
    pub async fn refresh(&self) {
        self.publisher
            .refresh(wattlet_updates::Refresh::default())
            .await
            .expect("refresh");
    }

    /// After an attack: the honest repository, refreshed, publishes `v` and the device takes it.
    pub async fn recovers(&self, device: &Verifier, v: &str) {
        self.refresh().await;
        self.publish(v, "0.1.0").await;
        offered(device, v).await;
    }

    /// A device (host version 1.0.0) keeping its state in `device-<name>/`.
    pub fn device(&self, name: &str) -> Verifier {
        Verifier::for_directory(
            self.shipped_root.clone(),
            self.dir.path().join(format!("device-{name}")),
            &self.repo,
            version("1.0.0"),
        )
        .expect("verifier")
    }

    /// A publisher signing with these lifetimes (negative: already expired).
    pub fn publisher_with(&self, lifetimes: Lifetimes) -> Publisher {
        Publisher::open(&self.repo, &self.keys).with_lifetimes(lifetimes)
    }

    pub fn metadata(&self, file: &str) -> PathBuf {
        self.repo.join("metadata").join(file)
    }

    /// Every metadata file's bytes, to serve old ones later.
    pub fn save(&self) -> HashMap<String, Vec<u8>> {
        std::fs::read_dir(self.repo.join("metadata"))
            .expect("metadata dir")
            .map(|e| {
                let e = e.expect("entry");
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).expect("read metadata"))
            })
            .collect()
    }

    /// Puts every saved file back as it was (undoing an attack).
    pub fn restore(&self, saved: &HashMap<String, Vec<u8>>) {
        for (name, bytes) in saved {
            std::fs::write(self.metadata(name), bytes).expect("restore metadata");
        }
    }

    /// The path of the stored target of a component version.
    pub fn target_file(&self, v: &str) -> PathBuf {
        let dir = self.repo.join("targets");
        // Consistent snapshots: `<sha256>.components/<name>/<version>.wasm`.
        let suffix = format!("{COMPONENT}/{v}.wasm");
        for entry in std::fs::read_dir(&dir).expect("targets dir") {
            let entry = entry.expect("entry");
            let candidate = entry.path().join(&suffix);
            if entry.file_name().to_string_lossy().ends_with(".components") && candidate.exists() {
                return candidate;
            }
        }
        panic!("no stored target for {v}");
    }

    /// Keys of `role` as the attacker stole them (the files themselves).
    pub fn stolen(&self, role: KeyRole) -> Vec<PemKeySource> {
        keys::role_keys(&self.keys, role).expect("key files")
    }

    /// Keys of `role` that a rotation retired (the attacker may still hold them).
    pub fn retired(&self, role: KeyRole) -> Vec<PemKeySource> {
        keys::role_keys(&self.keys.join("retired"), role).expect("retired key files")
    }

    pub fn read<T: DeserializeOwned>(&self, file: &str) -> Signed<T> {
        let bytes = std::fs::read(self.metadata(file)).expect("metadata file");
        serde_json::from_slice(&bytes).expect("metadata parses")
    }

    pub fn timestamp(&self) -> Signed<TimestampRole> {
        self.read("timestamp.json")
    }

    pub fn snapshot(&self) -> Signed<Snapshot> {
        let v = self.timestamp().signed.meta["snapshot.json"].version;
        self.read(&format!("{v}.snapshot.json"))
    }

    pub fn release(&self) -> Signed<Targets> {
        let v = self.snapshot().signed.meta["release.json"].version;
        self.read(&format!("{v}.release.json"))
    }

    /// Writes forged `timestamp.json` pinning snapshot `version` (of the given bytes), signed
    /// by `keys`, with timestamp version `timestamp_version`.
    pub async fn forge_timestamp(
        &self,
        keys: &[PemKeySource],
        timestamp_version: u64,
        snapshot: (u64, &[u8]),
    ) {
        let mut timestamp = self.timestamp().signed;
        timestamp.version = nonzero(timestamp_version);
        timestamp
            .meta
            .insert("snapshot.json".into(), metafile(snapshot.0, snapshot.1));
        let signed = sign_as(timestamp, keys).await;
        write_signed(&self.metadata("timestamp.json"), &signed);
    }

    /// Writes a forged snapshot (the current one with `pins` replaced, next version) signed by
    /// the stolen snapshot keys, and a timestamp pinning it signed by the stolen timestamp keys.
    pub async fn forge_snapshot(&self, pins: &[(&str, u64, Vec<u8>)]) {
        let mut snapshot = self.snapshot().signed;
        snapshot.version = nonzero(snapshot.version.get() + 1);
        for (file, version, bytes) in pins {
            snapshot
                .meta
                .insert((*file).to_owned(), metafile(*version, bytes));
        }
        let version = snapshot.version.get();
        let signed = sign_as(snapshot, &self.stolen(KeyRole::Snapshot)).await;
        let bytes = write_signed(&self.metadata(&format!("{version}.snapshot.json")), &signed);
        let next = self.timestamp().signed.version.get() + 1;
        self.forge_timestamp(&self.stolen(KeyRole::Timestamp), next, (version, &bytes))
            .await;
    }

    /// Writes forged release metadata (`edit` applied, next version) signed by `keys`, pinned
    /// by a forged snapshot and timestamp (the attacker also holds the online keys).
    pub async fn forge_release(&self, keys: &[PemKeySource], edit: impl FnOnce(&mut Targets)) {
        let mut release = self.release().signed;
        release.version = nonzero(release.version.get() + 1);
        edit(&mut release);
        let version = release.version.get();
        let signed = sign_as(release, keys).await;
        let bytes = write_signed(&self.metadata(&format!("{version}.release.json")), &signed);
        self.forge_snapshot(&[("release.json", version, bytes)])
            .await;
    }
}

/// The device refuses, with an error of `kind`; returns it for closer checks.
pub async fn refused(device: &wattlet_updates::Verifier, kind: &str) -> wattlet_updates::Error {
    match device.check(COMPONENT, None).await {
        Ok(update) => panic!(
            "expected a {kind} refusal, got an update: {:?}",
            update.map(|u| u.meta.version)
        ),
        Err(e) => {
            assert_eq!(e.kind(), kind, "refused, but for another reason: {e}");
            e
        }
    }
}

/// The device accepts the repository and is offered `v`.
pub async fn offered(device: &wattlet_updates::Verifier, v: &str) -> Vec<u8> {
    let update = device
        .check(COMPONENT, None)
        .await
        .unwrap_or_else(|e| panic!("a good repository was refused: {e}"))
        .unwrap_or_else(|| panic!("no update offered, expected {v}"));
    assert_eq!(update.meta.version, version(v));
    assert_eq!(update.meta.world, WORLD);
    update.bytes
}

/// Device state to compare before and after an attack.
pub fn trusted(device: &Verifier) -> wattlet_updates::TrustedVersions {
    device.trusted().expect("trusted versions readable")
}

pub fn nonzero(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).expect("versions are ≥ 1")
}

pub fn metafile(version: u64, bytes: &[u8]) -> Metafile {
    wattlet_updates::metafile(nonzero(version), bytes)
}

/// Signs `value` as TUF does (over its canonical JSON) with each key, whatever role the keys
/// belong to: what an attacker holding them can produce.
pub async fn sign_as<T: Serialize>(value: T, keys: &[PemKeySource]) -> Signed<T> {
    let mut canonical = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut canonical,
        olpc_cjson::CanonicalFormatter::new(),
    );
    value.serialize(&mut ser).expect("canonical JSON");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut signatures = Vec::new();
    for key in keys {
        let signer = key.as_sign().await.expect("key loads");
        let keyid = signer.tuf_key().key_id().expect("key id");
        let sig = signer.sign(&canonical, &rng).await.expect("signs");
        signatures.push(Signature {
            keyid,
            sig: sig.into(),
        });
    }
    Signed {
        signed: value,
        signatures,
    }
}

/// Writes signed metadata and returns the bytes written.
pub fn write_signed<T: Serialize>(path: &Path, signed: &Signed<T>) -> Vec<u8> {
    let bytes = serde_json::to_vec_pretty(signed).expect("serializes");
    std::fs::write(path, &bytes).expect("write metadata");
    bytes
}

/// Lifetimes with one role already expired.
pub fn expired(role: KeyRole) -> Lifetimes {
    let mut l = Lifetimes::default();
    let past = SignedDuration::from_secs(-3600);
    match role {
        KeyRole::Root => l.root = past,
        KeyRole::Targets => l.targets = past,
        KeyRole::Release => l.release = past,
        KeyRole::Snapshot => l.snapshot = past,
        KeyRole::Timestamp => l.timestamp = past,
    }
    l
}

pub fn clock_at(t: Timestamp) -> wattlet_updates::Clock {
    std::sync::Arc::new(move || t)
}
