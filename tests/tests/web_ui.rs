//! The web UIs (components/web-ui, from `spin.toml`) driven in headless Chromium (Debian's
//! package) by Playwright (playwright-core from npm, installed into the target directory the
//! first time) over real HTTPS: a researcher registers a participant and sees their consent, a
//! taken email is refused with the API's reason, an administrator sees each device's versions,
//! activity and consent, a wrong token is refused; the fleet page shows a device's reported
//! health, flags a silent device and plots a device's history; a participant opens the device's link,
//! grants consent, sees their details and measurements as a chart and revokes for good.
//! Screenshots are kept in `target/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use wattlet_testkit::{ADMIN_TOKEN, Cloud, repo, run};

const PLAYWRIGHT: &str = "1.64.1";
const CHROMIUM: &str = "/usr/bin/chromium";

/// playwright-core's directory, installed with npm when missing.
fn playwright() -> PathBuf {
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("playwright-{PLAYWRIGHT}"));
    let module = prefix.join("node_modules").join("playwright-core");
    if !module.join("package.json").is_file() {
        eprintln!(
            "installing playwright-core {PLAYWRIGHT} into {}",
            prefix.display()
        );
        std::fs::create_dir_all(&prefix).expect("create the playwright directory");
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(format!("playwright-core@{PLAYWRIGHT}"))
            .status()
            .expect("run npm (Node.js is needed for the browser tests)");
        assert!(
            status.success(),
            "npm install playwright-core failed: {status}"
        );
    }
    module
}

