//! Access tokens: each role's reach, restrictions that only narrow, participant tokens.

use super::*;

fn registration(device: &str) -> Value {
    json!({ "name": "T", "email": format!("{}@example.org", unique("tok")), "device": device,
            "meters": [{ "type": "ELECTRICITY", "model": "DD3" }], "location": location() })
}

/// The statuses `token` gets for: register, list, revoke `device`, import a region, mint.
async fn scope_of(token: &str, device: &str) -> [StatusCode; 5] {
    let register = with_token(
        token,
        Method::POST,
        "/api/management/household",
        Some(&registration(&unique("dev"))),
    )
    .await;
    let list = with_token(token, Method::GET, "/api/management/household", None).await;
    let revoke = with_token(
        token,
        Method::POST,
        &format!("/api/management/device/{device}/revoke"),
        None,
    )
    .await;
    let bearer = format!("Bearer {token}");
    let import = plain()
        .send(
            Method::PUT,
            "/api/management/nuts3_region",
            b"code,population_density_per_km2\nDEF0A,120\n",
            &[("authorization", &bearer)],
        )
        .await;
    let minted = with_token(
        token,
        Method::POST,
        "/api/management/token",
        Some(&json!({ "role": "researcher" })),
    )
    .await;
    [
        register.status,
        list.status,
        revoke.status,
        import.status,
        minted.status,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_carry_a_role_and_restrictions_that_only_narrow() {
    use wattlet_access_token::{Caveat, Role, Token};
    const OK: StatusCode = StatusCode::OK;
    const CREATED: StatusCode = StatusCode::CREATED;
    const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
    let household = register().await;
    let other = register().await;

    // Researchers register and list; device administration, regions and minting are not theirs.
    let researcher = mint(ADMIN_TOKEN, json!({ "role": "researcher" })).await;
    assert_eq!(
        scope_of(&researcher, &household.device).await,
        [CREATED, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN]
    );
    let administrator = mint(ADMIN_TOKEN, json!({ "role": "administrator" })).await;
    let spare = register().await;
    assert_eq!(
        scope_of(&administrator, &spare.device).await,
        [CREATED, OK, OK, OK, CREATED]
    );

    // A holder restricts a token offline; the restricted token keeps every restriction.
    let read_only = Token::decode(&administrator)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    assert_eq!(
        scope_of(&read_only, &household.device).await,
        [FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN]
    );
    let one_household = Token::decode(&administrator)
        .expect("token")
        .attenuate(Caveat::Household(household.id.clone()))
        .encode();
    let listed = with_token(
        &one_household,
        Method::GET,
        "/api/management/household",
        None,
    )
    .await;
    let ids: Vec<&str> = listed.body["households"]
        .as_array()
        .expect("households")
        .iter()
        .map(|h| h["household"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [household.id.as_str()], "{}", listed.text);
    // Cross-household attempts: another household's device and meter.
    let reply = with_token(
        &one_household,
        Method::POST,
        &format!("/api/management/device/{}/revoke", other.device),
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let reply = with_token(
        &one_household,
        Method::GET,
        &format!("/api/management/meter/{}/disaggregation", other.meters[0]),
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let reply = with_token(
        &one_household,
        Method::GET,
        &format!(
            "/api/management/meter/{}/disaggregation",
            household.meters[0]
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, OK, "{}", reply.text);
    assert_eq!(
        household_in_listing(&other.id).await["devices"][0]["revoked_at"],
        Value::Null
    );

    // Widening: a removed, changed or out-ranking restriction is refused or has no effect.
    let decoded = Token::decode(&read_only).expect("token");
    let caveats: Vec<String> = decoded.caveats().iter().map(Caveat::encode).collect();
    let (payload, tag) = read_only.rsplit_once('.').expect("tag");
    let forge = |caveats: &[&str]| {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = json!({ "id": decoded.id(), "caveats": caveats }).to_string();
        format!("wt1.{}.{tag}", engine.encode(body))
    };
    assert!(payload.starts_with("wt1."));
    for widened in [
        forge(&[caveats[0].as_str()]),
        forge(&["role=administrator", "household=x"]),
        format!("{payload}.{}", "A".repeat(43)),
        Token::mint(b"another server", "x", Role::Administrator).encode(),
    ] {
        let reply = with_token(&widened, Method::GET, "/api/management/household", None).await;
        assert_refused(&reply, RefusalCode::InvalidToken, "signature");
    }
    let promoted = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::Role(Role::Administrator))
        .encode();
    let reply = with_token(
        &promoted,
        Method::POST,
        &format!("/api/management/device/{}/revoke", household.device),
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "administrator");

    // Expiry: past restrictions are refused; a token minted by a token never outlives it.
    let expired = Token::decode(&administrator)
        .expect("token")
        .attenuate(Caveat::ExpiresAt(1))
        .encode();
    let reply = with_token(&expired, Method::GET, "/api/management/household", None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "expired");
    let own_expiry = |token: &Token| {
        token
            .caveats()
            .iter()
            .filter_map(|c| match c {
                Caveat::ExpiresAt(at) => Some(*at),
                _ => None,
            })
            .min()
            .expect("an expiry")
    };
    let minted = Token::decode(&administrator).expect("token");
    let soon = own_expiry(&minted) - 3600;
    let until = minted.attenuate(Caveat::ExpiresAt(soon)).encode();
    let child = mint(&until, json!({ "role": "researcher", "read_only": true })).await;
    let child = Token::decode(&child).expect("token");
    assert_eq!(
        child.caveats()[1..],
        [Caveat::ExpiresAt(soon), Caveat::ReadOnly]
    );
    for (request, needle) in [
        (json!({ "role": "owner" }), "role"),
        (
            json!({ "role": "researcher", "expires_at": "2001-01-01T00:00:00Z" }),
            "future",
        ),
        (
            json!({ "role": "researcher", "household": uuid4() }),
            "no household",
        ),
        (
            json!({ "role": "researcher", "scope": "all" }),
            "unknown field",
        ),
    ] {
        let reply = with_token(
            ADMIN_TOKEN,
            Method::POST,
            "/api/management/token",
            Some(&request),
        )
        .await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_tokens_reach_their_own_household_only() {
    use wattlet_access_token::{Caveat, Token};
    let household = register().await;
    let other = register().await;
    let reply = with_token(
        ADMIN_TOKEN,
        Method::POST,
        "/api/management/token",
        Some(&json!({ "role": "participant" })),
    )
    .await;
    assert_refused(&reply, RefusalCode::InvalidRequest, "needs its household");
    let participant = mint(
        ADMIN_TOKEN,
        json!({ "role": "participant", "household": household.id }),
    )
    .await;

    let reply = with_token(&participant, Method::GET, "/api/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["household"], household.id.as_str());
    assert_eq!(reply.body["user"]["email"], household.email.as_str());
    let reply = with_token(&participant, Method::GET, "/api/account", None).await;
    assert_eq!(
        reply.body,
        json!({ "household": household.id, "user": { "name": "Erika Mustermann", "email": household.email } })
    );
    let reply = with_token(&participant, Method::GET, "/api/household/meter", None).await;
    assert_eq!(
        reply.body["meters"].as_array().map(Vec::len),
        Some(2),
        "{}",
        reply.text
    );
    let reply = with_token(&participant, Method::POST, "/api/household/consent", None).await;
    assert_eq!(reply.body["state"], "granted", "{}", reply.text);
    // Uploads and status reports are the device's: they need its certificate.
    let batch =
        json!({ "measurements": [measurement(&household.meters[0], "2026-11-23T16:00:00Z", 1.0)] });
    let reply = with_token(
        &participant,
        Method::POST,
        "/api/household/meter/measurement",
        Some(&batch),
    )
    .await;
    assert_refused(&reply, RefusalCode::NotAuthenticated, "client certificate");
    let reply = with_token(
        &participant,
        Method::PUT,
        "/api/household/measurement_device/status",
        Some(&json!({})),
    )
    .await;
    assert_refused(&reply, RefusalCode::NotAuthenticated, "client certificate");
    // No management, no other household, no widening.
    let reply = with_token(&participant, Method::GET, "/api/management/household", None).await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "participant");
    let reply = with_token(
        &participant,
        Method::GET,
        &format!("/api/household/meter/{}/measurement", other.meters[0]),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let token = Token::decode(&participant).expect("token");
    let two = token
        .clone()
        .attenuate(Caveat::Household(other.id.clone()))
        .encode();
    let reply = with_token(&two, Method::GET, "/api/household", None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let read_only = token.attenuate(Caveat::ReadOnly).encode();
    let reply = with_token(&read_only, Method::DELETE, "/api/household/consent", None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "read-only");
    let reply = with_token(&read_only, Method::GET, "/api/household/consent", None).await;
    assert_eq!(reply.body["state"], "granted", "{}", reply.text);
    // The household changed inside the token: the signature no longer verifies.
    let (payload, tag) = participant.rsplit_once('.').expect("tag");
    let swapped = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let text = engine
            .decode(payload.trim_start_matches("wt1."))
            .expect("payload");
        let text = String::from_utf8(text)
            .expect("utf-8")
            .replace(&household.id, &other.id);
        format!("wt1.{}.{tag}", engine.encode(text))
    };
    let reply = with_token(&swapped, Method::GET, "/api/household", None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "signature");
}
