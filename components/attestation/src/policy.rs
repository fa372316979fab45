//! The attestation policy: which verified evidence is acceptable.

use serde::{Deserialize, Serialize};

use crate::{Reason, Refused, Tee, Verified};

/// Which verified evidence is acceptable. Read from TOML ([`Policy::from_toml`]); every field
/// has a strict default:
///
/// ```toml
/// allowed_tees = ["snp", "tdx"]        # "sgx" only if listed; "simulated" only if listed
/// measurements = ["<96 hex>", ...]     # SNP launch measurement / TDX MRTD / SGX MRENCLAVE (64 hex)
/// allow_any_measurement = false        # an empty list allows none unless this is true
/// accepted_tcb_statuses = ["UpToDate"] # TDX/SGX: dcap-qvl's TCB statuses accepted
/// allow_debug = false
/// max_evidence_age_seconds = 60
///
/// [snp_min_tcb]                        # SNP: minimum reported TCB (SVNs), default 0 each
/// bootloader = 0
/// tee = 0
/// snp = 0
/// microcode = 0
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// TEEs accepted. Default `["snp", "tdx"]`: SGX only if listed, simulated evidence (which
    /// proves nothing) only if listed.
    pub allowed_tees: Vec<Tee>,
    /// Measurements accepted, hex (case-insensitive). Empty means none, unless
    /// `allow_any_measurement`.
    pub measurements: Vec<String>,
    /// Accept any measurement (for trying out a new image; never in production).
    pub allow_any_measurement: bool,
    /// TDX/SGX: the TCB statuses accepted (as `dcap-qvl` names them). Default `["UpToDate"]`.
    pub accepted_tcb_statuses: Vec<String>,
    /// SNP: the minimum reported TCB.
    pub snp_min_tcb: SnpMinTcb,
    /// Accept evidence of a TEE that can be debugged (its memory is then not private).
    pub allow_debug: bool,
    /// Evidence older than this is refused.
    pub max_evidence_age_seconds: u64,
}

/// The minimum SVNs of an SNP reported TCB; each component is compared on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnpMinTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

/// A policy that does not parse or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("attestation policy: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("attestation policy: {0}")]
    Invalid(String),
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_tees: vec![Tee::Snp, Tee::Tdx],
            measurements: Vec::new(),
            allow_any_measurement: false,
            accepted_tcb_statuses: vec!["UpToDate".into()],
            snp_min_tcb: SnpMinTcb::default(),
            allow_debug: false,
            max_evidence_age_seconds: 60,
        }
    }
}

