//! Producing evidence on this machine (native hosts only).
//!
//! * **SEV-SNP**, when `/dev/sev-guest` exists: the report comes from the AMD secure processor
//!   through `sev`'s guest firmware interface (`SNP_GET_EXT_REPORT`, falling back to
//!   `SNP_GET_REPORT`), at VMPL 0. The VCEK certificate is taken from the extended report's
//!   certificate table when the host provisioned one; otherwise the evidence has no VCEK and the
//!   verifier refuses it, so hosts must provision it (e.g. `snphost import`).
//! * **TDX**, when configfs-tsm (`/sys/kernel/config/tsm/report`) exists: Linux's TSM report
//!   interface. A private entry is made with `mkdir`, the 64 bytes of report data are written to
//!   its `inblob`, reading `outblob` makes the kernel produce the quote (through the TD's quoting
//!   service), `provider` names the TEE (`tdx_guest`), and the entry is removed with `rmdir`
//!   (configfs removes its attribute files with it). The collateral is not fetched here: the
//!   caller adds it ([`Evidence::collateral`], e.g. from a PCCS).
//! * Otherwise there is no TEE, and [`Attester::detect`] says so: simulation must be opted into
//!   explicitly with [`Attester::simulated`].
//!
//! Neither SNP nor TDX generation is tested here (no such hardware on the build machines); the
//! configfs-tsm steps are tested against a temporary directory standing in for configfs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Evidence, RuntimeClaims, SimulatedQuote, Tee};

/// Where Linux's configfs-tsm report interface lives.
pub const TSM_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";
/// The SEV-SNP guest device.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// Evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(
        "no TEE on this machine (neither {SEV_GUEST_DEVICE} nor {TSM_REPORT_ROOT} exists); \
         simulated attestation, which proves nothing, must be opted into explicitly"
    )]
    NoTee,
    #[error("SEV-SNP report: {0}")]
    Snp(String),
    #[error("configfs-tsm report at {path}: {source}")]
    Tsm {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configfs-tsm provider is {0:?}, expected tdx_guest")]
    UnexpectedProvider(String),
}

/// Produces evidence for this machine's TEE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attester {
    /// AMD SEV-SNP through `/dev/sev-guest`.
    Snp,
    /// Intel TDX through configfs-tsm under `root` (normally [`TSM_REPORT_ROOT`]).
    Tdx { root: PathBuf },
    /// No TEE: simulated evidence, which proves nothing. Only by explicit opt-in.
    Simulated,
}

impl Attester {
    /// The TEE of this machine: SNP if `/dev/sev-guest` exists, TDX if configfs-tsm exists,
    /// otherwise [`AttestError::NoTee`] (never simulation).
    pub fn detect() -> Result<Attester, AttestError> {
        Attester::detect_at(Path::new(SEV_GUEST_DEVICE), Path::new(TSM_REPORT_ROOT))
    }

    /// [`Attester::detect`] with the device and configfs paths as parameters.
    pub fn detect_at(sev_guest: &Path, tsm_root: &Path) -> Result<Attester, AttestError> {
        if sev_guest.exists() {
            Ok(Attester::Snp)
        } else if tsm_root.is_dir() {
            Ok(Attester::Tdx {
                root: tsm_root.to_path_buf(),
            })
        } else {
            Err(AttestError::NoTee)
        }
    }

    /// Simulated attestation, explicitly opted into: its evidence says simulated and proves
    /// nothing.
    pub fn simulated() -> Attester {
        Attester::Simulated
    }

    /// The TEE this attester's evidence is for.
    pub fn tee(&self) -> Tee {
        match self {
            Attester::Snp => Tee::Snp,
            Attester::Tdx { .. } => Tee::Tdx,
            Attester::Simulated => Tee::Simulated,
        }
    }

