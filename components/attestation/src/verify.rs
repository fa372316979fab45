//! Evidence verification: signatures, certificate chains and collateral validity.

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::Report;
use dcap_qvl::verify::QuoteVerifier;
use sev::certs::snp::{Certificate, Chain, Verifiable, builtin, ca};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use crate::{
    Evidence, Reason, Refused, SimulatedQuote, SnpTcb, Tee, Verified, wattlet_measurement,
};

/// The size of an SEV-SNP attestation report.
pub const SNP_REPORT_LEN: usize = 1184;
/// The signed part of an SEV-SNP attestation report.
const SNP_SIGNED_LEN: usize = 0x2a0;

/// Verify that evidence is genuine at `now_unix` (seconds since the epoch): signatures,
/// certificate chains and collateral validity only. Whether the result is acceptable (TEE,
/// measurement, TCB, debug, report data, age) is [`crate::Policy::check`]'s decision.
pub fn verify(evidence: &Evidence, now_unix: u64) -> Result<Verified, Refused> {
    match evidence.tee {
        Tee::Simulated => verify_simulated(evidence),
        Tee::Sgx | Tee::Tdx => verify_dcap(evidence, now_unix),
        Tee::Snp => verify_snp(evidence, now_unix),
    }
}

fn verify_simulated(evidence: &Evidence) -> Result<Verified, Refused> {
    let quote: SimulatedQuote = serde_json::from_slice(&evidence.quote)
        .map_err(|e| Refused::new(Reason::Malformed, format!("simulated quote: {e}")))?;
    if !quote.simulated {
        return Err(Refused::new(
            Reason::Malformed,
            "simulated quote without \"simulated\": true",
        ));
    }
    let expected = wattlet_measurement(&evidence.claims);
    if !quote.measurement.eq_ignore_ascii_case(&expected) {
        return Err(Refused::new(
            Reason::Malformed,
            format!(
                "simulated quote measurement {} is not the measurement of the claims ({expected})",
                quote.measurement
            ),
        ));
    }
    let report_data = hex::decode(&quote.report_data)
        .ok()
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        .ok_or_else(|| {
            Refused::new(
                Reason::Malformed,
                "simulated quote report data is not 64 bytes of hex",
            )
        })?;
    Ok(Verified {
        tee: Tee::Simulated,
        measurement: expected,
        report_data,
        debug: false,
        tcb_status: "UpToDate".into(),
        advisory_ids: Vec::new(),
        snp_tcb: None,
        simulated: true,
    })
}

/// Sorts a `dcap-qvl` error into a reason by its message (the crate reports `anyhow` errors).
fn dcap_reason(message: &str) -> Reason {
    let lower = message.to_ascii_lowercase();
    if lower.contains("failed to decode") || lower.contains("failed to parse") {
        // Includes collateral JSON that does not parse (e.g. an unknown TCB status).
        Reason::Malformed
    } else if lower.contains("expired") || lower.contains("notvalidyet") {
        // TCB info, QE identity, CRLs or certificates outside their validity.
        Reason::CollateralExpired
    } else if lower.contains("tcb status is invalid") || lower.contains("no matching tcb level") {
        // Revoked, or a platform TCB below every level of Intel's TCB info (Intel's QVL:
        // TCB_NOT_SUPPORTED). Both are decided after the quote's signatures verified.
        Reason::TcbOutdated
    } else if lower.contains("unsupported")
        || lower.contains("unknown qe vendor")
        || lower.contains("must have version")
        // TD attributes dcap-qvl refuses whatever the policy (migratable TD, SEPT_VE_DISABLE
        // off, reserved bits, service TDs): a TD wattlet cannot trust, described in the detail.
        || lower.contains("is enabled")
        || lower.contains("is not enabled")
        || lower.contains("reserved bits")
        || lower.contains("service td")
    {
        Reason::Malformed
    } else {
        Reason::BadSignature
    }
}

