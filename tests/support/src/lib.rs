//! The one home of wattlet's test helpers, all real parts. Test files and benches use these and
//! keep no copies of their own.
//!
//! - [`serve`]: an application (the probe, or the repository's `spin.toml`) served in-process by
//!   `wattlet serve`'s library on loopback, plain or over mutual TLS; [`serve_child`]: the
//!   `wattlet serve` command as a child process (signals, an open-file limit, its log);
//! - [`flood`]: hostile clients (idle, slow headers, slow bodies) that reconnect when closed;
//! - [`http`]: HTTP/1.1 clients (plain and mutual TLS) that show status, headers and body;
//! - [`pki`]: a CA with a server certificate, device certificates;
//! - [`Cloud`]: the Data API over mutual TLS with its CA, and clients as a device or the
//!   administrator;
//! - [`edge`]: simulated SML meters on pseudo-terminals, the `wattlet-edge` daemon (a child
//!   process or in this process), its buffer;
//! - [`process`]: the binaries as child processes (under an emulator when cross-built), commands
//!   run to their end, `nats-server`;
//! - [`prometheus`]: a real Prometheus server scraping given targets, and `promtool`;
//! - [`spin`]: the real Spin CLI;
//! - [`kbs`]: the key broker's client side (attest with simulated evidence), household keys;
//! - [`updates`]: a signed update repository on disk and a device's update agent reading it;
//! - [`scan`]: byte scans of files for personal data left behind;
//! - waiting with patience, free ports, unique names, UUIDs, settings from the environment,
//!   metrics scrapes and a reproducible PRNG ([`Rng`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod clock;
pub mod cloud;
pub mod edge;
pub mod flood;
pub mod heap;
pub mod http;
pub mod kbs;
pub mod metrics;
pub mod pki;
pub mod process;
pub mod prometheus;
pub mod rng;
pub mod scan;
pub mod serve;
pub mod serve_child;
pub mod spin;
pub mod updates;

pub use cloud::{
    ADMIN_TOKEN, APP_VARIABLES, Cloud, IDENTITY_KEY, KEY_ENCRYPTION_KEY, household,
    ingress_identity, ingress_identity_at, simulated_policy, stream_worker_measurement,
    worker_measurement,
};
pub use edge::{
    ConsentingEdge, InProcessEdge, Meter, add_meter, edge_config, edge_log, journal, journal_times,
    measured_last_at, pending, set_aside, spawn_edge,
};
pub use metrics::{metric, sample, scrape};
pub use pki::Device;
pub use process::{
    Ran, Stopped, command, nats, nats_cluster, run, start_up, start_up_with, terminate,
};
pub use rng::Rng;
pub use serve::{PROBE_TOKEN, Served};
pub use serve_child::ServeChild;
pub use spin::{NO_SPIN, SpinUp, spin_cli};

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A name no other call in this test binary gets: `prefix`, the process id and a counter.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A random (v4) UUID, as text.
pub fn uuid4() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The setting `name` from the environment, parsed, or `default` when it is not set; panics
/// when it is set to something that does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a valid value")),
        Err(_) => default,
    }
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
