//! `wattlet serve` of a Spin component vs a native axum server doing the same work, in the same
//! run, driven by the same load generator on loopback.
//!
//! - wattlet: the Spin probe (tests/components/spin-probe, manifest tests/spin/spin.toml) served
//!   in-process (`App` + `serve`, as `wattlet serve` does) on a multi-thread tokio runtime;
//!   `GET /probe/hello` (trivial handler) and `GET /probe/sqlite-insert` (one row into table
//!   `bench` of the `default` database per request); and the WASIp3 probe
//!   (tests/components/p3-probe, a `wasi:http/handler@0.3.0` component) `GET /p3/hello`.
//! - native: axum 0.8 + rusqlite with the host's SQLite settings (WAL, busy_timeout 5 s, one
//!   shared `Mutex<Connection>`) running the probe's statements (`CREATE TABLE IF NOT EXISTS`,
//!   then `INSERT ... RETURNING id`) and answering the same body; `GET /hello`, `GET /sqlite-insert`,
//!   `GET /p3-hello`.
//! - load: a hyper 1 HTTP/1.1 client, `BENCH_CONNECTIONS` keep-alive connections (default 16)
//!   each sending requests back-to-back, 1 s warm-up then `BENCH_SECONDS` (default 5) measured;
//!   every latency recorded; every response must be 200 with the expected body.
//!   `BENCH_ONLY=hello` (or `sqlite-insert`, `p3-hello`) runs one scenario (for profiling).
//!
//! Servers and load generator run on separate tokio runtimes but share the machine's cores.
//!
//! Run: `cargo build --profile component --target wasm32-wasip2 -p wattlet-spin-probe -p wattlet-p3-probe &&
//!       cargo bench -p wattlet-serve --bench serve`

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use rusqlite::Connection;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use wattlet_runtime::metrics::MetricsSource;
use wattlet_serve::metrics::Metrics;
use wattlet_testkit::http::Connection as HttpConnection;
use wattlet_testkit::serve::{self, Served};
use wattlet_testkit::{PROBE_TOKEN, env_or, repo};

const WARM_UP: Duration = Duration::from_secs(1);
const PROBE: &str = "target/wasm32-wasip2/component/wattlet_spin_probe.wasm";
const BUILD_PROBE: &str =
    "cargo build --profile component --target wasm32-wasip2 -p wattlet-spin-probe";

fn server_runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .expect("server runtime")
}

/// A server on its own runtime; dropping it stops it.
struct Running {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _runtime: Runtime,
}

fn bind(runtime: &Runtime) -> (TcpListener, SocketAddr) {
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

// --- wattlet serve ---

fn start_wattlet(state: &Path) -> Served {
    let probe = repo().join(PROBE);
    if !probe.is_file() {
        eprintln!(
            "error: the Spin probe component is not built ({} is missing).\n\
             Build it first, at the repository root:\n    {BUILD_PROBE}",
            probe.display()
        );
        std::process::exit(2);
    }
    serve::start(&serve::probe_options(state), &[("api_token", PROBE_TOKEN)])
}

/// `(sum, count)` of the host's `wattlet_http_instantiation_seconds` histogram of the probe.
fn instantiation(metrics: &Metrics, component: &str) -> (f64, u64) {
    let text = metrics.encode();
    let value = |name: &str| {
        let prefix =
            format!("wattlet_http_instantiation_seconds_{name}{{component=\"{component}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |v| v.trim().parse::<f64>().expect("metric value"))
    };
    (value("sum"), value("count") as u64)
}

// --- native axum + rusqlite ---

type Db = Arc<Mutex<Connection>>;

/// The host's settings for a Spin SQLite database (edge-host/src/spin/storage.rs).
fn open_db(path: &Path) -> Db {
    let connection = Connection::open(path).expect("open native database");
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .expect("WAL");
    connection
        .busy_timeout(Duration::from_secs(5))
        .expect("busy_timeout");
    Arc::new(Mutex::new(connection))
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn native_hello() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(CONTENT_TYPE, TEXT)], "hello")
}

/// The p3 probe's body.
const P3_HELLO: &str = "hello from wasi:http@0.3\n";

async fn native_p3_hello() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(CONTENT_TYPE, TEXT)], P3_HELLO)
}