impl Policy {
    /// Parses a policy from TOML; missing fields take their strict defaults.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text)?;
        for measurement in &policy.measurements {
            let hex_ok = measurement.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok || !(measurement.len() == 64 || measurement.len() == 96) {
                return Err(PolicyError::Invalid(format!(
                    "measurement {measurement:?} is not 32 or 48 bytes of hex"
                )));
            }
        }
        Ok(policy)
    }

    /// The strict default: SNP and TDX only, no measurement allowed (add some), TCB up to date,
    /// no debug, evidence at most 60 s old.
    pub fn default_strict() -> Policy {
        Policy::default()
    }

    /// Whether verified evidence is acceptable: the TEE, the report data (`expected_report_data`,
    /// see [`crate::report_data`]), debug, the TCB, the measurement and the age of the evidence.
    pub fn check(
        &self,
        v: &Verified,
        expected_report_data: &[u8; 64],
        evidence_age_seconds: u64,
    ) -> Result<(), Refused> {
        if v.simulated || v.tee == Tee::Simulated {
            if !self.allowed_tees.contains(&Tee::Simulated) {
                return Err(Refused::new(
                    Reason::Simulated,
                    "simulated evidence (no TEE, proves nothing) is not allowed by the policy",
                ));
            }
        } else if !self.allowed_tees.contains(&v.tee) {
            return Err(Refused::new(
                Reason::TeeNotAllowed,
                format!("TEE {} is not allowed by the policy", v.tee),
            ));
        }
        if &v.report_data != expected_report_data {
            return Err(Refused::new(
                Reason::ReportDataMismatch,
                "report data is not SHA-512(nonce ‖ public key) (wrong nonce or key)",
            ));
        }
        if v.debug && !self.allow_debug {
            return Err(Refused::new(
                Reason::DebugEnabled,
                format!("{} evidence with debugging enabled", v.tee),
            ));
        }
        self.check_tcb(v)?;
        let allowed = self.allow_any_measurement
            || self
                .measurements
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&v.measurement));
        if !allowed {
            return Err(Refused::new(
                Reason::MeasurementNotAllowed,
                format!(
                    "{} measurement {} is not allowed by the policy",
                    v.tee, v.measurement
                ),
            ));
        }
        if evidence_age_seconds > self.max_evidence_age_seconds {
            return Err(Refused::new(
                Reason::EvidenceTooOld,
                format!(
                    "evidence is {evidence_age_seconds} s old, at most {} s allowed",
                    self.max_evidence_age_seconds
                ),
            ));
        }
        Ok(())
    }

    fn check_tcb(&self, v: &Verified) -> Result<(), Refused> {
        match v.tee {
            Tee::Simulated => Ok(()),
            Tee::Snp => {
                let tcb = v.snp_tcb.ok_or_else(|| {
                    Refused::new(Reason::Malformed, "SNP verified without its TCB")
                })?;
                let min = &self.snp_min_tcb;
                let below = [
                    ("bootloader", tcb.bootloader, min.bootloader),
                    ("tee", tcb.tee, min.tee),
                    ("snp", tcb.snp, min.snp),
                    ("microcode", tcb.microcode, min.microcode),
                ]
                .into_iter()
                .filter(|(_, have, need)| have < need)
                .map(|(name, have, need)| format!("{name} {have} < {need}"))
                .collect::<Vec<_>>();
                if below.is_empty() {
                    Ok(())
                } else {
                    Err(Refused::new(
                        Reason::TcbOutdated,
                        format!("SNP reported TCB below the minimum: {}", below.join(", ")),
                    ))
                }
            }
            Tee::Tdx | Tee::Sgx => {
                if self
                    .accepted_tcb_statuses
                    .iter()
                    .any(|s| s == &v.tcb_status)
                {
                    Ok(())
                } else {
                    Err(Refused::new(
                        Reason::TcbOutdated,
                        format!(
                            "{} TCB status {} (advisories {:?}) is not accepted by the policy",
                            v.tee, v.tcb_status, v.advisory_ids
                        ),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_toml_defaults_are_strict() {
        let policy = Policy::from_toml("").unwrap();
        assert_eq!(policy, Policy::default_strict());
        assert_eq!(policy.allowed_tees, vec![Tee::Snp, Tee::Tdx]);
        assert!(policy.measurements.is_empty() && !policy.allow_any_measurement);
        assert_eq!(policy.accepted_tcb_statuses, vec!["UpToDate".to_string()]);
        assert!(!policy.allow_debug);
        assert_eq!(policy.max_evidence_age_seconds, 60);
    }

    #[test]
    fn from_toml_reads_every_field_and_rejects_bad_ones() {
        let policy = Policy::from_toml(&format!(
            r#"
            allowed_tees = ["sgx", "simulated"]
            measurements = ["{}"]
            accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
            allow_debug = true
            max_evidence_age_seconds = 5
            [snp_min_tcb]
            bootloader = 3
            microcode = 200
            "#,
            "ab".repeat(48)
        ))
        .unwrap();
        assert_eq!(policy.allowed_tees, vec![Tee::Sgx, Tee::Simulated]);
        assert_eq!(policy.snp_min_tcb.bootloader, 3);
        assert_eq!(policy.snp_min_tcb.microcode, 200);
        assert!(policy.allow_debug);
        assert!(Policy::from_toml("allowed_tees = [\"nitro\"]").is_err());
        assert!(Policy::from_toml("measurement = []").is_err());
        assert!(Policy::from_toml("measurements = [\"xyz\"]").is_err());
    }
}
