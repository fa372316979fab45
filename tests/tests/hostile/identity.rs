//! The client identity headers (`x-wattlet-client-*`) count only with the TLS terminator's
//! proof. On the real Spin CLI serving the repository's `spin.toml` nothing strips them: two
//! plain HTTP requests naming a device and its participant must neither grant nor revoke the
//! household's consent, and a proof replayed, made too long ago or made for another request
//! must not count either. On `wattlet serve` over mutual TLS the device's certificate alone
//! speaks for it.

use hyper::Method;
use serde_json::Value;
use wattlet_survey::RefusalCode;
use wattlet_survey::identity::{DEVICE, EMAIL, MAX_SKEW_SECONDS, PROOF, SERIAL};
use wattlet_testkit::clock::unix_now;
use wattlet_testkit::http::{Client, Reply};
use wattlet_testkit::{
    ADMIN_TOKEN, APP_VARIABLES, Cloud, KEY_ENCRYPTION_KEY, NO_SPIN, SpinUp, household,
    ingress_identity, ingress_identity_at, repo, serve, spin_cli, unique, uuid4,
};

const CONSENT: &str = "/api/household/consent";

fn assert_refused(reply: &Reply, code: RefusalCode) {
    assert_eq!(reply.status.as_u16(), code.status(), "{}", reply.text);
    assert_eq!(reply.body["code"], code.as_str(), "{}", reply.text);
}

fn as_refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

