//! # wattlet-attestation
//!
//! The one definition of attestation evidence, its verification and the attestation policy in
//! wattlet. The key broker (a Spin component, `wasm32-wasip2`) verifies evidence with it before it
//! releases a key; the worker host (native) produces evidence with its [`attester`] module.
//!
//! ## What is verified
//!
//! [`verify`] checks that evidence is genuine — signatures, certificate chains and collateral
//! validity — and extracts what it attests ([`Verified`]): the TEE, the launch measurement, the
//! 64 bytes of report data, the debug flag and the TCB. Whether that is *acceptable* is the
//! [`Policy`]'s decision ([`Policy::check`]): allowed TEEs, allowed measurements, minimum TCB,
//! debug, report data (the nonce and the public key, see [`report_data`]) and evidence age.
//!
//! ## Trust roots
//!
//! * **Intel TDX and SGX** (DCAP quotes, verified by the pure-Rust [`dcap_qvl`]): Intel's SGX Root
//!   CA built into `dcap-qvl`. The quote is signed by the Quoting Enclave's attestation key,
//!   which the QE report binds to the PCK certificate, which chains to Intel's root. The collateral
//!   (TCB info, QE identity, CRLs; `dcap-qvl`'s `QuoteCollateralV3` as JSON) is signed by Intel's
//!   TCB signing certificate, also chaining to the root: whoever carries it need not be trusted.
//!   Collateral past its `nextUpdate` (or a CRL past its next update) is refused
//!   ([`Reason::CollateralExpired`]).
//! * **AMD SEV-SNP** (verified by [`sev`] without OpenSSL): AMD's ARK and ASK certificates for
//!   Milan, Genoa and Turin built into `sev`. The evidence carries the VCEK certificate (DER); it
//!   must be signed by one of those ASKs, and the 1184-byte attestation report must be signed by
//!   the VCEK; the VCEK must be within its validity period ([`Reason::CollateralExpired`]) and
//!   certify the report's reported TCB and chip ID (its AMD extensions). The report's measurement is the launch measurement of the image; the policy's
//!   measurement list holds the launch measurement that the image build records for the image
//!   holding exactly the wattlet host and components of [`RuntimeClaims`] (the report does not
//!   carry those claims, so nothing ties them to the report beyond the measurement).
//! * **TDX**: the measurement is MRTD (the TD's initial memory, i.e. its firmware image), as for SNP
//!   recorded by the image build. The run-time measurement registers (RTMRs) are not checked here.
//! * **SGX**: the measurement is MRENCLAVE.
//!
//! ## Simulated evidence
//!
//! [`Tee::Simulated`] exists for machines without a TEE (development, CI). Its "quote" is a JSON
//! document saying `"simulated": true`, the [`wattlet_measurement`] of the claims and the report
//! data. **It proves nothing**: anyone can write one. [`verify`] only checks that it is well formed
//! and consistent with the claims, [`Verified::simulated`] is `true`, and [`Policy::check`] refuses
//! it ([`Reason::Simulated`]) unless `"simulated"` is listed in `allowed_tees` — never the default.
//!
//! ## Evidence on the wire
//!
//! [`Evidence`] is JSON; its binary fields (`quote`, `vcek`) are base64 (standard alphabet, with
//! padding). Example:
//!
//! ```json
//! {"tee": "snp", "quote": "AgAAAA...", "vcek": "MIIFQ...", "collateral": null,
//!  "claims": {"host_sha256": "ab12...", "components": {"key-broker": "cd34..."}}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384, Sha512};

mod policy;
mod verify;

// The unit tests share the integration tests' vendor-sample helper, which names this crate.
#[cfg(test)]
extern crate self as wattlet_attestation;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_samples;

#[cfg(not(target_family = "wasm"))]
pub mod attester;

pub use policy::{Policy, PolicyError, SnpMinTcb};
pub use verify::verify;

/// A trusted execution environment (or the simulation of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
    /// Intel SGX.
    Sgx,
    /// No TEE: evidence that proves nothing (see the crate documentation).
    Simulated,
}

