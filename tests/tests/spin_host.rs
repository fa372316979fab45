//! `wattlet serve` runs a real spin-sdk 5.x component (tests/components/spin-probe) over real HTTP
//! on loopback: every host interface, every "not granted" case, routing, headers, traps, limits
//! and metrics.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, StatusCode};
use tokio::net::TcpListener;
use wattlet_serve::server::{App, ServeOptions};
use wattlet_testkit::http::{self, Reply};
use wattlet_testkit::serve::{self, PROBE_MAX_REQUEST_BYTES as LIMIT, Served};
use wattlet_testkit::{APP_VARIABLES, PROBE_TOKEN};

/// The probe application on `wattlet serve`, and its metrics listener.
struct Probe {
    /// The server, with its state directory.
    _served: Served,
    addr: SocketAddr,
    /// The Prometheus metrics listener.
    admin: SocketAddr,
}

/// One server for all tests, on its own runtime: compiling the probe component once keeps the
/// suite fast. Tests write disjoint keys and databases.
fn server() -> &'static Probe {
    static SERVER: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let state = tempfile::tempdir().expect("temp dir");
        let options = serve::probe_options(state.path());
        let served = serve::start(&options, &[("api_token", PROBE_TOKEN)]).keeping(state);
        Probe {
            addr: served.addr,
            admin: served.serve_metrics(),
            _served: served,
        }
    })
}

