//! The web UIs (components/web-ui, from `spin.toml`) driven in headless Chromium (Debian's
//! package) by Playwright (playwright-core from npm, installed into the target directory the
//! first time) over real HTTPS: a researcher registers a participant and sees their consent, a
//! taken email is refused with the API's reason, an administrator sees each device's versions,
//! activity and consent, a wrong token is refused. Screenshots are kept in
//! `target/ui-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ADMIN_TOKEN, Cloud, repo};
use serde_json::json;

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
    let (status, body) = cloud.as_device(&active, "POST", "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    let report = json!({"components": {"meter-parser": "0.1.0", "upload": "0.1.0"},
                        "last_measurement": null, "meters": []});
    let (status, body) = cloud.as_device(
        &active,
        "PUT",
        "/api/household/measurement_device/status",
        Some(report),
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = cloud.admin(
        "POST",
        "/api/management/token",
        Some(json!({"role": "researcher"})),
    );
    assert_eq!(status, 201, "{body}");
    let researcher = body["token"].as_str().expect("token").to_owned();

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("ui-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let output = Command::new("node")
        .arg(repo().join("edge-host/tests/ui/drive.mjs"))
        .env("WATTLET_URL", cloud.url())
        .env("RESEARCHER_TOKEN", &researcher)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ACTIVE_DEVICE", &active.id)
        .env("SCREENSHOTS", &shots)
        .env("PLAYWRIGHT", &playwright)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for shot in ["registration.png", "registration-refused.png", "status.png"] {
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
}