#[test]
fn researchers_register_and_administrators_see_device_status_in_chromium() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: ./dev test installs Debian's chromium package"
    );
    let playwright = playwright();
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = Cloud::start(dir.path());

    // A device that has reported: consent granted, component versions, recent activity.
    let active = cloud.register(
        "Grace Hopper",
        "grace.ui@example.org",
        "pi-ui-active",
        "7a1c2e9b-0a01-4f7b-9a51-3f6c1a525d0e",
    );
    cloud.grant(&active);
    let report = json!({"components": {"meter-parser": "0.1.0", "upload": "0.1.0"},
                        "last_measurement": null, "meters": []});
    let (status, body) = cloud.as_device(
        &active,
        "PUT",
        "/api/household/measurement_device/status",
        Some(report),
    );
    assert_eq!(status, 204, "{body}");
    // Health reports: the fleet page's table shows the latest, its plot the history.
    for (i, unsent) in [5, 9, 2].into_iter().enumerate() {
        let report = json!({"components": {"meter-parser": "0.1.0", "upload": "0.1.0"},
                            "meters": [], "clock_plausible": true,
                            "uptime_s": 600 * (i + 1), "buffer": {"unsent": unsent, "set_aside": 0},
                            "free_disk_bytes": 2_500_000_000u64,
                            "device_time": "2026-11-23T16:00:00Z",
                            "update": {"state": "failed", "component": "upload",
                                       "from": "0.1.0", "to": "0.2.0", "reason": "signature"}});
        let (status, body) = cloud.as_device(
            &active,
            "PUT",
            "/api/household/measurement_device/status",
            Some(report),
        );
        assert_eq!(status, 204, "{body}");
    }
    let measurements: Vec<serde_json::Value> = (0..8)
        .map(|i| {
            json!({
                "uuid": format!("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b{i:02x}"),
                "meter": "7a1c2e9b-0a01-4f7b-9a51-3f6c1a525d0e",
                "measured_at": format!("2026-11-23T{:02}:{:02}:00Z", 16 + i / 4, (i % 4) * 15),
                "data": [{"0100010800ff": 1000.0 + f64::from(i)}, {"0100100700ff": 0.2 + f64::from(i % 3) * 0.4}],
            })
        })
        .collect();
    let (status, body) = cloud.as_device(
        &active,
        "POST",
        "/api/household/meter/measurement",
        Some(json!({ "measurements": measurements })),
    );
    assert_eq!(status, 200, "{body}");
    let (_, household) = cloud.as_device(&active, "GET", "/api/household", None);
    let id = household["household"].as_str().expect("household");
    let details = json!({
        "address": {"street": "Hauptstraße", "house_number": "5", "postal_code": "20095",
                    "city": "Hamburg", "country": "DE"},
        "metadata": {"children": 1, "adults": 2, "employed_adults": 2,
                     "ev_charger": true, "heat_pump": false, "home_battery": false},
    });
    let (status, body) = cloud.admin(
        "PATCH",
        &format!("/api/management/household/{id}"),
        Some(details),
    );
    assert_eq!(status, 200, "{body}");
    let link = |device: &wattlet_testkit::Device| {
        let (status, body) = cloud.as_device(device, "POST", "/api/household/token", None);
        assert_eq!(status, 201, "{body}");
        let link = body["ui"].as_str().expect("ui link").to_owned();
        assert!(link.starts_with("/ui/device/#token=wt1."), "{link}");
        link
    };
    // A study rule the participant sees on the device page (and cannot remove there).
    let (status, body) = cloud.admin(
        "POST",
        "/api/management/policies",
        Some(json!({ "policy": "retention", "parameters": { "months": 24 } })),
    );
    assert_eq!(status, 201, "{body}");
    let active_link = link(&active);
    let fresh = cloud.register(
        "Katherine Johnson",
        "katherine.ui@example.org",
        "pi-ui-new",
        "9b0a017a-1c2e-4f7b-9a51-5d0e3f6c1a52",
    );
    let new_link = link(&fresh);
    let researcher = cloud.mint("researcher");

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("ui-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let ran = run(
        Command::new("node")
            .arg(repo().join("tests/tests/ui/drive.mjs"))
            .env("WATTLET_URL", cloud.url())
            .env("RESEARCHER_TOKEN", &researcher)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("ACTIVE_DEVICE", &active.id)
            .env("HEALTH_REPORTS", "3")
            .env("SILENT_DEVICE", &fresh.id)
            .env("DEVICE_LINK_ACTIVE", &active_link)
            .env("DEVICE_LINK_NEW", &new_link)
            .env("MEASUREMENTS", "8")
            .env("SCREENSHOTS", &shots)
            .env("PLAYWRIGHT", &playwright),
        None,
    );
    println!("{}", ran.stdout);
    ran.expect_success("the browser run");
    for shot in [
        "registration.png",
        "registration-refused.png",
        "status.png",
        "fleet.png",
        "device.png",
        "device-rules.png",
        "device-revoked.png",
    ] {
        let bytes = std::fs::read(shots.join(shot)).expect("screenshot");
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{shot}: not a real screenshot"
        );
    }

    // What the browser did is in the Data API.
    let (status, listing) = cloud.admin("GET", "/api/management/household", None);
    assert_eq!(status, 200);
    let registered: Vec<&serde_json::Value> = listing["households"]
        .as_array()
        .expect("households")
        .iter()
        .filter(|h| h["user"]["email"] == "ada.ui@example.org")
        .collect();
    assert_eq!(registered.len(), 1, "{listing}");
    let id = registered[0]["household"].as_str().expect("id");
    let (_, details) = cloud.admin("GET", &format!("/api/management/household/{id}"), None);
    assert_eq!(
        details["address"]["street"], "Unter den Linden",
        "{details}"
    );
    assert_eq!(
        details["pv_systems"][0]["nominal_power_kwp"], 7.4,
        "{details}"
    );
    assert_eq!(details["meters"][0]["model"], "EHZ", "{details}");
    // The participant's clicks: one household granted, the other revoked and anonymized.
    let (_, fresh_consent) = cloud.as_device(&fresh, "GET", "/api/household/consent", None);
    assert_eq!(fresh_consent["state"], "granted", "{fresh_consent}");
    // The pause was attached and removed again, the export copy attached, all in the
    // household's log.
    let (_, log) = cloud.as_device(&active, "GET", "/api/household/access_log", None);
    let operations: Vec<&str> = log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["entry"]["operation"].as_str())
        .filter(|op| *op != "read")
        .collect();
    assert_eq!(operations, ["attach", "detach", "attach"], "{log}");
    let (_, revoked) = cloud.as_device(&active, "GET", "/api/household", None);
    assert_eq!(revoked["consent"]["state"], "revoked", "{revoked}");
    assert_eq!(revoked["user"], serde_json::Value::Null, "{revoked}");
}
