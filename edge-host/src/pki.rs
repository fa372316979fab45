//! Device identity: a small certificate authority, device and server certificates, revocation,
//! and the rustls configurations for mutual TLS 1.3.
//!
//! Devices authenticate with X.509 client certificates (DESIGN.md, "Domain rules"). A device
//! certificate names its device in the subject (CN = device id) and in the subject alternative
//! names: the participant's email as an rfc822Name and the device as the URI
//! `urn:wattlet:device:<device-id>`. Servers get certificates for DNS names and IP addresses.
//!
//! - [`CertificateAuthority`] issues certificates and CRLs in memory (for tests and `wattlet up`).
//! - [`CaDir`] keeps a CA on disk (`ca.crt`, `ca.key`, `issued/`, `crl.pem`): what `wattlet ca`
//!   works on.
//! - [`server_tls_config`] and [`client_tls_config`] load PEM files into rustls configurations:
//!   TLS 1.3 only, client certificate required and checked against the CA and the CRL.
//! - [`ClientIdentity`] is what a verified device certificate says about its holder.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// The URI prefix of a device identity in a certificate's subject alternative names.
pub const DEVICE_URI_PREFIX: &str = "urn:wattlet:device:";
/// Default validity of a device certificate: 5 years.
pub const DEFAULT_DEVICE_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// Default validity of a server certificate: 1 year.
pub const DEFAULT_SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default validity of a CA certificate: 10 years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates are valid from a few minutes before they are issued, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// ALPN: the host speaks HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Everything that can go wrong with certificates, keys, CRLs and the CA directory.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid device id {0:?}: use 1–64 characters of A–Z, a–z, 0–9, '.', '_' and '-'")]
    InvalidDeviceId(String),
    #[error("invalid email address {0:?}")]
    InvalidEmail(String),
    #[error("invalid server name {0:?}: use a DNS name such as `localhost` or `api.example.org`")]
    InvalidServerName(String),
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    #[error("invalid serial number {0:?}: give it in hex, as `wattlet ca list` prints it")]
    InvalidSerial(String),
    #[error("cannot create the certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
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
    #[error("malformed certificate revocation list: {0}")]
    Crl(String),
    #[error("the certificate carries no wattlet device identity ({0})")]
    NotADevice(&'static str),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

type Result<T, E = PkiError> = std::result::Result<T, E>;

/// Checks a device id: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn validate_device_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidDeviceId(id.to_owned()))
    }
}

/// A plausibility check of an email address (one `@`, a local part, a dotted-or-not domain,
/// printable ASCII without spaces): what an rfc822Name may hold.
pub fn validate_email(email: &str) -> Result<()> {
    let invalid = || PkiError::InvalidEmail(email.to_owned());
    if email.len() > 254 || !email.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') || !valid_dns_name(domain) {
        return Err(invalid());
    }
    Ok(())
}

fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        })
}

/// Normalises a serial number given in hex (`0a:1b…`, `0x0A1B…`, `0a1b…`) to lowercase hex
/// without separators or leading zero bytes.
pub fn normalize_serial(hex_serial: &str) -> Result<String> {
    let invalid = || PkiError::InvalidSerial(hex_serial.to_owned());
    let trimmed = hex_serial.trim();
    let trimmed = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let digits: String = trimmed.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 40 {
        return Err(invalid());
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(&padded).map_err(|_| invalid())?;
    Ok(serial_hex(&bytes))
}

/// Lowercase hex of a serial number's bytes, leading zero bytes dropped (DER may add one).
pub fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex::encode(&bytes[start..])
}

/// A random, positive 16-byte serial number (RFC 5280: at most 20 bytes, unpredictable).
fn random_serial() -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Certificate("no random numbers available".into()))?;
    // Positive and without a leading zero: the same 32 hex digits everywhere.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(bytes)
}

fn ia5(value: &str, error: impl Fn() -> PkiError) -> Result<Ia5String> {
    Ia5String::try_from(value).map_err(|_| error())
}