    /// Evidence binding `report_data` (see [`crate::report_data`]) and the claims.
    pub fn evidence(
        &self,
        report_data: [u8; 64],
        claims: RuntimeClaims,
    ) -> Result<Evidence, AttestError> {
        match self {
            Attester::Simulated => Ok(Evidence {
                tee: Tee::Simulated,
                quote: SimulatedQuote::encode(&claims, &report_data),
                collateral: None,
                vcek: None,
                claims,
            }),
            Attester::Tdx { root } => {
                let (quote, provider) = tsm_quote(root, &report_data)?;
                if !provider.starts_with("tdx_guest") {
                    return Err(AttestError::UnexpectedProvider(provider));
                }
                Ok(Evidence {
                    tee: Tee::Tdx,
                    quote,
                    collateral: None,
                    vcek: None,
                    claims,
                })
            }
            Attester::Snp => {
                let (quote, vcek) = snp_report(report_data)?;
                Ok(Evidence {
                    tee: Tee::Snp,
                    quote,
                    collateral: None,
                    vcek,
                    claims,
                })
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn snp_report(report_data: [u8; 64]) -> Result<(Vec<u8>, Option<Vec<u8>>), AttestError> {
    use sev::firmware::guest::Firmware;
    use sev::firmware::host::CertType;

    let mut firmware = Firmware::open().map_err(|e| AttestError::Snp(e.to_string()))?;
    match firmware.get_ext_report(None, Some(report_data), Some(0)) {
        Ok((report, certs)) => {
            let vcek = certs
                .unwrap_or_default()
                .into_iter()
                .find(|entry| entry.cert_type == CertType::VCEK)
                .map(|entry| entry.data);
            Ok((report, vcek))
        }
        Err(_) => {
            let report = firmware
                .get_report(None, Some(report_data), Some(0))
                .map_err(|e| AttestError::Snp(e.to_string()))?;
            Ok((report, None))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn snp_report(_report_data: [u8; 64]) -> Result<(Vec<u8>, Option<Vec<u8>>), AttestError> {
    Err(AttestError::Snp("SEV-SNP guests run Linux".into()))
}

/// A configfs-tsm report entry of this process: `mkdir`ed on creation, `rmdir`ed on drop.
#[derive(Debug)]
pub struct TsmEntry {
    path: PathBuf,
}

impl TsmEntry {
    /// Makes a new, private entry under `root`.
    pub fn create(root: &Path) -> Result<TsmEntry, AttestError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "wattlet-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = root.join(name);
        std::fs::create_dir(&path).map_err(|source| AttestError::Tsm {
            path: path.clone(),
            source,
        })?;
        Ok(TsmEntry { path })
    }

    /// The entry's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io<T>(&self, file: &str, result: std::io::Result<T>) -> Result<T, AttestError> {
        result.map_err(|source| AttestError::Tsm {
            path: self.path.join(file),
            source,
        })
    }

    /// Writes the report data to `inblob`.
    pub fn write_inblob(&self, report_data: &[u8; 64]) -> Result<(), AttestError> {
        self.io(
            "inblob",
            std::fs::write(self.path.join("inblob"), report_data),
        )
    }

    /// Reads `outblob`: the quote (the kernel produces it on this read).
    pub fn read_outblob(&self) -> Result<Vec<u8>, AttestError> {
        self.io("outblob", std::fs::read(self.path.join("outblob")))
    }

    /// Reads `provider`, e.g. `tdx_guest`, without the trailing newline.
    pub fn provider(&self) -> Result<String, AttestError> {
        let text = self.io(
            "provider",
            std::fs::read_to_string(self.path.join("provider")),
        )?;
        Ok(text.trim_end().to_string())
    }
}

impl Drop for TsmEntry {
    fn drop(&mut self) {
        // configfs removes the attribute files with the directory.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The quote and provider for report data, from configfs-tsm under `root`.
pub fn tsm_quote(root: &Path, report_data: &[u8; 64]) -> Result<(Vec<u8>, String), AttestError> {
    let entry = TsmEntry::create(root)?;
    entry.write_inblob(report_data)?;
    let quote = entry.read_outblob()?;
    let provider = entry.provider()?;
    Ok((quote, provider))
}

impl RuntimeClaims {
    /// The claims of this process: SHA-256 of its executable ([`std::env::current_exe`]) and of
    /// each component file.
    pub fn of_this_host<N: AsRef<str>, P: AsRef<Path>>(
        components: &[(N, P)],
    ) -> std::io::Result<RuntimeClaims> {
        let exe = std::env::current_exe()?;
        let host_sha256 = file_sha256_hex(&exe)?;
        let mut claims = RuntimeClaims {
            host_sha256,
            components: Default::default(),
        };
        for (name, path) in components {
            let digest = file_sha256_hex(path.as_ref())?;
            claims.components.insert(name.as_ref().to_string(), digest);
        }
        Ok(claims)
    }
}

/// SHA-256 of a file, read in chunks. ring's assembly rather than `sha2` here: a host measures
/// its executable at every start, and a debug build of `wattlet` is 400 MB, which unoptimised
/// `sha2` took about ten seconds to hash (every restart of a worker in the crash tests).
fn file_sha256_hex(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        context.update(&buffer[..read]);
    }
    Ok(hex::encode(context.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha256_hex;

    #[test]
    fn detect_without_a_tee_asks_for_an_explicit_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let err = Attester::detect_at(&dir.path().join("sev-guest"), &dir.path().join("tsm"))
            .unwrap_err();
        assert!(matches!(err, AttestError::NoTee));
        assert!(err.to_string().contains("explicitly"), "{err}");
    }

    #[test]
    fn detect_finds_snp_then_tdx() {
        let dir = tempfile::tempdir().unwrap();
        let tsm = dir.path().join("tsm");
        std::fs::create_dir(&tsm).unwrap();
        let dev = dir.path().join("sev-guest");
        assert_eq!(
            Attester::detect_at(&dev, &tsm).unwrap(),
            Attester::Tdx { root: tsm.clone() }
        );
        std::fs::write(&dev, b"").unwrap();
        assert_eq!(Attester::detect_at(&dev, &tsm).unwrap(), Attester::Snp);
    }

    /// The configfs-tsm steps against a temporary directory: the test plays the kernel between
    /// writing `inblob` and reading `outblob`, and removes the attribute files before the entry
    /// is removed, as configfs does.
    #[test]
    fn tsm_entry_steps_against_a_stand_in_configfs() {
        let root = tempfile::tempdir().unwrap();
        let report_data = [7u8; 64];
        let path;
        {
            let entry = TsmEntry::create(root.path()).unwrap();
            path = entry.path().to_path_buf();
            assert!(path.is_dir());
            entry.write_inblob(&report_data).unwrap();
            assert_eq!(std::fs::read(path.join("inblob")).unwrap(), report_data);
            // The "kernel": a quote over the inblob, and the provider.
            let mut quote = b"QUOTE".to_vec();
            quote.extend_from_slice(&std::fs::read(path.join("inblob")).unwrap());
            std::fs::write(path.join("outblob"), &quote).unwrap();
            std::fs::write(path.join("provider"), "tdx_guest\n").unwrap();
            assert_eq!(entry.read_outblob().unwrap(), quote);
            assert_eq!(entry.provider().unwrap(), "tdx_guest");
            for file in ["inblob", "outblob", "provider"] {
                std::fs::remove_file(path.join(file)).unwrap();
            }
        }
        assert!(!path.exists(), "the entry is removed when dropped");
        // Without a kernel there is no outblob: an error naming the file, and no entry left.
        let err = tsm_quote(root.path(), &report_data).unwrap_err();
        assert!(err.to_string().contains("outblob"), "{err}");
        let left = std::fs::read_dir(root.path()).unwrap().count();
        assert_eq!(
            left, 1,
            "a plain directory keeps its inblob; configfs would not"
        );
    }

    #[test]
    fn claims_of_this_host_hash_the_executable_and_components() {
        let dir = tempfile::tempdir().unwrap();
        let component = dir.path().join("c.wasm");
        std::fs::write(&component, b"hello").unwrap();
        let claims = RuntimeClaims::of_this_host(&[("c", &component)]).unwrap();
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(claims.host_sha256, sha256_hex(&exe));
        assert_eq!(
            claims.components["c"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn simulated_evidence_says_simulated() {
        let evidence = Attester::simulated()
            .evidence([1; 64], RuntimeClaims::default())
            .unwrap();
        assert_eq!(evidence.tee, Tee::Simulated);
        let quote: serde_json::Value = serde_json::from_slice(&evidence.quote).unwrap();
        assert_eq!(quote["simulated"], true);
    }
}
