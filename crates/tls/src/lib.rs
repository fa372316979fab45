//! Mutual TLS 1.3 between devices and the cloud (DESIGN.md, "Domain rules").
//!
//! A device certificate names its device in the subject (CN = device id) and in the subject
//! alternative names: the participant's email as an rfc822Name and the device as the URI
//! `urn:wattlet:device:<device-id>`. Certificates are issued by `wattlet-pki`; this crate reads
//! them:
//!
//! - [`server_tls_config`], [`client_tls_config`] and [`anonymous_client_tls_config`] load PEM
//!   files into rustls configurations: TLS 1.3 only, client certificates checked against the
//!   CA and the CRL.
//! - [`ClientIdentity`] is what a verified device certificate says about its holder;
//!   [`revoked_serials`] what a CRL revokes, [`crl_next_update`] until when it counts;
//!   [`not_after`] when a certificate expires.

mod config;
mod identity;

use std::path::PathBuf;

pub use config::{
    ClientAuth, anonymous_client_tls_config, client_tls_config, install_default_provider,
    server_tls_config,
};
pub use identity::{
    ClientIdentity, DEVICE_URI_PREFIX, certificate_serial, crl_next_update, normalize_serial,
    not_after, revoked_serials, serial_hex, valid_dns_name, validate_device_id, validate_email,
};

/// Everything that can go wrong reading certificates, keys and CRLs.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid device id {0:?}: use 1–64 characters of A–Z, a–z, 0–9, '.', '_' and '-'")]
    InvalidDeviceId(String),
    #[error("invalid email address {0:?}")]
    InvalidEmail(String),
    #[error("invalid serial number {0:?}: give it in hex, as `wattlet ca list` prints it")]
    InvalidSerial(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: no {what} found in the PEM file", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("malformed certificate: {0}")]
    Certificate(String),
    #[error("malformed certificate revocation list: {0}")]
    Crl(String),
    #[error("the certificate carries no wattlet device identity ({0})")]
    NotADevice(&'static str),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

type Result<T, E = TlsError> = std::result::Result<T, E>;
