//! Client identities natively: the identity headers count only with the TLS terminator's proof
//! (fresh, for this request, made with the key, used once); weak or missing secrets stop the
//! Data API; devices keep working under their pseudonyms once anonymized.
#![cfg(not(target_family = "wasm"))]

mod support;

use support::{
    Api, IDENTITY_KEY, assert_refused, identity_headers, measurement, proven_headers, unique,
    unix_now,
};
use wattlet_data_api::Method;
use wattlet_survey::identity::{self, MAX_SKEW_SECONDS};
use wattlet_survey::{ConsentState, RefusalCode};

const HOUSEHOLD: &str = "/api/household";

/// Headers as `(name, value)` pairs for [`Api::send`].
fn refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn identity_headers_count_only_with_a_fresh_proof_for_the_request_used_once() {
    let api = Api::new();
    let household = api.register();
    let other = api.register();
    let who = (household.device.as_str(), household.email.as_str());
    let now = unix_now();
    let get =
        |headers: &[(&'static str, String)]| api.send(Method::Get, HOUSEHOLD, &refs(headers), None);

    let valid = proven_headers(IDENTITY_KEY, now, ("GET", HOUSEHOLD), who);
    let (status, body) = get(&valid);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["household"], household.id.as_str());
    // The same proof again: a replay.
    let replay = get(&valid);
    assert_refused(&replay, RefusalCode::IdentityUnverified);
    assert!(
        replay.1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("used before")
    );

    let unproven = &valid[..2];
    let mut duplicated = proven_headers(IDENTITY_KEY, now, ("GET", HOUSEHOLD), who);
    duplicated.push((identity::DEVICE, other.device.clone()));
    let mut someone_else = proven_headers(IDENTITY_KEY, now, ("GET", HOUSEHOLD), who);
    someone_else[0].1 = other.device.clone();
    someone_else[1].1 = other.email.clone();
    let garbled = {
        let mut h = proven_headers(IDENTITY_KEY, now, ("GET", HOUSEHOLD), who);
        h[3].1 = "v1;t=1;n=x".to_owned();
        h
    };
    for (what, headers) in [
        ("no proof", unproven.to_vec()),
        (
            "another key",
            proven_headers(
                "another key of enough length, 1234567",
                now,
                ("GET", HOUSEHOLD),
                who,
            ),
        ),
        (
            "made long ago",
            proven_headers(
                IDENTITY_KEY,
                now - MAX_SKEW_SECONDS - 60,
                ("GET", HOUSEHOLD),
                who,
            ),
        ),
        (
            "made for later",
            proven_headers(
                IDENTITY_KEY,
                now + MAX_SKEW_SECONDS + 60,
                ("GET", HOUSEHOLD),
                who,
            ),
        ),
        (
            "another path",
            proven_headers(IDENTITY_KEY, now, ("GET", "/api/account"), who),
        ),
        (
            "another method",
            proven_headers(IDENTITY_KEY, now, ("DELETE", HOUSEHOLD), who),
        ),
        ("another identity", someone_else),
        ("a header twice", duplicated),
        ("a garbled proof", garbled),
    ] {
        let reply = get(&headers);
        assert_eq!(reply.0, 401, "{what}: {}", reply.1);
        assert_eq!(
            reply.1["code"], "identity_unverified",
            "{what}: {}",
            reply.1
        );
    }
    // Nothing changed for a refused identity: consent stays where it was.
    let grant = proven_headers(IDENTITY_KEY, now, ("GET", "/api/household/consent"), who);
    let reply = api.send(Method::Post, "/api/household/consent", &refs(&grant), None);
    assert_refused(&reply, RefusalCode::IdentityUnverified);
    assert_eq!(api.consent_state(&household), "not_granted");

    // A nonce is kept while a proof carrying it could verify, and forgotten after.
    api.sql(
        "INSERT INTO identity_proof (nonce, made_at) VALUES ('old', ?1)",
        [(now - MAX_SKEW_SECONDS - 5) as i64],
    );
    let (status, _) = api.as_device(&household, Method::Get, HOUSEHOLD, None);
    assert_eq!(status, 200);
    assert_eq!(
        api.count(
            "SELECT count(*) FROM identity_proof WHERE nonce = 'old'",
            []
        ),
        0
    );
    assert!(api.count("SELECT count(*) FROM identity_proof", []) >= 2);
}

#[test]
fn a_weak_or_missing_secret_answers_nothing_but_500() {
    let api = Api::new();
    let household = api.register();
    for (secret, value, why) in [
        ("admin_token", Ok("changeme".to_owned()), "too weak"),
        ("admin_token", Ok("ab".repeat(40)), "too weak"),
        ("admin_token", Err("undefined".to_owned()), "unavailable"),
        (
            "client_identity_key",
            Ok("0123456789".to_owned()),
            "too weak",
        ),
        (
            "client_identity_key",
            Err("undefined".to_owned()),
            "unavailable",
        ),
    ] {
        let slot = match secret {
            "admin_token" => &api.secrets.admin_token,
            _ => &api.secrets.identity_key,
        };
        let good = slot.replace(value);
        let (status, body) = api.send(Method::Get, "/api/health", &[], None);
        assert_eq!(status, 503, "{body}");
        assert!(
            body["secrets"].as_str().is_some_and(|s| s.contains(secret)),
            "{body}"
        );
        let weak_bearer = "Bearer changeme";
        for reply in [
            api.admin(Method::Get, "/api/management/household", None),
            api.send(
                Method::Get,
                "/api/management/household",
                &[("authorization", weak_bearer)],
                None,
            ),
            api.as_device(&household, Method::Get, HOUSEHOLD, None),
        ] {
            assert_refused(&reply, RefusalCode::Internal);
            let message = reply.1["error"].as_str().unwrap_or_default();
            assert!(
                message.contains(secret) && message.contains(why),
                "{message}"
            );
        }
        *slot.borrow_mut() = good;
        let (status, body) = api.send(Method::Get, "/api/health", &[], None);
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn an_anonymized_household_keeps_its_device_under_a_pseudonym() {
    let api = Api::new();
    let household = api.register();
    api.set_consent(&household, ConsentState::Granted);
    let (status, body) = api.as_device(&household, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    let by_id = |id: &str| {
        api.count(
            "SELECT count(*) FROM measurement_device WHERE id = ?1",
            [id],
        )
    };
    assert_eq!(by_id(&household.device), 0, "the device id stays");
    let pseudonym = api
        .sql_text(
            "SELECT id FROM measurement_device WHERE household = ?1",
            [&household.id],
        )
        .expect("a device");
    assert!(pseudonym.starts_with("anon:"), "{pseudonym}");
    assert_eq!(
        api.count("SELECT count(*) FROM meter WHERE device = ?1", [&pseudonym]),
        2,
        "the meters stay wired to it"
    );
    // Its certificate still finds it: it learns the consent is revoked, uploads are refused.
    let (status, body) = api.as_device(&household, Method::Get, "/api/household/consent", None);
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("revoked")),
        "{body}"
    );
    let reading = measurement(
        &household.meters[0],
        "2026-11-23T16:00:00Z",
        serde_json::json!([{ "0100010800ff": 1.0 }]),
    );
    assert_refused(
        &api.upload(&household, &[reading]),
        RefusalCode::ConsentRevoked,
    );

    // A crash part-way (the row copied under the pseudonym, the meters not yet rewired, the old
    // row still there): the next request finishes the rename.
    api.sql(
        "INSERT INTO measurement_device (id, household) VALUES (?1, ?2)",
        [&household.device, &household.id],
    );
    api.sql(
        "UPDATE meter SET device = ?1 WHERE device = ?2",
        [&household.device, &pseudonym],
    );
    api.sql(
        "UPDATE anonymization SET completed_at = NULL WHERE household = ?1",
        [&household.id],
    );
    let (status, _) = api.send(Method::Get, "/api/health", &[], None);
    assert_eq!(status, 200);
    let (status, _) = api.admin(Method::Get, "/api/management/household", None);
    assert_eq!(status, 200);
    assert_eq!(by_id(&household.device), 0);
    assert_eq!(by_id(&pseudonym), 1);
    assert_eq!(
        api.count("SELECT count(*) FROM meter WHERE device = ?1", [&pseudonym]),
        2
    );

    // The id is free for a new device, which finds its own household first; an administrator
    // still revokes the old one by its id.
    let (status, body) = api.admin(
        Method::Post,
        "/api/management/household",
        Some(&serde_json::json!({
            "name": "N", "email": format!("{}@example.org", unique("new")),
            "device": household.device,
            "meters": [{ "type": "ELECTRICITY", "model": "DD3" }],
            "location": { "latitude": 50.0, "longitude": 8.0 },
        })),
    );
    assert_eq!(status, 201, "{body}");
    let newcomer = body["household"].as_str().expect("id").to_owned();
    let email = api
        .sql_text(
            r#"SELECT u.email FROM household h JOIN "user" u ON u.id = h.user WHERE h.id = ?1"#,
            [&newcomer],
        )
        .expect("email");
    let headers = identity_headers(&household.device, &email, &Method::Get, HOUSEHOLD);
    let (status, body) = api.send(Method::Get, HOUSEHOLD, &refs(&headers), None);
    assert_eq!(
        (status, body["household"].as_str()),
        (200, Some(newcomer.as_str())),
        "{body}"
    );
    // The old device's certificate still finds the anonymized household.
    let (status, body) = api.as_device(&household, Method::Get, HOUSEHOLD, None);
    assert_eq!(
        (status, body["household"].as_str()),
        (200, Some(household.id.as_str())),
        "{body}"
    );
}
