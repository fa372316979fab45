//! The key broker (components/key-broker) on `wattlet serve` with the repository's application,
//! over mutual TLS: attestation with simulated evidence, key releases, refusals, metrics.

use wattlet_key_broker::protocol::METRICS_PATH;
use wattlet_sealing::KeyId;
use wattlet_sealing::release::{Recipient, Released};
use wattlet_testkit::http::Connection;
use wattlet_testkit::kbs::{self, SIMULATED_POLICY};
use wattlet_testkit::{ADMIN_TOKEN, Cloud, KEY_ENCRYPTION_KEY, unique};

fn connect(cloud: &Cloud) -> Connection {
    let device = cloud.device(&unique("worker-host"), "ops@example.org");
    cloud
        .runtime()
        .block_on(Connection::open(cloud.addr, Some(device.tls)))
        .expect("connect over mutual TLS")
}

#[test]
fn simulated_evidence_under_a_permissive_policy_releases_keys_and_every_refusal_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start_with(dir.path(), &[("attestation_policy", SIMULATED_POLICY)]);
    let mut c = connect(&cloud);
    let rt = cloud.runtime().clone();
    let host = Recipient::generate();

    // Accepted, and the released key opens with the host's private key only.
    let session = rt.block_on(kbs::auth(&mut c, "simulated"));
    let reply = rt.block_on(kbs::attest_with(
        &mut c,
        &session,
        &host.public_key(),
        &host.public_key(),
    ));
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["simulated"], true);
    assert_eq!(reply.body["tee"], "simulated");
    let token = reply.body["token"].as_str().unwrap().to_owned();
    let (id, key) = kbs::household_key(&cloud.database(), KEY_ENCRYPTION_KEY);
    let reply = rt.block_on(kbs::release(&mut c, &token, id.as_str()));
    assert_eq!(reply.status, 200, "{}", reply.text);
    let released: Released = serde_json::from_value(reply.body).unwrap();
    assert_eq!(host.open(&id, &released).unwrap(), key);
    assert!(Recipient::generate().open(&id, &released).is_err());

    // The same session (nonce) again.
    let reply = rt.block_on(kbs::attest_with(
        &mut c,
        &session,
        &host.public_key(),
        &host.public_key(),
    ));
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "nonce_unknown_or_used");

    // Evidence bound to another key than the one presented.
    let session = rt.block_on(kbs::auth(&mut c, "simulated"));
    let other = Recipient::generate();
    let reply = rt.block_on(kbs::attest_with(
        &mut c,
        &session,
        &other.public_key(),
        &host.public_key(),
    ));
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "attestation_refused");
    assert_eq!(reply.body["error"]["reason"], "report_data_mismatch");

    // An unknown token; a key that does not exist.
    let reply = rt.block_on(kbs::release(&mut c, "not-a-token", id.as_str()));
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "token_invalid");
    let missing = KeyId::generate().unwrap();
    let reply = rt.block_on(kbs::release(&mut c, &token, missing.as_str()));
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "key_not_found");

    // The metrics, for administrators only.
    let reply = rt.block_on(c.get(METRICS_PATH, &[])).unwrap();
    assert_eq!(reply.status, 401);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let reply = rt
        .block_on(c.get(METRICS_PATH, &[("authorization", bearer.as_str())]))
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    for line in [
        r#"wattlet_kbs_attestations_total{tee="simulated",outcome="accepted",reason="none"} 1"#,
        r#"wattlet_kbs_attestations_total{tee="simulated",outcome="refused",reason="nonce_unknown_or_used"} 1"#,
        r#"wattlet_kbs_attestations_total{tee="simulated",outcome="refused",reason="report_data_mismatch"} 1"#,
        r#"wattlet_kbs_key_releases_total{outcome="released"} 1"#,
        r#"wattlet_kbs_key_releases_total{outcome="token_invalid"} 1"#,
        r#"wattlet_kbs_key_releases_total{outcome="not_found"} 1"#,
        "\nwattlet_kbs_sessions 1\n",
    ] {
        assert!(reply.text.contains(line), "{line} in\n{}", reply.text);
    }
}

#[test]
fn the_default_policy_refuses_simulated_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(dir.path());
    let mut c = connect(&cloud);
    let rt = cloud.runtime().clone();
    let host = Recipient::generate();
    let session = rt.block_on(kbs::auth(&mut c, "simulated"));
    let reply = rt.block_on(kbs::attest_with(
        &mut c,
        &session,
        &host.public_key(),
        &host.public_key(),
    ));
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "attestation_refused");
    assert_eq!(reply.body["error"]["reason"], "simulated");
}
