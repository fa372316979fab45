//! Mutual TLS 1.3 for `wattlet serve`, with revocation checked per request.
//!
//! rustls checks a client certificate against the CRL only during a full handshake, reads the
//! CRL once when the verifier is built, and resumes sessions without re-checking (DESIGN.md,
//! "Known pitfalls"). So the server watches the CRL file: on every new connection and every
//! request it compares the file's metadata (one `stat`, no read) with what it loaded; when the
//! file changed it reloads the revoked serials and builds a fresh `ServerConfig` (with a fresh
//! session cache, so no session of the old configuration resumes) for new handshakes. Requests
//! whose peer certificate is revoked get 403 before any component runs.
//!
//! A CRL past its `nextUpdate` may miss newer revocations (rustls does not check it): the same
//! checks report it, with a warning (once per CRL file) and the metrics
//! `wattlet_http_tls_crl_expired` (1 while past) and `wattlet_http_tls_crl_next_update_seconds`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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
    /// The CRL's `nextUpdate` (seconds since 1970), if it has one.
    next_update: Option<i64>,
    /// `None` before the first successful stat (or without a CRL).
    stamp: Option<FileStamp>,
}

/// The server's TLS state: the acceptor for new handshakes and the revoked serials, both
/// replaced when the CRL file changes.
pub struct TlsState {
    options: TlsOptions,
    current: RwLock<Current>,
    /// 1 while the CRL is past its `nextUpdate`.
    crl_expired: Gauge,
    /// The CRL's `nextUpdate`, seconds since 1970 (0 without).
    crl_next_update: Gauge,
    /// Whether the current CRL's expiry was logged already.
    expiry_logged: AtomicBool,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a configuration built from the files holds: the acceptor, the revoked serials and the
/// CRL's `nextUpdate`.
type Built = (TlsAcceptor, HashSet<String>, Option<i64>);

fn build(options: &TlsOptions) -> anyhow::Result<Built> {
    let config = pki::server_tls_config(
        &options.cert,
        &options.key,
        &options.client_ca,
        options.crl.as_deref(),
        options.client_auth,
    )?;
    let (revoked, next_update) = match &options.crl {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            let revoked =
                pki::revoked_serials(&pem).with_context(|| format!("{}", path.display()))?;
            let next = pki::crl_next_update(&pem).with_context(|| format!("{}", path.display()))?;
            (revoked, next)
        }
        None => (HashSet::new(), None),
    };
    Ok((TlsAcceptor::from(Arc::new(config)), revoked, next_update))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
        let (acceptor, revoked, next_update) = build(options)?;
        if let Some(path) = &options.crl {
            tracing::info!(crl = %path.display(), revoked = revoked.len(), "loaded certificate revocation list");
        }
        let state = TlsState {
            options: options.clone(),
            current: RwLock::new(Current {
                acceptor,
                revoked: Arc::new(revoked),
                next_update,
                stamp,
            }),
            crl_expired: Gauge::default(),
            crl_next_update: Gauge::default(),
            expiry_logged: AtomicBool::new(false),
        };
        state.check_expiry(next_update);
        Ok(state)
    }

    /// Registers the CRL's metrics (`tls_crl_expired`, `tls_crl_next_update_seconds`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tls_crl_expired",
            "1 while the certificate revocation list is past its nextUpdate (it may miss revocations)",
            self.crl_expired.clone(),
        );
        registry.register(
            "tls_crl_next_update_seconds",
            "When the certificate revocation list should be replaced (nextUpdate), seconds since 1970",
            self.crl_next_update.clone(),
        );
    }

    /// Whether the CRL is past its `nextUpdate` now (after checking the file for changes).
    pub fn crl_expired(&self) -> bool {
        self.refresh();
        self.crl_expired.get() == 1
    }

    /// Sets the metrics for a CRL with this `nextUpdate`, and logs once per CRL when it is past.
    fn check_expiry(&self, next_update: Option<i64>) {
        self.crl_next_update.set(next_update.unwrap_or(0));
        let expired = next_update.is_some_and(|next| next < unix_now());
        self.crl_expired.set(i64::from(expired));
        if expired && !self.expiry_logged.swap(true, Ordering::Relaxed) {
            let path = self.options.crl.as_deref().unwrap_or(Path::new(""));
            tracing::warn!(
                crl = %path.display(),
                next_update = next_update.unwrap_or(0),
                "the certificate revocation list is past its nextUpdate: it may miss newer revocations; issue a new one (`wattlet ca revoke` rewrites it)"
            );
        }
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
                // The same CRL: it may have passed its nextUpdate since the last check.
                if self.crl_expired.get() == 0 {
                    self.check_expiry(current.next_update);
                }
                return;
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.stamp == stamp {
            return; // another thread reloaded it meanwhile
        }
        current.stamp = stamp;
        match build(&self.options) {
            Ok((acceptor, revoked, next_update)) => {
                tracing::info!(crl = %path.display(), revoked = revoked.len(), "CRL changed: reloaded, new handshakes use it");
                current.acceptor = acceptor;
                current.revoked = Arc::new(revoked);
                current.next_update = next_update;
                self.expiry_logged.store(false, Ordering::Relaxed);
                self.check_expiry(next_update);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wattlet_pki::{CaDir, DEFAULT_CA_VALIDITY, ServerRequest};

    #[test]
    fn a_crl_past_its_next_update_is_reported_until_a_new_one_comes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = CaDir::init(
            &dir.path().join("ca"),
            "test CA",
            DEFAULT_CA_VALIDITY,
            false,
        )
        .expect("CA");
        let (cert, key) = ca
            .issue_server(&ServerRequest::default())
            .expect("server certificate")
            .write(&dir.path().join("server"))
            .expect("write");
        let crl = dir.path().join("crl.pem");
        let outdated = ca
            .authority()
            .crl_pem_until(&[], 1, SystemTime::now() - Duration::from_secs(60))
            .expect("CRL");
        std::fs::write(&crl, outdated).expect("write CRL");
        let options = TlsOptions {
            cert,
            key,
            client_ca: ca.ca_cert_path(),
            crl: Some(crl.clone()),
            client_auth: ClientAuth::Required,
        };
        let tls = TlsState::load(&options).expect("an outdated CRL still loads");
        let mut registry = Registry::default();
        tls.register(&mut registry);
        let metrics = || wattlet_runtime::metrics::encode_registry(&registry);
        assert!(tls.crl_expired());
        assert!(metrics().contains("tls_crl_expired 1"), "{}", metrics());

        let current = ca.authority().crl_pem(&[], 2).expect("CRL");
        wattlet_pki::write_atomic(&crl, current.as_bytes(), 0o644).expect("replace CRL");
        assert!(!tls.crl_expired());
        assert!(metrics().contains("tls_crl_expired 0"), "{}", metrics());
        let next = pki::crl_next_update(current.as_bytes())
            .expect("parses")
            .expect("a nextUpdate");
        assert!(
            metrics().contains(&format!("tls_crl_next_update_seconds {next}")),
            "{}",
            metrics()
        );
    }
}
