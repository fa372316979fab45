//! What went wrong, in the terms of the threat it stopped.
//!
//! tough reports hundreds of distinct failures; the device and the administrator need to know
//! which guarantee held (signature, hash, length, expiry, rollback, …), so each tough error is
//! classified here, with tough's own message kept as the detail.

use std::path::{Path, PathBuf};

/// Errors of the update repository, its publisher and its verifier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device clock is earlier than a time it has already seen (or than the build): expiry
    /// cannot be judged, so nothing is accepted until the clock is set.
    #[error(
        "the clock says {now}, earlier than the time floor {floor} (the build time or the last \
         successful update check): the clock stepped backwards or is not set yet; refusing to \
         judge metadata expiry until it is synchronised"
    )]
    ClockBehindFloor {
        now: jiff::Timestamp,
        floor: jiff::Timestamp,
    },

    /// Metadata without a threshold of valid signatures from the keys trusted for its role.
    #[error("{role} metadata is not signed by a threshold of its trusted keys: {detail}")]
    Signature { role: String, detail: String },

    /// A file whose SHA-256 differs from what signed metadata pins (a changed component, or
    /// metadata from another release: mix-and-match).
    #[error("{what} does not match the hash its signed metadata pins: {detail}")]
    HashMismatch { what: String, detail: String },

    /// A file longer than signed metadata or the device's limits allow (wrong length, or an
    /// endless-data attack).
    #[error("{what} is longer than allowed ({max} bytes, set by {by})")]
    TooLarge { what: String, max: u64, by: String },

    /// Metadata past its expiry (a freeze attack, or a repository nobody refreshed).
    #[error("{role} metadata has expired: a frozen or stale repository; refusing it")]
    Expired { role: String },

    /// Metadata older than what the device already trusts.
    #[error(
        "rollback refused: {role} version {offered} is older than the trusted version {trusted}"
    )]
    Rollback {
        role: String,
        trusted: u64,
        offered: u64,
    },

    /// Metadata whose version differs from the version its parent pins (mix-and-match).
    #[error(
        "{role} version {fetched} is not the version {expected} the snapshot pins (mix-and-match)"
    )]
    VersionMismatch {
        role: String,
        fetched: u64,
        expected: u64,
    },

    /// A delegated role listed a target outside the paths delegated to it.
    #[error("a delegated role signed a target outside the paths delegated to it: {detail}")]
    OutsideDelegation { detail: String },

    /// Metadata that does not parse or breaks the format's rules.
    #[error("malformed {what}: {detail}")]
    Malformed { what: String, detail: String },

    /// The repository could not be reached or a file was missing.
    #[error("could not fetch {url}: {detail}")]
    Transport { url: String, detail: String },

    /// A component target's custom metadata is missing or wrong.
    #[error("target {target} has invalid component metadata: {detail}")]
    ComponentMetadata { target: String, detail: String },

    /// A component name or version the repository does not accept.
    #[error("{0}")]
    Invalid(String),

    /// A key file that cannot be used.
    #[error("key {path}: {reason}")]
    Key { path: PathBuf, reason: String },

    /// Not enough keys to sign a role.
    #[error(
        "not enough {role} keys in {dir} to meet the role's threshold: put the role's key files \
         ({role}-<n>.pem) there"
    )]
    MissingKeys { role: String, dir: PathBuf },

    /// (The I/O error is in the message, not a source: `anyhow`'s chain would print it twice.)
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// Any other failure inside tough (its message says what).
    #[error("{0}")]
    Tuf(String),
}

impl Error {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            error,
        }
    }

    /// The short name of the guarantee that refused an update (for logs, metrics and health
    /// reports; stable, unlike messages).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ClockBehindFloor { .. } => "clock-behind-floor",
            Error::Signature { .. } => "signature",
            Error::HashMismatch { .. } => "hash-mismatch",
            Error::TooLarge { .. } => "too-large",
            Error::Expired { .. } => "expired",
            Error::Rollback { .. } => "rollback",
            Error::VersionMismatch { .. } => "version-mismatch",
            Error::OutsideDelegation { .. } => "outside-delegation",
            Error::Malformed { .. } => "malformed",
            Error::Transport { .. } => "transport",
            Error::ComponentMetadata { .. } => "component-metadata",
            Error::Invalid(_) => "invalid",
            Error::Key { .. } => "key",
            Error::MissingKeys { .. } => "missing-keys",
            Error::Io { .. } => "io",
            Error::Tuf(_) => "tuf",
        }
    }
}

