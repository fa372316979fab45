//! Simulated evidence: proves nothing, accepted only by a policy that lists "simulated".

use wattlet_attestation::attester::Attester;
use wattlet_attestation::{
    Evidence, Policy, Reason, RuntimeClaims, Tee, report_data, verify, wattlet_measurement,
};

fn claims() -> RuntimeClaims {
    RuntimeClaims {
        host_sha256: "11".repeat(32),
        components: [
            ("key-broker".to_string(), "22".repeat(32)),
            ("nialm".to_string(), "33".repeat(32)),
        ]
        .into(),
    }
}

fn evidence(nonce: &[u8]) -> Evidence {
    Attester::simulated()
        .evidence(report_data(nonce, b"public key"), claims())
        .unwrap()
}

fn simulated_policy() -> Policy {
    Policy::from_toml(&format!(
        "allowed_tees = [\"simulated\"]\nmeasurements = [\"{}\"]\n",
        wattlet_measurement(&claims())
    ))
    .unwrap()
}

#[test]
fn simulated_accepted_only_by_a_policy_allowing_it() {
    let evidence = evidence(b"nonce");
    let json = serde_json::to_string(&evidence).unwrap();
    let v = verify(&serde_json::from_str(&json).unwrap(), 0).unwrap();
    assert!(v.simulated);
    assert_eq!(v.tee, Tee::Simulated);
    assert_eq!(v.measurement, wattlet_measurement(&claims()));
    let expected = report_data(b"nonce", b"public key");
    simulated_policy()
        .check(&v, &expected, 0)
        .expect("accepted");
}

#[test]
fn simulated_refused_by_default_strict_policy() {
    let v = verify(&evidence(b"nonce"), 0).unwrap();
    let mut strict = Policy::default_strict();
    strict.allow_any_measurement = true;
    let err = strict
        .check(&v, &report_data(b"nonce", b"public key"), 0)
        .unwrap_err();
    assert_eq!(err.reason, Reason::Simulated);
    assert_eq!(err.reason.label(), "simulated");
}

#[test]
fn simulated_measurement_mismatch_refused() {
    // Claims changed after the quote was made: verify refuses the inconsistent evidence.
    let mut evidence = evidence(b"nonce");
    evidence
        .claims
        .components
        .insert("extra".into(), "44".repeat(32));
    assert_eq!(verify(&evidence, 0).unwrap_err().reason, Reason::Malformed);
    // Consistent evidence of other claims: not in the policy's measurements.
    let mut other = claims();
    other.host_sha256 = "55".repeat(32);
    let evidence = Attester::simulated()
        .evidence(report_data(b"nonce", b"public key"), other)
        .unwrap();
    let v = verify(&evidence, 0).unwrap();
    let err = simulated_policy()
        .check(&v, &report_data(b"nonce", b"public key"), 0)
        .unwrap_err();
    assert_eq!(err.reason, Reason::MeasurementNotAllowed);
}

#[test]
fn simulated_wrong_nonce_refused() {
    let v = verify(&evidence(b"nonce"), 0).unwrap();
    let err = simulated_policy()
        .check(&v, &report_data(b"other nonce", b"public key"), 0)
        .unwrap_err();
    assert_eq!(err.reason, Reason::ReportDataMismatch);
    let err = simulated_policy()
        .check(&v, &report_data(b"nonce", b"other key"), 0)
        .unwrap_err();
    assert_eq!(err.reason, Reason::ReportDataMismatch);
}

#[test]
fn simulated_quote_must_say_simulated() {
    let mut evidence = evidence(b"nonce");
    let mut quote: serde_json::Value = serde_json::from_slice(&evidence.quote).unwrap();
    quote["simulated"] = false.into();
    evidence.quote = serde_json::to_vec(&quote).unwrap();
    assert_eq!(verify(&evidence, 0).unwrap_err().reason, Reason::Malformed);
    evidence.quote = b"not json".to_vec();
    assert_eq!(verify(&evidence, 0).unwrap_err().reason, Reason::Malformed);
}