/// A certificate and its private key, PEM-encoded, as issued.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM): keep it secret (files mode 0600).
    pub key_pem: String,
    /// The serial number, lowercase hex.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes `PREFIX.crt` and `PREFIX.key` (mode 0600); returns their paths.
    pub fn write(&self, prefix: &Path) -> Result<(PathBuf, PathBuf)> {
        let cert = with_suffix(prefix, "crt");
        let key = with_suffix(prefix, "key");
        write_atomic(&key, self.key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert, self.cert_pem.as_bytes(), 0o644)?;
        Ok((cert, key))
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// What a device certificate is issued for.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    /// 1–64 characters of `[A-Za-z0-9._-]`; the subject CN and `urn:wattlet:device:<id>`.
    pub device_id: String,
    /// The participant's email (rfc822Name).
    pub email: String,
    /// Default [`DEFAULT_DEVICE_VALIDITY`] (5 years).
    pub validity: Duration,
}

impl DeviceRequest {
    pub fn new(device_id: impl Into<String>, email: impl Into<String>) -> Self {
        DeviceRequest {
            device_id: device_id.into(),
            email: email.into(),
            validity: DEFAULT_DEVICE_VALIDITY,
        }
    }
}

/// What a server certificate is issued for.
#[derive(Debug, Clone)]
pub struct ServerRequest {
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Default [`DEFAULT_SERVER_VALIDITY`] (1 year).
    pub validity: Duration,
}

impl Default for ServerRequest {
    /// `localhost` and `127.0.0.1`, valid for a year.
    fn default() -> Self {
        ServerRequest {
            dns_names: vec!["localhost".to_owned()],
            ip_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            validity: DEFAULT_SERVER_VALIDITY,
        }
    }
}

/// A revoked certificate, as listed in a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Lowercase hex.
    pub serial_hex: String,
    pub revoked_at: SystemTime,
}

/// A certificate authority in memory: its certificate and its signing key (ECDSA P-256).
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a self-signed CA named `common_name`, with a fresh ECDSA P-256 key.
    pub fn new(common_name: &str, validity: Duration) -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "wattlet");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + validity).into();
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and private key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Certificate(format!("CA certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate (PEM): what servers and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA's private key (PKCS#8 PEM).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    fn leaf_params(
        &self,
        validity: Duration,
    ) -> Result<(CertificateParams, SystemTime, SystemTime)> {
        let mut params = CertificateParams::default();
        let now = SystemTime::now();
        let not_before = now - BACKDATE;
        let not_after = now + validity;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        Ok((params, not_before, not_after))
    }

    fn sign(
        &self,
        params: CertificateParams,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| serial_hex(&s.to_bytes()))
            .unwrap_or_default();
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial_hex: serial,
            not_before,
            not_after,
        })
    }

    /// Issues a device (client) certificate: CN = device id, SAN = the email (rfc822Name) and
    /// `urn:wattlet:device:<device id>` (URI), extended key usage clientAuth.
    pub fn issue_device(&self, request: &DeviceRequest) -> Result<IssuedCert> {
        validate_device_id(&request.device_id)?;
        validate_email(&request.email)?;
        let (mut params, not_before, not_after) = self.leaf_params(request.validity)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, request.device_id.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::Rfc822Name(ia5(&request.email, || {
                PkiError::InvalidEmail(request.email.clone())
            })?),
            SanType::URI(ia5(
                &format!("{DEVICE_URI_PREFIX}{}", request.device_id),
                || PkiError::InvalidDeviceId(request.device_id.clone()),
            )?),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, not_before, not_after)
    }

    /// Issues a server certificate for DNS names and IP addresses, extended key usage
    /// serverAuth. CN = the first name.
    pub fn issue_server(&self, request: &ServerRequest) -> Result<IssuedCert> {
        if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
            return Err(PkiError::NoServerNames);
        }
        let (mut params, not_before, not_after) = self.leaf_params(request.validity)?;
        let mut sans = Vec::new();
        for name in &request.dns_names {
            if !valid_dns_name(name) {
                return Err(PkiError::InvalidServerName(name.clone()));
            }
            sans.push(SanType::DnsName(ia5(name, || {
                PkiError::InvalidServerName(name.clone())
            })?));
        }
        sans.extend(
            request
                .ip_addresses
                .iter()
                .map(|ip| SanType::IpAddress(*ip)),
        );
        let common_name = request
            .dns_names
            .first()
            .cloned()
            .or_else(|| request.ip_addresses.first().map(IpAddr::to_string))
            .unwrap_or_default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, not_before, not_after)
    }

    /// A CRL signed by this CA listing `revoked` (PEM). `crl_number` must grow with each CRL.
    pub fn crl_pem(&self, revoked: &[Revocation], crl_number: u64) -> Result<String> {
        let now = SystemTime::now();
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                let bytes = hex::decode(&r.serial_hex)
                    .map_err(|_| PkiError::InvalidSerial(r.serial_hex.clone()))?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: r.revoked_at.into(),
                    reason_code: Some(RevocationReason::Unspecified),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update: (now - BACKDATE).into(),
            // rustls does not enforce nextUpdate by default; servers reload the file when it
            // changes.
            next_update: (now + Duration::from_secs(365 * 24 * 3600)).into(),
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// The serial numbers (lowercase hex) listed in every CRL of a PEM file's contents.
pub fn revoked_serials(crl_pem: &[u8]) -> Result<HashSet<String>> {
    let mut serials = HashSet::new();
    let mut found = false;
    for der in CertificateRevocationListDer::pem_slice_iter(crl_pem) {
        let der = der.map_err(|e| PkiError::Crl(e.to_string()))?;
        found = true;
        let (_, crl) =
            x509_parser::parse_x509_crl(&der).map_err(|e| PkiError::Crl(e.to_string()))?;
        serials.extend(
            crl.iter_revoked_certificates()
                .map(|r| serial_hex(r.raw_serial())),
        );
    }
    if !found {
        return Err(PkiError::Crl("no X509 CRL block in the file".into()));
    }
    Ok(serials)
}

/// The serial number (lowercase hex) of a PEM certificate.
pub fn certificate_serial(cert_pem: &[u8]) -> Result<String> {
    let der = CertificateDer::from_pem_slice(cert_pem)
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    Ok(serial_hex(cert.raw_serial()))
}

/// The identity a verified device certificate asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// From the SAN URI `urn:wattlet:device:<device id>`.
    pub device_id: String,
    /// From the SAN rfc822Name.
    pub email: String,
    /// The certificate's serial number, lowercase hex.
    pub serial_hex: String,
}