/// A household registered through `admin` (a client with the admin token): its id, device and
/// participant's email.
async fn register(admin: &Client) -> (String, String, String) {
    let device = unique("pi");
    let email = format!("{}@example.org", unique("victim"));
    let registration = household("Ada Lovelace", &email, &device, &uuid4());
    let reply = admin
        .call(
            Method::POST,
            "/api/management/household",
            Some(&registration),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    let id = reply.body["household"].as_str().expect("id").to_owned();
    (id, device, email)
}

/// The household's consent state, as the administrator sees it.
async fn consent_of(admin: &Client, household: &str) -> Value {
    let reply = admin
        .call(
            Method::GET,
            &format!("/api/management/household/{household}"),
            None,
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    reply.body["consent"]["state"].clone()
}

#[test]
fn forged_identity_headers_grant_and_revoke_nothing() {
    // wattlet serve, mutual TLS: a client without a certificate sends the identity headers of
    // a registered device; the device itself grants and revokes with its certificate.
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = Cloud::start(&dir.path().join("serve"));
    let admin = Client::tls(cloud.addr, cloud.anonymous_tls()).bearer(ADMIN_TOKEN);
    let runtime = cloud.runtime().clone();
    let (id, device, email) = runtime.block_on(register(&admin));
    let forged = [
        (DEVICE, device.as_str()),
        (EMAIL, email.as_str()),
        (SERIAL, "01"),
        (PROOF, "v1;t=1;n=made-up;s=00"),
    ];
    let anyone = Client::tls(cloud.addr, cloud.anonymous_tls());
    for method in [Method::POST, Method::DELETE] {
        let reply = runtime.block_on(anyone.send(method, CONSENT, b"", &forged));
        assert_refused(&reply, RefusalCode::NotAuthenticated);
    }
    assert_eq!(runtime.block_on(consent_of(&admin, &id)), "not_granted");
    let certificate = cloud.device(&device, &email);
    cloud.grant(&certificate);
    let (status, body) = cloud.as_device(&certificate, "DELETE", CONSENT, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(runtime.block_on(consent_of(&admin, &id)), "revoked");

    // The same application on the real Spin CLI, plain HTTP: nothing strips the headers.
    let Some(spin) = spin_cli() else {
        println!("{NO_SPIN}");
        return;
    };
    let up = SpinUp::start(
        &spin,
        &repo().join("spin.toml"),
        None,
        &dir.path().join("spin"),
        &APP_VARIABLES,
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let admin = Client::plain(up.addr).bearer(ADMIN_TOKEN);
    let anyone = Client::plain(up.addr);
    let (id, device, email) = runtime.block_on(register(&admin));
    let named = [(DEVICE, device.as_str()), (EMAIL, email.as_str())];
    let made_up = [
        (DEVICE, device.as_str()),
        (EMAIL, email.as_str()),
        (SERIAL, "01"),
        (PROOF, "v1;t=1;n=made-up;s=00"),
    ];
    for method in [Method::POST, Method::DELETE] {
        for headers in [&named[..], &made_up[..]] {
            let reply = runtime.block_on(anyone.send(method.clone(), CONSENT, b"", headers));
            assert_refused(&reply, RefusalCode::IdentityUnverified);
        }
    }
    assert_eq!(runtime.block_on(consent_of(&admin, &id)), "not_granted");

    // Proofs that do not count: made too long ago, made for another request, signed with
    // another key (a forged tag), used twice.
    let old = unix_now() - MAX_SKEW_SECONDS - 600;
    let stale = ingress_identity_at(old, "POST", CONSENT, &device, &email, "01");
    let elsewhere = ingress_identity("POST", "/api/household/token", &device, &email, "01");
    let mut retagged = ingress_identity("POST", CONSENT, &device, &email, "01");
    let proof = &mut retagged[3].1;
    let flipped = if proof.ends_with('0') { '1' } else { '0' };
    proof.pop();
    proof.push(flipped);
    for headers in [&stale, &elsewhere, &retagged] {
        let reply = runtime.block_on(anyone.send(Method::POST, CONSENT, b"", &as_refs(headers)));
        assert_refused(&reply, RefusalCode::IdentityUnverified);
    }
    assert_eq!(runtime.block_on(consent_of(&admin, &id)), "not_granted");
    // What an ingress in front of Spin sets after verifying the certificate: it counts, once.
    let proven = ingress_identity("POST", CONSENT, &device, &email, "01");
    let reply = runtime.block_on(anyone.send(Method::POST, CONSENT, b"", &as_refs(&proven)));
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(runtime.block_on(consent_of(&admin, &id)), "granted");
    let replayed = runtime.block_on(anyone.send(Method::POST, CONSENT, b"", &as_refs(&proven)));
    assert_refused(&replayed, RefusalCode::IdentityUnverified);
    assert!(replayed.text.contains("used before"), "{}", replayed.text);
    let replayed = runtime.block_on(anyone.send(Method::DELETE, CONSENT, b"", &as_refs(&proven)));
    assert_refused(&replayed, RefusalCode::IdentityUnverified);
    assert_eq!(runtime.block_on(consent_of(&admin, &id)), "granted");
    let proven = ingress_identity("DELETE", CONSENT, &device, &email, "01");
    let reply = runtime.block_on(anyone.send(Method::DELETE, CONSENT, b"", &as_refs(&proven)));
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(runtime.block_on(consent_of(&admin, &id)), "revoked");
}

#[test]
fn a_weak_client_identity_key_keeps_wattlet_serve_from_starting() {
    let state = tempfile::tempdir().expect("temp dir");
    let options = serve::app_options(state.path());
    for weak in ["", "secret", "0123456789", &"ab".repeat(32)] {
        let error = wattlet_serve::server::App::load_with_env(&options, |name| match name {
            "SPIN_VARIABLE_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_owned()),
            "SPIN_VARIABLE_CLIENT_IDENTITY_KEY" => Some(weak.to_owned()),
            "SPIN_VARIABLE_KEY_ENCRYPTION_KEY" => Some(KEY_ENCRYPTION_KEY.to_owned()),
            _ => None,
        })
        .err()
        .unwrap_or_else(|| panic!("{weak:?} was accepted"));
        let message = format!("{error:#}");
        assert!(
            message.contains("client_identity_key") && message.contains("openssl rand"),
            "{message}"
        );
    }
    let error = wattlet_serve::server::App::load_with_env(&options, |name| match name {
        "SPIN_VARIABLE_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_owned()),
        "SPIN_VARIABLE_KEY_ENCRYPTION_KEY" => Some(KEY_ENCRYPTION_KEY.to_owned()),
        _ => None,
    })
    .err()
    .expect("the key is required");
    let message = format!("{error:#}");
    assert!(
        message.contains("SPIN_VARIABLE_CLIENT_IDENTITY_KEY"),
        "{message}"
    );
}
