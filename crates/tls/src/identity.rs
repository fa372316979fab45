//! Device identities in certificates, serial numbers, and what a CRL revokes.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::{Result, TlsError};

/// The URI prefix of a device identity in a certificate's subject alternative names.
pub const DEVICE_URI_PREFIX: &str = "urn:wattlet:device:";

/// Checks a device id: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn validate_device_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TlsError::InvalidDeviceId(id.to_owned()))
    }
}

/// A plausibility check of an email address (one `@`, a local part, a dotted-or-not domain,
/// printable ASCII without spaces): what an rfc822Name may hold.
pub fn validate_email(email: &str) -> Result<()> {
    let invalid = || TlsError::InvalidEmail(email.to_owned());
    if email.len() > 254 || !email.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') || !valid_dns_name(domain) {
        return Err(invalid());
    }
    Ok(())
}

pub fn valid_dns_name(name: &str) -> bool {
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
    let invalid = || TlsError::InvalidSerial(hex_serial.to_owned());
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

/// The serial numbers (lowercase hex) listed in every CRL of a PEM file's contents.
pub fn revoked_serials(crl_pem: &[u8]) -> Result<HashSet<String>> {
    let mut serials = HashSet::new();
    let mut found = false;
    for der in CertificateRevocationListDer::pem_slice_iter(crl_pem) {
        let der = der.map_err(|e| TlsError::Crl(e.to_string()))?;
        found = true;
        let (_, crl) =
            x509_parser::parse_x509_crl(&der).map_err(|e| TlsError::Crl(e.to_string()))?;
        serials.extend(
            crl.iter_revoked_certificates()
                .map(|r| serial_hex(r.raw_serial())),
        );
    }
    if !found {
        return Err(TlsError::Crl("no X509 CRL block in the file".into()));
    }
    Ok(serials)
}

/// When the CRLs of a PEM file's contents should be replaced by newer ones: the earliest
/// `nextUpdate` among them, in seconds since the Unix epoch (`None` when none has one). A CRL
/// past it may miss newer revocations: servers report it (rustls does not check it).
pub fn crl_next_update(crl_pem: &[u8]) -> Result<Option<i64>> {
    let mut earliest: Option<i64> = None;
    let mut found = false;
    for der in CertificateRevocationListDer::pem_slice_iter(crl_pem) {
        let der = der.map_err(|e| TlsError::Crl(e.to_string()))?;
        found = true;
        let (_, crl) =
            x509_parser::parse_x509_crl(&der).map_err(|e| TlsError::Crl(e.to_string()))?;
        if let Some(next) = crl.next_update() {
            let next = next.timestamp();
            earliest = Some(earliest.map_or(next, |e| e.min(next)));
        }
    }
    if !found {
        return Err(TlsError::Crl("no X509 CRL block in the file".into()));
    }
    Ok(earliest)
}

/// The serial number (lowercase hex) of a PEM certificate.
pub fn certificate_serial(cert_pem: &[u8]) -> Result<String> {
    let der = CertificateDer::from_pem_slice(cert_pem)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    Ok(serial_hex(cert.raw_serial()))
}

/// When a certificate (DER) stops being valid: its `notAfter`. A server holds a connection no
/// longer than its client certificate is valid.
pub fn not_after(der: &[u8]) -> Result<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let seconds = cert.validity().not_after.timestamp();
    // Before 1970 (it never is): long expired.
    Ok(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
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
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::Certificate(e.to_string()))?
            .ok_or(TlsError::NotADevice("no subject alternative names"))?;
        let mut device_id = None;
        let mut email = None;
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::URI(uri) => {
                    if let Some(id) = uri.strip_prefix(DEVICE_URI_PREFIX) {
                        if device_id.is_some() {
                            return Err(TlsError::NotADevice("more than one device URI"));
                        }
                        device_id = Some(id.to_owned());
                    }
                }
                x509_parser::extensions::GeneralName::RFC822Name(mail) => {
                    if email.is_some() {
                        return Err(TlsError::NotADevice("more than one email address"));
                    }
                    email = Some((*mail).to_owned());
                }
                _ => {}
            }
        }
        let device_id = device_id.ok_or(TlsError::NotADevice("no urn:wattlet:device: URI"))?;
        validate_device_id(&device_id)?;
        let email = email.ok_or(TlsError::NotADevice("no email address"))?;
        Ok(ClientIdentity {
            device_id,
            email,
            serial_hex: serial_hex(cert.raw_serial()),
        })
    }

    /// Reads the identity from a PEM device certificate.
    pub fn from_pem(cert_pem: &[u8]) -> Result<Self> {
        let der = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        Self::from_der(&der)
    }
}