impl ClientIdentity {
    /// Reads the identity from a device certificate (DER). Only call it on a certificate that
    /// was verified (e.g. a rustls peer certificate): this does not check signatures.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| PkiError::Certificate(e.to_string()))?
            .ok_or(PkiError::NotADevice("no subject alternative names"))?;
        let mut device_id = None;
        let mut email = None;
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::URI(uri) => {
                    if let Some(id) = uri.strip_prefix(DEVICE_URI_PREFIX) {
                        if device_id.is_some() {
                            return Err(PkiError::NotADevice("more than one device URI"));
                        }
                        device_id = Some(id.to_owned());
                    }
                }
                x509_parser::extensions::GeneralName::RFC822Name(mail) => {
                    if email.is_some() {
                        return Err(PkiError::NotADevice("more than one email address"));
                    }
                    email = Some((*mail).to_owned());
                }
                _ => {}
            }
        }
        let device_id = device_id.ok_or(PkiError::NotADevice("no urn:wattlet:device: URI"))?;
        validate_device_id(&device_id)?;
        let email = email.ok_or(PkiError::NotADevice("no email address"))?;
        Ok(ClientIdentity {
            device_id,
            email,
            serial_hex: serial_hex(cert.raw_serial()),
        })
    }

    /// Reads the identity from a PEM device certificate.
    pub fn from_pem(cert_pem: &[u8]) -> Result<Self> {
        let der = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        Self::from_der(&der)
    }
}

// ---------------------------------------------------------------------------------------------
// rustls configurations

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
        return Err(PkiError::Missing {
            path: path.to_owned(),
            what,
        });
    }
    Ok(items)
}