impl From<tough::error::Error> for Error {
    fn from(error: tough::error::Error) -> Self {
        classify(&error).unwrap_or_else(|| Error::Tuf(chain(&error)))
    }
}

impl From<tough::schema::Error> for Error {
    fn from(error: tough::schema::Error) -> Self {
        Error::Tuf(chain(&error))
    }
}

impl From<tough::TransportError> for Error {
    fn from(error: tough::TransportError) -> Self {
        classify(&error).unwrap_or_else(|| Error::Transport {
            url: error.url().to_owned(),
            detail: chain(&error),
        })
    }
}

/// The first error in `error`'s source chain that names a guarantee. Hash and size failures
/// happen inside a download stream and reach us wrapped in a transport error.
fn classify(error: &(dyn std::error::Error + 'static)) -> Option<Error> {
    use tough::error::Error as T;
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<T>() {
            let found = match t {
                T::ExpiredMetadata { role, .. } => Some(Error::Expired {
                    role: role.to_string(),
                }),
                T::HashMismatch { context, .. } => Some(Error::HashMismatch {
                    what: context.clone(),
                    detail: t.to_string(),
                }),
                T::MaxSizeExceeded {
                    max_size,
                    specifier,
                    ..
                } => Some(Error::TooLarge {
                    what: "a downloaded file".into(),
                    max: *max_size,
                    by: (*specifier).into(),
                }),
                T::OlderMetadata {
                    role,
                    current_version,
                    new_version,
                    ..
                } => Some(Error::Rollback {
                    role: role.to_string(),
                    trusted: *current_version,
                    offered: *new_version,
                }),
                T::OlderSnapshotInTimestamp {
                    snapshot_new,
                    snapshot_old,
                    ..
                } => Some(Error::Rollback {
                    role: "snapshot".into(),
                    trusted: *snapshot_old,
                    offered: *snapshot_new,
                }),
                T::SnapshotRoleRollback {
                    role,
                    old_role_version,
                    new_role_version,
                    ..
                } => Some(Error::Rollback {
                    role: role.trim_end_matches(".json").into(),
                    trusted: *old_role_version,
                    offered: *new_role_version,
                }),
                T::SnapshotRoleMissing { role, .. } => Some(Error::Rollback {
                    role: role.trim_end_matches(".json").into(),
                    trusted: 1,
                    offered: 0,
                }),
                T::VerifyMetadata { role, source, .. } => Some(Error::Signature {
                    role: role.to_string(),
                    detail: source.to_string(),
                }),
                T::VerifyRoleMetadata { role, source, .. } => Some(Error::Signature {
                    role: role.clone(),
                    detail: source.to_string(),
                }),
                T::VerifyTrustedMetadata { source, .. } => Some(Error::Signature {
                    role: "trusted root".into(),
                    detail: source.to_string(),
                }),
                T::VersionMismatch {
                    role,
                    fetched,
                    expected,
                    ..
                } => Some(Error::VersionMismatch {
                    role: role.to_string(),
                    fetched: *fetched,
                    expected: *expected,
                }),
                T::InvalidPath { source } => Some(Error::OutsideDelegation {
                    detail: source.to_string(),
                }),
                T::SystemTimeSteppedBackward {
                    sys_time,
                    latest_known_time,
                } => Some(Error::ClockBehindFloor {
                    now: *sys_time,
                    floor: *latest_known_time,
                }),
                T::ParseMetadata { role, source, .. } => Some(Error::Malformed {
                    what: format!("{role} metadata"),
                    detail: source.to_string(),
                }),
                T::ParseTrustedMetadata { source, .. } => Some(Error::Malformed {
                    what: "trusted root".into(),
                    detail: source.to_string(),
                }),
                T::Transport { url, source, .. } => {
                    // A wrapped hash or size failure is more specific than the fetch itself.
                    classify(source).or_else(|| {
                        Some(Error::Transport {
                            url: url.to_string(),
                            detail: chain(source),
                        })
                    })
                }
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        current = e.source();
    }
    None
}

/// An error and its sources on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        current = e.source();
    }
    text
}
