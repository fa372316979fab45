//! Issuing certificates and CRLs in memory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use wattlet_tls::{
    DEVICE_URI_PREFIX, serial_hex, valid_dns_name, validate_device_id, validate_email,
};

use crate::dir::write_atomic;
use crate::{DEFAULT_DEVICE_VALIDITY, DEFAULT_SERVER_VALIDITY, PkiError, Result};

/// Certificates are valid from a few minutes before they are issued, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

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

/// A certificate issued for a key the CA never saw (a device's certificate signing request):
/// the certificate only.
#[derive(Debug, Clone)]
pub struct SignedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The serial number, lowercase hex.
    pub serial_hex: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl SignedCert {
    /// Writes the certificate to `path` (mode 0644).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.cert_pem.as_bytes(), 0o644)
    }
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
    /// The server also connects to its peers with this certificate (a NATS cluster's routes,
    /// each server both accepting and dialling): clientAuth besides serverAuth.
    pub peer: bool,
}

impl Default for ServerRequest {
    /// `localhost` and `127.0.0.1`, valid for a year.
    fn default() -> Self {
        ServerRequest {
            dns_names: vec!["localhost".to_owned()],
            ip_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            validity: DEFAULT_SERVER_VALIDITY,
            peer: false,
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

/// Whether the request's key is ECDSA P-256, the one key type of the survey's devices. rcgen
/// names the key by the request's signature algorithm, which does not fix the curve: the
/// key as written into the certificate must equal the request's key byte for byte.
fn check_p256(csr_pem: &str, csr: &CertificateSigningRequestParams) -> Result<()> {
    use x509_parser::prelude::FromDer;
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::Csr(format!("not a PEM certificate signing request ({e})")))?;
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| PkiError::Csr(e.to_string()))?;
    let spki = parsed.certification_request_info.subject_pki.raw;
    if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256
        || csr.public_key.subject_public_key_info() != spki
    {
        return Err(PkiError::Csr(
            "its key is not ECDSA P-256 (devices make theirs with `wattlet-edge enrol`)".into(),
        ));
    }
    Ok(())
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
        let (params, not_before, not_after) = self.device_params(request)?;
        self.sign(params, not_before, not_after)
    }

    /// Issues a device certificate for the key in a certificate signing request (PEM) that the
    /// device made with a key that never left it (`wattlet-edge enrol`). The request's
    /// signature must verify (whoever sent it holds the key) and its key must be ECDSA P-256;
    /// everything the certificate says — device id, email, validity, usages — comes from
    /// `request`, never from the CSR's subject or extensions, which the device chose.
    pub fn sign_device_csr(&self, csr_pem: &str, request: &DeviceRequest) -> Result<SignedCert> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => PkiError::Csr(
                "its signature does not verify: it was altered, or not made with its key".into(),
            ),
            other => PkiError::Csr(format!("not a certificate signing request ({other})")),
        })?;
        check_p256(csr_pem, &csr)?;
        let (params, not_before, not_after) = self.device_params(request)?;
        let serial_hex = params
            .serial_number
            .as_ref()
            .map(|s| serial_hex(&s.to_bytes()))
            .unwrap_or_default();
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(SignedCert {
            cert_pem: cert.pem(),
            serial_hex,
            not_before,
            not_after,
        })
    }

    fn device_params(
        &self,
        request: &DeviceRequest,
    ) -> Result<(CertificateParams, SystemTime, SystemTime)> {
        validate_device_id(&request.device_id)?;
        validate_email(&request.email)?;
        let (mut params, not_before, not_after) = self.leaf_params(request.validity)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, request.device_id.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::Rfc822Name(ia5(&request.email, || {
                PkiError::Tls(wattlet_tls::TlsError::InvalidEmail(request.email.clone()))
            })?),
            SanType::URI(ia5(
                &format!("{DEVICE_URI_PREFIX}{}", request.device_id),
                || {
                    PkiError::Tls(wattlet_tls::TlsError::InvalidDeviceId(
                        request.device_id.clone(),
                    ))
                },
            )?),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok((params, not_before, not_after))
    }

    /// Issues a server certificate for DNS names and IP addresses, extended key usage
    /// serverAuth (and clientAuth for a peer). CN = the first name.
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
        if request.peer {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        self.sign(params, not_before, not_after)
    }

    /// A CRL signed by this CA listing `revoked` (PEM), to be replaced within a year (its
    /// `nextUpdate`). `crl_number` must grow with each CRL.
    pub fn crl_pem(&self, revoked: &[Revocation], crl_number: u64) -> Result<String> {
        let next_update = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
        self.crl_pem_until(revoked, crl_number, next_update)
    }

    /// [`CertificateAuthority::crl_pem`] with the `nextUpdate` given (a test's outdated CRL).
    pub fn crl_pem_until(
        &self,
        revoked: &[Revocation],
        crl_number: u64,
        next_update: SystemTime,
    ) -> Result<String> {
        let now = SystemTime::now();
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                let bytes = hex::decode(&r.serial_hex).map_err(|_| {
                    PkiError::Tls(wattlet_tls::TlsError::InvalidSerial(r.serial_hex.clone()))
                })?;
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
            // changes and report one past its nextUpdate.
            next_update: next_update.into(),
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}
