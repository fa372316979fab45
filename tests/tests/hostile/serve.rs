//! `wattlet serve` and its admin listener against hostile clients and runaway components: the
//! `wattlet serve` command as a child process (under a low open-file limit where the attack is
//! about file descriptors) serving the Spin probe application, whose health route is
//! `/probe/hello`.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wattlet_serve::server::{ClientAuth, ServeOptions};
use wattlet_testkit::flood::{Attack, Flood};
use wattlet_testkit::{PROBE_TOKEN, ServeChild, http, pki, sample, scrape, serve};

const HEALTH: &str = "/probe/hello";

/// The probe's health route answers 200 within `limit`, however busy the server is.
async fn healthy_within(server: &ServeChild, limit: Duration) -> Duration {
    let (reply, took) = http::get_within(server.addr, HEALTH, limit).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    took
}

/// Live instances of the probe component, as the admin listener counts them.
fn live_probe_instances(server: &ServeChild) -> f64 {
    let page = scrape(server.admin);
    sample(&page, r#"wattlet_http_live_instances{component="probe"}"#).unwrap_or(0.0)
}

/// Sends `head` on a new connection and reads the answer's status line, waiting at most
/// `limit`; `None` when nothing came by then.
async fn status_after(server: &ServeChild, head: &[u8], limit: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(head).await.expect("send");
    let mut answer = Vec::new();
    let read = async {
        let mut buffer = [0u8; 1024];
        while !answer.contains(&b'\n') {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_errors_past_the_open_file_limit_do_not_end_the_server() {
    // No connection cap below the limit: accepting itself runs out of descriptors. No request
    // before the flood either: serving the first one needs no new descriptor.
    let mut server = ServeChild::probe(
        &["--max-connections", "10000", "--header-timeout", "1s"],
        Some(64),
    );
    let flood = Flood::start(server.addr, 150, Attack::Idle);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        healthy_within(&server, Duration::from_secs(20)).await;
    }
    let stats = flood.stop().await;
    assert!(server.is_running(), "the server ended: {}", server.log());
    assert!(
        server.log().contains("cannot accept connections"),
        "{}",
        server.log()
    );
    assert!(stats.closed_by_server > 0, "{stats:?}");
    let took = healthy_within(&server, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "{took:?} after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slowloris_flood_under_a_low_open_file_limit_leaves_the_server_answering() {
    let mut server = ServeChild::probe(&["--header-timeout", "1s"], Some(128));
    let flood = Flood::start(server.addr, 300, Attack::SlowHeaders);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        healthy_within(&server, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = flood.stop().await;
    assert!(server.is_running(), "the server ended: {}", server.log());
    // The header timeout closed the slow clients, and they came back.
    assert!(stats.closed_by_server >= 300, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_body_flood_under_a_low_open_file_limit_leaves_the_server_answering() {
    // Bodies trickle in fast enough for the read timeout; the request deadline ends them.
    let mut server = ServeChild::probe(
        &[
            "--header-timeout",
            "1s",
            "--body-timeout",
            "1s",
            "--request-timeout",
            "2s",
        ],
        Some(128),
    );
    let flood = Flood::start(
        server.addr,
        300,
        Attack::SlowBody {
            path: "/probe/echo".into(),
        },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        healthy_within(&server, Duration::from_secs(15)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = flood.stop().await;
    assert!(server.is_running(), "the server ended: {}", server.log());
    assert!(stats.closed_by_server > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_listener_survives_a_flood_past_the_open_file_limit() {
    let mut server = ServeChild::probe(&["--header-timeout", "1s"], Some(64));
    // A request, so that the metrics page has a sample to show.
    healthy_within(&server, Duration::from_secs(5)).await;
    let flood = Flood::start(server.admin, 150, Attack::Idle);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (metrics, _) = http::get_within(server.admin, "/metrics", Duration::from_secs(20)).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.text.contains("wattlet_http_requests_total"),
        "{}",
        metrics.text
    );
    flood.stop().await;
    assert!(server.is_running(), "the server ended: {}", server.log());
    let (metrics, took) = http::get_within(server.admin, "/metrics", Duration::from_secs(5)).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(took < Duration::from_secs(2), "{took:?} after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_looping_component_gets_504_at_its_deadline_while_others_are_served() {
    let server = ServeChild::probe(&["--request-timeout", "2s"], None);
    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    // More endless loops than the server has worker threads.
    let loops: Vec<_> = (0..6)
        .map(|_| tokio::spawn(http::get(server.addr, "/probe/loop")))
        .chain([tokio::spawn(http::get(server.addr, "/probe/sleep/60000"))])
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let took = healthy_within(&server, Duration::from_secs(5)).await;
        assert!(
            took < Duration::from_secs(1),
            "hello took {took:?} beside the loops"
        );
    }
    for looping in loops {
        let reply = looping.await.expect("request task");
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text);
    }
    let took = started.elapsed();
    assert!(took >= deadline, "{took:?}");
    assert!(took < deadline + Duration::from_secs(3), "{took:?}");
    let log = server.log();
    assert!(log.contains("request deadline"), "{log}");
    assert!(log.contains("/probe/loop"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_hungry_component_gets_500_and_others_are_served() {
    // 32 MiB for `probe`; `restricted` (the same component) keeps the default.
    let server = ServeChild::probe(&["--max-instance-memory", "probe=32M"], None);
    let hogs: Vec<_> = (0..4)
        .map(|_| tokio::spawn(http::get(server.addr, "/probe/hog/64")))
        .collect();
    healthy_within(&server, Duration::from_secs(5)).await;
    for hog in hogs {
        let reply = hog.await.expect("request task");
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            reply.text
        );
    }
    let small = http::get(server.addr, "/probe/hog/8").await;
    assert_eq!(small.status, StatusCode::OK, "{}", small.text);
    let elsewhere = http::get(server.addr, "/restricted/hog/64").await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.text);
    let log = server.log();
    assert!(log.contains("memory limit"), "{log}");
    assert!(log.contains("/probe/hog/64"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_stops_its_component() {
    // The default request timeout (30 s) is far away: only the client's leaving stops it.
    let server = ServeChild::probe(&[], None);
    let mut client = TcpStream::connect(server.addr).await.expect("connect");
    client
        .write_all(b"GET /probe/loop HTTP/1.1\r\nhost: gone\r\n\r\n")
        .await
        .expect("send");
    wattlet_testkit::wait_for(Duration::from_secs(10), "the loop to run", || {
        live_probe_instances(&server) == 1.0
    });
    drop(client);
    let left = Instant::now();
    wattlet_testkit::wait_for(Duration::from_secs(3), "the instance to stop", || {
        live_probe_instances(&server) == 0.0
    });
    assert!(left.elapsed() < Duration::from_secs(3));
    healthy_within(&server, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_a_request_in_flight_finish() {
    let mut server = ServeChild::probe(&[], None);
    let addr = server.addr;
    let in_flight = tokio::spawn(http::get(addr, "/probe/sleep/1500"));
    wattlet_testkit::wait_for(Duration::from_secs(10), "the request to run", || {
        live_probe_instances(&server) == 1.0
    });
    server.terminate();
    let reply = in_flight.await.expect("request task");
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "slept")
    );
    let status = server
        .wait(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running after SIGTERM: {}", server.log()));
    assert!(status.success(), "{status}: {}", server.log());
    assert!(
        server.printed().iter().any(|l| l.contains("Shutting down")),
        "{}",
        server.log()
    );
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_beyond_the_concurrency_cap_wait_for_a_slot() {
    let server = ServeChild::probe(&["--max-concurrent-requests", "2"], None);
    let started = Instant::now();
    let sleepers: Vec<_> = (0..6)
        .map(|_| tokio::spawn(http::get(server.addr, "/probe/sleep/500")))
        .collect();
    for sleeper in sleepers {
        let reply = sleeper.await.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    // Two at a time: three rounds of 500 ms.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1450), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = ServeChild::probe(&["--max-connections", "4", "--header-timeout", "30s"], None);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = tokio::spawn(http::get_within(
        server.addr,
        HEALTH,
        Duration::from_secs(10),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "answered past the connection cap");
    idle.pop();
    let (reply, _) = waiting.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_request_body_gets_408() {
    let server = ServeChild::probe(&["--body-timeout", "1s"], None);
    let started = Instant::now();
    let status = status_after(
        &server,
        b"POST /probe/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_keep_alive_connections_are_closed() {
    let server = ServeChild::probe(&["--header-timeout", "1s"], None);
    let mut connection = http::Client::plain(server.addr)
        .connect()
        .await
        .expect("connect");
    let reply = connection.get(HEALTH, &[]).await.expect("first request");
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(connection.is_closed(), "an idle connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_that_expires_ends_its_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, tls) = pki::server_ca(dir.path(), ClientAuth::Required);
    let options = ServeOptions {
        tls: Some(tls),
        ..serve::probe_options(&dir.path().join("state"))
    };
    let served = serve::start(&options, &[("api_token", PROBE_TOKEN)]);
    let device = pki::device_valid_for(
        &ca,
        dir.path(),
        "pi-brief",
        "brief@example.org",
        Duration::from_secs(3),
    );
    let pem = std::fs::read(&device.cert).expect("certificate");
    let der = der_of(&pem);
    let not_after = wattlet_tls::not_after(&der).expect("expiry");
    let client = http::Client::tls(served.addr, device.tls.clone());
    let mut connection = client.connect().await.expect("connect");
    let reply = connection.get(HEALTH, &[]).await.expect("request");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // Keep the connection busy up to the expiry, then past it.
    while std::time::SystemTime::now() < not_after {
        let _ = connection.get(HEALTH, &[]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // notAfter has whole seconds and counts as valid through its second (RFC 5280).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    match connection.get(HEALTH, &[]).await {
        Err(_) => {}
        Ok(reply) => panic!("served after the certificate expired: {}", reply.status),
    }
    // A new connection fails its handshake, or, resuming the earlier TLS session (which
    // rustls does not verify again), is refused request by request.
    if let Ok(reply) = client.try_send(hyper::Method::GET, HEALTH, b"", &[]).await {
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        assert!(reply.text.contains("expired"), "{}", reply.text);
    }
}

/// The DER of a PEM certificate.
fn der_of(pem: &[u8]) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem)
        .expect("PEM certificate")
        .to_vec()
}
