//! Signed component updates: the update repository's format and its two sides.
//!
//! The repository is a TUF repository (written and read with `tough`): `root` names the keys of
//! every top-level role, `targets` delegates `components/*/*.wasm` to the `release` role (keys of
//! its own), `snapshot` pins every targets file and `timestamp` pins the snapshot. Each
//! component version is a target `components/<name>/<version>.wasm` whose custom metadata says
//! what it is ([`ComponentMeta`]). The repository is a static directory (`metadata/`,
//! `targets/`, consistent snapshots) any static file server can serve.
//!
//! - [`Publisher`] creates the repository, adds component versions and refreshes expiry.
//! - [`Verifier`] is what a device links: it fetches and verifies the metadata against the root
//!   it shipped with (trusted metadata kept in a datastore so rollback protection survives
//!   restarts), refuses to judge expiry while its clock is behind a time floor, and returns the
//!   newest component version it may install, as verified bytes with their metadata.

pub mod error;
#[cfg(feature = "https")]
pub mod https;
pub mod keys;
mod publisher;
mod verifier;

pub use error::Error;
pub use keys::KeyRole;
pub use publisher::{InitOptions, Lifetimes, Publisher, Refresh, metafile};
pub use verifier::{Clock, Fetched, TrustedVersions, Update, Verifier};

use serde::{Deserialize, Serialize};

/// The delegated role that signs component versions.
pub const RELEASE_ROLE: &str = "release";

/// The target paths delegated to the release role. One segment per `*`, as the TUF
/// specification reads patterns.
pub const RELEASE_PATHS: &str = "components/*/*.wasm";

/// Where metadata and targets live inside a repository directory (and under its URL).
pub const METADATA_DIR: &str = "metadata";
pub const TARGETS_DIR: &str = "targets";

/// What a component version is, as signed in its target's custom metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentMeta {
    /// The component's name (`meter-parser`): lowercase letters, digits and `-`.
    pub name: String,
    /// Its version (semver); the device only moves forward.
    pub version: semver::Version,
    /// The WIT world it exports (`wattlet:meter/parser`), which the host must provide.
    pub world: String,
    /// The oldest host version that can run it.
    pub min_host: semver::Version,
}

impl ComponentMeta {
    /// Checks the name and world are what a target path and a host can use.
    pub fn validate(&self) -> Result<(), Error> {
        validate_name(&self.name)?;
        if self.world.is_empty() || self.world.chars().any(char::is_whitespace) {
            return Err(Error::Invalid(format!(
                "WIT world {:?} is not a world name (e.g. wattlet:meter/parser)",
                self.world
            )));
        }
        Ok(())
    }

    /// The target's name in the repository.
    pub fn target_name(&self) -> String {
        target_name(&self.name, &self.version)
    }

    pub(crate) fn to_custom(
        &self,
    ) -> Result<std::collections::HashMap<String, serde_json::Value>, Error> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => Ok(map.into_iter().collect()),
            Ok(_) | Err(_) => Err(Error::Invalid(
                "component metadata does not serialize".into(),
            )),
        }
    }

    pub(crate) fn from_custom(
        target: &str,
        custom: &std::collections::HashMap<String, serde_json::Value>,
    ) -> Result<Self, Error> {
        let map: serde_json::Map<String, serde_json::Value> =
            custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let meta: ComponentMeta =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
                Error::ComponentMetadata {
                    target: target.into(),
                    detail: e.to_string(),
                }
            })?;
        // The signed name must be the path it is published under, or one component's release
        // could pose as another's.
        if meta.target_name() != target {
            return Err(Error::ComponentMetadata {
                target: target.into(),
                detail: format!(
                    "metadata says {} {}, which is published as {}",
                    meta.name,
                    meta.version,
                    meta.target_name()
                ),
            });
        }
        Ok(meta)
    }
}

/// The target name of a component version.
pub fn target_name(name: &str, version: &semver::Version) -> String {
    format!("components/{name}/{version}.wasm")
}

/// Component names: lowercase ASCII letters, digits and `-`, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "component name {name:?}: use lowercase letters, digits and '-', starting with a letter"
        )))
    }
}
