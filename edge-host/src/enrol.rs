//! `wattlet-edge enrol`: the device gets its certificate without its private key ever leaving
//! it. `request` makes an ECDSA P-256 key (kept in `DIR/device.key`, mode 0640, group
//! `wattlet` so the daemon reads it) and a certificate signing request (`DIR/device.csr`); the
//! administrator signs the request with `wattlet ca sign-csr`, naming the device and its
//! participant; `install` checks that the certificate is for this device's key, chains to the
//! cloud's CA and names a device, then puts it and the CA beside the key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

/// Where the configuration's `[identity]` expects the files (`/etc/wattlet` on a device).
pub const KEY: &str = "device.key";
pub const CSR: &str = "device.csr";
pub const CERT: &str = "device.crt";
pub const CA: &str = "ca.crt";

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: no device key; run `wattlet-edge enrol request` first and have its request signed",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{}: not a device key ({reason})", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: not a PEM certificate ({reason})", path.display())]
    NotACertificate { path: PathBuf, reason: String },
    #[error(
        "{}: the certificate is for another key, not this device's {KEY} (was it signed from \
         this device's {CSR}?)",
        path.display()
    )]
    OtherKey { path: PathBuf },
    #[error("{}: the certificate does not verify against the cloud CA {}: {reason}", cert.display(), ca.display())]
    Untrusted {
        cert: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error("{}: {source}", path.display())]
    NotADevice {
        path: PathBuf,
        source: wattlet_tls::TlsError,
    },
    #[error("cannot make the key or the request: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What `request` made.
#[derive(Debug)]
pub struct Requested {
    pub key: PathBuf,
    pub csr: PathBuf,
    /// The request (PEM), for the administrator.
    pub csr_pem: String,
    /// Whether the key was made now (else the one already there was kept).
    pub new_key: bool,
}

/// Makes the device's key in `dir` (unless one is there and `new_key` is false: a request
/// made again keeps the key, so a certificate signed from the first request still fits) and
/// a certificate signing request for it. `group`: the group that may read the key (the
/// daemon's); `None` leaves the key readable by its owner only.
pub fn request(dir: &Path, new_key: bool, group: Option<u32>) -> Result<Requested, EnrolError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EnrolError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join(KEY);
    let (key, made) = if key_path.exists() && !new_key {
        (load_key(&key_path)?, false)
    } else {
        (KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?, true)
    };
    if made {
        let mode = if group.is_some() { 0o640 } else { 0o600 };
        write_atomic(&key_path, key.serialize_pem().as_bytes(), mode, group)
            .map_err(io(&key_path))?;
    }
    // The CA ignores the subject (the administrator names the device); the host name helps
    // the administrator tell requests apart.
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, host_name());
    let csr_pem = params.serialize_request(&key)?.pem()?;
    let csr_path = dir.join(CSR);
    write_atomic(&csr_path, csr_pem.as_bytes(), 0o644, None).map_err(io(&csr_path))?;
    Ok(Requested {
        key: key_path,
        csr: csr_path,
        csr_pem,
        new_key: made,
    })
}

/// What `install` installed.
#[derive(Debug)]
pub struct Installed {
    pub cert: PathBuf,
    pub ca: PathBuf,
    pub identity: wattlet_tls::ClientIdentity,
}

/// Checks the certificate `cert` (signed from this device's request) against the device's key
/// in `dir` and the cloud CA `ca`, then writes both into `dir` (`device.crt`, `ca.crt`).
/// Nothing is written when a check fails.
pub fn install(dir: &Path, cert: &Path, ca: &Path) -> Result<Installed, EnrolError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| EnrolError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let key_path = dir.join(KEY);
    if !key_path.exists() {
        return Err(EnrolError::NoKey { path: key_path });
    }
    let key = load_key(&key_path)?;
    let cert_pem = read(cert)?;
    let ca_pem = read(ca)?;
    let not_a_cert = |path: &Path, reason: String| EnrolError::NotACertificate {
        path: path.to_path_buf(),
        reason,
    };
    let cert_der =
        CertificateDer::from_pem_slice(&cert_pem).map_err(|e| not_a_cert(cert, e.to_string()))?;
    let ca_certs = CertificateDer::pem_slice_iter(&ca_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_a_cert(ca, e.to_string()))?;
    if ca_certs.is_empty() {
        return Err(not_a_cert(ca, "no certificate in it".into()));
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| not_a_cert(cert, e.to_string()))?;
    if parsed.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
        return Err(EnrolError::OtherKey {
            path: cert.to_path_buf(),
        });
    }
    // The check the cloud makes at every handshake: signed by the CA, valid now, clientAuth.
    let untrusted = |reason: String| EnrolError::Untrusted {
        cert: cert.to_path_buf(),
        ca: ca.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for root in ca_certs {
        roots.add(root).map_err(|e| untrusted(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| untrusted(e.to_string()))?;
    verifier
        .verify_client_cert(&cert_der, &[], UnixTime::now())
        .map_err(|e| untrusted(e.to_string()))?;
    let identity = wattlet_tls::ClientIdentity::from_der(&cert_der).map_err(|source| {
        EnrolError::NotADevice {
            path: cert.to_path_buf(),
            source,
        }
    })?;
    let cert_out = dir.join(CERT);
    let ca_out = dir.join(CA);
    for (path, bytes) in [(&ca_out, &ca_pem), (&cert_out, &cert_pem)] {
        write_atomic(path, bytes, 0o644, None).map_err(|source| EnrolError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Installed {
        cert: cert_out,
        ca: ca_out,
        identity,
    })
}

fn load_key(path: &Path) -> Result<KeyPair, EnrolError> {
    let pem = std::fs::read_to_string(path).map_err(|source| EnrolError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    KeyPair::from_pem(&pem).map_err(|e| EnrolError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "wattlet-edge".to_owned())
}

/// The id of group `name` in `/etc/group` (the daemon's group, made by the package's
/// sysusers file), if there is one.
pub fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name))
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

/// Writes `path` through a temporary file and a rename, so a reader sees the old file or the
/// new one; the file is created with `mode` (and `group`) before anything is written to it.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        if let Some(gid) = group {
            std::os::unix::fs::fchown(&file, None, Some(gid))?;
        }
        // The umask may have narrowed the mode; the intended one is set explicitly.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
