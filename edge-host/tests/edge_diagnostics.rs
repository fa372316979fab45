//! Device health and remote diagnostics end to end: the real `wattlet-edge` reports its health
//! to the cloud (`wattlet serve`, mutual TLS on loopback); an administrator asks for a
//! diagnostics bundle, the device uploads it with its next report, and the bundle holds logs,
//! configuration and probe statistics but no reading.

use std::time::Duration;

use serde_json::Value;
use wattlet_testkit::{ConsentingEdge, spawn_edge, wait_for};

const EDGE: &str = env!("CARGO_BIN_EXE_wattlet-edge");
const METER: &str = "5a0c7e21-9b3d-4c6f-8e12-3d4b5a6c7e03";

#[test]
fn a_requested_bundle_arrives_without_any_reading() {
    let temp = tempfile::tempdir().expect("temp dir");
    let setup = ConsentingEdge::start(
        temp.path(),
        METER,
        Duration::from_millis(200),
        ("300ms", "700ms", "500ms"),
    );
    let cloud = &setup.cloud;
    let mut edge = spawn_edge(EDGE, &setup.config);
    wait_for(
        Duration::from_secs(180), // a fresh machine first compiles the components
        "measurements in the cloud",
        || cloud.measurements(&setup.device, METER).len() >= 3,
    );

    // Health: the fleet shows the device reporting, with its buffer, disk, clock and probe.
    let mut device = Value::Null;
    wait_for(
        Duration::from_secs(20),
        "the device's health in the fleet",
        || {
            let (status, fleet) = cloud.admin("GET", "/api/management/devices", None);
            assert_eq!(status, 200, "{fleet}");
            device = fleet["devices"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["device"] == "pi-ada"))
                .cloned()
                .unwrap_or(Value::Null);
            device["health"]["meters"][0]["probe"]["telegrams"]
                .as_u64()
                .is_some_and(|t| t > 0)
        },
    );
    let health = &device["health"];
    assert_eq!(device["silent"], false, "{device}");
    assert!(health["uptime_s"].is_u64(), "{device}");
    assert!(health["buffer"]["unsent"].is_u64(), "{device}");
    assert!(
        health["free_disk_bytes"].as_u64().is_some_and(|f| f > 0),
        "{device}"
    );
    assert_eq!(health["clock"]["plausible"], true, "{device}");
    assert!(
        health["clock"]["skew_s"]
            .as_i64()
            .is_some_and(|s| s.abs() < 60),
        "{device}"
    );
    assert!(health["meters"][0]["last_reading"].is_string(), "{device}");
    assert_eq!(health["update"], Value::Null, "{device}");

    // Diagnostics: asked for, uploaded at the next report.
    let path = "/api/management/device/pi-ada/diagnostics";
    let (status, requested) = cloud.admin("POST", path, None);
    assert_eq!(status, 201, "{requested}");
    let mut bundle = Value::Null;
    wait_for(Duration::from_secs(20), "the diagnostics bundle", || {
        let (status, body) = cloud.admin("GET", path, None);
        assert_eq!(status, 200, "{body}");
        bundle = body["diagnostics"][0]["bundle"].clone();
        !bundle.is_null()
    });
    assert!(
        edge.try_wait().expect("edge status").is_none(),
        "edge exited"
    );
    let _ = edge.kill();
    let _ = edge.wait();

    let logs = bundle["logs"].as_array().expect("logs");
    assert!(
        logs.iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("uploaded"))),
        "{bundle}"
    );
    assert_eq!(bundle["config"]["meters"][0]["uuid"], METER, "{bundle}");
    assert_eq!(bundle["config"]["cloud"], cloud.url().as_str(), "{bundle}");
    assert!(
        bundle["probes"][0]["telegrams"]
            .as_u64()
            .is_some_and(|t| t > 0),
        "{bundle}"
    );
    // No key material: the key file's contents are nowhere in the bundle.
    let text = bundle.to_string();
    let key = std::fs::read_to_string(&setup.device.key).expect("the device key");
    let key_line = key.lines().nth(1).expect("a PEM body line");
    assert!(!text.contains(key_line), "key material in the bundle");
    // No reading: none of the meter's counter values the cloud holds appears in it (powers are
    // left out: a small decimal like 0.234 may occur in any time stamp).
    let (status, body) = cloud.as_device(
        &setup.device,
        "GET",
        &format!("/api/household/meter/{METER}/measurement"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let mut values = 0;
    for m in body["measurements"].as_array().expect("measurements") {
        for entry in m["data"].as_array().expect("data") {
            for value in entry.as_object().expect("entry").values() {
                if value.as_f64().is_none_or(|v| v.abs() < 1000.0) {
                    continue;
                }
                let shown = value.to_string();
                values += 1;
                assert!(
                    !text.contains(&shown),
                    "reading {shown} in the bundle: {text}"
                );
            }
        }
    }
    assert!(values >= 3, "{body}");
}
