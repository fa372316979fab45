//! Access-token rules natively: a default and a maximum lifetime, revocation by id (also of
//! participants' tokens), revocations forgotten once every token of the id has expired.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::json;
use support::{ADMIN_TOKEN, Api, assert_refused, unix_now};
use wattlet_access_token::{Caveat, Role, Token, root_key};
use wattlet_data_api::Method;
use wattlet_survey::RefusalCode;

const DAY: u64 = 24 * 3600;
const HOUSEHOLDS: &str = "/api/management/household";

fn rfc3339(seconds: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(seconds as i64).expect("a time");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

/// The earliest expiry among a token's caveats.
fn expiry(token: &str) -> Option<u64> {
    Token::decode(token)
        .expect("a token")
        .caveats()
        .iter()
        .filter_map(|c| match c {
            Caveat::ExpiresAt(at) => Some(*at),
            _ => None,
        })
        .min()
}

#[test]
fn every_token_expires_within_the_maximum() {
    let api = Api::new();
    let now = unix_now();
    let (status, body) = api.admin(
        Method::Post,
        "/api/management/token",
        Some(&json!({ "role": "worker" })),
    );
    assert_eq!(status, 201, "{body}");
    let minted = body["token"].as_str().expect("token");
    let default = expiry(minted).expect("an expiry");
    assert!((now + 7 * DAY..=unix_now() + 7 * DAY).contains(&default));
    assert_eq!(body["expires_at"], rfc3339(default));
    assert_eq!(body["id"], Token::decode(minted).expect("token").id());

    for (days, status) in [(89, 201), (91, 400), (3650, 400)] {
        let (got, body) = api.admin(
            Method::Post,
            "/api/management/token",
            Some(&json!({ "role": "researcher", "expires_at": rfc3339(now + days * DAY) })),
        );
        assert_eq!(got, status, "{days} days: {body}");
        if status == 400 {
            assert_refused(&(got, body.clone()), RefusalCode::InvalidRequest);
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("at most 90 days")
            );
        }
    }
    // A token minted with a token never outlives it.
    let admin = api.mint(json!({ "role": "administrator" }));
    let short_admin = Token::decode(&admin)
        .expect("token")
        .attenuate(Caveat::ExpiresAt(now + 3600))
        .encode();
    let (status, body) = api.with_token(
        &short_admin,
        Method::Post,
        "/api/management/token",
        Some(&json!({ "role": "researcher", "expires_at": rfc3339(now + 30 * DAY) })),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        expiry(body["token"].as_str().expect("token")),
        Some(now + 3600)
    );

    // Tokens made with the key elsewhere: signed, but without expiry or living too long.
    let root = root_key(ADMIN_TOKEN.as_bytes());
    for (token, needle) in [
        (
            Token::mint(&root, "x-1", Role::Administrator),
            "never expires",
        ),
        (
            Token::mint(&root, "x-2", Role::Administrator)
                .attenuate(Caveat::ExpiresAt(now + 100 * DAY)),
            "90 days",
        ),
    ] {
        let reply = api.with_token(&token.encode(), Method::Get, HOUSEHOLDS, None);
        assert_refused(&reply, RefusalCode::InvalidToken);
        assert!(
            reply.1["error"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{}",
            reply.1
        );
    }
    let fine = Token::mint(&root, "x-3", Role::Administrator)
        .attenuate(Caveat::ExpiresAt(now + 80 * DAY))
        .encode();
    assert_eq!(api.with_token(&fine, Method::Get, HOUSEHOLDS, None).0, 200);
}

#[test]
fn a_revoked_id_refuses_its_tokens_until_they_would_have_expired() {
    let api = Api::new();
    let household = api.register();
    let researcher = api.mint(json!({ "role": "researcher" }));
    let id = Token::decode(&researcher).expect("token").id().to_owned();
    let narrowed = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::Household(household.id.clone()))
        .encode();
    let revoke = format!("/api/management/token/{id}/revoke");
    let reply = api.with_token(&researcher, Method::Post, &revoke, None);
    assert_refused(&reply, RefusalCode::RoleForbidden);
    let (status, body) = api.admin(Method::Post, &revoke, None);
    assert_eq!(status, 200, "{body}");
    for token in [&researcher, &narrowed] {
        let reply = api.with_token(token, Method::Get, HOUSEHOLDS, None);
        assert_refused(&reply, RefusalCode::TokenRevoked);
    }
    for bad in ["a%2Fb", &"x".repeat(129)] {
        let reply = api.admin(
            Method::Post,
            &format!("/api/management/token/{bad}/revoke"),
            None,
        );
        assert_refused(&reply, RefusalCode::InvalidRequest);
    }

    // A participant's token, which the device obtained, is revoked the same way.
    let (status, body) = api.as_device(&household, Method::Post, "/api/household/token", None);
    assert_eq!(status, 201, "{body}");
    let participant = body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        api.with_token(&participant, Method::Get, "/api/household", None)
            .0,
        200
    );
    let id = Token::decode(&participant).expect("token").id().to_owned();
    let (status, _) = api.admin(
        Method::Post,
        &format!("/api/management/token/{id}/revoke"),
        None,
    );
    assert_eq!(status, 200);
    let reply = api.with_token(&participant, Method::Get, "/api/household", None);
    assert_refused(&reply, RefusalCode::TokenRevoked);

    // A revocation older than the longest a token lives is forgotten at the next one.
    api.sql(
        "INSERT INTO revoked_token (id, revoked_at) VALUES ('ancient', '2000-01-01T00:00:00.000000000Z')",
        [],
    );
    let (status, _) = api.admin(Method::Post, "/api/management/token/another/revoke", None);
    assert_eq!(status, 200);
    assert_eq!(
        api.count(
            "SELECT count(*) FROM revoked_token WHERE id = 'ancient'",
            []
        ),
        0
    );
    assert_eq!(api.count("SELECT count(*) FROM revoked_token", []), 3);
}
