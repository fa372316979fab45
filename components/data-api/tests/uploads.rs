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

/// A time `seconds` from now (negative: before), RFC 3339 in UTC.
fn from_now(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

#[test]
fn implausible_times_are_refused_naming_the_field() {
    let api = Api::new();
    let household = api.register_now();
    api.set_consent(&household, ConsentState::Granted);
    let meter = &household.meters[0];
    let reading = json!([{ "0100010800ff": 1.0 }]);
    for at in [
        "1969-12-31T23:59:59Z".to_owned(),
        "9999-12-31T23:59:59Z".to_owned(),
        "9999-12-31T23:30:00-01:00".to_owned(),
        // Before the device's registration less a day; ahead of the Data API's clock.
        from_now(-2 * 24 * 3600),
        from_now(10 * 60),
    ] {
        let m = measurement(meter, &at, reading.clone());
        let reply = api.upload(&household, std::slice::from_ref(&m));
        assert_refused(&reply, RefusalCode::TimeOutOfRange);
        let message = reply.1["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("measurements[0].measured_at"),
            "{at}: {message}"
        );
        assert_eq!(
            reply.1["refused"],
            json!([{ "index": 0, "uuid": m["uuid"], "code": "time_out_of_range",
                     "error": message }]),
            "{at}"
        );
    }
    assert_eq!(stored(&api, meter), 0);
    // Within the window: a day before the registration (clock skew), a minute ahead.
    let plausible = [
        measurement(meter, &from_now(-23 * 3600), reading.clone()),
        measurement(meter, &from_now(60), reading),
    ];
    let reply = api.upload(&household, &plausible);
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(stored(&api, meter), 2);
}

#[test]
fn refused_measurements_are_listed_one_by_one_and_nothing_is_stored() {
    let api = Api::new();
    let household = api.register();
    api.set_consent(&household, ConsentState::Granted);
    let meter = &household.meters[0];
    let reading = json!([{ "0100010800ff": 1.0 }]);
    let good = measurement(meter, "2026-11-23T16:00:00Z", reading.clone());
    let unknown_meter = measurement(&uuid4(), "2026-11-23T16:00:00Z", reading.clone());
    let ancient = measurement(meter, "1969-12-31T23:59:59Z", reading.clone());
    let mut no_data = measurement(meter, "2026-11-23T16:15:00Z", reading.clone());
    no_data["data"] = json!([]);
    let not_an_object = json!("a measurement");
    let batch = [
        good.clone(),
        unknown_meter.clone(),
        ancient.clone(),
        no_data.clone(),
        not_an_object,
    ];
    let reply = api.upload(&household, &batch);
    // The first refused measurement's refusal, with every refused one listed.
    assert_refused(&reply, RefusalCode::MeterNotWired);
    let listed: Vec<(i64, serde_json::Value, String)> = reply.1["refused"]
        .as_array()
        .expect("refused")
        .iter()
        .map(|r| {
            assert!(r["error"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
            (
                r["index"].as_i64().expect("index"),
                r["uuid"].clone(),
                r["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                1,
                unknown_meter["uuid"].clone(),
                "meter_not_wired".to_owned()
            ),
            (2, ancient["uuid"].clone(), "time_out_of_range".to_owned()),
            (3, no_data["uuid"].clone(), "invalid_request".to_owned()),
            (4, serde_json::Value::Null, "invalid_request".to_owned()),
        ]
    );
    assert_eq!(api.count("SELECT COUNT(*) FROM measurement", []), 0);
    // The rest, sent again, is stored.
    let reply = api.upload(&household, std::slice::from_ref(&good));
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(reply.1["acknowledged"], json!([good["uuid"]]));
}

#[test]
fn an_upload_racing_a_revocation_stores_nothing() {
    let api = Api::new();
    let household = api.register();
    api.set_consent(&household, ConsentState::Granted);
    let meter = household.meters[0].clone();
    // The participant revokes between the upload's consent check and its insert: another
    // request's statement, committed before the insert runs.
    let id = household.id.clone();
    api.before_each_statement(move |sql, connection| {
        if sql.contains("INSERT INTO measurement") {
            connection
                .execute(
                    "UPDATE consent SET state = 'revoked',
                         revoked_at = strftime('%Y-%m-%dT%H:%M:%f000000Z', 'now')
                     WHERE household = ?1 AND state = 'granted'",
                    [&id],
                )
                .expect("revoke");
        }
    });
    let m = measurement(
        &meter,
        "2026-11-23T16:00:00Z",
        json!([{ "0100010800ff": 1.0 }]),
    );
    let reply = api.upload(&household, &[m]);
    api.no_hook();
    assert_eq!(api.consent_state(&household), "revoked");
    assert_refused(&reply, RefusalCode::ConsentRevoked);
    assert_eq!(stored(&api, &meter), 0, "stored after the revocation");
}

#[test]
fn status_reports_keep_what_the_device_set_aside() {
    let api = Api::new();
    let household = api.register_now();
    let stranger = uuid4();
    let path = "/api/household/measurement_device/status";
    let report = json!({
        "components": { "upload": "0.1.0" },
        "meters": [{ "uuid": household.meters[0], "locked": false }],
        // Any meter: the Data API refused these measurements because it does not know it.
        "set_aside": [{ "meter": stranger, "code": "meter_not_wired", "count": 3 }],
        "clock_plausible": false,
    });
    let (status, body) = api.as_device(&household, Method::Put, path, Some(&report));
    assert_eq!(status, 204, "{body}");
    let (status, body) = api.as_device(
        &household,
        Method::Get,
        "/api/household/measurement_device",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let device = &body["devices"][0];
    assert_eq!(
        device["status"]["set_aside"],
        json!([{ "meter": stranger, "code": "meter_not_wired", "count": 3 }]),
        "{body}"
    );
    assert_eq!(device["status"]["clock_plausible"], false, "{body}");
    assert!(device["registered_at"].is_string(), "{body}");
    for bad in [
        json!({ "set_aside": [{ "meter": "m", "code": "meter_not_wired", "count": 1 }] }),
        json!({ "set_aside": [{ "meter": stranger, "code": "Not A Code", "count": 1 }] }),
        json!({ "set_aside": [{ "meter": stranger, "code": "conflict", "count": -1 }] }),
    ] {
        let reply = api.as_device(&household, Method::Put, path, Some(&bad));
        assert_refused(&reply, RefusalCode::InvalidRequest);
    }
}

#[test]
fn devices_registered_before_the_registration_time_was_kept_count_from_their_household() {
    let api = Api::new();
    let household = api.register_now();
    // A database from before the registration time was recorded: the migration is undone, and
    // the next request applies it again.
    api.sql(
        "UPDATE household SET created_at = ?1 WHERE id = ?2",
        ("2025-05-01T00:00:00.000000000Z", &household.id),
    );
    api.sql("ALTER TABLE measurement_device DROP COLUMN status", []);
    api.sql(
        "ALTER TABLE measurement_device DROP COLUMN registered_at",
        [],
    );
    api.sql("DELETE FROM schema_version WHERE version >= 5", []);
    let (status, body) = api.send(Method::Get, "/api/health", &[], None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        api.sql_text(
            "SELECT registered_at FROM measurement_device WHERE id = ?1",
            [&household.device]
        )
        .as_deref(),
        Some("2025-05-01T00:00:00.000000000Z")
    );
    // Interrupted after its first statement: applied again, it converges.
    api.sql("ALTER TABLE measurement_device DROP COLUMN status", []);
    api.sql("DELETE FROM schema_version WHERE version >= 5", []);
    let (status, body) = api.send(Method::Get, "/api/health", &[], None);
    assert_eq!(
        (status, &body["schema_version"]),
        (200, &json!(11)),
        "{body}"
    );
    api.set_consent(&household, ConsentState::Granted);
    let m = measurement(
        &household.meters[0],
        "2025-05-01T12:00:00Z",
        json!([{ "0100010800ff": 1.0 }]),
    );
    assert_eq!(api.upload(&household, &[m]).0, 200);
}
