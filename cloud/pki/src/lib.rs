//! The certificate authority of a survey: device and server certificates, revocation.
//!
//! Devices authenticate with X.509 client certificates (DESIGN.md, "Domain rules"); what a
//! certificate must say and how servers and devices read it is `wattlet-tls`. This crate issues
//! them:
//!
//! - [`CertificateAuthority`] issues certificates and CRLs in memory (for tests and `wattlet up`).
//! - [`CaDir`] keeps a CA on disk (`ca.crt`, `ca.key`, `issued/`, `crl.pem`): what `wattlet ca`
//!   works on.

mod authority;
mod dir;

use std::path::PathBuf;
use std::time::Duration;

pub use authority::{
    CertificateAuthority, DeviceRequest, IssuedCert, Revocation, ServerRequest, SignedCert,
};
pub use dir::{CaDir, CertKind, IssuedRecord, write_atomic};

/// Default validity of a device certificate: 5 years.
pub const DEFAULT_DEVICE_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// Default validity of a server certificate: 1 year.
pub const DEFAULT_SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default validity of a CA certificate: 10 years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Everything that can go wrong issuing certificates and keeping the CA directory.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid server name {0:?}: use a DNS name such as `localhost` or `api.example.org`")]
    InvalidServerName(String),
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    #[error("cannot create the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a certificate authority directory (run `wattlet ca init --dir {}` first)", .0.display(), .0.display())]
    NotInitialized(PathBuf),
    #[error("{}: a certificate authority already exists there (use --force to replace it)", .0.display())]
    AlreadyInitialized(PathBuf),
    #[error("{}: malformed record: {source}", path.display())]
    Record {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("no certificate with serial {0} was issued by this CA")]
    UnknownSerial(String),
    #[error("malformed certificate: {0}")]
    Certificate(String),
    #[error("refused certificate signing request: {0}")]
    Csr(String),
    /// A device id, email, serial, certificate or CRL that `wattlet-tls` refused.
    #[error(transparent)]
    Tls(#[from] wattlet_tls::TlsError),
}

type Result<T, E = PkiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
