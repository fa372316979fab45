//! Real vendor evidence for the tests and the benchmark, read from the registry sources of
//! `dcap-qvl` (Intel SGX/TDX sample quotes and collateral) and `sev` (an AMD Milan report and its
//! VCEK), located with `cargo metadata`. Nothing is copied into this repository.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use wattlet_attestation::{Evidence, RuntimeClaims, Tee};

/// The source directory of a dependency, from `cargo metadata` (the `CARGO` binary).
pub fn package_dir(name: &str) -> PathBuf {
    static METADATA: OnceLock<serde_json::Value> = OnceLock::new();
    let metadata = METADATA.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let output = std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--manifest-path",
                manifest,
            ])
            .output()
            .expect("run cargo metadata");
        assert!(
            output.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON")
    });
    let package = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("package {name} not in cargo metadata"));
    let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"));
    manifest.parent().expect("package directory").to_path_buf()
}

pub fn read(package: &str, file: &str) -> Vec<u8> {
    let path = package_dir(package).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Seconds since the epoch of an RFC 3339 UTC time as Intel writes it (`2025-06-19T10:56:11Z`).
pub fn rfc3339(text: &str) -> u64 {
    let b = text.as_bytes();
    assert!(
        b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && text.ends_with('Z'),
        "{text}"
    );
    let num = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hh * 3600 + mm * 60 + ss) as u64
}

/// A DCAP sample: the quote, its collateral (JSON) and the times it is valid between.
pub struct DcapSample {
    pub quote: Vec<u8>,
    pub collateral: serde_json::Value,
    /// The latest `issueDate` of the TCB info and QE identity and `thisUpdate` of the CRLs.
    pub issued: u64,
    /// The earliest `nextUpdate` of the TCB info, QE identity and CRLs.
    pub next_update: u64,
}

impl DcapSample {
    /// A time at which dcap-qvl's own tests verify the sample: just before the earliest
    /// `nextUpdate` (as their `now_from_collateral`, which also reads the CRLs).
    pub fn now(&self) -> u64 {
        self.next_update - 1
    }

    pub fn evidence(&self, tee: Tee) -> Evidence {
        Evidence {
            tee,
            quote: self.quote.clone(),
            collateral: Some(self.collateral.clone()),
            vcek: None,
            claims: RuntimeClaims::default(),
        }
    }
}

pub fn dcap_sample(quote: &str, collateral: &str) -> DcapSample {
    let quote = read("dcap-qvl", &format!("sample/{quote}"));
    let collateral: serde_json::Value =
        serde_json::from_slice(&read("dcap-qvl", &format!("sample/{collateral}"))).unwrap();
    let dates = |field: &str| {
        let inner: serde_json::Value =
            serde_json::from_str(collateral[field].as_str().unwrap()).unwrap();
        (
            rfc3339(inner["issueDate"].as_str().unwrap()),
            rfc3339(inner["nextUpdate"].as_str().unwrap()),
        )
    };
    let (tcb_issue, tcb_next) = dates("tcb_info");
    let (qe_issue, qe_next) = dates("qe_identity");
    let mut issued = tcb_issue.max(qe_issue);
    let mut next_update = tcb_next.min(qe_next);
    // The CRLs (hex DER in the JSON) bound the window too.
    for field in ["root_ca_crl", "pck_crl"] {
        use x509_cert::der::Decode;
        let der = hex::decode(collateral[field].as_str().unwrap()).unwrap();
        let crl = x509_cert::crl::CertificateList::from_der(&der).unwrap();
        issued = issued.max(crl.tbs_cert_list.this_update.to_unix_duration().as_secs());
        if let Some(next) = crl.tbs_cert_list.next_update {
            next_update = next_update.min(next.to_unix_duration().as_secs());
        }
    }
    assert!(issued < next_update, "collateral validity window");
    DcapSample {
        quote,
        collateral,
        issued,
        next_update,
    }
}

pub fn sgx() -> DcapSample {
    dcap_sample("sgx_quote", "sgx_quote_collateral.json")
}

pub fn tdx() -> DcapSample {
    dcap_sample("tdx_quote", "tdx_quote_collateral.json")
}

pub fn tdx_outdated() -> DcapSample {
    dcap_sample("tdx_quote_outdated", "tdx_quote_outdated_collateral.json")
}

/// sev's Milan attestation report (1184 bytes) and its VCEK (DER).
pub fn snp() -> (Vec<u8>, Vec<u8>) {
    let text = read("sev", "tests/certs_data/report_milan.hex");
    let text: String = String::from_utf8(text)
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let report = hex::decode(text).unwrap();
    let vcek = read("sev", "tests/certs_data/vcek_milan.der");
    (report, vcek)
}

pub fn snp_evidence() -> Evidence {
    let (report, vcek) = snp();
    Evidence {
        tee: Tee::Snp,
        quote: report,
        collateral: None,
        vcek: Some(vcek),
        claims: RuntimeClaims::default(),
    }
}

/// A time inside the Milan VCEK's validity (issued 2023, valid for years).
pub const SNP_NOW: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z
