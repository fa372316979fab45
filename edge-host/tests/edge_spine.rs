//! The spine end to end, over real mutual TLS on loopback: simulated meter → pty → `wattlet
//! edge` (parser and upload components) → the cloud's Data API. Nothing before consent; the
//! cloud ends up with exactly the measurements the edge took; nothing after revocation.

use std::time::Duration;

use serde_json::json;
use wattlet_api_client::ApiClient;
use wattlet_testkit::{
    Cloud, Meter, edge_config, edge_log, free_port, journal, pending, sample, scrape, spawn_edge,
    wait_for,
};

/// The binary a device runs.
const EDGE: &str = env!("CARGO_BIN_EXE_wattlet-edge");
const ADA_METER: &str = "3f6c1a52-5d0e-4f7b-9a51-7a1c2e9b0a01";
const GRACE_METER: &str = "8b2d4e63-1c7f-4a09-b6d2-5e8f3a7c0b02";

#[test]
fn readings_reach_the_cloud_only_while_consent_is_granted() {
    let temp = tempfile::tempdir().expect("temp dir");
    let cloud = Cloud::start(&temp.path().join("cloud"));
    let ada = cloud.register("Ada Lovelace", "ada@example.org", "pi-ada", ADA_METER);
    let grace = cloud.register("Grace Hopper", "grace@example.org", "pi-grace", GRACE_METER);
    let meter = Meter::start(Duration::from_millis(200));
    let edge_dir = temp.path().join("edge");
    let configure = |meter: &Meter| {
        edge_config(
            &edge_dir,
            &cloud,
            &ada,
            ADA_METER,
            &meter.path,
            ("300ms", "700ms", "200ms"),
        )
    };
    let config = configure(&meter);
    // The daemon's Prometheus metrics on a port picked now (free a moment ago).
    let metrics_addr = free_port();
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "journal = true\n",
        &format!("journal = true\nmetrics_listen = \"{metrics_addr}\"\n"),
    );
    std::fs::write(&config, text).expect("config");
    let mut edge = spawn_edge(EDGE, &config);

    // Not granted: the device runs, asks for consent, and measures nothing.
    std::thread::sleep(Duration::from_secs(2) * wattlet_testkit::patience());
    assert!(
        edge.try_wait().expect("edge status").is_none(),
        "edge exited early"
    );
    assert!(journal(&edge_dir).is_empty(), "measured before consent");
    assert!(cloud.measurements(&ada, ADA_METER).is_empty());

    cloud.grant(&ada);
    wait_for(
        Duration::from_secs(180), // generous: on a fresh machine the edge first compiles its components
        "5 measurements in the cloud",
        || cloud.measurements(&ada, ADA_METER).len() >= 5,
    );

    let metrics = scrape(metrics_addr);
    assert!(
        metrics.contains("wattlet_edge_consent{state=\"granted\"} 1"),
        "{metrics}"
    );
    let counted =
        |name: &str| sample(&metrics, name).unwrap_or_else(|| panic!("{name} missing:\n{metrics}"));
    assert!(
        counted("wattlet_edge_measurements_total{") >= 5.0,
        "{metrics}"
    );
    assert!(counted("wattlet_edge_telegrams_total{") >= 5.0, "{metrics}");
    assert!(
        counted("wattlet_edge_uploaded_measurements_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        counted("wattlet_edge_last_upload_timestamp_seconds") > 1.7e9,
        "{metrics}"
    );

    // A quiet meter gives a quiet point: no new measurements, the buffer drains.
    drop(meter);
    // Telegrams still on the line may be measured late (slowly, under an emulator), so wait
    // for the buffer to drain with the cloud holding exactly what the edge took.
    wait_for(
        Duration::from_secs(15),
        "the cloud to hold exactly what the edge took",
        || {
            let taken = journal(&edge_dir);
            pending(&edge_dir) == 0 && cloud.measurements(&ada, ADA_METER) == taken
        },
    );

    // What arrived is the meter's reading in the Data API's units: 1.8.0 in kWh (the
    // simulator starts at 10,000 kWh) rising, power in kW.
    let (status, body) = cloud.as_device(
        &ada,
        "GET",
        &format!("/api/household/meter/{ADA_METER}/measurement"),
        None,
    );
    assert_eq!(status, 200);
    let mut last_import = 0.0;
    for m in body["measurements"].as_array().expect("measurements") {
        let data = m["data"].as_array().expect("data");
        let value = |code: &str| data.iter().find_map(|entry| entry[code].as_f64());
        let import = value("0100010800ff").expect("1.8.0 in every measurement");
        assert!(
            (10_000.0..10_100.0).contains(&import),
            "1.8.0 = {import} kWh"
        );
        assert!(
            import >= last_import,
            "1.8.0 fell: {last_import} → {import}"
        );
        last_import = import;
        let power = value("0100100700ff").expect("16.7.0 in every measurement");
        assert!(power.abs() < 50.0, "16.7.0 = {power} kW");
    }

    // The device status reached the cloud: component versions and last measurement.
    let (status, listing) = cloud.admin("GET", "/api/management/household", None);
    assert_eq!(status, 200, "{listing}");
    let text = listing.to_string();
    assert!(
        text.contains("meter-parser") && text.contains("upload"),
        "component versions missing: {text}"
    );

    // Revocation: the device learns it, deletes what it had not sent and exits for good.
    let (status, body) = cloud.as_device(&ada, "DELETE", "/api/household/consent", None);
    assert_eq!(status, 200, "revoke: {body}");
    let mut exit = None;
    wait_for(
        Duration::from_secs(10),
        "the edge to stop after revocation",
        || {
            exit = edge.try_wait().expect("edge status");
            exit.is_some()
        },
    );
    let exit = exit.expect("the edge's exit status");
    let stderr = std::fs::read_to_string(edge_log(&config)).expect("edge.log");
    assert!(exit.success(), "edge exit {exit:?}: {stderr}");
    assert!(stderr.contains("revoked"), "{stderr}");
    let taken = journal(&edge_dir);

    // Started again with a live meter, it does not measure at all.
    let meter = Meter::start(Duration::from_millis(200));
    let config = configure(&meter);
    let mut again = spawn_edge(EDGE, &config);
    let exit = again.wait().expect("edge exit");
    assert!(exit.success());
    assert_eq!(journal(&edge_dir), taken, "measured after revocation");

    // And the cloud refuses anything the device might still send.
    let late = json!({"measurements": [{
        "uuid": "00000000-0000-4000-8000-000000000001", "meter": ADA_METER,
        "measured_at": "2026-11-23T16:00:00Z", "data": [{"0100010800ff": 1.0}],
    }]});
    let (status, body) = cloud.as_device(
        &ada,
        "POST",
        "/api/household/meter/measurement",
        Some(late.clone()),
    );
    assert_eq!(status, 403, "upload after revocation: {body}");

    // Hostile clients of the same server: no certificate but a spoofed identity header gets
    // no identity (401); a certificate of another CA fails the handshake.
    let anonymous = cloud.anonymous_tls();
    let spoofed = cloud.runtime().block_on(
        ApiClient::new(&cloud.url(), Some(anonymous))
            .expect("client")
            .send(
                "GET",
                "/api/household/consent",
                None,
                &[
                    ("x-wattlet-client-device", "pi-grace"),
                    ("x-wattlet-client-email", "grace@example.org"),
                ],
            ),
    );
    assert_eq!(
        spoofed.expect("request").0,
        401,
        "spoofed identity accepted"
    );
    let other_ca = temp.path().join("other-ca");
    let stranger = wattlet_pki::CaDir::init(
        &other_ca,
        "another CA",
        wattlet_pki::DEFAULT_CA_VALIDITY,
        false,
    )
    .expect("CA")
    .issue_device(&wattlet_pki::DeviceRequest::new(
        "pi-grace",
        "grace@example.org",
    ))
    .expect("cert");
    let (cert, key) = stranger.write(&other_ca.join("pi-grace")).expect("write");
    let stranger_tls = std::sync::Arc::new(
        wattlet_tls::client_tls_config(&cert, &key, &cloud.ca.ca_cert_path()).expect("TLS"),
    );
    let refused = cloud.runtime().block_on(
        ApiClient::new(&cloud.url(), Some(stranger_tls))
            .expect("client")
            .send("GET", "/api/household/consent", None, &[]),
    );
    assert!(
        refused.is_err(),
        "a certificate of another CA was accepted: {refused:?}"
    );

    // Grace never granted consent: her device's uploads are refused too, and a device may
    // not write to a meter of another household.
    let (status, _) = cloud.as_device(
        &grace,
        "POST",
        "/api/household/meter/measurement",
        Some(late),
    );
    assert_eq!(status, 403, "upload to another household's meter");
}