impl Tee {
    /// The lowercase name, as in JSON and TOML (`"snp"`, `"tdx"`, `"sgx"`, `"simulated"`).
    pub fn name(&self) -> &'static str {
        match self {
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
            Tee::Sgx => "sgx",
            Tee::Simulated => "simulated",
        }
    }
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a host sends to prove what it runs: JSON, binary fields base64 (standard alphabet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub tee: Tee,
    /// SNP: the 1184-byte attestation report; TDX/SGX: the DCAP quote; simulated: the JSON
    /// document described in the crate documentation.
    #[serde(with = "b64")]
    pub quote: Vec<u8>,
    /// TDX/SGX: `dcap-qvl`'s `QuoteCollateralV3` as JSON. Signed by Intel: the verifier checks
    /// the chain, so the carrier need not be trusted.
    #[serde(default)]
    pub collateral: Option<serde_json::Value>,
    /// SNP: the VCEK certificate (DER). The ARK and ASK are `sev`'s built-in Milan, Genoa and
    /// Turin certificates.
    #[serde(default, with = "b64_opt")]
    pub vcek: Option<Vec<u8>>,
    /// What the host says it runs.
    pub claims: RuntimeClaims,
}

/// What a host says it runs: the SHA-256 of its own executable and of each component.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RuntimeClaims {
    /// SHA-256 of the host executable, hex.
    pub host_sha256: String,
    /// Component name → SHA-256 of the component file, hex.
    pub components: BTreeMap<String, String>,
}

/// The SNP TCB (security version numbers) a report was signed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnpTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin and later only.
    pub fmc: Option<u8>,
}

/// What [`verify`] established about genuine evidence. Whether it is acceptable is for
/// [`Policy::check`] to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tee: Tee,
    /// Hex: SNP launch measurement or TDX MRTD (48 bytes), SGX MRENCLAVE (32 bytes), simulated:
    /// [`wattlet_measurement`] of the claims.
    pub measurement: String,
    pub report_data: [u8; 64],
    /// SGX: the enclave's DEBUG attribute; TDX: the TD's DEBUG attribute; SNP: the guest policy
    /// allows debugging; simulated: false.
    pub debug: bool,
    /// TDX/SGX: `dcap-qvl`'s TCB status (`"UpToDate"`, `"OutOfDate"`, ...); SNP and simulated:
    /// `"UpToDate"` (SNP's TCB is judged by [`Verified::snp_tcb`] against the policy's minimum).
    pub tcb_status: String,
    /// TDX/SGX: Intel security advisories that apply to the platform's TCB.
    pub advisory_ids: Vec<String>,
    /// SNP: the reported TCB (the one the VCEK was derived for).
    pub snp_tcb: Option<SnpTcb>,
    /// True for simulated evidence, which proves nothing.
    pub simulated: bool,
}

/// Why evidence was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Evidence that does not parse or is inconsistent.
    Malformed,
    /// A signature or certificate chain does not verify.
    BadSignature,
    /// The collateral (TCB info, QE identity, CRLs, certificates) is expired or not yet valid.
    CollateralExpired,
    /// The platform's TCB is below the policy's minimum (or revoked).
    TcbOutdated,
    /// The TEE is not in the policy's `allowed_tees`.
    TeeNotAllowed,
    /// The measurement is not in the policy's `measurements`.
    MeasurementNotAllowed,
    /// The report data is not the one expected (wrong nonce or public key).
    ReportDataMismatch,
    /// Debugging is enabled and the policy does not allow it.
    DebugEnabled,
    /// The evidence is older than the policy's `max_evidence_age_seconds`.
    EvidenceTooOld,
    /// Simulated evidence, which the policy does not allow.
    Simulated,
}

impl Reason {
    /// snake_case, for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::BadSignature => "bad_signature",
            Reason::CollateralExpired => "collateral_expired",
            Reason::TcbOutdated => "tcb_outdated",
            Reason::TeeNotAllowed => "tee_not_allowed",
            Reason::MeasurementNotAllowed => "measurement_not_allowed",
            Reason::ReportDataMismatch => "report_data_mismatch",
            Reason::DebugEnabled => "debug_enabled",
            Reason::EvidenceTooOld => "evidence_too_old",
            Reason::Simulated => "simulated",
        }
    }
}

/// Evidence refused, by [`verify`] or by [`Policy::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Refused {
    pub reason: Reason,
    pub detail: String,
}

impl Refused {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refused {
            reason,
            detail: detail.into(),
        }
    }
}

