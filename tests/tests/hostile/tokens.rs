//! Access tokens against the Data API on `wattlet serve`: none lives longer than the maximum
//! (asked for at minting, or made elsewhere with the key), a revoked one is refused with its
//! code, and a weak `admin_token` makes the Data API answer nothing but 5xx.

use std::sync::OnceLock;

use hyper::Method;
use serde_json::json;
use wattlet_access_token::{Caveat, Role, Token, root_key};
use wattlet_survey::RefusalCode;
use wattlet_testkit::clock::{rfc3339, unix_now};
use wattlet_testkit::http::{Client, Reply};
use wattlet_testkit::serve::{self, Served};
use wattlet_testkit::{ADMIN_TOKEN, APP_VARIABLES, IDENTITY_KEY, KEY_ENCRYPTION_KEY};

const DAY: u64 = 24 * 3600;
const HOUSEHOLDS: &str = "/api/management/household";

/// The Data API on plain HTTP, for every test of this module.
fn api() -> &'static Served {
    static API: OnceLock<Served> = OnceLock::new();
    API.get_or_init(|| {
        let state = tempfile::tempdir().expect("temp dir");
        serve::start(&serve::app_options(state.path()), &APP_VARIABLES).keeping(state)
    })
}

fn client(token: &str) -> Client {
    Client::plain(api().addr).bearer(token)
}

fn assert_refused(reply: &Reply, code: RefusalCode, needle: &str) {
    assert_eq!(reply.status.as_u16(), code.status(), "{}", reply.text);
    assert_eq!(reply.body["code"], code.as_str(), "{}", reply.text);
    assert!(
        reply.text.contains(needle),
        "{needle:?} not in {}",
        reply.text
    );
}

async fn mint(request: serde_json::Value) -> Reply {
    client(ADMIN_TOKEN)
        .call(Method::POST, "/api/management/token", Some(&request))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_would_live_longer_than_the_maximum_is_refused() {
    let now = unix_now();
    // Asked for at minting: 400 naming the field.
    let reply = mint(json!({ "role": "researcher", "expires_at": rfc3339(now + 365 * DAY) })).await;
    assert_refused(&reply, RefusalCode::InvalidRequest, "expires_at");
    assert_refused(&reply, RefusalCode::InvalidRequest, "90 days");
    // Within the maximum it is minted with that expiry, without one with the default.
    let reply = mint(json!({ "role": "researcher", "expires_at": rfc3339(now + 30 * DAY) })).await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    assert_eq!(reply.body["expires_at"], rfc3339(now + 30 * DAY));
    let reply = mint(json!({ "role": "researcher" })).await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    let token = Token::decode(reply.body["token"].as_str().expect("token")).expect("token");
    let expiry = token
        .caveats()
        .iter()
        .find_map(|c| match c {
            Caveat::ExpiresAt(at) => Some(*at),
            _ => None,
        })
        .expect("an expiry");
    assert!(
        (now + 7 * DAY..=unix_now() + 7 * DAY).contains(&expiry),
        "{expiry}"
    );

    // Made with the key elsewhere (an older server, a leaked key's holder): without an expiry,
    // or one further ahead than the maximum, it is refused although its signature holds.
    let root = root_key(ADMIN_TOKEN.as_bytes());
    let forever = Token::mint(&root, "made-elsewhere-1", Role::Administrator).encode();
    let reply = client(&forever).call(Method::GET, HOUSEHOLDS, None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "never expires");
    let year = Token::mint(&root, "made-elsewhere-2", Role::Administrator)
        .attenuate(Caveat::ExpiresAt(now + 365 * DAY))
        .encode();
    let reply = client(&year).call(Method::GET, HOUSEHOLDS, None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "90 days");
    let month = Token::mint(&root, "made-elsewhere-3", Role::Administrator)
        .attenuate(Caveat::ExpiresAt(now + 30 * DAY))
        .encode();
    let reply = client(&month).call(Method::GET, HOUSEHOLDS, None).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_with_its_code() {
    let reply = mint(json!({ "role": "researcher" })).await;
    assert_eq!(reply.status.as_u16(), 201, "{}", reply.text);
    let researcher = reply.body["token"].as_str().expect("token").to_owned();
    let id = reply.body["id"].as_str().expect("id").to_owned();
    assert_eq!(Token::decode(&researcher).expect("token").id(), id);
    let restricted = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    let other = mint(json!({ "role": "researcher" })).await.body["token"]
        .as_str()
        .expect("token")
        .to_owned();
    for token in [&researcher, &restricted, &other] {
        let reply = client(token).call(Method::GET, HOUSEHOLDS, None).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    }
    let revoke = format!("/api/management/token/{id}/revoke");
    // Only administrators revoke.
    let reply = client(&other).call(Method::POST, &revoke, None).await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "administrator");
    let reply = client(ADMIN_TOKEN).call(Method::POST, &revoke, None).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(reply.body["id"], id.as_str());
    let revoked_at = reply.body["revoked_at"].clone();
    assert!(revoked_at.is_string(), "{}", reply.text);
    // The token and every token restricted from it; the other token still works.
    for token in [&researcher, &restricted] {
        let reply = client(token).call(Method::GET, HOUSEHOLDS, None).await;
        assert_refused(&reply, RefusalCode::TokenRevoked, &id);
    }
    let reply = client(&other).call(Method::GET, HOUSEHOLDS, None).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    // Revoking again answers with the first time; a malformed id is refused.
    let reply = client(ADMIN_TOKEN).call(Method::POST, &revoke, None).await;
    assert_eq!(reply.body["revoked_at"], revoked_at, "{}", reply.text);
    let reply = client(ADMIN_TOKEN)
        .call(Method::POST, "/api/management/token/a%20b/revoke", None)
        .await;
    assert_refused(&reply, RefusalCode::InvalidRequest, "id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_admin_token_answers_nothing_but_5xx() {
    for weak in ["changeme", "admin-token-for-tests", &"x".repeat(64)] {
        let state = tempfile::tempdir().expect("temp dir");
        let served = serve::start(
            &serve::app_options(state.path()),
            &[
                ("admin_token", weak),
                ("client_identity_key", IDENTITY_KEY),
                ("key_encryption_key", KEY_ENCRYPTION_KEY),
            ],
        );
        let health = wattlet_testkit::http::get(served.addr, "/api/health").await;
        assert_eq!(health.status.as_u16(), 503, "{}", health.text);
        assert!(
            health.body["secrets"]
                .as_str()
                .is_some_and(|s| s.contains("admin_token")),
            "{}",
            health.text
        );
        let admin = Client::plain(served.addr).bearer(weak);
        let registration = json!({ "name": "X" });
        for (method, path, body) in [
            (Method::GET, HOUSEHOLDS, None),
            (Method::POST, HOUSEHOLDS, Some(&registration)),
            (Method::POST, "/api/management/token", Some(&registration)),
            (Method::GET, "/api/household", None),
        ] {
            let reply = admin.call(method, path, body).await;
            assert_refused(
                &reply,
                RefusalCode::Internal,
                "admin_token variable is too weak",
            );
        }
    }
}
