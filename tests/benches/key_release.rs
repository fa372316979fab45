//! Key release latency through the key broker on `wattlet serve` (loopback, mutual TLS, one
//! kept-alive connection): attest once with simulated evidence, then time N
//! `GET /kbs/v0/resource/household-key/{id}`, and in the same run N `GET /api/health` of the
//! Data API as the baseline (the same host, TLS and connection; no database).
//!
//! `cargo bench -p wattlet-e2e --bench key_release` (WATTLET_KBS_N, default 2000). Needs the
//! components built (`./dev test` or build_components).

use std::time::{Duration, Instant};

use wattlet_sealing::release::{Recipient, Released};
use wattlet_testkit::http::Connection;
use wattlet_testkit::kbs::{self, SIMULATED_POLICY};
use wattlet_testkit::{Cloud, KEY_ENCRYPTION_KEY, env_or, unique};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let (p50, p99) = (percentile(&times, 0.50), percentile(&times, 0.99));
    println!(
        "{what}: n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
        times.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    (p50, p99)
}

fn main() {
    let n: usize = env_or("WATTLET_KBS_N", 2000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let cloud = Cloud::start_with(dir.path(), &[("attestation_policy", SIMULATED_POLICY)]);
    let rt = cloud.runtime().clone();
    let device = cloud.device(&unique("bench-host"), "ops@example.org");
    let mut c = rt
        .block_on(Connection::open(cloud.addr, Some(device.tls)))
        .expect("connect over mutual TLS");
    let host = Recipient::generate();
    let token = rt.block_on(kbs::attest(&mut c, &host));
    let (id, key) = kbs::household_key(&cloud.database(), KEY_ENCRYPTION_KEY);

    // Warm-up (instance pools, page cache), then alternate the two requests so both see the
    // same machine.
    for _ in 0..50 {
        let reply = rt.block_on(kbs::release(&mut c, &token, id.as_str()));
        assert_eq!(reply.status, 200, "{}", reply.text);
        let reply = rt.block_on(c.get("/api/health", &[])).expect("health");
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let mut releases = Vec::with_capacity(n);
    let mut health = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let reply = rt.block_on(kbs::release(&mut c, &token, id.as_str()));
        releases.push(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text);
        if i == 0 {
            let released: Released = serde_json::from_value(reply.body).expect("released");
            assert_eq!(host.open(&id, &released).expect("open"), key);
        }
        let started = Instant::now();
        let reply = rt.block_on(c.get("/api/health", &[])).expect("health");
        health.push(started.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let (release_p50, release_p99) = report(
        "key release (GET /kbs/v0/resource/household-key/…)",
        releases,
    );
    let (health_p50, health_p99) = report("baseline (GET /api/health)", health);
    println!(
        "ratio key release / baseline: p50 {:.2}x p99 {:.2}x; goal p99 < 10 ms: {}",
        release_p50.as_secs_f64() / health_p50.as_secs_f64(),
        release_p99.as_secs_f64() / health_p99.as_secs_f64(),
        if release_p99 < Duration::from_millis(10) {
            "met"
        } else {
            "NOT met"
        }
    );
}