fn pem_error(path: &Path, source: rustls_pki_types::pem::Error) -> PkiError {
    match source {
        rustls_pki_types::pem::Error::Io(source) => PkiError::Io {
            path: path.to_owned(),
            source,
        },
        rustls_pki_types::pem::Error::NoItemsFound => PkiError::Missing {
            path: path.to_owned(),
            what: "matching item",
        },
        source => PkiError::Pem {
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

// ---------------------------------------------------------------------------------------------
// The CA directory

/// What kind of certificate a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    Device,
    Server,
}

/// One issued certificate, as recorded in `issued/<serial>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// Lowercase hex.
    pub serial: String,
    pub kind: CertKind,
    /// Device certificates: the device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Device certificates: the participant's email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Server certificates: DNS names and IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
    /// When the certificate was revoked (seconds since the Unix epoch), if it was.
    #[serde(default)]
    pub revoked_at: Option<u64>,
    /// The certificate (PEM).
    pub certificate: String,
}

impl IssuedRecord {
    /// The subject in one word: the device id, or the server's names.
    pub fn subject(&self) -> String {
        match self.kind {
            CertKind::Device => self.device_id.clone().unwrap_or_default(),
            CertKind::Server => self.names.join(","),
        }
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A certificate authority kept in a directory:
///
/// ```text
/// DIR/ca.crt            the CA certificate (PEM): give it to servers (--client-ca) and devices
/// DIR/ca.key            its private key (PEM, mode 0600)
/// DIR/issued/SERIAL.json one record per issued certificate (serial, subject, validity, revocation)
/// DIR/crl.pem           the current CRL, signed by the CA, rewritten atomically on each revocation
/// DIR/crlnumber         the number of the last CRL
/// ```
///
/// Not safe for concurrent writers: one `wattlet ca` at a time.
pub struct CaDir {
    dir: PathBuf,
    ca: CertificateAuthority,
}

impl std::fmt::Debug for CaDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaDir").field("dir", &self.dir).finish()
    }
}

impl CaDir {
    /// Creates a CA in `dir` (created if missing) with an empty CRL. Refuses to overwrite an
    /// existing CA unless `force` (which also forgets every issued certificate).
    pub fn init(dir: &Path, common_name: &str, validity: Duration, force: bool) -> Result<Self> {
        let ca_cert = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        if !force && (ca_cert.exists() || ca_key.exists()) {
            return Err(PkiError::AlreadyInitialized(dir.to_owned()));
        }
        let ca = CertificateAuthority::new(common_name, validity)?;
        create_dir(dir)?;
        let issued = dir.join("issued");
        if force && issued.is_dir() {
            fs::remove_dir_all(&issued).map_err(|source| PkiError::Io {
                path: issued.clone(),
                source,
            })?;
        }
        create_dir(&issued)?;
        write_atomic(&ca_key, ca.key_pem().as_bytes(), 0o600)?;
        write_atomic(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
        let ca_dir = CaDir {
            dir: dir.to_owned(),
            ca,
        };
        ca_dir.write_crl(0)?;
        Ok(ca_dir)
    }

    /// Opens the CA in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let ca_cert = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        if !ca_cert.is_file() || !ca_key.is_file() {
            return Err(PkiError::NotInitialized(dir.to_owned()));
        }
        let cert_pem = read_string(&ca_cert)?;
        let key_pem = read_string(&ca_key)?;
        let ca = CertificateAuthority::from_pem(&cert_pem, &key_pem)?;
        Ok(CaDir {
            dir: dir.to_owned(),
            ca,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/ca.crt`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `DIR/crl.pem`.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    pub fn authority(&self) -> &CertificateAuthority {
        &self.ca
    }

    fn record_path(&self, serial: &str) -> PathBuf {
        self.dir.join("issued").join(format!("{serial}.json"))
    }

    fn save_record(&self, record: &IssuedRecord) -> Result<()> {
        let path = self.record_path(&record.serial);
        let mut json = serde_json::to_vec_pretty(record).map_err(|source| PkiError::Record {
            path: path.clone(),
            source,
        })?;
        json.push(b'\n');
        create_dir(&self.dir.join("issued"))?;
        write_atomic(&path, &json, 0o644)
    }

    /// Issues a device certificate and records it.
    pub fn issue_device(&self, request: &DeviceRequest) -> Result<IssuedCert> {
        let issued = self.ca.issue_device(request)?;
        self.save_record(&IssuedRecord {
            serial: issued.serial_hex.clone(),
            kind: CertKind::Device,
            device_id: Some(request.device_id.clone()),
            email: Some(request.email.clone()),
            names: Vec::new(),
            not_before: unix_seconds(issued.not_before),
            not_after: unix_seconds(issued.not_after),
            revoked_at: None,
            certificate: issued.cert_pem.clone(),
        })?;
        Ok(issued)
    }

    /// Issues a server certificate and records it.
    pub fn issue_server(&self, request: &ServerRequest) -> Result<IssuedCert> {
        let issued = self.ca.issue_server(request)?;
        let names = request
            .dns_names
            .iter()
            .cloned()
            .chain(request.ip_addresses.iter().map(IpAddr::to_string))
            .collect();
        self.save_record(&IssuedRecord {
            serial: issued.serial_hex.clone(),
            kind: CertKind::Server,
            device_id: None,
            email: None,
            names,
            not_before: unix_seconds(issued.not_before),
            not_after: unix_seconds(issued.not_after),
            revoked_at: None,
            certificate: issued.cert_pem.clone(),
        })?;
        Ok(issued)
    }

    /// Every issued certificate, sorted by the time it became valid, then by serial.
    pub fn list(&self) -> Result<Vec<IssuedRecord>> {
        let issued = self.dir.join("issued");
        let entries = match fs::read_dir(&issued) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(PkiError::Io {
                    path: issued,
                    source,
                });
            }
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| PkiError::Io {
                path: issued.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = read_string(&path)?;
            let record: IssuedRecord =
                serde_json::from_str(&text).map_err(|source| PkiError::Record {
                    path: path.clone(),
                    source,
                })?;
            records.push(record);
        }
        records.sort_by(|a, b| (a.not_before, &a.serial).cmp(&(b.not_before, &b.serial)));
        Ok(records)
    }

    /// Revokes the certificate with this serial (hex) and rewrites `crl.pem` atomically.
    /// Returns `false` if it was revoked already (the CRL is rewritten anyway).
    pub fn revoke(&self, serial: &str) -> Result<bool> {
        let serial = normalize_serial(serial)?;
        let path = self.record_path(&serial);
        if !path.is_file() {
            return Err(PkiError::UnknownSerial(serial));
        }
        let text = read_string(&path)?;
        let mut record: IssuedRecord =
            serde_json::from_str(&text).map_err(|source| PkiError::Record {
                path: path.clone(),
                source,
            })?;
        let newly = record.revoked_at.is_none();
        if newly {
            record.revoked_at = Some(unix_seconds(SystemTime::now()));
            self.save_record(&record)?;
        }
        let number = self.next_crl_number()?;
        self.write_crl(number)?;
        Ok(newly)
    }

    /// Revokes the certificate in a PEM file (issued by this CA).
    pub fn revoke_cert_pem(&self, cert_pem: &[u8]) -> Result<bool> {
        self.revoke(&certificate_serial(cert_pem)?)
    }

    fn next_crl_number(&self) -> Result<u64> {
        let path = self.dir.join("crlnumber");
        let current = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
            Err(_) => 0,
        };
        Ok(current + 1)
    }

    fn write_crl(&self, number: u64) -> Result<()> {
        let revoked: Vec<Revocation> = self
            .list()?
            .into_iter()
            .filter_map(|r| {
                r.revoked_at.map(|at| Revocation {
                    serial_hex: r.serial,
                    revoked_at: UNIX_EPOCH + Duration::from_secs(at),
                })
            })
            .collect();
        let pem = self.ca.crl_pem(&revoked, number)?;
        write_atomic(&self.crl_path(), pem.as_bytes(), 0o644)?;
        write_atomic(
            &self.dir.join("crlnumber"),
            format!("{number}\n").as_bytes(),
            0o644,
        )
    }

    /// The serials this CA has revoked (from the records).
    pub fn revoked(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.revoked_at.is_some())
            .map(|r| r.serial)
            .collect())
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `path` atomically: a temporary file next to it (created with `mode`), synced, then
/// renamed over `path`; readers see the old or the new contents, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("not a file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Best effort: make the rename itself durable.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_certificate_round_trips_its_identity() {
        let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
        let issued = ca
            .issue_device(&DeviceRequest::new("pi-0042.home_A", "anna@example.org"))
            .expect("device cert");
        let identity = ClientIdentity::from_pem(issued.cert_pem.as_bytes()).expect("identity");
        assert_eq!(identity.device_id, "pi-0042.home_A");
        assert_eq!(identity.email, "anna@example.org");
        assert_eq!(identity.serial_hex, issued.serial_hex);
        assert_eq!(identity.serial_hex.len(), 32);
        assert_eq!(
            certificate_serial(issued.cert_pem.as_bytes()).expect("serial"),
            issued.serial_hex
        );

        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("der");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|c| c.as_str().expect("utf8").to_owned())
            .collect();
        assert_eq!(cn, ["pi-0042.home_A"]);
        let san = cert.subject_alternative_name().expect("san").expect("some");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("RFC822Name(\"anna@example.org\")")),
            "{names:?}"
        );
        assert!(
            names
                .iter()
                .any(|n| n.contains("URI(\"urn:wattlet:device:pi-0042.home_A\")")),
            "{names:?}"
        );
        // Serials are random.
        let other = ca
            .issue_device(&DeviceRequest::new("pi-0042.home_A", "anna@example.org"))
            .expect("device cert");
        assert_ne!(other.serial_hex, issued.serial_hex);
    }

    #[test]
    fn bad_device_ids_and_emails_are_rejected() {
        let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
        let long = "a".repeat(65);
        for id in [
            "",
            "has space",
            "slash/x",
            "ümlaut",
            "colon:x",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    ca.issue_device(&DeviceRequest::new(id, "a@example.org")),
                    Err(PkiError::InvalidDeviceId(_))
                ),
                "{id:?} accepted"
            );
        }
        validate_device_id(&"a".repeat(64)).expect("64 characters are fine");
        for email in [
            "",
            "no-at",
            "@example.org",
            "a@",
            "a b@example.org",
            "a@b@c",
        ] {
            assert!(
                matches!(
                    ca.issue_device(&DeviceRequest::new("dev1", email)),
                    Err(PkiError::InvalidEmail(_))
                ),
                "{email:?} accepted"
            );
        }
    }

    #[test]
    fn server_certificate_is_not_a_device() {
        let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
        let server = ca.issue_server(&ServerRequest::default()).expect("server");
        assert!(matches!(
            ClientIdentity::from_pem(server.cert_pem.as_bytes()),
            Err(PkiError::NotADevice(_))
        ));
        assert!(matches!(
            ca.issue_server(&ServerRequest {
                dns_names: vec![],
                ip_addresses: vec![],
                validity: DEFAULT_SERVER_VALIDITY
            }),
            Err(PkiError::NoServerNames)
        ));
    }

    #[test]
    fn ca_directory_revokes_into_the_crl() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_dir = dir.path().join("ca");
        let ca = CaDir::init(&ca_dir, "test CA", DEFAULT_CA_VALIDITY, false).expect("init");
        assert!(matches!(
            CaDir::init(&ca_dir, "again", DEFAULT_CA_VALIDITY, false),
            Err(PkiError::AlreadyInitialized(_))
        ));
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(ca_dir.join("ca.key"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let empty = revoked_serials(&fs::read(ca.crl_path()).expect("crl")).expect("parse");
        assert!(empty.is_empty());

        let ca = CaDir::open(&ca_dir).expect("open");
        let a = ca
            .issue_device(&DeviceRequest::new("a", "a@example.org"))
            .expect("a");
        let b = ca
            .issue_device(&DeviceRequest::new("b", "b@example.org"))
            .expect("b");
        assert!(ca.revoke(&a.serial_hex.to_uppercase()).expect("revoke"));
        assert!(!ca.revoke(&a.serial_hex).expect("revoke again"));
        let crl = fs::read(ca.crl_path()).expect("crl");
        let revoked = revoked_serials(&crl).expect("parse");
        assert!(revoked.contains(&a.serial_hex));
        assert!(!revoked.contains(&b.serial_hex));
        assert!(matches!(
            ca.revoke("abcdef"),
            Err(PkiError::UnknownSerial(_))
        ));
        assert!(matches!(ca.revoke("xyz"), Err(PkiError::InvalidSerial(_))));

        let listed = ca.list().expect("list");
        assert_eq!(listed.len(), 2);
        assert!(
            listed
                .iter()
                .any(|r| r.serial == a.serial_hex && r.revoked_at.is_some())
        );

        // The CRL verifies against the CA for rustls.
        let server = ca.issue_server(&ServerRequest::default()).expect("server");
        let (cert, key) = server.write(&dir.path().join("server")).expect("write");
        server_tls_config(
            &cert,
            &key,
            &ca.ca_cert_path(),
            Some(&ca.crl_path()),
            ClientAuth::Required,
        )
        .expect("server config");
        let (dcert, dkey) = b.write(&dir.path().join("device")).expect("write");
        client_tls_config(&dcert, &dkey, &ca.ca_cert_path()).expect("client config");
    }

    #[test]
    fn missing_ca_directory_says_init() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = CaDir::open(&dir.path().join("nope")).expect_err("no CA");
        assert!(error.to_string().contains("wattlet ca init"), "{error}");
    }

    #[test]
    fn serials_normalise() {
        assert_eq!(normalize_serial("0x00:0A:1b").expect("ok"), "0a1b");
        assert_eq!(normalize_serial("a1b").expect("ok"), "0a1b");
        assert!(normalize_serial("").is_err());
    }
}