/// The probe's `/sqlite-insert`, statement for statement.
async fn native_insert(
    State(db): State<Db>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), (StatusCode, String)> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let db = db.lock().expect("database lock");
    let fail = |e: rusqlite::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    db.prepare_cached(
        "CREATE TABLE IF NOT EXISTS bench \
         (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER, payload TEXT)",
    )
    .and_then(|mut s| s.execute([]))
    .map_err(fail)?;
    let id: i64 = db
        .prepare_cached("INSERT INTO bench (at, payload) VALUES (?, ?) RETURNING id")
        .and_then(|mut s| s.query_row((at, "wattlet bench"), |row| row.get(0)))
        .map_err(fail)?;
    Ok(([(CONTENT_TYPE, TEXT)], id.to_string()))
}

fn start_native(db_path: &Path) -> Running {
    let db = open_db(db_path);
    let router = axum::Router::new()
        .route("/hello", axum::routing::get(native_hello))
        .route("/sqlite-insert", axum::routing::get(native_insert))
        .route("/p3-hello", axum::routing::get(native_p3_hello))
        .with_state(db);
    let runtime = server_runtime("native-server");
    let (listener, addr) = bind(&runtime);
    let (stop, stopped) = oneshot::channel::<()>();
    runtime.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .expect("axum serve");
    });
    Running {
        addr,
        _stop: stop,
        _runtime: runtime,
    }
}

// --- load generator ---

#[derive(Clone, Copy)]
enum Expect {
    Text(&'static str),
    RowId,
}

impl Expect {
    fn accepts(self, body: &[u8]) -> bool {
        match self {
            Expect::Text(text) => body == text.as_bytes(),
            Expect::RowId => {
                !body.is_empty() && body.iter().all(u8::is_ascii_digit) && body != b"0"
            }
        }
    }
}

struct Load {
    requests: usize,
    elapsed: Duration,
    /// Sorted, nanoseconds.
    latencies: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        Duration::from_nanos(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
}

#[derive(Default)]
struct ConnStats {
    latencies: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

impl ConnStats {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

/// One keep-alive connection sending `GET path` back-to-back until `end`; latencies of requests
/// started at or after `measure_from` are recorded.
async fn connection(
    addr: SocketAddr,
    path: &'static str,
    expect: Expect,
    measure_from: Instant,
    end: Instant,
) -> ConnStats {
    let mut out = ConnStats::default();
    let mut connection = match HttpConnection::open(addr, None).await {
        Ok(connection) => connection,
        Err(e) => {
            out.error(format!("{e:#}"));
            return out;
        }
    };
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let measured = started >= measure_from;
        let outcome = match connection.fetch(Method::GET, path, Bytes::new(), &[]).await {
            Err(e) => Err(format!("{e:#}")),
            Ok((head, body)) if head.status != StatusCode::OK => Err(format!(
                "status {}: {}",
                head.status,
                String::from_utf8_lossy(&body)
            )),
            Ok((_, body)) if !expect.accepts(&body) => Err(format!(
                "unexpected body {:?}",
                String::from_utf8_lossy(&body)
            )),
            Ok(_) => Ok(()),
        };
        match outcome {
            Ok(()) if measured => out.latencies.push(started.elapsed().as_nanos() as u64),
            Ok(()) => {}
            Err(message) => {
                out.error(message);
                // A failed connection stays failed; stop rather than spin.
                if connection.is_closed() {
                    break;
                }
            }
        }
    }
    out
}

fn load(
    client: &Runtime,
    addr: SocketAddr,
    path: &'static str,
    expect: Expect,
    connections: usize,
    duration: Duration,
) -> Load {
    client.block_on(async move {
        let measure_from = Instant::now() + WARM_UP;
        let end = measure_from + duration;
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(addr, path, expect, measure_from, end)))
            .collect();
        let mut load = Load {
            requests: 0,
            elapsed: duration,
            latencies: Vec::new(),
            errors: 0,
            first_error: None,
        };
        for task in tasks {
            let c = task.await.expect("load task");
            load.latencies.extend(c.latencies);
            load.errors += c.errors;
            if load.first_error.is_none() {
                load.first_error = c.first_error;
            }
        }
        // Requests started before `end` finish after it: measure up to the last one.
        load.elapsed = Instant::now().saturating_duration_since(measure_from);
        load.requests = load.latencies.len();
        load.latencies.sort_unstable();
        load
    })
}

// --- report ---

struct Row {
    scenario: &'static str,
    server: &'static str,
    load: Load,
    /// Mean per-request instantiation time from the host's histogram (wattlet only).
    instantiation: Option<Duration>,
}

fn fmt_latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn main() {
    let seconds: f64 = env_or("BENCH_SECONDS", 5.0);
    let connections: usize = env_or("BENCH_CONNECTIONS", 16);
    assert!(
        seconds > 0.0 && connections > 0,
        "BENCH_SECONDS and BENCH_CONNECTIONS must be > 0"
    );
    let duration = Duration::from_secs_f64(seconds);

    let wattlet_state = tempfile::tempdir().expect("temp dir");
    let native_state = tempfile::tempdir().expect("temp dir");
    let wattlet = start_wattlet(wattlet_state.path());
    let metrics = wattlet.app.metrics.clone();
    let native = start_native(&native_state.path().join("sqlite_db.db"));
    let client = tokio::runtime::Builder::new_multi_thread()
        .thread_name("load")
        .enable_all()
        .build()
        .expect("client runtime");

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "serve bench: {connections} connections, {} s warm-up + {seconds} s per scenario, \
         HTTP/1.1 keep-alive on loopback; servers and load generator share {cores} cores",
        WARM_UP.as_secs()
    );

