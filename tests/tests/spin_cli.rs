//! The same `spin.toml` on the real Spin CLI and on `wattlet serve`: routing and Spin's request
//! headers must agree.
//!
//! Runs `spin up` (Spin 4.1, from `../shared/tools/spin/get-spin`, or the binary `$WATTLET_SPIN`
//! names) on tests/spin/spin.toml beside an in-process `wattlet serve` of the same manifest, asks
//! both the same paths (exact routes, `/...` wildcards, named segments, precedence between them,
//! trailing and doubled slashes, no route) and compares what the probe components saw: status,
//! every request header (the `spin-*` ones included), the URI, path and query. Addresses and
//! client ports are the only things normalised away. Without a Spin binary the test says it was
//! skipped and passes.
//!
//! Spin runs with its own home, state and cache directories in a temporary directory and a
//! proxy that goes nowhere, so it neither writes outside the test nor reaches the network.
//!
//! Known differences, checked as such: a path no route matches gets 404 with an empty body from
//! Spin and `not found` from wattlet.

use std::net::SocketAddr;
use std::path::Path;

use hyper::{Method, StatusCode};
use serde_json::Value;
use wattlet_testkit::serve::{self, Served};
use wattlet_testkit::{NO_SPIN, PROBE_TOKEN, SpinUp, http, repo, spin_cli};

/// `wattlet serve` of the manifest, in this process; with its routes as Spin lists them.
fn wattlet(state: &Path) -> (Served, Vec<(String, String)>) {
    let served = serve::start(&serve::probe_options(state), &[("api_token", PROBE_TOKEN)]);
    // As Spin lists them after its address: the route without a trailing slash, a wildcard as
    // its prefix and " (wildcard)".
    let routes = served
        .app
        .routes()
        .map(|(raw, component)| {
            let based = raw.strip_suffix('/').unwrap_or(raw);
            let shown = match based.strip_suffix("/...") {
                Some(prefix) => format!("{prefix} (wildcard)"),
                None => based.to_owned(),
            };
            (component.to_owned(), shown)
        })
        .collect();
    (served, routes)
}

/// One answer, with the server's own address and the client's port made neutral.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    body: Body,
}

#[derive(Debug, PartialEq)]
enum Body {
    /// The probe's `headers` reply.
    Json(Value),
    Text(String),
}

async fn ask(addr: SocketAddr, path: &str) -> Answer {
    let reply = http::send(
        addr,
        Method::GET,
        path,
        b"",
        &[("user-agent", "wattlet-spin-cli-test")],
    )
    .await;
    let status = reply.status;
    let text = reply
        .text
        .replace(&addr.to_string(), "SERVER")
        .lines()
        .map(|l| match l.strip_prefix("spin-client-addr: 127.0.0.1:") {
            Some(_) => "spin-client-addr: 127.0.0.1:PORT".to_owned(),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let body = match serde_json::from_str::<Value>(&text) {
        Ok(mut json) => {
            let client = &mut json["headers"]["spin-client-addr"];
            if let Some(port) = client.as_str().and_then(|a| a.strip_prefix("127.0.0.1:")) {
                assert!(port.parse::<u16>().is_ok(), "client address {client}");
                *client = Value::from("127.0.0.1:PORT");
            }
            Body::Json(json)
        }
        Err(_) => Body::Text(text),
    };
    Answer { status, body }
}

/// Paths asked of both servers: every route kind, precedence, slashes, and no route.
const PATHS: &[&str] = &[
    "/",
    "/exact",
    "/exact/",
    "//exact//",
    "/exact/more",
    "/probe",
    "/probe/",
    "/probe/headers",
    "/probe/headers/?x=1&y=%20z",
    "/probe/headers/a/b/",
    "/probe//headers",
    "/probex/headers",
    "/PROBE/headers",
    "/restricted/headers",
    "/items",
    "/items/",
    "/items/7",
    "/items/7/",
    "/items/7/headers/a?q=1",
    "/items//headers",
    "/items/7/edit",
    "/items/7/edit/",
    "/items/7/edit/more",
    "/items/special",
    "/items/special/headers",
    "/users/ada/files/report.pdf",
    "/users/ada_lovelace/files/a%20b.txt",
    "/users/ada/files",
    "/users/ada/files/a/b",
    "/p3/headers?x=1",
    "/p3/hello",
    "/nothing/here",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_up_and_wattlet_serve_route_and_set_headers_alike() {
    let Some(spin) = spin_cli() else {
        println!("{NO_SPIN}");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (served, wattlet_routes) = wattlet(&dir.path().join("wattlet"));
    let wattlet_addr = served.addr;
    let spin_dir = dir.path().join("spin");
    let expected = wattlet_routes.len();
    let (spin_up, spin_routes) = tokio::task::spawn_blocking(move || {
        let spin_up = SpinUp::start(
            &spin,
            &repo().join("tests/spin/spin.toml"),
            Some(&repo().join("tests/spin/runtime-config.toml")),
            &spin_dir,
            &[("api_token", PROBE_TOKEN)],
        );
        let routes = spin_up.routes(expected);
        (spin_up, routes)
    })
    .await
    .expect("spin up");

    assert_eq!(
        spin_routes, wattlet_routes,
        "Spin and wattlet order the routes differently (most specific first)"
    );

    let mut differences = Vec::new();
    let mut headers_compared = 0;
    for path in PATHS {
        let spin = ask(spin_up.addr, path).await;
        let ours = ask(wattlet_addr, path).await;
        let no_route =
            spin.status == StatusCode::NOT_FOUND && spin.body == Body::Text(String::new());
        if no_route {
            // The one known difference: the host's own 404 body.
            assert_eq!(
                ours,
                Answer {
                    status: StatusCode::NOT_FOUND,
                    body: Body::Text("not found".to_owned())
                },
                "{path}: Spin found no route"
            );
        } else if spin != ours {
            differences.push(format!("{path}:\n  spin:    {spin:?}\n  wattlet: {ours:?}"));
        } else if matches!(spin.body, Body::Json(_)) {
            headers_compared += 1;
        }
    }
    println!(
        "{} paths asked, {headers_compared} with the probe's headers compared",
        PATHS.len()
    );
    // Most paths reach the probe's `headers` reply: a probe change must not hollow the test out.
    assert!(
        headers_compared >= 20,
        "only {headers_compared} header replies"
    );
    assert!(
        differences.is_empty(),
        "Spin and wattlet answer differently:\n{}",
        differences.join("\n")
    );
}
