//! The policy chain's cost per request: a researcher's `GET /api/management/meter/:uuid/
//! measurement` (96 measurements, one day at 15 minutes) on `wattlet serve` (loopback, mutual
//! TLS, one kept-alive connection) for three households with 0, 1 and 3 attached policies,
//! alternated in the same run; and `GET /api/management/meter/:uuid/disaggregation` (the same
//! authentication and meter lookup, an empty select, no chain, no access log) as the baseline.
//!
//! `cargo bench -p wattlet-e2e --bench policy_chain` (WATTLET_POLICY_N, default 1000). Needs
//! the components built (`./dev build`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wattlet_testkit::http::Connection;
use wattlet_testkit::{Cloud, env_or, unique, uuid4};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{what}: n={} mean={:.1} µs p50={:.1} µs p99={:.1} µs",
        times.len(),
        mean.as_secs_f64() * 1e6,
        percentile(&times, 0.50).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
    );
    percentile(&times, 0.50)
}

/// A household with consent and 96 measurements a day ago, 15 minutes apart; its meter.
fn household(cloud: &Cloud, policies: &[(&str, Value)]) -> String {
    let meter = uuid4();
    let email = format!("{}@example.org", unique("bench"));
    let device = cloud.register("Bench", &email, &unique("pi"), &meter);
    cloud.grant(&device);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let start = (now - 86_400) / 900 * 900;
    let batch: Vec<Value> = (0..96u64)
        .map(|i| {
            let at = humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(start + i * 900 - 86_400),
            );
            json!({ "uuid": uuid4(), "meter": meter, "measured_at": at.to_string(),
                    "data": [{ "0100100700ff": 0.4, "0100010800ff": 1000.0 + i as f64 }] })
        })
        .collect();
    let (status, body) = cloud.as_device(
        &device,
        "POST",
        "/api/household/meter/measurement",
        Some(json!({ "measurements": batch })),
    );
    assert_eq!(status, 200, "{body}");
    for (policy, parameters) in policies {
        let (status, body) = cloud.as_device(
            &device,
            "POST",
            "/api/household/policies",
            Some(json!({ "policy": policy, "parameters": parameters })),
        );
        assert_eq!(status, 201, "{body}");
    }
    meter
}

fn main() {
    let n: usize = env_or("WATTLET_POLICY_N", 1000);
    let dir = tempfile::tempdir().expect("temporary directory");
    let cloud = Cloud::start(dir.path());
    let rt = cloud.runtime().clone();
    let retention = ("retention", json!({ "months": 24 }));
    let aggregate = ("researchers-aggregate", json!({ "step_minutes": 15 }));
    let pause = (
        "pause-window",
        json!({ "ranges": [{ "from": "2001-01-01T00:00:00Z", "to": "2001-02-01T00:00:00Z" }] }),
    );
    let meters = [
        household(&cloud, &[]),
        household(&cloud, std::slice::from_ref(&retention)),
        household(&cloud, &[retention.clone(), aggregate, pause]),
    ];
    let researcher = cloud.mint("researcher");
    let bearer = format!("Bearer {researcher}");
    let headers = [("authorization", bearer.as_str())];
    let admin = cloud.device(&unique("bench-console"), "ops@example.org");
    let mut c = rt
        .block_on(Connection::open(cloud.addr, Some(admin.tls)))
        .expect("connect over mutual TLS");
    let mut get = |path: &str| {
        let started = Instant::now();
        let reply = rt.block_on(c.get(path, &headers)).expect("request");
        let elapsed = started.elapsed();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        elapsed
    };
    let reads: Vec<String> = meters
        .iter()
        .map(|m| format!("/api/management/meter/{m}/measurement"))
        .collect();
    let baseline = format!("/api/management/meter/{}/disaggregation", meters[0]);
    for _ in 0..50 {
        for path in reads.iter().chain([&baseline]) {
            get(path);
        }
    }
    let mut times: [Vec<Duration>; 4] = Default::default();
    for _ in 0..n {
        for (i, path) in reads.iter().chain([&baseline]).enumerate() {
            times[i].push(get(path));
        }
    }
    let [zero, one, three, base] = times;
    let base = report("baseline: disaggregation read (no chain, no log)", base);
    let zero = report("measurement read, 0 policies", zero);
    let one = report("measurement read, 1 policy (retention)", one);
    let three = report("measurement read, 3 policies", three);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "per policy (p50): 1 policy {:+.1} µs, 3 policies {:+.1} µs per policy; 0 policies vs baseline {:+.1} µs",
        us(one) - us(zero),
        (us(three) - us(zero)) / 3.0,
        us(zero) - us(base),
    );
}