/// SHA-512(nonce ‖ public_key): what the report data of the evidence must equal.
pub fn report_data(nonce: &[u8], public_key: &[u8]) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(nonce);
    hasher.update(public_key);
    hasher.finalize().into()
}

/// The wattlet measurement of a host and its components: SHA-384 (hex, 96 characters) over a
/// versioned, unambiguous encoding of the claims.
///
/// Encoding (version 1): the tag `wattlet-measurement-v1\0`, then the host digest, then the
/// number of components as a big-endian u64, then each component (in name order) as its name
/// and its digest. Every string is its UTF-8 bytes preceded by their length as a big-endian u64;
/// digests are lowercased first (hex is case-insensitive).
///
/// The simulated TEE reports this as its measurement; for SNP/TDX the image build records the
/// launch measurement of the image holding exactly that host and those components.
pub fn wattlet_measurement(claims: &RuntimeClaims) -> String {
    fn field(hasher: &mut Sha384, bytes: &[u8]) {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    }
    let mut hasher = Sha384::new();
    hasher.update(b"wattlet-measurement-v1\0");
    field(
        &mut hasher,
        claims.host_sha256.to_ascii_lowercase().as_bytes(),
    );
    hasher.update((claims.components.len() as u64).to_be_bytes());
    for (name, digest) in &claims.components {
        field(&mut hasher, name.as_bytes());
        field(&mut hasher, digest.to_ascii_lowercase().as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// SHA-256 of bytes, hex (as in [`RuntimeClaims`]).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The simulated TEE's "quote": proves nothing (see the crate documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedQuote {
    /// Always true.
    pub simulated: bool,
    /// [`wattlet_measurement`] of the evidence's claims.
    pub measurement: String,
    /// The report data, hex (128 characters).
    pub report_data: String,
}

impl SimulatedQuote {
    /// The simulated quote for claims and report data, as bytes (JSON).
    pub fn encode(claims: &RuntimeClaims, report_data: &[u8; 64]) -> Vec<u8> {
        let quote = SimulatedQuote {
            simulated: true,
            measurement: wattlet_measurement(claims),
            report_data: hex::encode(report_data),
        };
        serde_json::to_vec(&quote).expect("a simulated quote serialises")
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(bytes)| bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> RuntimeClaims {
        RuntimeClaims {
            host_sha256: "aa".repeat(32),
            components: [("key-broker".to_string(), "bb".repeat(32))].into(),
        }
    }

    #[test]
    fn measurement_is_unambiguous_and_case_insensitive() {
        let a = claims();
        let mut upper = a.clone();
        upper.host_sha256 = upper.host_sha256.to_uppercase();
        assert_eq!(wattlet_measurement(&a), wattlet_measurement(&upper));
        assert_eq!(wattlet_measurement(&a).len(), 96);
        // Moving bytes between a name and a digest changes the measurement.
        let mut b = RuntimeClaims::default();
        b.components.insert("ab".into(), "c".into());
        let mut c = RuntimeClaims::default();
        c.components.insert("a".into(), "bc".into());
        assert_ne!(wattlet_measurement(&b), wattlet_measurement(&c));
    }

    #[test]
    fn evidence_json_round_trips_with_base64() {
        let evidence = Evidence {
            tee: Tee::Snp,
            quote: vec![0, 1, 2, 255],
            collateral: None,
            vcek: Some(vec![9, 8, 7]),
            claims: claims(),
        };
        let json = serde_json::to_value(&evidence).unwrap();
        assert_eq!(json["tee"], "snp");
        assert_eq!(json["quote"], "AAEC/w==");
        assert_eq!(json["vcek"], "CQgH");
        let back: Evidence = serde_json::from_value(json).unwrap();
        assert_eq!(back, evidence);
        let no_vcek: Evidence = serde_json::from_str(
            r#"{"tee":"tdx","quote":"","claims":{"host_sha256":"","components":{}}}"#,
        )
        .unwrap();
        assert_eq!(no_vcek.vcek, None);
    }

    #[test]
    fn reason_labels_are_snake_case() {
        assert_eq!(Reason::ReportDataMismatch.label(), "report_data_mismatch");
        assert_eq!(Tee::Simulated.name(), "simulated");
    }
}
