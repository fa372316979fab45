//! rustls configurations for mutual TLS 1.3, loaded from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::{Result, TlsError};

/// ALPN: wattlet's hosts speak HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring rustls's process-wide default. The update verifier's `tough` brings the aws-lc-rs
/// provider into any build that links it (and features are unified across a workspace build),
/// and with two providers compiled in rustls picks none: `ClientConfig::builder()`, which
/// dependencies call (wasmtime-wasi-http's outbound HTTPS, async-nats), would panic. Our own
/// configurations name their provider; this only settles the default. Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    load_all(path, "certificate")
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| pem_error(path, source))
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    load_all(path, "certificate revocation list (X509 CRL)")
}

/// Every PEM item of type `T` in `path`; none is an error naming `what` was missing.
fn load_all<T: PemObject>(path: &Path, what: &'static str) -> Result<Vec<T>> {
    let items = T::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|source| pem_error(path, source))?;
    if items.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            what,
        });
    }
    Ok(items)
}

fn pem_error(path: &Path, source: rustls_pki_types::pem::Error) -> TlsError {
    match source {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Io {
            path: path.to_owned(),
            source,
        },
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Missing {
            path: path.to_owned(),
            what: "matching item",
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    }
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// Whether a TLS server demands a client certificate at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Every client presents a certificate (a device-only endpoint).
    #[default]
    Required,
    /// Clients may come without one (people and services with bearer tokens); those that
    /// present one are verified just as strictly, and only they get an identity.
    Optional,
}

/// A rustls server configuration for mutual TLS: TLS 1.3 only, ALPN `http/1.1`, the server
/// presents `cert` (PEM chain) with `key` (PEM), and a client certificate must be issued by a
/// CA in `client_ca` (PEM) and not revoked by the CRLs in `crl` (PEM), if given (rustls's
/// `WebPkiClientVerifier` with the ring provider). `client_auth` says whether every client
/// must present one.
///
/// The CRL is read once: build a new configuration when it changes (rustls never re-reads it,
/// and resumed sessions are not re-checked — check revocation per request as well).
pub fn server_tls_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    crl: Option<&Path>,
    client_auth: ClientAuth,
) -> Result<ServerConfig> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let roots = load_roots(client_ca)?;
    let crls = match crl {
        Some(path) => load_crls(path)?,
        None => Vec::new(),
    };
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).with_crls(crls);
    let verifier = match client_auth {
        ClientAuth::Required => verifier.build()?,
        ClientAuth::Optional => verifier.allow_unauthenticated().build()?,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// A rustls client configuration for a device: TLS 1.3 only, ALPN `http/1.1`, servers must
/// present a certificate issued by a CA in `server_ca` (PEM), and the client presents
/// `device_cert` (PEM chain) with `device_key` (PEM).
pub fn client_tls_config(
    device_cert: &Path,
    device_key: &Path,
    server_ca: &Path,
) -> Result<ClientConfig> {
    let certs = load_certs(device_cert)?;
    let key = load_key(device_key)?;
    let roots = load_roots(server_ca)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// A rustls client configuration without a client certificate (an administrator's or a
/// researcher's tool, which authenticates with a bearer token): TLS 1.3 only, ALPN `http/1.1`,
/// servers must present a certificate issued by a CA in `server_ca` (PEM).
pub fn anonymous_client_tls_config(server_ca: &Path) -> Result<ClientConfig> {
    let roots = load_roots(server_ca)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}