    let scenarios: [(&str, &str, &str, Expect); 3] = [
        ("hello", "/probe/hello", "/hello", Expect::Text("hello")),
        (
            "sqlite-insert",
            "/probe/sqlite-insert",
            "/sqlite-insert",
            Expect::RowId,
        ),
        ("p3-hello", "/p3/hello", "/p3-hello", Expect::Text(P3_HELLO)),
    ];
    let mut rows = Vec::new();
    // BENCH_ONLY=<scenario> runs one scenario (for profiling).
    let only = std::env::var("BENCH_ONLY").ok();
    for (scenario, wattlet_path, native_path, expect) in scenarios {
        if only.as_deref().is_some_and(|o| o != scenario) {
            continue;
        }
        let component = wattlet_path
            .split('/')
            .nth(1)
            .expect("route names a component");
        let before = instantiation(&metrics, component);
        let load_w = load(
            &client,
            wattlet.addr,
            wattlet_path,
            expect,
            connections,
            duration,
        );
        let after = instantiation(&metrics, component);
        let count = after.1.saturating_sub(before.1);
        let mean =
            (count > 0).then(|| Duration::from_secs_f64((after.0 - before.0) / count as f64));
        rows.push(Row {
            scenario,
            server: "wattlet serve",
            load: load_w,
            instantiation: mean,
        });
        let load_n = load(
            &client,
            native.addr,
            native_path,
            expect,
            connections,
            duration,
        );
        rows.push(Row {
            scenario,
            server: "native axum",
            load: load_n,
            instantiation: None,
        });
    }

    println!();
    println!(
        "| scenario | server | req/s | p50 | p99 | instantiation (mean) | wattlet/native req/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for pair in rows.chunks(2) {
        let ratio = pair[0].load.per_second() / pair[1].load.per_second();
        for (i, row) in pair.iter().enumerate() {
            println!(
                "| {} | {} | {:.0} | {} | {} | {} | {} |",
                row.scenario,
                row.server,
                row.load.per_second(),
                fmt_latency(row.load.percentile(50.0)),
                fmt_latency(row.load.percentile(99.0)),
                row.instantiation.map_or(String::new(), fmt_latency),
                if i == 0 {
                    format!("**{ratio:.2}×**")
                } else {
                    String::new()
                },
            );
        }
    }

    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.load.errors > 0 || r.load.requests == 0)
        .collect();
    if !failed.is_empty() {
        for row in failed {
            eprintln!(
                "error: {} on {}: {} errors, {} successful requests; first error: {}",
                row.scenario,
                row.server,
                row.load.errors,
                row.load.requests,
                row.load.first_error.as_deref().unwrap_or("none")
            );
        }
        std::process::exit(1);
    }
    println!("\nerrors: 0 (every response 200 with the expected body)");
}
