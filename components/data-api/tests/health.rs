//! Device health (the status report's health, the fleet view, the history) and diagnostics
//! bundles, natively.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::{Value as Json, json};
use support::{Api, Household, assert_refused};
use wattlet_data_api::Method;
use wattlet_survey::{ConsentState, RefusalCode};

const STATUS: &str = "/api/household/measurement_device/status";
const UPLOAD: &str = "/api/household/measurement_device/diagnostics";

fn report(household: &Household) -> Json {
    json!({
        "components": { "meter-parser": "0.1.0+sha256.aaaaaaaaaaaa", "upload": "0.1.0" },
        "last_measurement": "2026-11-23T16:00:00Z",
        "meters": [{
            "uuid": household.meters[0], "locked": false, "missing": [],
            "last_reading": "2026-11-23T16:00:01Z",
            "probe": { "telegrams": 40, "parser_failures": 1, "skipped_bytes": 17, "skipped_frames": 2 },
        }],
        "set_aside": [],
        "clock_plausible": true,
        "uptime_s": 3600,
        "buffer": { "unsent": 3, "set_aside": 0 },
        "free_disk_bytes": 1_000_000_000u64,
        "device_time": "2026-11-23T16:00:05Z",
        "update": { "state": "failed", "component": "upload", "from": "0.1.0", "to": "0.2.0",
                    "reason": "signature does not verify" },
    })
}