fn verify_dcap(evidence: &Evidence, now_unix: u64) -> Result<Verified, Refused> {
    let collateral = evidence.collateral.as_ref().ok_or_else(|| {
        Refused::new(
            Reason::Malformed,
            format!("{} evidence without collateral", evidence.tee),
        )
    })?;
    let collateral: QuoteCollateralV3 = serde_json::from_value(collateral.clone())
        .map_err(|e| Refused::new(Reason::Malformed, format!("collateral: {e}")))?;
    // Debug and TCB status are the policy's decisions: dcap-qvl reports them, we do not let it
    // refuse them here.
    let report = QuoteVerifier::new_prod()
        .allow_debug(true)
        .verify(&evidence.quote, &collateral, now_unix)
        .map_err(|e| {
            let message = format!("{e:#}");
            Refused::new(
                dcap_reason(&message),
                format!("{} quote: {message}", evidence.tee),
            )
        })?;
    let (measurement, report_data, debug) = match (&report.report, evidence.tee) {
        (Report::SgxEnclave(enclave), Tee::Sgx) => (
            hex::encode(enclave.mr_enclave),
            enclave.report_data,
            enclave.attributes[0] & 0x02 != 0,
        ),
        (report, Tee::Tdx) => match report.as_td10() {
            Some(td) => (
                hex::encode(td.mr_td),
                td.report_data,
                td.td_attributes[0] & 0x01 != 0,
            ),
            None => {
                return Err(Refused::new(
                    Reason::Malformed,
                    "evidence says tdx but the quote is an SGX quote",
                ));
            }
        },
        (_, tee) => {
            return Err(Refused::new(
                Reason::Malformed,
                format!("evidence says {tee} but the quote is a TDX quote"),
            ));
        }
    };
    Ok(Verified {
        tee: evidence.tee,
        measurement,
        report_data,
        debug,
        tcb_status: report.status,
        advisory_ids: report.advisory_ids,
        snp_tcb: None,
        simulated: false,
    })
}

/// AMD's built-in CA chains (ARK and ASK) for the generations `sev` knows.
fn amd_chains() -> Vec<(&'static str, ca::Chain)> {
    let mut chains = Vec::new();
    if let (Ok(ark), Ok(ask)) = (builtin::milan::ark(), builtin::milan::ask()) {
        chains.push(("Milan", ca::Chain { ark, ask }));
    }
    if let (Ok(ark), Ok(ask)) = (builtin::genoa::ark(), builtin::genoa::ask()) {
        chains.push(("Genoa", ca::Chain { ark, ask }));
    }
    if let (Ok(ark), Ok(ask)) = (builtin::turin::ark(), builtin::turin::ask()) {
        chains.push(("Turin", ca::Chain { ark, ask }));
    }
    chains
}

fn verify_snp(evidence: &Evidence, now_unix: u64) -> Result<Verified, Refused> {
    if evidence.quote.len() != SNP_REPORT_LEN {
        return Err(Refused::new(
            Reason::Malformed,
            format!(
                "SNP report of {} bytes, expected {SNP_REPORT_LEN}",
                evidence.quote.len()
            ),
        ));
    }
    let report = AttestationReport::from_bytes(&evidence.quote)
        .map_err(|e| Refused::new(Reason::Malformed, format!("SNP report: {e}")))?;
    let vcek_der = evidence
        .vcek
        .as_ref()
        .ok_or_else(|| Refused::new(Reason::Malformed, "SNP evidence without VCEK certificate"))?;
    let vcek = Certificate::from_der(vcek_der)
        .map_err(|e| Refused::new(Reason::Malformed, format!("VCEK certificate: {e}")))?;
    let chain = amd_chains()
        .into_iter()
        .map(|(_, ca)| Chain {
            ca,
            vek: vcek.clone(),
        })
        .find(|chain| chain.verify().is_ok())
        .ok_or_else(|| {
            Refused::new(
                Reason::BadSignature,
                "VCEK certificate is not signed by AMD's Milan, Genoa or Turin ASK",
            )
        })?;
    let vcek_x509 = x509_cert::Certificate::from(chain.vek.clone());
    let validity = vcek_x509.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    if now_unix < not_before || now_unix > not_after {
        return Err(Refused::new(
            Reason::CollateralExpired,
            format!(
                "VCEK certificate valid from {not_before} to {not_after} (Unix time), now is {now_unix}"
            ),
        ));
    }
    // `sev` verifies the signature over the report re-encoded from its parsed fields; make sure
    // the signed part (bytes 0 to 0x29F) of that re-encoding is exactly the bytes we were given.
    let reencoded = report
        .to_bytes()
        .map_err(|e| Refused::new(Reason::Malformed, format!("SNP report: {e}")))?;
    if reencoded.get(..SNP_SIGNED_LEN) != evidence.quote.get(..SNP_SIGNED_LEN) {
        return Err(Refused::new(
            Reason::Malformed,
            "SNP report does not re-encode to the same bytes (reserved fields set?)",
        ));
    }
    (&chain, &report)
        .verify()
        .map_err(|e| Refused::new(Reason::BadSignature, format!("SNP report signature: {e}")))?;
    check_vcek_binds_report(&vcek_x509, &report)?;
    let tcb = report.reported_tcb;
    Ok(Verified {
        tee: Tee::Snp,
        measurement: hex::encode(report.measurement),
        report_data: report.report_data,
        debug: report.policy.debug_allowed(),
        tcb_status: "UpToDate".into(),
        advisory_ids: Vec::new(),
        snp_tcb: Some(SnpTcb {
            bootloader: tcb.bootloader,
            tee: tcb.tee,
            snp: tcb.snp,
            microcode: tcb.microcode,
            fmc: tcb.fmc,
        }),
        simulated: false,
    })
}

