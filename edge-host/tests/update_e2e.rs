//! The update agent in the running daemon, end to end with the local system: `wattlet-edge run`
//! with an `[updates]` section, the cloud's Data API on loopback over mutual TLS, a consenting
//! household and a simulated meter. The daemon polls a signed repository and installs nothing
//! until the cloud's staged rollouts admit it; then it installs the new parser (committed after
//! its golden telegrams) and the new upload component (committed by its first acknowledged
//! upload), reports both outcomes to their rollouts, keeps measuring and uploading with them,
//! and reports the new versions in its status; restarted, it runs the committed versions.

use std::time::Duration;

use wattlet_edge::update::slots::Store;
use wattlet_edge::update::{Agent, Kind};
use wattlet_testkit::updates::{PARSER_WORLD, UPLOAD_WORLD, UpdateRepo, component};
use wattlet_testkit::{ConsentingEdge, edge_log, pending, spawn_edge, terminate, uuid4, wait_for};

const EDGE: &str = env!("CARGO_BIN_EXE_wattlet-edge");

#[test]
fn the_daemon_installs_both_components_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let meter = uuid4();
    let edge = ConsentingEdge::start(
        dir.path(),
        &meter,
        Duration::from_millis(300),
        ("1s", "1s", "1s"),
    );
    let repo = UpdateRepo::new();
    repo.publish(
        "meter-parser",
        "1.1.0",
        PARSER_WORLD,
        &component("wattlet-meter-parser"),
    );
    repo.publish(
        "upload",
        "1.1.0",
        UPLOAD_WORLD,
        &component("wattlet-upload"),
    );
    let mut text = std::fs::read_to_string(&edge.config).unwrap();
    text.push_str(&repo.config_section());
    std::fs::write(&edge.config, text).unwrap();

    let mut child = spawn_edge(EDGE, &edge.config);
    let state_dir = edge.dir.join("edge-state");
    let store = Store::new(&state_dir);
    let committed = |kind| {
        store
            .load(kind)
            .ok()
            .and_then(|s| s.committed)
            .map(|c| c.version.to_string())
    };
    // Signed, but no rollout admits the device yet: a few polls install nothing.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        (committed(Kind::MeterParser), committed(Kind::Upload)),
        (None, None),
        "installed before a rollout admitted the device"
    );
    let mut rollouts = Vec::new();
    for name in ["meter-parser", "upload"] {
        let (status, rollout) = edge.cloud.admin(
            "POST",
            "/api/management/rollout",
            Some(serde_json::json!({"component": name, "version": "1.1.0", "stages": [100]})),
        );
        assert_eq!(status, 201, "{rollout}");
        rollouts.push(rollout["id"].as_str().unwrap().to_owned());
    }
    wait_for(Duration::from_secs(180), "both updates committed", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the edge exited: {}",
            std::fs::read_to_string(edge_log(&edge.config)).unwrap_or_default()
        );
        committed(Kind::MeterParser).as_deref() == Some("1.1.0")
            && committed(Kind::Upload).as_deref() == Some("1.1.0")
    });
    // Its status, sent with the new upload component, names the new versions.
    wait_for(
        Duration::from_secs(60),
        "the cloud lists the new versions",
        || {
            let (status, listing) = edge.cloud.admin("GET", "/api/management/household", None);
            status == 200 && listing.to_string().matches("1.1.0+sha256.").count() >= 2
        },
    );
    // The fleet view shows how the last update ended.
    wait_for(
        Duration::from_secs(60),
        "the fleet shows the update succeeded",
        || {
            let (status, fleet) = edge.cloud.admin("GET", "/api/management/devices", None);
            status == 200
                && fleet["devices"].as_array().is_some_and(|devices| {
                    devices
                        .iter()
                        .any(|d| d["health"]["update"]["state"] == "succeeded")
                })
        },
    );
    // Each rollout counts the device's committed outcome.
    wait_for(
        Duration::from_secs(60),
        "the rollouts count the outcomes",
        || {
            let (status, listing) = edge.cloud.admin("GET", "/api/management/rollout", None);
            let counted = |id: &String| {
                listing["rollouts"].as_array().is_some_and(|all| {
                    all.iter()
                        .any(|r| r["id"] == id.as_str() && r["cohorts"][0]["committed"] == 1)
                })
            };
            status == 200 && rollouts.iter().all(counted)
        },
    );
    wait_for(Duration::from_secs(30), "the buffer drained", || {
        pending(&edge.dir) == 0
    });
    terminate(&child);
    child.wait().unwrap();
    let log = std::fs::read_to_string(edge_log(&edge.config)).unwrap_or_default();
    assert!(log.contains("update committed"), "{log}");

    // Restarted, it runs the committed versions: nothing on trial, both from their slots.
    let engine = wattlet_runtime::engine::engine().unwrap();
    let agent = Agent::new(&engine, &state_dir, Some(repo.settings()), None, None).unwrap();
    for kind in Kind::ALL {
        let resolved = agent.resolve(kind);
        assert_eq!(
            resolved
                .source
                .version()
                .map(ToString::to_string)
                .as_deref(),
            Some("1.1.0"),
            "{kind:?}: {resolved:?}"
        );
    }
}