async fn start() -> &'static Probe {
    server()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round_trip_on_default_and_named_databases() {
    let server = start().await;
    for db in ["default", "extra"] {
        for value in ["first", "zweite ✓"] {
            let reply = http::send(
                server.addr,
                Method::POST,
                &format!("/probe/sqlite/{db}"),
                value.as_bytes(),
                &[],
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{db}: {}", reply.text);
        }
        let reply = http::get(server.addr, &format!("/probe/sqlite/{db}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let values: Vec<String> = serde_json::from_str(&reply.text).expect("JSON array");
        assert_eq!(values, ["first", "zweite ✓"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_round_trip() {
    let server = start().await;
    let Reply { status, .. } = http::get(server.addr, "/probe/kv/default/meter").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let reply = http::send(
        server.addr,
        Method::PUT,
        "/probe/kv/default/meter",
        b"MT681",
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = http::get(server.addr, "/probe/kv/default/meter").await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "MT681")
    );
    let Reply { status, .. } = http::send(
        server.addr,
        Method::DELETE,
        "/probe/kv/default/meter",
        b"",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        http::get(server.addr, "/probe/kv/default/meter")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_from_defaults_and_environment() {
    let server = start().await;
    let reply = http::get(server.addr, "/probe/variables/greeting").await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "hello")
    );
    let reply = http::get(server.addr, "/probe/variables/token").await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, PROBE_TOKEN)
    );
    let reply = http::get(server.addr, "/probe/variables/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(reply.text.contains("Undefined"), "{}", reply.text);
    let Reply { text: body, .. } = http::get(server.addr, "/probe/variables/Bad-Name").await;
    assert!(body.contains("InvalidName"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_environment_comes_from_the_manifest_only() {
    let server = start().await;
    let reply = http::get(server.addr, "/probe/env/PROBE_MODE").await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "end-to-end")
    );
    assert_eq!(
        http::get(server.addr, "/restricted/env/PROBE_MODE")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The host's own environment does not leak into components.
    assert_eq!(
        http::get(server.addr, "/probe/env/PATH").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_granted_that_the_manifest_does_not_grant() {
    let server = start().await;
    let reply = http::send(
        server.addr,
        Method::POST,
        "/restricted/sqlite/default",
        b"x",
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(reply.text.contains("AccessDenied"), "{}", reply.text);
    // A database the application has, but this component was not given.
    let reply = http::get(server.addr, "/probe/sqlite/nonexistent").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let reply = http::send(
        server.addr,
        Method::PUT,
        "/restricted/kv/default/k",
        b"v",
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(reply.text.contains("AccessDenied"), "{}", reply.text);
    let reply = http::get(server.addr, "/restricted/variables/greeting").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(reply.text.contains("Undefined"), "{}", reply.text);
    let upstream = upstream().await;
    let url = format!("http://{upstream}/");
    let reply = http::get(server.addr, &format!("/restricted/outbound?url={url}")).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text);
    assert!(
        reply.text.contains("Denied") || reply.text.contains("denied"),
        "{}",
        reply.text
    );
    // The granted component reaches the same upstream.
    let reply = http::get(server.addr, &format!("/probe/outbound?url={url}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.text.contains("upstream says hi"), "{}", reply.text);
}

/// A plain HTTP server on loopback for outbound tests.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        "upstream says hi",
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_spin_headers_as_spin_sets_them() {
    let server = start().await;
    let reply = http::send(
        server.addr,
        Method::GET,
        "/probe/headers?x=1",
        b"",
        &[
            ("spin-path-info", "/spoofed"),
            ("spin-client-addr", "6.6.6.6:1"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let json: serde_json::Value = serde_json::from_str(&reply.text).expect("JSON");
    let header = |name: &str| {
        json["headers"][name]
            .as_str()
            .map(str::to_owned)
            .or_else(|| json[name].as_str().map(str::to_owned))
    };
    assert_eq!(
        header("spin-path-info").as_deref(),
        Some("/headers"),
        "{}",
        reply.text
    );
    assert_eq!(header("spin-matched-route").as_deref(), Some("/probe/..."));
    assert_eq!(header("spin-component-route").as_deref(), Some("/probe"));
    assert_eq!(
        header("spin-raw-component-route").as_deref(),
        Some("/probe/...")
    );
    assert_eq!(
        header("spin-full-url").as_deref(),
        Some(format!("http://{}/probe/headers?x=1", server.addr).as_str())
    );
    let client = header("spin-client-addr").expect("client addr");
    assert!(client.starts_with("127.0.0.1:"), "{client}");

    // An exact route: no path info; a longer path does not match it.
    let reply = http::get(server.addr, "/exact").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let json: serde_json::Value = serde_json::from_str(&reply.text).expect("JSON");
    assert_eq!(json["headers"]["spin-path-info"], "", "{}", reply.text);
    assert_eq!(
        json["headers"]["spin-matched-route"], "/exact",
        "{}",
        reply.text
    );
    assert_eq!(
        http::get(server.addr, "/exact/more").await.status,
        StatusCode::NOT_FOUND
    );
    let reply = http::get(server.addr, "/nothing/here").await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::NOT_FOUND, "not found\n")
    );
}

/// The probe's `headers` reply for `path`, sent with `headers`.
async fn seen_headers(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let reply = http::send(addr, Method::GET, path, b"", headers).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
    let json: serde_json::Value = serde_json::from_str(&reply.text).expect("JSON");
    json["headers"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_segments_reach_the_component_as_path_match_headers() {
    let server = start().await;
    // `/users/:user_id/files/:name`: `_` is spelled `-` in the header name, as in Spin.
    let h = seen_headers(server.addr, "/users/ada/files/report.pdf", &[]).await;
    assert_eq!(h["spin-path-match-user-id"], "ada", "{h}");
    assert_eq!(h["spin-path-match-name"], "report.pdf", "{h}");
    assert_eq!(
        h["spin-matched-route"], "/users/:user_id/files/:name",
        "{h}"
    );
    assert_eq!(
        h["spin-component-route"], "/users/:user_id/files/:name",
        "{h}"
    );
    assert_eq!(h["spin-path-info"], "", "{h}");

    // `/items/:id/...`: the segment, and the rest of the path as path info. A spoofed
    // `spin-path-match-*` header is dropped, not passed on beside the real one.
    let h = seen_headers(
        server.addr,
        "/items/42/headers/more/",
        &[
            ("spin-path-match-id", "666"),
            ("spin-path-match-other", "x"),
        ],
    )
    .await;
    assert_eq!(h["spin-path-match-id"], "42", "{h}");
    assert_eq!(h.get("spin-path-match-other"), None, "{h}");
    assert_eq!(h["spin-path-info"], "/headers/more/", "{h}");
    assert_eq!(h["spin-matched-route"], "/items/:id/...", "{h}");
    assert_eq!(h["spin-component-route"], "/items/:id", "{h}");
    assert_eq!(h["spin-raw-component-route"], "/items/:id/...", "{h}");

    // The most specific route wins: an exact route over the wildcard, a literal over `:id`.
    let h = seen_headers(server.addr, "/items/42/edit", &[]).await;
    assert_eq!(h["spin-matched-route"], "/items/:id/edit", "{h}");
    assert_eq!(h["spin-path-match-id"], "42", "{h}");
    let h = seen_headers(server.addr, "/items/special/headers", &[]).await;
    assert_eq!(h["spin-matched-route"], "/items/special/...", "{h}");
    assert_eq!(h.get("spin-path-match-id"), None, "{h}");

    // A named segment needs a segment: `/items` alone and a missing file name match nothing.
    assert_eq!(
        http::get(server.addr, "/items").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http::get(server.addr, "/users/ada/files").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_component_gets_500_and_the_server_keeps_serving() {
    let server = start().await;
    for _ in 0..3 {
        assert_eq!(
            http::get(server.addr, "/probe/trap").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let reply = http::get(server.addr, "/probe/hello").await;
        assert_eq!(
            (reply.status, reply.text.as_str()),
            (StatusCode::OK, "hello")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_handler_gets_the_request_with_spin_headers_and_its_body() {
    let server = start().await;
    let reply = http::get(server.addr, "/p3/hello").await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "hello from wasi:http@0.3\n")
    );
    let Reply {
        status,
        text: headers,
        ..
    } = http::get(server.addr, "/p3/headers?x=1").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "spin-path-info: /headers",
        "spin-matched-route: /p3/...",
        "spin-component-route: /p3",
        &format!("spin-full-url: http://{}/p3/headers?x=1", server.addr),
    ] {
        assert!(
            headers.lines().any(|l| l == line),
            "{line:?} not in\n{headers}"
        );
    }
    // A body larger than one stream read, with every byte value, comes back unchanged.
    let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let Reply {
        status,
        headers,
        bytes: echoed,
        ..
    } = http::send(server.addr, Method::POST, "/p3/echo", &body, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("x-echo-length").map(|v| v.as_bytes()),
        Some(b"40000".as_slice())
    );
    assert!(echoed == body, "the echoed body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_handler_streams_its_body_after_returning_the_response() {
    let server = start().await;
    // The probe returns the response at once and writes each chunk 20 ms later from a task of
    // its own: the host must keep the instance's event loop running until the body is done.
    let reply = http::get(server.addr, "/p3/stream?chunks=5").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_handler_reads_spin_variables_and_a_trap_gets_500() {
    let server = start().await;
    let reply = http::get(server.addr, "/p3/variable").await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, "hello\n")
    );
    for _ in 0..3 {
        assert_eq!(
            http::get(server.addr, "/p3/trap").await.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            http::get(server.addr, "/p3/hello").await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_limit_get_413() {
    let server = start().await;
    let small = vec![b'a'; 1000];
    let reply = http::send(server.addr, Method::POST, "/probe/echo", &small, &[]).await;
    assert_eq!((reply.status, reply.text.len()), (StatusCode::OK, 1000));
    let big = vec![b'a'; LIMIT + 1];
    assert_eq!(
        http::send(server.addr, Method::POST, "/probe/echo", &big, &[])
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_component_route_and_status() {
    let server = start().await;
    // Only this test sends /restricted/hello and /restricted/trap.
    for _ in 0..2 {
        assert_eq!(
            http::get(server.addr, "/restricted/hello").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        http::get(server.addr, "/restricted/trap").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let Reply { status, text, .. } = http::get(server.admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(r#"wattlet_http_requests_total{component="restricted",route="/restricted/...",status="200"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wattlet_http_requests_total{component="restricted",route="/restricted/...",status="500"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wattlet_http_request_duration_seconds_bucket{le="#),
        "{text}"
    );
    assert!(
        text.contains(r#"wattlet_http_request_duration_seconds_count{component="restricted",route="/restricted/..."} "#),
        "latency by component and route: {text}"
    );
    assert!(
        text.contains(r#"wattlet_http_instantiation_seconds_count{component="restricted"}"#),
        "{text}"
    );
    assert!(text.contains("wattlet_http_live_instances"), "{text}");
    assert_eq!(
        http::get(server.admin, "/other").await.status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn start_up_errors_a_user_can_act_on() {
    let state = tempfile::tempdir().expect("temp dir");
    let err = App::load_with_env(&serve::probe_options(state.path()), |_| None)
        .err()
        .expect("missing variable");
    assert!(
        format!("{err:#}").contains("SPIN_VARIABLE_API_TOKEN"),
        "{err:#}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("spin.toml");
    std::fs::write(&manifest, "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"missing.wasm\"\n").expect("write");
    let opts = ServeOptions {
        manifest: manifest.clone(),
        state_dir: Some(dir.path().join("s")),
        runtime_config: None,
        max_request_bytes: LIMIT,
        tls: None,
        limits: Default::default(),
    };
    let err = App::load_with_env(&opts, |_| None)
        .err()
        .expect("missing wasm");
    assert!(format!("{err:#}").contains("missing.wasm"), "{err:#}");

    std::fs::write(&manifest, "spin_manifest_version = 2\n[application\n").expect("write");
    let err = App::load_with_env(&opts, |_| None)
        .err()
        .expect("malformed");
    assert!(
        format!("{err:#}").contains("not a valid Spin manifest"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_spin_toml_serves_the_data_api_health_endpoint() {
    let state = tempfile::tempdir().expect("temp dir");
    let served = serve::start(&serve::app_options(state.path()), &APP_VARIABLES);
    let addr = served.addr;
    let reply = http::get(addr, "/api/health").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let json: serde_json::Value = serde_json::from_str(&reply.text).expect("JSON");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["database"], "ok");
    assert_eq!(json["service"], "wattlet-data-api");
    assert_eq!(
        http::get(addr, "/api/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http::get(addr, "/elsewhere").await.status,
        StatusCode::NOT_FOUND
    );
}
