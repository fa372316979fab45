//! Signing keys in files: Ed25519, PKCS#8 in PEM, one file per key, readable by its owner only.
//!
//! tough signs but does not generate keys, and its file key source reads PKCS#8 Ed25519 keys
//! only as DER; keys here are PEM (what `openssl pkey` and people read), so a key source of
//! our own decodes the PEM and hands the DER to tough.

use crate::Error;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use tough::key_source::KeySource;
use tough::schema::key::Key;
use tough::sign::{Sign, parse_keypair};

/// A role that signs metadata: the four top-level roles and the delegated release role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    Root,
    Targets,
    Snapshot,
    Timestamp,
    /// The delegated role that signs component versions (`components/*`).
    Release,
}

impl KeyRole {
    pub const ALL: [KeyRole; 5] = [
        KeyRole::Root,
        KeyRole::Targets,
        KeyRole::Snapshot,
        KeyRole::Timestamp,
        KeyRole::Release,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Root => "root",
            KeyRole::Targets => "targets",
            KeyRole::Snapshot => "snapshot",
            KeyRole::Timestamp => "timestamp",
            KeyRole::Release => crate::RELEASE_ROLE,
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A private key in a PEM file (PKCS#8 Ed25519).
#[derive(Debug, Clone)]
pub struct PemKeySource {
    pub path: PathBuf,
}

impl PemKeySource {
    fn read(&self) -> Result<impl Sign + use<>, Error> {
        let text = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let pem = pem::parse(&text).map_err(|e| Error::Key {
            path: self.path.clone(),
            reason: format!("not a PEM file: {e}"),
        })?;
        if pem.tag() != "PRIVATE KEY" {
            return Err(Error::Key {
                path: self.path.clone(),
                reason: format!("expected a PKCS#8 PRIVATE KEY, found {}", pem.tag()),
            });
        }
        parse_keypair(pem.contents()).map_err(|e| Error::Key {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The public half as TUF describes it.
    pub fn public(&self) -> Result<Key, Error> {
        Ok(self.read()?.tuf_key())
    }
}

#[tough::async_trait]
impl KeySource for PemKeySource {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Box::new(self.read()?))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err("key files are written by `generate`, never through tough".into())
    }
}

/// The file of key `index` (from 1) of `role` in `dir`.
pub fn key_path(dir: &Path, role: KeyRole, index: usize) -> PathBuf {
    dir.join(format!("{role}-{index}.pem"))
}

/// Generates an Ed25519 key and writes it to `path` (mode 0600, never over an existing file).
pub fn generate(path: &Path) -> Result<PemKeySource, Error> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::Key {
            path: path.to_owned(),
            reason: "key generation failed".into(),
        })?;
    let text = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok(PemKeySource {
        path: path.to_owned(),
    })
}

/// Every key of `role` in `dir`: the files `<role>-<n>.pem`, in order of `n`.
pub fn role_keys(dir: &Path, role: KeyRole) -> Result<Vec<PemKeySource>, Error> {
    let prefix = format!("{role}-");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".pem"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        found.push((index, entry.path()));
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, path)| PemKeySource { path })
        .collect())
}

/// The next free index for a new key of `role` in `dir`.
pub(crate) fn next_index(dir: &Path, role: KeyRole) -> Result<usize, Error> {
    let mut index = 1;
    while key_path(dir, role, index).exists() || retired_path(dir, role, index).exists() {
        index += 1;
    }
    Ok(index)
}

/// Where a key goes when its role no longer trusts it (kept: it signed old metadata).
pub(crate) fn retired_path(dir: &Path, role: KeyRole, index: usize) -> PathBuf {
    dir.join("retired").join(format!("{role}-{index}.pem"))
}

/// Boxes key sources as tough's signing calls take them.
pub(crate) fn sources(keys: &[PemKeySource]) -> Vec<Box<dyn KeySource>> {
    keys.iter()
        .map(|k| Box::new(k.clone()) as Box<dyn KeySource>)
        .collect()
}