/// AMD's VCEK certificate extensions (VCEK specification, 57230): the TCB the VCEK was derived
/// for and the chip it belongs to.
const VCEK_BOOTLOADER: &str = "1.3.6.1.4.1.3704.1.3.1";
const VCEK_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const VCEK_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const VCEK_MICROCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
const VCEK_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// Checks that the VCEK is the one for the report's reported TCB and chip (as AMD's `snpguest`
/// does): the signature already binds the report to the VCEK's key, this makes the TCB the
/// policy judges the one AMD certified.
fn check_vcek_binds_report(
    vcek: &x509_cert::Certificate,
    report: &AttestationReport,
) -> Result<(), Refused> {
    let extensions = vcek.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let value = |oid: &str| {
        extensions
            .iter()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes())
    };
    let tcb = report.reported_tcb;
    for (oid, name, reported) in [
        (VCEK_BOOTLOADER, "bootloader", tcb.bootloader),
        (VCEK_TEE, "tee", tcb.tee),
        (VCEK_SNP, "snp", tcb.snp),
        (VCEK_MICROCODE, "microcode", tcb.microcode),
    ] {
        // A DER INTEGER: 0x02, length, big-endian value.
        let certified = match value(oid) {
            Some([0x02, len, rest @ ..]) if usize::from(*len) == rest.len() && !rest.is_empty() => {
                rest.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            _ => continue, // not a VCEK extension we know (e.g. a VLEK): the signature decides
        };
        if certified != u64::from(reported) {
            return Err(Refused::new(
                Reason::BadSignature,
                format!("VCEK certifies {name} SVN {certified}, the report says {reported}"),
            ));
        }
    }
    // The chip ID is zero when the guest policy masks it.
    if report.chip_id != [0u8; 64] {
        let hwid = match value(VCEK_HWID) {
            Some([0x04, 0x40, rest @ ..]) => Some(rest),
            Some(raw) => Some(raw),
            None => None,
        };
        if let Some(hwid) = hwid
            && hwid != report.chip_id.as_slice()
        {
            return Err(Refused::new(
                Reason::BadSignature,
                "VCEK is for another chip than the report's",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_samples as common;

    #[test]
    fn dcap_errors_are_sorted_into_reasons() {
        for (message, reason) in [
            ("Failed to decode quote: bad length", Reason::Malformed),
            (
                "Failed to decode TcbInfo: unknown variant `X`, expected one of `Revoked`",
                Reason::Malformed,
            ),
            ("TCBInfo expired", Reason::CollateralExpired),
            (
                "Failed to verify certificate chain: CrlExpired { .. }",
                Reason::CollateralExpired,
            ),
            ("TCB status is invalid: Revoked", Reason::TcbOutdated),
            ("No matching TCB level found", Reason::TcbOutdated),
            ("TD migration is enabled", Reason::Malformed),
            ("SEPT_VE_DISABLE is not enabled", Reason::Malformed),
            (
                "Signature is invalid for ISV enclave report",
                Reason::BadSignature,
            ),
        ] {
            assert_eq!(dcap_reason(message), reason, "{message}");
        }
    }

    /// The Milan VCEK is the one for the Milan report's TCB and chip; another TCB or chip is
    /// refused (checked on the parsed report: changing the bytes would break the signature first).
    #[test]
    fn vcek_must_certify_the_reported_tcb_and_chip() {
        let (report, vcek) = common::snp();
        let report = AttestationReport::from_bytes(&report).unwrap();
        let vcek = x509_cert::Certificate::from(Certificate::from_der(&vcek).unwrap());
        check_vcek_binds_report(&vcek, &report).expect("matching VCEK");
        let mut other_tcb = report;
        other_tcb.reported_tcb.microcode += 1;
        let err = check_vcek_binds_report(&vcek, &other_tcb).unwrap_err();
        assert_eq!(err.reason, Reason::BadSignature);
        assert!(err.detail.contains("microcode"), "{err}");
        let mut other_chip = report;
        other_chip.chip_id[0] ^= 1;
        let err = check_vcek_binds_report(&vcek, &other_chip).unwrap_err();
        assert!(err.detail.contains("chip"), "{err}");
    }
}
