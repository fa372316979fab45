//! What an update costs the device: time to fetch and verify a component update through TUF
//! (timestamp, snapshot, release metadata, the target) against reading the same bytes and
//! hashing them with SHA-256 in the same run, and the bytes transferred per update.
//!
//! `cargo bench -p wattlet-updates --bench update_check` (WATTLET_UPDATE_N rounds, default 50;
//! WATTLET_UPDATE_COMPONENT, default the parser component that `./dev test` builds).

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wattlet_updates::{ComponentMeta, Fetched, InitOptions, Publisher, Verifier};

/// What `device` fetched since `before`: metadata bytes, component bytes, fetches.
fn since(device: &Verifier, before: &mut Fetched) -> (u64, u64, u64) {
    let now = device.fetched();
    let delta = (
        now.metadata_bytes - before.metadata_bytes,
        now.component_bytes - before.component_bytes,
        now.fetches - before.fetches,
    );
    *before = now;
    delta
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let n: usize = std::env::var("WATTLET_UPDATE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let component = std::env::var_os("WATTLET_UPDATE_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm32-wasip2/component/wattlet_meter_parser.wasm")
        });
    let Ok(bytes) = std::fs::read(&component) else {
        eprintln!(
            "no component at {}: build it (`./dev test`, or cargo build --profile component \
             --target wasm32-wasip2 -p wattlet-meter-parser) or set WATTLET_UPDATE_COMPONENT",
            component.display()
        );
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n, component, bytes));
}

async fn run(n: usize, component: PathBuf, bytes: Vec<u8>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let repo = dir.path().join("repo");
    let options = InitOptions {
        threshold: NonZeroU64::new(2).expect("2"),
        keys_per_role: NonZeroU64::new(3).expect("3"),
        ..InitOptions::default()
    };
    let publisher = Publisher::init(&repo, dir.path().join("keys"), options)
        .await
        .expect("init");
    let meta = |minor: usize| ComponentMeta {
        name: "meter-parser".into(),
        version: semver::Version::new(1, minor as u64, 0),
        world: "wattlet:meter/parser".into(),
        min_host: semver::Version::new(0, 1, 0),
    };
    let root = std::fs::read(repo.join("metadata/1.root.json")).expect("root");
    let device = Verifier::for_directory(
        root,
        dir.path().join("device"),
        &repo,
        semver::Version::new(1, 0, 0),
    )
    .expect("verifier");
    let mut fetched = Fetched::default();

    publisher.add(&meta(0), &component).await.expect("publish");
    let started = Instant::now();
    device
        .check("meter-parser", None)
        .await
        .expect("first check");
    let first = started.elapsed();
    let (first_meta, first_target, first_files) = since(&device, &mut fetched);

    let (mut update, mut poll, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    let (mut meta_bytes, mut target_bytes, mut files) = (Vec::new(), 0, 0);
    for round in 1..=n {
        publisher
            .add(&meta(round), &component)
            .await
            .expect("publish");
        let started = Instant::now();
        let got = device
            .check("meter-parser", None)
            .await
            .expect("update verified")
            .expect("an update");
        update.push(started.elapsed());
        assert_eq!(got.bytes.len(), bytes.len());
        let (m, t, f) = since(&device, &mut fetched);
        meta_bytes.push(m);
        target_bytes += t;
        files += f;
        device
            .record_installed("meter-parser", &got.meta.version)
            .expect("record");

        // A poll that finds nothing new.
        let started = Instant::now();
        let none = device.check("meter-parser", None).await.expect("poll");
        poll.push(started.elapsed());
        assert!(none.is_none());
        since(&device, &mut fetched);

        // The baseline: read the same file and hash it.
        let started = Instant::now();
        let read = std::fs::read(&component).expect("read");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &read);
        baseline.push(started.elapsed());
        assert_eq!(digest.as_ref().len(), 32);
    }
    let n = n as u64;
    println!(
        "component: {} ({} bytes), {n} updates",
        component.display(),
        bytes.len()
    );
    println!(
        "first check (root, timestamp, snapshot, targets, release, target): {:.2} ms, \
         {first_meta} B metadata in {} files + {first_target} B target",
        ms(first),
        first_files - 1
    );
    let (u, b) = (median(update), median(baseline));
    println!(
        "update (fetch + verify metadata and target): median {:.2} ms; read + SHA-256: median \
         {:.2} ms; ratio {:.1}x",
        ms(u),
        ms(b),
        u.as_secs_f64() / b.as_secs_f64()
    );
    // Fetches include the probe for a next root (absent, 0 B) and the target itself.
    println!(
        "per update: {} B metadata (first update {} B, update {n} {} B: the release metadata \
         lists every version) in {:.0} fetches + {} B target",
        meta_bytes.iter().sum::<u64>() / n,
        meta_bytes.first().copied().unwrap_or(0),
        meta_bytes.last().copied().unwrap_or(0),
        (files as f64 / n as f64) - 1.0,
        target_bytes / n
    );
    println!("poll with nothing new: median {:.2} ms", ms(median(poll)));
}
