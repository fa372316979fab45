//! The one home of wattlet's test helpers, all real parts: the cloud application (`spin.toml`,
//! the Data API component) served by `wattlet serve`'s library over mutual TLS on loopback, a
//! CA with a server and device certificates, simulated SML meters on pseudo-terminals, the
//! binaries as child processes (under an emulator when cross-built), waiting with patience,
//! metrics scrapes and a reproducible PRNG.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use serde_json::{Value, json};
use wattlet_api_client::ApiClient;
use wattlet_meter_sim as sim;
use wattlet_pki::{self as pki, CaDir, DeviceRequest, ServerRequest};
use wattlet_serve::server::{App, ServeOptions, serve};
use wattlet_serve::tls::{ClientAuth, TlsOptions};

pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cloud, served on its own runtime thread for the whole test.
pub struct Cloud {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub ca: CaDir,
    admin_tls: Arc<ClientConfig>,
    runtime: tokio::runtime::Runtime,
}

impl Cloud {
    pub fn start(dir: &Path) -> Cloud {
        let ca =
            CaDir::init(&dir.join("ca"), "test CA", pki::DEFAULT_CA_VALIDITY, false).expect("CA");
        let server = dir.join("server");
        ca.issue_server(&ServerRequest::default())
            .expect("server cert")
            .write(&server)
            .expect("write server cert");
        let options = ServeOptions {
            manifest: repo().join("spin.toml"),
            state_dir: Some(dir.join("cloud")),
            runtime_config: None,
            // As `wattlet up`: a full upload batch (1000 measurements) fits.
            max_request_bytes: 16 << 20,
            tls: Some(TlsOptions {
                cert: server.with_extension("crt"),
                key: server.with_extension("key"),
                client_ca: ca.ca_cert_path(),
                crl: Some(ca.crl_path()),
                client_auth: ClientAuth::Optional,
            }),
        };
        let env =
            |name: &str| (name == "SPIN_VARIABLE_ADMIN_TOKEN").then(|| ADMIN_TOKEN.to_owned());
        let app = Arc::new(App::load_with_env(&options, env).expect(
            "the cloud app loads (the README's test command builds the data-api component first)",
        ));
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(serve(app, listener, std::future::pending()));
        let admin_tls = Arc::new(
            wattlet_tls::anonymous_client_tls_config(&ca.ca_cert_path()).expect("admin TLS"),
        );
        Cloud {
            addr,
            dir: dir.to_path_buf(),
            ca,
            admin_tls,
            runtime,
        }
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Registers a household with one device and one electricity meter; returns the device's
    /// identity (certificate files and a TLS client configuration).
    pub fn register(&self, name: &str, email: &str, device: &str, meter: &str) -> Device {
        let (status, body) = self.admin(
            "POST",
            "/api/management/household",
            Some(json!({
                "name": name, "email": email, "device": device,
                "meters": [{"uuid": meter, "type": "ELECTRICITY", "model": "MT681"}],
                "location": {"latitude": 50.9375, "longitude": 6.9603},
            })),
        );
        assert_eq!(status, 201, "register {name}: {body}");
        self.device(device, email)
    }

    /// A certificate for `device` (registered or not) of participant `email`.
    pub fn device(&self, device: &str, email: &str) -> Device {
        let prefix = self.dir.join(format!("device-{device}"));
        let issued = self
            .ca
            .issue_device(&DeviceRequest::new(device, email))
            .expect("device cert");
        issued.write(&prefix).expect("write device cert");
        let cert = prefix.with_extension("crt");
        let key = prefix.with_extension("key");
        let tls = Arc::new(
            wattlet_tls::client_tls_config(&cert, &key, &self.ca.ca_cert_path())
                .expect("device TLS"),
        );
        Device {
            id: device.to_owned(),
            cert,
            key,
            serial: issued.serial_hex,
            tls,
        }
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(&self.admin_tls, method, path, Some(ADMIN_TOKEN), body)
    }

    pub fn as_device(
        &self,
        device: &Device,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(&device.tls, method, path, None, body)
    }

    pub fn call(
        &self,
        tls: &Arc<ClientConfig>,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut client = ApiClient::new(&self.url(), Some(tls.clone())).expect("client");
        if let Some(token) = bearer {
            client = client.with_bearer(token);
        }
        self.runtime
            .block_on(client.send(method, path, body.as_ref(), &[]))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Every measurement uuid the cloud holds for `meter`, as its owner sees them.
    pub fn measurements(&self, owner: &Device, meter: &str) -> Vec<String> {
        let (status, body) = self.as_device(
            owner,
            "GET",
            &format!("/api/household/meter/{meter}/measurement?limit=10000"),
            None,
        );
        assert_eq!(status, 200, "read measurements: {body}");
        let mut uuids: Vec<String> = body["measurements"]
            .as_array()
            .expect("measurements")
            .iter()
            .map(|m| m["uuid"].as_str().expect("uuid").to_owned())
            .collect();
        uuids.sort();
        uuids
    }
}

pub struct Device {
    pub id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: String,
    pub tls: Arc<ClientConfig>,
}

/// A simulated SML meter on a pty, writing a frame every `interval` until dropped.
pub struct Meter {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    pub fn start(interval: Duration) -> Meter {
        let pty = sim::Pty::open().expect("pty");
        let path = pty.slave_path().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let options = sim::Options {
            source: sim::Source::Synthetic {
                server_id: vec![0x0a, 0x01, 0x49, 0x53, 0x4b, 0x00, 0x04, 0x58, 0x19, 0x41],
                start_wh: 10_000_000,
                mean_power_w: 2_000,
            },
            interval,
            count: None,
        };
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            sim::run(&pty, &options, &flag).expect("meter simulator");
        });
        Meter {
            path,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes an edge configuration with a journal and returns its path.
pub fn edge_config(
    dir: &Path,
    cloud: &Cloud,
    device: &Device,
    meter_uuid: &str,
    meter_path: &Path,
    cycles: (&str, &str, &str),
) -> PathBuf {
    let (measure, report, consent) = cycles;
    let text = format!(
        r#"cloud = "{cloud}"
state_dir = "{state}"
journal = true

[identity]
certificate = "{cert}"
key = "{key}"
cloud_ca = "{ca}"

[cycles]
measure = "{measure}"
report = "{report}"
consent = "{consent}"

[[meter]]
uuid = "{meter_uuid}"
device = "{meter_path}"
protocol = "sml"
"#,
        cloud = cloud.url(),
        state = dir.join("edge-state").display(),
        cert = device.cert.display(),
        key = device.key.display(),
        ca = cloud.ca.ca_cert_path().display(),
        meter_path = meter_path.display(),
    );
    std::fs::create_dir_all(dir).expect("create the edge's directory");
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).expect("write edge config");
    path
}

/// A binary of the workspace as a command: pass `env!("CARGO_BIN_EXE_<name>")`. Cross-built
/// tests run under an emulator (cargo's target runner, e.g. `qemu-aarch64`) that cannot start a
/// foreign binary by itself where the kernel has no binfmt_misc handler for it:
/// `WATTLET_TEST_RUNNER` (`./dev cross` sets it) is put in front of the binary, split at
/// whitespace.
pub fn command(bin: &str) -> Command {
    let runner = std::env::var("WATTLET_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(bin);
            command
        }
        None => Command::new(bin),
    }
}

/// The workspace binary `name` of the calling test's package as a [`command`], e.g.
/// `binary!("wattlet")`.
#[macro_export]
macro_rules! binary {
    ($name:literal) => {
        $crate::command(env!(concat!("CARGO_BIN_EXE_", $name)))
    };
}

/// Starts `wattlet-edge run` (`bin`: `env!("CARGO_BIN_EXE_wattlet-edge")`); its log is
/// appended to `edge.log` next to the configuration (a file, not a pipe: nobody has to drain it
/// while the edge runs).
pub fn spawn_edge(bin: &str, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(edge_log(config))
        .expect("open edge.log");
    command(bin)
        .args(["run", "--config"])
        .arg(config)
        .env("WATTLET_LOG", "wattlet_edge=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the edge daemon")
}

pub fn edge_log(config: &Path) -> PathBuf {
    config.with_file_name("edge.log")
}

/// The edge's journal: every measurement it ever took (uuid), sorted.
pub fn journal(dir: &Path) -> Vec<String> {
    let path = dir.join("edge-state").join("buffer.sqlite");
    if !path.exists() {
        return Vec::new();
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open buffer");
    if !has_table(&db, "journal") {
        // The edge created the file and has not created its tables yet.
        return Vec::new();
    }
    let mut statement = db
        .prepare("SELECT uuid FROM journal ORDER BY uuid")
        .expect("query");
    statement
        .query_map([], |row| row.get(0))
        .expect("journal")
        .collect::<Result<_, _>>()
        .expect("journal rows")
}

/// Measurements still waiting in the edge's buffer (none before the edge created it).
pub fn pending(dir: &Path) -> usize {
    let path = dir.join("edge-state").join("buffer.sqlite");
    if !path.exists() {
        return 0;
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open buffer");
    if !has_table(&db, "measurement") {
        return 0;
    }
    db.query_row("SELECT count(*) FROM measurement", [], |row| row.get(0))
        .expect("count")
}

fn has_table(db: &rusqlite::Connection, name: &str) -> bool {
    db.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |row| row.get(0),
    )
    .expect("read the schema")
}

/// How many times longer than natively the tests may wait: `WATTLET_TEST_PATIENCE` (default 1;
/// `./dev cross` sets it for qemu-user, which runs everything many times slower).
pub fn patience() -> u32 {
    std::env::var("WATTLET_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&p| p >= 1)
        .unwrap_or(1)
}

/// Polls `check` every 100 ms until it holds or `limit` (times [`patience`]) passes.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit * patience();
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free port on loopback (bound, then released).
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// `GET /metrics` from an admin listener: the whole HTTP answer, headers included.
pub fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nhost: metrics\r\n\r\n")
        .expect("request");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("response");
    page
}

/// The value of one sample line of a Prometheus text page, 0 when absent.
pub fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// xorshift64*: a fixed-seed generator, enough to vary chunk sizes, kill instants and inputs
/// reproducibly without a dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for tests (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A local `nats-server -js` on a free port, its store and log in `dir` (Debian's nats-server;
/// `./dev test` installs it).
pub fn nats(dir: &Path) -> wattlet_workers::server::LocalNats {
    wattlet_workers::server::LocalNats::start(
        free_port(),
        &dir.join("jetstream"),
        &dir.join("nats-server.log"),
    )
    .expect("nats-server starts (./dev test installs it)")
}

/// The real Spin CLI that `../shared/tools/spin/get-spin` provides, or `None` where `../shared`
/// is absent (a test then says it was skipped).
pub fn spin_cli() -> Option<PathBuf> {
    let get = repo().join("../shared/tools/spin/get-spin");
    if !get.is_file() {
        return None;
    }
    let output = Command::new(&get).output().expect("run get-spin");
    assert!(
        output.status.success(),
        "get-spin failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    ))
}

/// `spin up` of a manifest on a free loopback port, its state and log in `dir`; stopped when
/// dropped.
pub struct SpinUp {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl SpinUp {
    /// Starts `spin` (from [`spin_cli`]) and waits until its port accepts connections.
    pub fn start(spin: &Path, manifest: &Path, dir: &Path, variables: &[(&str, &str)]) -> SpinUp {
        let addr = free_port();
        std::fs::create_dir_all(dir).expect("create Spin's directory");
        let log = dir.join("spin.log");
        let output = std::fs::File::create(&log).expect("spin.log");
        let mut command = Command::new(spin);
        command
            .arg("up")
            .arg("--from")
            .arg(manifest)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            // Spin would otherwise look for updates and plugins on the internet.
            .env("SPIN_DISABLE_UPDATE_CHECK", "1")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log handle"))
            .stderr(output);
        for (name, value) in variables {
            command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        let child = command.spawn().expect("spawn spin up");
        let mut up = SpinUp { addr, log, child };
        wait_for(Duration::from_secs(120), "spin up to listen", || {
            if let Ok(Some(status)) = up.child.try_wait() {
                panic!(
                    "spin up exited ({status}): {}",
                    std::fs::read_to_string(&up.log).unwrap_or_default()
                );
            }
            std::net::TcpStream::connect(up.addr).is_ok()
        });
        up
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
