//! Uploads natively: accepted only with consent from the calling device's wired meters, each
//! refusal with its code and nothing stored; idempotent by measurement uuid.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::json;
use support::{Api, assert_refused, measurement, uuid4};
use wattlet_data_api::Method;
use wattlet_survey::{ConsentState, RefusalCode};

fn stored(api: &Api, meter: &str) -> i64 {
    api.count("SELECT COUNT(*) FROM measurement WHERE meter = ?1", [meter])
}

#[test]
fn uploads_need_consent_and_are_idempotent() {
    let api = Api::new();
    let household = api.register();
    let meter = &household.meters[0];
    let first = measurement(
        meter,
        "2026-11-23T16:00:00Z",
        json!([{ "0100010800ff": 1.5 }]),
    );
    let reply = api.upload(&household, std::slice::from_ref(&first));
    assert_refused(&reply, RefusalCode::ConsentNotGranted);
    assert_eq!(stored(&api, meter), 0);

    let (status, body) = api.as_device(&household, Method::Post, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    let second = measurement(
        meter,
        "2026-11-23T16:15:00+01:00",
        json!([{ "0100100700ff": 0.4 }]),
    );
    let reply = api.upload(&household, &[first.clone(), second.clone()]);
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(
        reply.1["acknowledged"],
        json!([first["uuid"], second["uuid"]])
    );
    // Re-sent after a lost answer: acknowledged again, stored once; the uuid's case is the
    // device's.
    let mut shouted = first.clone();
    shouted["uuid"] = json!(first["uuid"].as_str().map(str::to_uppercase));
    let reply = api.upload(&household, &[shouted.clone(), second.clone()]);
    assert_eq!(
        reply.1["acknowledged"],
        json!([shouted["uuid"], second["uuid"]])
    );
    assert_eq!(stored(&api, meter), 2);
    // Times are kept in UTC, read back in order.
    let (status, body) = api.as_device(
        &household,
        Method::Get,
        &format!("/api/household/meter/{meter}/measurement"),
        None,
    );
    assert_eq!(status, 200);
    let times: Vec<&str> = body["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .filter_map(|m| m["measured_at"].as_str())
        .collect();
    assert_eq!(times, ["2026-11-23T15:15:00Z", "2026-11-23T16:00:00Z"]);
    // The device's last measurement.
    let last = api.sql_text(
        "SELECT last_measurement FROM measurement_device WHERE id = ?1",
        [&household.device],
    );
    assert_eq!(last.as_deref(), Some("2026-11-23T16:00:00.000000000Z"));

    // A uuid stored for another meter is a conflict, and nothing of the batch is stored.
    let mut moved = first.clone();
    moved["meter"] = json!(household.meters[1]);
    let fresh = measurement(
        meter,
        "2026-11-23T17:00:00Z",
        json!([{ "0100010800ff": 2.0 }]),
    );
    api.sql(
        "UPDATE meter SET device = ?1 WHERE uuid = ?2",
        (&household.device, &household.meters[1]),
    );
    let reply = api.upload(&household, &[fresh, moved]);
    assert_refused(&reply, RefusalCode::Conflict);
    assert_eq!(stored(&api, meter), 2);

    // Revoked: refused for good.
    let (status, _) = api.as_device(&household, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200);
    let late = measurement(
        meter,
        "2026-11-23T18:00:00Z",
        json!([{ "0100010800ff": 3.0 }]),
    );
    assert_refused(
        &api.upload(&household, &[late]),
        RefusalCode::ConsentRevoked,
    );
    assert_eq!(stored(&api, meter), 2, "measurements stay after revocation");
}

#[test]
fn uploads_of_other_meters_and_devices_are_refused_with_their_codes() {
    let api = Api::new();
    let mine = api.register();
    let theirs = api.register();
    for household in [&mine, &theirs] {
        api.set_consent(household, ConsentState::Granted);
    }
    let at = "2026-11-23T16:00:00Z";
    let reading = json!([{ "0100010800ff": 1.0 }]);
    let own = measurement(&mine.meters[0], at, reading.clone());
    for meter in [theirs.meters[0].clone(), uuid4()] {
        let foreign = measurement(&meter, at, reading.clone());
        let reply = api.upload(&mine, &[own.clone(), foreign]);
        assert_refused(&reply, RefusalCode::MeterNotWired);
    }
    // The household's own PV meter, wired to no device.
    api.sql(
        "UPDATE meter SET device = NULL WHERE uuid = ?1",
        [&mine.meters[1]],
    );
    let unwired = measurement(&mine.meters[1], at, reading.clone());
    assert_refused(&api.upload(&mine, &[unwired]), RefusalCode::MeterNotWired);
    assert_eq!(api.count("SELECT COUNT(*) FROM measurement", []), 0);

    // Devices: unknown, another participant's email, revoked; no certificate at all.
    let mut stranger = mine.clone();
    stranger.device = "pi-nobody".to_owned();
    assert_refused(
        &api.upload(&stranger, std::slice::from_ref(&own)),
        RefusalCode::UnknownDevice,
    );
    let mut impostor = mine.clone();
    impostor.email = theirs.email.clone();
    assert_refused(
        &api.upload(&impostor, std::slice::from_ref(&own)),
        RefusalCode::UnknownDevice,
    );
    let reply = api.send(
        Method::Post,
        "/api/household/meter/measurement",
        &[],
        Some(&json!({ "measurements": [own.clone()] })),
    );
    assert_refused(&reply, RefusalCode::NotAuthenticated);
    let (status, body) = api.admin(
        Method::Post,
        &format!("/api/management/device/{}/revoke", mine.device),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_refused(&api.upload(&mine, &[own]), RefusalCode::DeviceRevoked);
    assert_eq!(api.count("SELECT COUNT(*) FROM measurement", []), 0);
}

#[test]
fn malformed_batches_are_refused_whole() {
    let api = Api::new();
    let household = api.register();
    api.set_consent(&household, ConsentState::Granted);
    let meter = &household.meters[0];
    let good = measurement(
        meter,
        "2026-11-23T16:00:00Z",
        json!([{ "0100010800ff": 1.0 }]),
    );
    let with = |key: &str, value: serde_json::Value| {
        let mut m = measurement(
            meter,
            "2026-11-23T16:15:00Z",
            json!([{ "0100010800ff": 2.0 }]),
        );
        m[key] = value;
        m
    };
    for (bad, code) in [
        (with("uuid", json!("1234")), RefusalCode::InvalidRequest),
        (
            with("measured_at", json!("yesterday")),
            RefusalCode::InvalidRequest,
        ),
        (
            with("measured_at", json!("0000-06-01T00:00:00Z")),
            RefusalCode::TimeOutOfRange,
        ),
        // Year 10000 in UTC.
        (
            with("measured_at", json!("9999-12-31T23:00:00-02:00")),
            RefusalCode::TimeOutOfRange,
        ),
        (
            with("data", json!([{ "1.8.0": 1.0 }])),
            RefusalCode::InvalidRequest,
        ),
        (
            with("data", json!([{ "0100010800ff": "1" }])),
            RefusalCode::InvalidRequest,
        ),
        (with("data", json!([])), RefusalCode::InvalidRequest),
    ] {
        let reply = api.upload(&household, &[good.clone(), bad.clone()]);
        assert_refused(&reply, code);
        assert!(
            reply.1["error"]
                .as_str()
                .is_some_and(|m| m.contains("measurements[1]")),
            "{bad}: {}",
            reply.1
        );
    }
    let many: Vec<_> = (0..=wattlet_survey::measurement::MAX_BATCH)
        .map(|_| good.clone())
        .collect();
    assert_refused(&api.upload(&household, &many), RefusalCode::InvalidRequest);
    assert_eq!(api.count("SELECT COUNT(*) FROM measurement", []), 0);
}
