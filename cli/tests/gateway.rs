//! `wattlet gateway` in front of the Data API on the real Spin CLI (`spin up`, plain HTTP, as
//! the SpinApp runs on Kubernetes): devices with certificates of the survey's CA register,
//! grant consent and upload through it (the Data API verifies the gateway's identity proofs);
//! forged identity headers are stripped; a revoked certificate is refused; an upstream that is
//! gone is a 502; the gateway's metrics count it all. Skipped where no Spin CLI is found.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wattlet_api_client::ApiClient;
use wattlet_serve::server::ClientAuth;
use wattlet_testkit::cloud::{ADMIN_TOKEN, APP_VARIABLES, IDENTITY_KEY, household};
use wattlet_testkit::{SpinUp, Stopped, pki, serve, unique, uuid4};

/// The gateway child (stopped when the test ends) and its addresses.
struct Gateway {
    _child: Stopped,
    url: String,
    metrics: std::net::SocketAddr,
}

fn start_gateway(upstream: &str, tls: &wattlet_serve::server::TlsOptions, key: &str) -> Gateway {
    let listen = wattlet_testkit::free_port();
    let metrics = wattlet_testkit::free_port();
    let mut child = wattlet_testkit::binary!("wattlet")
        .args(["gateway", "--upstream", upstream])
        .args(["--listen", &listen.to_string()])
        .args(["--admin-listen", &metrics.to_string()])
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .arg("--client-ca")
        .arg(&tls.client_ca)
        .arg("--crl")
        .arg(tls.crl.as_ref().expect("a CRL"))
        .args(["--client-auth", "optional", "--request-timeout", "5s"])
        .env("SPIN_VARIABLE_CLIENT_IDENTITY_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("wattlet gateway starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("wattlet gateway printed nothing"));
    assert!(first.starts_with("Gateway https://"), "{first}");
    std::thread::spawn(move || lines.for_each(drop));
    Gateway {
        _child: Stopped(child),
        url: format!("https://localhost:{}", listen.port()),
        metrics,
    }
}

#[test]
fn devices_reach_the_data_api_on_spin_through_the_gateway() {
    let Some(spin) = wattlet_testkit::spin_cli() else {
        eprintln!("{}", wattlet_testkit::NO_SPIN);
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = serve::manifest_elsewhere(&dir.path().join("app"));
    let spin_up = SpinUp::start(&spin, &manifest, None, dir.path(), &APP_VARIABLES);
    let (ca, tls) = pki::server_ca(dir.path(), ClientAuth::Optional);

    // A gateway with another key than the app's: its proofs are refused.
    let wrong = start_gateway(
        &spin_up.url(),
        &tls,
        "another-identity-key-9f8e7d6c5b4a3210",
    );
    let gateway = start_gateway(&spin_up.url(), &tls, IDENTITY_KEY);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let anonymous = pki::anonymous(&ca);
    let client = |url: &str, tls: std::sync::Arc<rustls::ClientConfig>| {
        ApiClient::new(url, Some(tls))
            .expect("client")
            .with_timeout(Duration::from_secs(60))
    };
    let send = |c: &ApiClient, method: &str, path: &str, body: Option<Value>| {
        runtime
            .block_on(c.send(method, path, body.as_ref(), &[]))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    };

    // People with tokens come through without a certificate.
    let admin = client(&gateway.url, anonymous.clone()).with_bearer(ADMIN_TOKEN);
    let (id, email, meter) = (
        unique("pi"),
        format!("{}@example.org", unique("gw")),
        uuid4(),
    );
    let (status, body) = send(
        &admin,
        "POST",
        "/api/management/household",
        Some(household("G", &email, &id, &meter)),
    );
    assert_eq!(status, 201, "{body}");

    // The device: its identity proven by the gateway, verified by the Data API on Spin.
    let device = pki::device(&ca, dir.path(), &id, &email);
    let as_device = client(&gateway.url, device.tls.clone());
    let (status, body) = send(&as_device, "GET", "/api/household", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        send(&as_device, "POST", "/api/household/consent", None).0,
        200
    );
    let at =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60));
    let batch = json!({ "measurements": [{ "uuid": uuid4(), "meter": meter,
        "measured_at": at.to_string(), "data": [{ "0100010800ff": 1.5 }] }] });
    let (status, body) = send(
        &as_device,
        "POST",
        "/api/household/meter/measurement",
        Some(batch),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &as_device,
        "GET",
        &format!("/api/household/meter/{meter}/measurement"),
        None,
    );
    assert_eq!(
        (status, body["measurements"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );

    // Through a gateway with the wrong key the same device is not believed.
    let (status, body) = send(
        &client(&wrong.url, device.tls.clone()),
        "GET",
        "/api/household",
        None,
    );
    assert_eq!(status, 401, "{body}");
    // Identity headers sent by a client without a certificate never reach the app.
    let forged: Vec<(&str, String)> = wattlet_testkit::cloud::ingress_identity(
        "GET",
        "/api/household",
        &id,
        &email,
        &device.serial,
    );
    let headers: Vec<(&str, &str)> = forged.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, body) = runtime
        .block_on(client(&gateway.url, anonymous.clone()).send(
            "GET",
            "/api/household",
            None,
            &headers,
        ))
        .expect("forged request");
    assert_eq!(status, 401, "stripped, then no identity: {body}");

    // A revoked certificate is refused from the next connection on (the handshake fails) and
    // on open connections (403).
    let open = client(&gateway.url, device.tls.clone());
    assert_eq!(send(&open, "GET", "/api/household", None).0, 200);
    assert!(ca.revoke(&device.serial).expect("revoke"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = |c: &ApiClient| match runtime.block_on(c.send("GET", "/api/household", None, &[]))
    {
        Err(_) => "handshake refused".to_owned(),
        Ok((403, _)) => "403".to_owned(),
        Ok((status, body)) => format!("served: {status} {body}"),
    };
    loop {
        let fresh = refused(&client(&gateway.url, device.tls.clone()));
        let kept = refused(&open);
        if fresh == "handshake refused" && !kept.starts_with("served") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation was not noticed: new connection {fresh}, open one {kept}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The upstream gone: 502, not a hang.
    drop(spin_up);
    let (status, _) = send(&admin, "GET", "/api/management/household", None);
    assert_eq!(status, 502);

    let page = wattlet_testkit::metrics::scrape(gateway.metrics);
    assert!(
        wattlet_testkit::metrics::metric(&page, "wattlet_gateway_requests_total{code=\"200\"}")
            >= 4.0,
        "{page}"
    );
    assert!(
        wattlet_testkit::metrics::metric(&page, "wattlet_gateway_upstream_errors_total") >= 1.0,
        "{page}"
    );
}