fn fleet(api: &Api, query: &str) -> Json {
    let (status, body) = api.admin(
        Method::Get,
        &format!("/api/management/devices{query}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn device_in<'a>(fleet: &'a Json, household: &Household) -> &'a Json {
    fleet["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["device"] == household.device.as_str())
        .expect("the device in the fleet")
}

#[test]
fn health_reports_show_in_the_fleet_and_history_and_silent_devices_are_flagged() {
    let api = Api::new();
    let reporting = api.register();
    let silent = api.register();
    let (status, body) = api.as_device(&reporting, Method::Put, STATUS, Some(&report(&reporting)));
    assert_eq!(status, 204, "{body}");
    // An old device's report (no health) is still accepted and keeps no history.
    let old = api.register_now();
    let (status, body) = api.as_device(
        &old,
        Method::Put,
        STATUS,
        Some(&json!({ "components": { "upload": "0.1.0" }, "meters": [] })),
    );
    assert_eq!(status, 204, "{body}");

    let body = fleet(&api, "");
    assert_eq!(body["silent_after_s"], 7200);
    let device = device_in(&body, &reporting);
    assert_eq!(device["silent"], false, "{device}");
    assert_eq!(device["household"], reporting.id.as_str());
    let health = &device["health"];
    assert_eq!(health["uptime_s"], 3600, "{device}");
    assert_eq!(health["buffer"], json!({ "unsent": 3, "set_aside": 0 }));
    assert_eq!(health["free_disk_bytes"], 1_000_000_000u64);
    assert_eq!(health["clock"]["plausible"], true);
    assert!(health["clock"]["skew_s"].as_i64().is_some(), "{health}");
    assert_eq!(health["update"]["state"], "failed");
    assert_eq!(health["update"]["to"], "0.2.0");
    assert_eq!(health["update"]["from"], "0.1.0");
    assert_eq!(health["meters"][0]["probe"]["skipped_bytes"], 17);
    assert_eq!(health["meters"][0]["last_reading"], "2026-11-23T16:00:01Z");
    // Registered long ago and never reported: silent. The old device reported now: not.
    assert_eq!(device_in(&body, &silent)["silent"], true);
    assert_eq!(device_in(&body, &old)["silent"], false);
    assert_eq!(device_in(&body, &old)["health"], Json::Null);
    // A report older than the window makes a device silent; a revoked one never is.
    api.sql(
        "UPDATE measurement_device SET status = json_set(status, '$.reported_at', '2026-01-01T00:00:00Z') WHERE id = ?1",
        [&reporting.device],
    );
    assert_eq!(device_in(&fleet(&api, ""), &reporting)["silent"], true);
    api.sql(
        "UPDATE measurement_device SET revoked_at = '2026-01-02T00:00:00.000000000Z' WHERE id = ?1",
        [&silent.device],
    );
    assert_eq!(device_in(&fleet(&api, ""), &silent)["silent"], false);
    // The window is a parameter.
    let body = fleet(&api, "?silent_after=1");
    assert_eq!(body["silent_after_s"], 1);
    for bad in ["?silent_after=0", "?silent_after=x", "?other=1"] {
        let reply = api.admin(Method::Get, &format!("/api/management/devices{bad}"), None);
        assert_refused(&reply, RefusalCode::InvalidRequest);
    }

    // History: a second report, both kept, oldest first; a range selects.
    let mut second = report(&reporting);
    second["uptime_s"] = json!(7200);
    second["update"] = json!({ "state": "succeeded", "component": "upload", "to": "0.2.0" });
    assert_eq!(
        api.as_device(&reporting, Method::Put, STATUS, Some(&second))
            .0,
        204
    );
    let path = format!("/api/management/device/{}/health", reporting.device);
    let (status, body) = api.admin(Method::Get, &path, None);
    assert_eq!(status, 200, "{body}");
    let reports = body["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 2, "{body}");
    // Fields not reported are absent, not null (as openapi.yaml's UpdateState says).
    assert_eq!(
        reports[1]["update"],
        json!({ "state": "succeeded", "component": "upload", "to": "0.2.0" })
    );
    assert_eq!(reports[0]["uptime_s"], 3600);
    assert_eq!(reports[1]["uptime_s"], 7200);
    assert!(reports[1]["reported_at"].is_string());
    // The update state is a column: a rollout's failures are one query away.
    assert_eq!(
        api.count(
            "SELECT COUNT(*) FROM device_health WHERE update_state = 'failed'",
            []
        ),
        1
    );
    let (_, body) = api.admin(
        Method::Get,
        &format!("{path}?from=2100-01-01T00:00:00Z"),
        None,
    );
    assert_eq!(body["reports"], json!([]));
    let reply = api.admin(Method::Get, &format!("{path}?from=yesterday"), None);
    assert_refused(&reply, RefusalCode::InvalidRequest);
    let reply = api.admin(Method::Get, "/api/management/device/no-such/health", None);
    assert_refused(&reply, RefusalCode::NotFound);
}

#[test]
fn the_history_is_bounded() {
    let api = Api::new();
    let household = api.register();
    // Old rows are trimmed by the next report: by age, and by count.
    for i in 0..600 {
        api.sql(
            "INSERT INTO device_health (device, reported_at, health) VALUES (?1, ?2, '{}')",
            (
                &household.device,
                format!("2099-01-01T00:{:02}:{:02}.000000000Z", i / 60, i % 60),
            ),
        );
    }
    api.sql(
        "INSERT INTO device_health (device, reported_at, health) VALUES (?1, '2001-01-01T00:00:00.000000000Z', '{}')",
        [&household.device],
    );
    assert_eq!(
        api.as_device(&household, Method::Put, STATUS, Some(&report(&household)))
            .0,
        204
    );
    let kept = |sql: &str| api.count(sql, [&household.device]);
    assert_eq!(
        kept("SELECT COUNT(*) FROM device_health WHERE device = ?1"),
        500
    );
    assert_eq!(
        kept("SELECT COUNT(*) FROM device_health WHERE device = ?1 AND reported_at < '2002'"),
        0
    );
}

#[test]
fn hostile_health_reports_are_refused() {
    let api = Api::new();
    let household = api.register();
    let cases: Vec<(&str, Json)> = vec![
        ("uptime_s", json!(-1)),
        ("uptime_s", json!(u64::MAX)),
        ("buffer", json!({ "unsent": 1 })),
        ("buffer", json!({ "unsent": 1, "set_aside": 0, "extra": 1 })),
        ("free_disk_bytes", json!("lots")),
        ("device_time", json!("yesterday")),
        ("update", json!({ "state": "Nope!" })),
        ("update", json!({ "state": "x".repeat(33) })),
        (
            "update",
            json!({ "state": "failed", "reason": "r".repeat(513) }),
        ),
        ("update", json!({ "state": "failed", "reason": "a\nb" })),
        ("update", json!({ "state": "failed", "to": "" })),
        ("update", json!({ "state": "failed", "unknown": 1 })),
    ];
    for (field, value) in cases {
        let mut body = report(&household);
        body[field] = value.clone();
        let reply = api.as_device(&household, Method::Put, STATUS, Some(&body));
        assert_refused(&reply, RefusalCode::InvalidRequest);
        // Type errors are serde's ("invalid JSON body: …"); the rest name the field.
        let error = reply.1["error"].as_str().unwrap_or("");
        assert!(
            error.contains(field) || error.starts_with("invalid JSON body"),
            "{field}={value}: {}",
            reply.1
        );
    }
    let mut body = report(&household);
    body["meters"][0]["last_reading"] = json!("2026-13-01T00:00:00Z");
    assert_refused(
        &api.as_device(&household, Method::Put, STATUS, Some(&body)),
        RefusalCode::InvalidRequest,
    );
    body["meters"][0]["last_reading"] = json!(null);
    body["meters"][0]["probe"] = json!({ "skipped_bytes": -5 });
    assert_refused(
        &api.as_device(&household, Method::Put, STATUS, Some(&body)),
        RefusalCode::InvalidRequest,
    );
    // Nothing of the refused reports was kept.
    assert_eq!(api.count("SELECT COUNT(*) FROM device_health", []), 0);
}

#[test]
fn only_administrators_see_device_health_and_diagnostics() {
    let api = Api::new();
    let household = api.register();
    let researcher = api.mint(json!({ "role": "researcher" }));
    let health = format!("/api/management/device/{}/health", household.device);
    let diagnostics = format!("/api/management/device/{}/diagnostics", household.device);
    for (method, path) in [
        (Method::Get, "/api/management/devices"),
        (Method::Get, health.as_str()),
        (Method::Get, diagnostics.as_str()),
        (Method::Post, diagnostics.as_str()),
    ] {
        let reply = api.with_token(&researcher, method.clone(), path, None);
        assert_refused(&reply, RefusalCode::RoleForbidden);
        let reply = api.send(method, path, &[], None);
        assert_eq!(reply.0, 401, "{path}: {}", reply.1);
    }
}

fn bundle() -> Json {
    json!({
        "logs": ["2026-11-23T16:00:00Z INFO edge daemon started"],
        "config": { "cloud": "https://cloud.example", "meters": [{ "uuid": "x", "device": "/dev/ttyUSB0" }] },
        "probes": [{ "meter": "x", "telegrams": 3 }],
        "skipped": [{ "meter": "2f1c1e9a-55a4-4d4a-9d36-3a3c4c8d9e01", "at": "2026-11-23T16:00:00Z",
                      "offset": 10, "length": 7, "reason": "checksum-mismatch" }],
    })
}

#[test]
fn a_requested_bundle_reaches_the_administrator_and_expires() {
    let api = Api::new();
    let household = api.register();
    let path = format!("/api/management/device/{}/diagnostics", household.device);
    // Nothing requested: the status report is answered with 204.
    assert_eq!(
        api.as_device(&household, Method::Put, STATUS, Some(&report(&household)))
            .0,
        204
    );
    let (status, requested) = api.admin(Method::Post, &path, None);
    assert_eq!(status, 201, "{requested}");
    let id = requested["id"].as_str().expect("id").to_owned();
    let (status, answer) =
        api.as_device(&household, Method::Put, STATUS, Some(&report(&household)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["diagnostics"]["id"], id.as_str());

    // Hostile uploads: other keys (a reading), too large, too many lines, someone else's id.
    let mut with_readings = bundle();
    with_readings["measurements"] = json!([{ "0100010800ff": 1234.5 }]);
    let mut huge = bundle();
    huge["logs"] = json!(vec!["x".repeat(2000); 200]);
    let mut long_line = bundle();
    long_line["logs"] = json!(["x".repeat(2049)]);
    let mut bad_reason = bundle();
    bad_reason["skipped"][0]["reason"] = json!("DROP TABLE");
    for body in [with_readings, huge, long_line, bad_reason] {
        let reply = api.as_device(
            &household,
            Method::Put,
            UPLOAD,
            Some(&json!({ "request": id, "bundle": body })),
        );
        assert_refused(&reply, RefusalCode::InvalidRequest);
    }
    let other = api.register();
    let reply = api.as_device(
        &other,
        Method::Put,
        UPLOAD,
        Some(&json!({ "request": id, "bundle": bundle() })),
    );
    assert_refused(&reply, RefusalCode::NotFound);

    let (status, body) = api.as_device(
        &household,
        Method::Put,
        UPLOAD,
        Some(&json!({ "request": id, "bundle": bundle() })),
    );
    assert_eq!(status, 204, "{body}");
    // Answered: no longer asked for, and not accepted twice.
    assert_eq!(
        api.as_device(&household, Method::Put, STATUS, Some(&report(&household)))
            .0,
        204
    );
    let reply = api.as_device(
        &household,
        Method::Put,
        UPLOAD,
        Some(&json!({ "request": id, "bundle": bundle() })),
    );
    assert_refused(&reply, RefusalCode::NotFound);
    let (status, body) = api.admin(Method::Get, &path, None);
    assert_eq!(status, 200, "{body}");
    let got = &body["diagnostics"][0];
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["bundle"]["logs"], bundle()["logs"], "{body}");
    assert!(got["uploaded_at"].is_string());

    // Expired: deleted.
    api.sql(
        "UPDATE device_diagnostics SET expires_at = '2001-01-01T00:00:00.000000000Z'",
        [],
    );
    let (_, body) = api.admin(Method::Get, &path, None);
    assert_eq!(body["diagnostics"], json!([]));
    assert_eq!(api.count("SELECT COUNT(*) FROM device_diagnostics", []), 0);

    // Expiry bounds; a revoked device is not asked.
    for expires in [json!(59), json!(31 * 86_400), json!("soon")] {
        let reply = api.admin(
            Method::Post,
            &path,
            Some(&json!({ "expires_in_s": expires })),
        );
        assert_refused(&reply, RefusalCode::InvalidRequest);
    }
    let (status, body) = api.admin(Method::Post, &path, Some(&json!({ "expires_in_s": 60 })));
    assert_eq!(status, 201, "{body}");
    api.sql(
        "UPDATE measurement_device SET revoked_at = '2026-01-02T00:00:00.000000000Z' WHERE id = ?1",
        [&household.device],
    );
    assert_refused(&api.admin(Method::Post, &path, None), RefusalCode::Conflict);
}

#[test]
fn anonymization_deletes_health_and_bundles() {
    let api = Api::new();
    let household = api.register();
    assert_eq!(
        api.as_device(&household, Method::Put, STATUS, Some(&report(&household)))
            .0,
        204
    );
    let path = format!("/api/management/device/{}/diagnostics", household.device);
    let (_, requested) = api.admin(Method::Post, &path, None);
    let (status, _) = api.as_device(
        &household,
        Method::Put,
        UPLOAD,
        Some(&json!({ "request": requested["id"], "bundle": bundle() })),
    );
    assert_eq!(status, 204);
    api.set_consent(&household, ConsentState::Granted);
    let (status, body) = api.as_device(&household, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.count("SELECT COUNT(*) FROM device_health", []), 0);
    assert_eq!(api.count("SELECT COUNT(*) FROM device_diagnostics", []), 0);
    // The fleet shows the device under its pseudonym, without its health history.
    let body = fleet(&api, "");
    assert!(!body.to_string().contains(&household.device), "{body}");
}
