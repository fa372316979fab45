//! A certificate authority kept in a directory: what `wattlet ca` works on.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wattlet_tls::{certificate_serial, normalize_serial};

use crate::authority::{
    CertificateAuthority, DeviceRequest, IssuedCert, Revocation, ServerRequest, SignedCert,
};
use crate::{PkiError, Result};

// ---------------------------------------------------------------------------------------------
// The CA directory

/// What kind of certificate a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    Device,
    Server,
}

/// One issued certificate, as recorded in `issued/<serial>.json` (mode 0600).
///
/// A record keeps no personal data: not the participant's email, and not the certificate,
/// which carries it; its SHA-256 fingerprint identifies it. (Records of earlier versions held
/// both: [`CaDir::open`] rewrites them.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    /// Lowercase hex.
    pub serial: String,
    pub kind: CertKind,
    /// Device certificates: the device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Server certificates: DNS names and IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_before: u64,
    pub not_after: u64,
    /// When the certificate was revoked (seconds since the Unix epoch), if it was.
    #[serde(default)]
    pub revoked_at: Option<u64>,
    /// SHA-256 of the certificate (DER), lowercase hex.
    #[serde(default)]
    pub fingerprint: String,
}

/// The fields of a record that earlier versions kept and this one drops.
const LEGACY_FIELDS: [&str; 2] = ["email", "certificate"];

/// SHA-256 of a PEM certificate's DER, lowercase hex (empty when it does not parse).
fn fingerprint(cert_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    use sha2::Digest;
    rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map(|der| hex::encode(sha2::Sha256::digest(der.as_ref())))
        .unwrap_or_default()
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
/// DIR/issued/SERIAL.json one record per issued certificate (serial, subject, validity,
///                       revocation, fingerprint; no email, no certificate), mode 0600
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
        let ca_dir = CaDir {
            dir: dir.to_owned(),
            ca,
        };
        ca_dir.forget_legacy_personal_data()?;
        Ok(ca_dir)
    }

    /// Rewrites records of earlier versions without the participant's email and the
    /// certificate (kept as its fingerprint), readable by the owner only; the old files are
    /// replaced atomically (a rename: their blocks are the file system's to reuse).
    fn forget_legacy_personal_data(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let issued = self.dir.join("issued");
        let Ok(entries) = fs::read_dir(&issued) else {
            return Ok(());
        };
        restrict(&issued, 0o700)?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = read_string(&path)?;
            let malformed = |source| PkiError::Record {
                path: path.clone(),
                source,
            };
            let mut value: serde_json::Value = serde_json::from_str(&text).map_err(malformed)?;
            let legacy = LEGACY_FIELDS.iter().any(|f| value.get(f).is_some());
            let open = entry
                .metadata()
                .map(|m| m.permissions().mode() & 0o077 != 0)
                .unwrap_or(true);
            if !legacy && !open {
                continue;
            }
            if let Some(object) = value.as_object_mut() {
                if let Some(pem) = object.get("certificate").and_then(|c| c.as_str()) {
                    let print = fingerprint(pem);
                    object.insert("fingerprint".into(), print.into());
                }
                for field in LEGACY_FIELDS {
                    object.remove(field);
                }
            }
            let record: IssuedRecord = serde_json::from_value(value).map_err(malformed)?;
            self.save_record(&record)?;
        }
        Ok(())
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
        let issued = self.dir.join("issued");
        create_dir(&issued)?;
        restrict(&issued, 0o700)?;
        write_atomic(&path, &json, 0o600)
    }

    /// Issues a device certificate and records it.
    pub fn issue_device(&self, request: &DeviceRequest) -> Result<IssuedCert> {
        let issued = self.ca.issue_device(request)?;
        self.save_record(&IssuedRecord {
            serial: issued.serial_hex.clone(),
            kind: CertKind::Device,
            device_id: Some(request.device_id.clone()),
            names: Vec::new(),
            not_before: unix_seconds(issued.not_before),
            not_after: unix_seconds(issued.not_after),
            revoked_at: None,
            fingerprint: fingerprint(&issued.cert_pem),
        })?;
        Ok(issued)
    }

    /// Issues a device certificate for a device's certificate signing request (see
    /// [`CertificateAuthority::sign_device_csr`]) and records it.
    pub fn sign_device_csr(&self, csr_pem: &str, request: &DeviceRequest) -> Result<SignedCert> {
        let signed = self.ca.sign_device_csr(csr_pem, request)?;
        self.save_record(&IssuedRecord {
            serial: signed.serial_hex.clone(),
            kind: CertKind::Device,
            device_id: Some(request.device_id.clone()),
            names: Vec::new(),
            not_before: unix_seconds(signed.not_before),
            not_after: unix_seconds(signed.not_after),
            revoked_at: None,
            fingerprint: fingerprint(&signed.cert_pem),
        })?;
        Ok(signed)
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
            names,
            not_before: unix_seconds(issued.not_before),
            not_after: unix_seconds(issued.not_after),
            revoked_at: None,
            fingerprint: fingerprint(&issued.cert_pem),
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

/// Sets `path`'s permission bits to `mode`.
fn restrict(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| PkiError::Io {
        path: path.to_owned(),
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
