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
    let validity = x509_cert::Certificate::from(chain.vek.clone())
        .tbs_certificate
        .validity;
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
