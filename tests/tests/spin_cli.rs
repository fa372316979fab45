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

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use wattlet_serve::server::{App, ServeOptions, serve};

const TOKEN: &str = "t0ken";

/// How long Spin may take to compile the probes and start listening.
const SPIN_START: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Spin CLI to compare with: `$WATTLET_SPIN`, else what `../shared/tools/spin/get-spin`
/// prints; `None` when neither is there.
fn spin_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WATTLET_SPIN") {
        return Some(PathBuf::from(path));
    }
    let get_spin = repo().join("../shared/tools/spin/get-spin");
    if !get_spin.is_file() {
        return None;
    }
    let output = Command::new("bash")
        .arg(&get_spin)
        .output()
        .expect("run get-spin");
    assert!(
        output.status.success(),
        "{} failed: {}",
        get_spin.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.is_file().then_some(path)
}

/// `spin up` on a port of its choosing; killed when dropped.
struct SpinUp {
    child: Child,
    addr: SocketAddr,
    /// The "Available Routes" Spin printed, in its order: `(component, route)`.
    routes: Vec<(String, String)>,
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        // `spin up` serves from a child process of its own (`spin trigger http`), which outlives
        // a killed parent: end the process group this test started it in.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl SpinUp {
    /// Starts Spin and waits until it has listed `expected_routes` routes.
    fn start(spin: &Path, dir: &Path, expected_routes: usize) -> SpinUp {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("home");
        let mut child = Command::new(spin)
            .arg("up")
            .arg("--from")
            .arg(repo().join("tests/spin/spin.toml"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--runtime-config-file")
            .arg(repo().join("tests/spin/runtime-config.toml"))
            .arg("--disable-cache")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("SPIN_VARIABLE_API_TOKEN", TOKEN)
            // Anything Spin might fetch goes to a proxy that is not there; the probes are only
            // asked for their headers, so no outbound request is expected anyway.
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start spin up");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("spin: {line}");
                // Once the test has what it needs nobody listens; keep draining so Spin never
                // blocks on a full pipe.
                let _ = sender.send(line);
            }
        });
        let mut addr = None;
        let mut routes = Vec::new();
        let deadline = std::time::Instant::now() + SPIN_START;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match receiver.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => panic!("spin up did not list its routes within {SPIN_START:?}"),
            };
            let line = line.trim();
            if let Some(url) = line.strip_prefix("Serving http://") {
                addr = Some(url.parse::<SocketAddr>().expect("Spin's address"));
            } else if let Some(addr) = addr
                && let Some((component, url)) = line.split_once(": ")
                && let Some(route) = url.strip_prefix(&format!("http://{addr}"))
            {
                routes.push((component.to_owned(), route.to_owned()));
            }
            // Spin prints its routes and then nothing until a request comes.
            if routes.len() == expected_routes {
                break;
            }
        }
        SpinUp {
            child,
            addr: addr.expect("Spin printed its address"),
            routes,
        }
    }
}

/// `wattlet serve` of the same manifest, in this process.
async fn wattlet(state: &Path) -> (SocketAddr, Vec<(String, String)>) {
    let options = ServeOptions {
        manifest: repo().join("tests/spin/spin.toml"),
        state_dir: Some(state.to_path_buf()),
        runtime_config: Some(repo().join("tests/spin/runtime-config.toml")),
        max_request_bytes: 64 * 1024,
        tls: None,
    };
    let env = |k: &str| (k == "SPIN_VARIABLE_API_TOKEN").then(|| TOKEN.to_owned());
    let app = Arc::new(App::load_with_env(&options, env).expect(
        "probe app loads (build it first: cargo build --profile component --target wasm32-wasip2 -p wattlet-spin-probe -p wattlet-p3-probe)",
    ));
    // As Spin lists them after its address: the route without a trailing slash, a wildcard as
    // its prefix and " (wildcard)".
    let routes = app
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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(app, listener, std::future::pending()));
    (addr, routes)
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
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", addr.to_string())
        .header("user-agent", "wattlet-spin-cli-test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes)
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
    let Some(spin) = spin_binary() else {
        println!(
            "skipped: no Spin CLI (../shared/tools/spin/get-spin is absent and WATTLET_SPIN unset)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (wattlet_addr, wattlet_routes) = wattlet(&dir.path().join("wattlet")).await;
    let spin_dir = dir.path().to_path_buf();
    let expected = wattlet_routes.len();
    let spin_up = tokio::task::spawn_blocking(move || SpinUp::start(&spin, &spin_dir, expected))
        .await
        .expect("spin up");

    assert_eq!(
        spin_up.routes, wattlet_routes,
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
