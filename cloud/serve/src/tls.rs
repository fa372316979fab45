//! Mutual TLS 1.3 for `wattlet serve`, with revocation checked per request.
//!
//! rustls checks a client certificate against the CRL only during a full handshake, reads the
//! CRL once when the verifier is built, and resumes sessions without re-checking (DESIGN.md,
//! "Known pitfalls"). So the server watches the CRL file: on every new connection and every
//! request it compares the file's metadata (one `stat`, no read) with what it loaded; when the
//! file changed it reloads the revoked serials and builds a fresh `ServerConfig` (with a fresh
//! session cache, so no session of the old configuration resumes) for new handshakes. Requests
//! whose peer certificate is revoked get 403 before any component runs.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use anyhow::Context;
use tokio_rustls::TlsAcceptor;

use wattlet_tls as pki;
pub use wattlet_tls::ClientAuth;

/// The files `wattlet serve --tls-cert … --tls-key … --client-ca … [--crl …]` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA(s) that issue device certificates (PEM); every client must present one.
    pub client_ca: PathBuf,
    /// A CRL (PEM) signed by the client CA, watched for changes. Without it nothing is revoked.
    pub crl: Option<PathBuf>,
    /// Whether every client must present a certificate. With `Optional`, clients without one
    /// are served without an identity (components see no `x-wattlet-client-*` headers).
    pub client_auth: ClientAuth,
}

/// What identifies one version of the CRL file: an atomic rename changes the inode, an
/// in-place write the modification time or the length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

struct Current {
    acceptor: TlsAcceptor,
    revoked: Arc<HashSet<String>>,
    /// `None` before the first successful stat (or without a CRL).
    stamp: Option<FileStamp>,
}

/// The server's TLS state: the acceptor for new handshakes and the revoked serials, both
/// replaced when the CRL file changes.
pub struct TlsState {
    options: TlsOptions,
    current: RwLock<Current>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn build(options: &TlsOptions) -> anyhow::Result<(TlsAcceptor, HashSet<String>)> {
    let config = pki::server_tls_config(
        &options.cert,
        &options.key,
        &options.client_ca,
        options.crl.as_deref(),
        options.client_auth,
    )?;
    let revoked = match &options.crl {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            pki::revoked_serials(&pem).with_context(|| format!("{}", path.display()))?
        }
        None => HashSet::new(),
    };
    Ok((TlsAcceptor::from(Arc::new(config)), revoked))
}

impl TlsState {
    /// Loads the certificate, key, client CA and CRL; any problem is an error naming the file.
    pub fn load(options: &TlsOptions) -> anyhow::Result<Self> {
        // Stat before reading: a change in between is seen (and reloaded) on the next check.
        let stamp = match &options.crl {
            Some(path) => {
                Some(FileStamp::of(path).with_context(|| format!("CRL {}", path.display()))?)
            }
            None => None,
        };
        let (acceptor, revoked) = build(options)?;
        if let Some(path) = &options.crl {
            tracing::info!(crl = %path.display(), revoked = revoked.len(), "loaded certificate revocation list");
        }
        Ok(TlsState {
            options: options.clone(),
            current: RwLock::new(Current {
                acceptor,
                revoked: Arc::new(revoked),
                stamp,
            }),
        })
    }

    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    /// Reloads the CRL and rebuilds the configuration if the CRL file changed. A CRL that
    /// cannot be read or parsed is logged and the previous state kept (what was revoked stays
    /// revoked); it is tried again when the file changes again.
    pub fn refresh(&self) {
        let Some(path) = &self.options.crl else {
            return;
        };
        let stamp = match FileStamp::of(path) {
            Ok(stamp) => Some(stamp),
            Err(error) => {
                let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                if current.stamp.is_some() {
                    tracing::error!(crl = %path.display(), %error, "cannot read the CRL; keeping the previous one");
                    current.stamp = None;
                }
                return;
            }
        };
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.stamp == stamp {
                return;
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.stamp == stamp {
            return; // another thread reloaded it meanwhile
        }
        current.stamp = stamp;
        match build(&self.options) {
            Ok((acceptor, revoked)) => {
                tracing::info!(crl = %path.display(), revoked = revoked.len(), "CRL changed: reloaded, new handshakes use it");
                current.acceptor = acceptor;
                current.revoked = Arc::new(revoked);
            }
            Err(error) => {
                tracing::error!(crl = %path.display(), error = format!("{error:#}"), "cannot reload the TLS configuration; keeping the previous one");
            }
        }
    }

    /// The acceptor for a new connection (after checking the CRL file for changes).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.refresh();
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .acceptor
            .clone()
    }

    /// Whether the certificate with this serial (lowercase hex) is revoked now (after checking
    /// the CRL file for changes).
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        self.refresh();
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revoked
            .contains(serial_hex)
    }
}
