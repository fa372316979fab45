//! Resident memory of `wattlet-edge` at rest: a release binary reading a simulated meter (one
//! telegram a second) with consent granted, measuring every 2 s and uploading every 4 s to the
//! cloud over mutual TLS. After a 20 s warm-up, VmRSS is sampled once a second for
//! `BENCH_SECONDS` (default 30). Goal: below 40 MB on the Raspberry Pi.
//!
//! `cargo bench -p wattlet-edge --bench edge_rss`

use std::time::Duration;

use wattlet_testkit::{ConsentingEdge, env_or, spawn_edge};

const METER: &str = "0d6f2a11-4b5c-4d7e-8f90-a1b2c3d4e5f6";

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", 30);
    let temp = tempfile::tempdir().expect("temp dir");
    let edge = ConsentingEdge::start(
        temp.path(),
        METER,
        Duration::from_secs(1),
        ("2s", "4s", "10s"),
    );
    let mut daemon = spawn_edge(env!("CARGO_BIN_EXE_wattlet-edge"), &edge.config);
    let pid = daemon.id();
    std::thread::sleep(Duration::from_secs(20));
    let mut samples = Vec::new();
    for _ in 0..seconds {
        samples.push(status_kib(pid, "VmRSS:").expect("edge is running"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let peak = status_kib(pid, "VmHWM:").expect("edge is running");
    daemon.kill().expect("kill");
    daemon.wait().expect("wait");
    let measured = edge.cloud.measurements(&edge.device, METER).len();
    samples.sort_unstable();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "edge idle RSS over {seconds} s: min {:.1} MiB, median {:.1} MiB, max {:.1} MiB; peak (VmHWM) {:.1} MiB; {measured} measurements reached the cloud; goal < 40 MB",
        mib(samples[0]),
        mib(samples[samples.len() / 2]),
        mib(samples[samples.len() - 1]),
        mib(peak),
    );
    assert!(measured > 0, "the edge under test measured nothing");
}
