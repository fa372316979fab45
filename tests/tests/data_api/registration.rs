//! Registering households: listing, a participant's details, conflicts, invalid input.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn researchers_see_and_change_a_participants_registration() {
    use wattlet_access_token::{Caveat, Token};
    let researcher = mint(ADMIN_TOKEN, json!({ "role": "researcher" })).await;
    let household = register().await;
    let other = register().await;
    let path = format!("/api/management/household/{}", household.id);

    let reply = with_token(&researcher, Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"]["email"], household.email.as_str());
    assert_eq!(reply.body["consent"]["state"], "not_granted");
    assert_eq!(reply.body["location"]["latitude"], 48.1372);
    assert_eq!(reply.body["address"], Value::Null);
    assert_eq!(reply.body["meters"].as_array().map(Vec::len), Some(2));
    assert_eq!(reply.body["devices"][0]["id"], household.device.as_str());

    let change = json!({
        "name": "Erika Musterfrau",
        "location": { "latitude": 53.0, "longitude": 8.8, "nuts3": "de501" },
        "address": { "street": "Am Markt", "house_number": "1", "postal_code": "28195",
                     "city": "Bremen", "country": "DE" },
        "metadata": { "children": 0, "adults": 1, "employed_adults": 1,
                      "ev_charger": false, "heat_pump": true, "home_battery": false },
        "pv_systems": [{ "nominal_power_kwp": 4.2, "azimuth": 200.0, "tilt": 35.0,
                         "installation_date": "2022-05-01" }],
    });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&change)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"]["name"], "Erika Musterfrau");
    assert_eq!(reply.body["location"]["nuts3"], "DE501");
    assert_eq!(reply.body["address"]["city"], "Bremen");
    assert_eq!(reply.body["metadata"]["heat_pump"], true);
    assert_eq!(reply.body["pv_systems"][0]["nominal_power_kwp"], 4.2);
    // Wiring the PV meter to the new PV system, then replacing the PV systems, which unwires it.
    let pv = reply.body["pv_systems"][0]["uuid"]
        .as_str()
        .expect("pv uuid")
        .to_owned();
    let pv_meter = household.meters[1].clone();
    let wiring = json!({ "meters": [{ "uuid": pv_meter.to_uppercase(), "pv_systems": [pv] }] });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&wiring)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let wired = |body: &Value| -> Value {
        body["meters"]
            .as_array()
            .and_then(|meters| meters.iter().find(|m| m["uuid"] == pv_meter.as_str()))
            .map(|m| m["pv_systems"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(wired(&reply.body), json!([pv]), "{}", reply.text);
    for (body, needle) in [
        (
            json!({ "meters": [{ "uuid": other.meters[1], "pv_systems": [pv] }] }),
            "not a meter of this household",
        ),
        (
            json!({ "meters": [{ "uuid": pv_meter, "pv_systems": [uuid4()] }] }),
            "not a PV system of this household",
        ),
        (
            json!({ "meters": [{ "uuid": pv_meter, "pv_systems": [] }], "pv_systems": [] }),
            "request of their own",
        ),
    ] {
        let reply = with_token(&researcher, Method::PATCH, &path, Some(&body)).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
    // A second device, a new meter on it measuring the PV system, the first meter moved to it.
    let second = unique("dev");
    let change = json!({
        "devices": [second],
        "meters": [
            { "type": "PV-GENERATION", "model": "DD3", "device": second, "pv_systems": [pv] },
            { "uuid": household.meters[0], "device": second },
        ],
    });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&change)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let devices: Vec<&str> = reply.body["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(devices.contains(&second.as_str()), "{}", reply.text);
    let meters = reply.body["meters"].as_array().expect("meters");
    assert_eq!(meters.len(), 3, "{}", reply.text);
    let added = meters
        .iter()
        .find(|m| m["model"] == "DD3")
        .expect("the new meter");
    assert_eq!(added["device"], second.as_str());
    assert_eq!(added["pv_systems"], json!([pv]));
    let moved = meters
        .iter()
        .find(|m| m["uuid"] == household.meters[0].as_str())
        .expect("the first meter");
    assert_eq!(moved["device"], second.as_str());
    for (body, code, needle) in [
        (
            json!({ "devices": [other.device] }),
            RefusalCode::Conflict,
            "already registered",
        ),
        (
            json!({ "meters": [{ "type": "ELECTRICITY", "model": "EHZ" }] }),
            RefusalCode::InvalidRequest,
            "needs its device",
        ),
        (
            json!({ "meters": [{ "uuid": household.meters[0], "type": "PV-GENERATION" }] }),
            RefusalCode::InvalidRequest,
            "do not change",
        ),
        (
            json!({ "meters": [{ "uuid": household.meters[0], "device": other.device }] }),
            RefusalCode::InvalidRequest,
            "not a device of this household",
        ),
    ] {
        let reply = with_token(&researcher, Method::PATCH, &path, Some(&body)).await;
        assert_refused(&reply, code, needle);
    }
    let replace = json!({ "pv_systems": [{ "nominal_power_kwp": 5.0, "azimuth": 180.0,
                                          "tilt": 30.0, "installation_date": "2023-03-01" }] });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&replace)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(wired(&reply.body), json!([]), "{}", reply.text);
    let reply = with_token(
        &researcher,
        Method::PATCH,
        &path,
        Some(&json!({ "address": null })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["address"], Value::Null);
    assert_eq!(reply.body["metadata"]["adults"], 1, "untouched");

    // Refused changes change nothing.
    for (body, code, needle) in [
        (
            json!({ "name": "X", "email": other.email }),
            RefusalCode::Conflict,
            "already registered",
        ),
        (
            json!({ "name": "X", "location": { "latitude": 91.0, "longitude": 0.0 } }),
            RefusalCode::InvalidRequest,
            "location.latitude",
        ),
        (
            json!({ "name": "X", "pv_systems": [{ "nominal_power_kwp": 1.0, "azimuth": 0.0,
                  "tilt": 0.0, "installation_date": "2022-13-01" }] }),
            RefusalCode::InvalidRequest,
            "installation_date",
        ),
        (
            json!({ "name": "X", "household": "y" }),
            RefusalCode::InvalidRequest,
            "unknown field",
        ),
        (json!({}), RefusalCode::InvalidRequest, "nothing to change"),
    ] {
        let reply = with_token(&researcher, Method::PATCH, &path, Some(&body)).await;
        assert_refused(&reply, code, needle);
    }
    let reply = with_token(&researcher, Method::GET, &path, None).await;
    assert_eq!(
        reply.body["user"]["name"], "Erika Musterfrau",
        "{}",
        reply.text
    );

    // Scopes: one household, read-only, unknown ids.
    let only_other = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::Household(other.id.clone()))
        .encode();
    let reply = with_token(&only_other, Method::GET, &path, None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let other_path = format!("/api/management/household/{}", other.id);
    let reply = with_token(&only_other, Method::GET, &other_path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let read_only = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    let reply = with_token(
        &read_only,
        Method::PATCH,
        &path,
        Some(&json!({ "name": "Y" })),
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "read-only");
    for missing in [uuid4(), "not-a-uuid".to_owned()] {
        let reply = with_token(
            &researcher,
            Method::GET,
            &format!("/api/management/household/{missing}"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymized_household_cannot_be_edited_back() {
    let (household, device) = register_device().await;
    grant(&device).await;
    let reply = device
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let path = format!("/api/management/household/{}", household.id);
    let reply = admin_as(
        tls_admin(),
        Method::PATCH,
        &path,
        Some(&json!({ "name": "Back Again", "email": household.email })),
    )
    .await;
    assert_refused(&reply, RefusalCode::Anonymized, "anonymized");
    let reply = admin_as(tls_admin(), Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"], Value::Null);
    assert_eq!(reply.body["consent"]["state"], "revoked");
    assert!(
        !reply.body["location"]["displacement"].is_null(),
        "{}",
        reply.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_household_and_listing_it() {
    let household = register().await;
    let listed = household_in_listing(&household.id).await;
    assert_eq!(
        listed["user"]["email"],
        household.email.as_str(),
        "{listed}"
    );
    assert_eq!(listed["user"]["name"], "Erika Mustermann");
    assert_eq!(
        listed["consent"],
        json!({ "state": "not_granted", "granted_at": null, "revoked_at": null })
    );
    let devices = listed["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], household.device.as_str());
    assert_eq!(devices[0]["component_versions"], json!({}));
    assert_eq!(devices[0]["last_measurement"], Value::Null);
    assert_eq!(devices[0]["revoked_at"], Value::Null);
    let meters = listed["meters"].as_array().expect("meters");
    assert_eq!(meters.len(), 2);
    for meter in meters {
        assert!(household.meters.iter().any(|m| meter["uuid"] == m.as_str()));
        assert_eq!(meter["device"], household.device.as_str());
    }
    let pv = meters
        .iter()
        .find(|m| m["type"] == "PV-GENERATION")
        .expect("pv meter");
    assert_eq!(pv["model"], "EASY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_conflicts_get_409_and_store_nothing() {
    let existing = register().await;
    let fresh_email = || format!("{}@example.org", unique("c"));
    let cases = [
        // The email is compared case-insensitively.
        (
            "email",
            json!({ "name": "A", "email": existing.email.to_uppercase(), "device": unique("dev"),
                    "meters": [{ "type": "ELECTRICITY", "model": "DD3" }],
                    "location": location() }),
        ),
        (
            "device",
            json!({ "name": "A", "email": fresh_email(), "device": existing.device,
                    "meters": [{ "type": "ELECTRICITY", "model": "DD3" }],
                    "location": location() }),
        ),
        (
            "meter",
            json!({ "name": "A", "email": fresh_email(), "device": unique("dev"),
                    "meters": [{ "uuid": existing.meters[0], "type": "ELECTRICITY", "model": "DD3" }],
                    "location": location() }),
        ),
    ];
    for (what, body) in cases {
        let reply = admin(Method::POST, "/api/management/household", Some(&body)).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{what}: {}", reply.text);
        assert!(reply.body["error"].is_string(), "{}", reply.text);
        // Nothing of the refused registration remains: its email and device are still free.
        let listing = admin(Method::GET, "/api/management/household", None).await;
        let households = listing.body["households"].as_array().expect("households");
        let email = body["email"].as_str().expect("email").to_lowercase();
        let holders = households
            .iter()
            .filter(|h| h["user"]["email"] == email.as_str())
            .count();
        assert_eq!(holders, usize::from(what == "email"), "{what}");
        let device = body["device"].as_str().expect("device");
        let holders = households
            .iter()
            .filter(|h| {
                h["devices"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["id"] == device))
            })
            .count();
        assert_eq!(holders, usize::from(what == "device"), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_registrations_get_400_with_a_reason() {
    let email = format!("{}@example.org", unique("bad"));
    let device = unique("dev");
    let good = json!({ "name": "A", "email": email, "device": device,
                       "meters": [{ "type": "ELECTRICITY", "model": "MT175" }],
                       "location": { "latitude": 48.1372, "longitude": 11.5756, "nuts3": "DE212" },
                       "address": { "street": "Marienplatz", "house_number": "1",
                                    "postal_code": "80331", "city": "München", "country": "DE" },
                       "metadata": { "children": 1, "adults": 2, "employed_adults": 1,
                                     "ev_charger": false, "heat_pump": true, "home_battery": false },
                       "pv_systems": [{ "nominal_power_kwp": 9.86, "azimuth": 180.0, "tilt": 30.0,
                                        "installation_date": "2019-06-14" }] });
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let pv = |key: &str, value: Value| {
        let mut system = good["pv_systems"][0].clone();
        system[key] = value;
        with("pv_systems", json!([system]))
    };
    let address = |key: &str, value: Value| {
        let mut address = good["address"].clone();
        address[key] = value;
        with("address", address)
    };
    let cases = [
        (with("email", json!("no-at-sign")), "email"),
        (with("name", json!("  ")), "name"),
        (with("device", json!("has space")), "device"),
        (with("device", json!("")), "device"),
        (with("meters", json!([])), "meters"),
        (
            with("meters", json!([{ "type": "GAS", "model": "MT175" }])),
            "meters[0].type",
        ),
        (
            with("meters", json!([{ "type": "ELECTRICITY", "model": "XYZ" }])),
            "meters[0].model",
        ),
        (
            with(
                "meters",
                json!([{ "uuid": "not-a-uuid", "type": "ELECTRICITY", "model": "EHZ" }]),
            ),
            "meters[0].uuid",
        ),
        (
            with(
                "meters",
                json!([
                    { "uuid": "6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e", "type": "ELECTRICITY", "model": "EHZ" },
                    { "uuid": "6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e", "type": "ELECTRICITY", "model": "EHZ" },
                ]),
            ),
            "appears twice",
        ),
        (with("unexpected", json!(1)), "unknown field"),
        (
            with(
                "meters",
                json!([{ "type": "PV-GENERATION", "model": "EASY", "pv_systems": [1] }]),
            ),
            "meters[0].pv_systems: no PV system 1",
        ),
        (
            with("location", json!({ "latitude": 90.5, "longitude": 0.0 })),
            "location.latitude",
        ),
        (
            with("location", json!({ "latitude": 0.0, "longitude": -180.01 })),
            "location.longitude",
        ),
        (
            with(
                "location",
                json!({ "latitude": 0.0, "longitude": 0.0, "nuts3": "D-30" }),
            ),
            "location.nuts3",
        ),
        (with("location", json!({ "latitude": 0.0 })), "longitude"),
        (address("street", json!(" ")), "address.street"),
        (
            address("postal_code", json!("1".repeat(21))),
            "address.postal_code",
        ),
        (
            with(
                "metadata",
                json!({ "children": 0, "adults": 1, "employed_adults": 2,
                        "ev_charger": false, "heat_pump": false, "home_battery": false }),
            ),
            "metadata.employed_adults",
        ),
        (
            pv("nominal_power_kwp", json!(-0.5)),
            "pv_systems[0].nominal_power_kwp",
        ),
        (pv("azimuth", json!(360.0)), "pv_systems[0].azimuth"),
        (pv("tilt", json!(91.0)), "pv_systems[0].tilt"),
        (
            pv("installation_date", json!("2019-02-30")),
            "pv_systems[0].installation_date",
        ),
        (
            pv("installation_date", json!("14.06.2019")),
            "pv_systems[0].installation_date",
        ),
        (
            with("pv_systems", json!(vec![good["pv_systems"][0].clone(); 17])),
            "at most 16",
        ),
        (
            json!({ "name": "A", "device": device, "meters": [], "location": location() }),
            "email",
        ),
        (json!([1, 2]), "invalid JSON"),
    ];
    for (body, expected) in cases {
        let reply = admin(Method::POST, "/api/management/household", Some(&body)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        let message = reply.body["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for raw in [&b""[..], b"{", b"\xff\xfe"] {
        let reply = plain()
            .send(
                Method::POST,
                "/api/management/household",
                raw,
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    }
    // None of them registered anything.
    let listing = admin(Method::GET, "/api/management/household", None).await;
    assert!(!listing.text.contains(&email), "{}", listing.text);
    assert!(!listing.text.contains(&device), "{}", listing.text);
}
