//! Throughput of our SML decoding against the peer crate `sml-rs` on the same real captures.
//!
//! Both sides do the work a user needs: find every transport frame, check its CRC, parse all
//! messages and pull out the GetList values. Both run in one criterion group, so the ratio of their
//! throughputs is meaningful.
//!
//! Test data: `$WATTLET_TESTDATA` or `<repo>/../shared/testdata` (see `sml/SOURCES.md` there).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wattlet_meter_parser::{Decoder, DecoderOptions, Event, capture};

/// One capture file's bytes, as the probe delivered them.
struct Capture {
    name: String,
    bytes: Vec<u8>,
}

/// The peer: sml-rs, as its README shows it used (shared with the component bench).
#[path = "peer/sml_rs.rs"]
mod sml_rs_peer;
use sml_rs_peer::sml_rs_count;

fn testdata_dir() -> PathBuf {
    capture::testdata_dir().join("sml")
}

/// All SML captures below `sml/`, each once: the libsml-testing `.hex` files repeat their `.bin`
/// byte for byte, so captures with equal contents are kept only once.
fn load_captures() -> Vec<Capture> {
    let root = testdata_dir();
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&root).expect("read sml test data dir") {
        let dir = entry.expect("dir entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).expect("read capture dir") {
            let path = file.expect("dir entry").path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("bin" | "hex")
            ) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    let mut captures: Vec<Capture> = Vec::new();
    for path in paths {
        let bytes = capture::load(&path).unwrap_or_else(|e| panic!("{e}"));
        if captures.iter().any(|c| c.bytes == bytes) {
            continue;
        }
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        captures.push(Capture { name, bytes });
    }
    assert!(
        !captures.is_empty(),
        "no SML captures in {}",
        root.display()
    );
    captures
}

/// Our decoder over one capture: one push of all bytes, then end of stream. Returns telegrams.
fn wattlet_count(bytes: &[u8], events: &mut Vec<Event>) -> usize {
    let mut decoder = Decoder::new(DecoderOptions::default());
    events.clear();
    decoder.push_into(black_box(bytes), events);
    events.extend(decoder.finish());
    let telegrams = events
        .iter()
        .filter(|e| matches!(e, Event::Telegram(_)))
        .count();
    black_box(&*events);
    telegrams
}

/// Both decoders must do the same work: every frame sml-rs parses we must decode too.
fn check_equal_work(captures: &[Capture]) {
    let mut events = Vec::new();
    let (mut ours_total, mut theirs_total) = (0, 0);
    for c in captures {
        let ours = wattlet_count(&c.bytes, &mut events);
        let theirs = sml_rs_count(&c.bytes);
        assert!(
            ours >= theirs,
            "{}: wattlet decoded {ours} telegrams, sml-rs parsed {theirs} frames",
            c.name
        );
        ours_total += ours;
        theirs_total += theirs;
    }
    let bytes: usize = captures.iter().map(|c| c.bytes.len()).sum();
    eprintln!(
        "{} captures, {bytes} bytes: wattlet {ours_total} telegrams, sml-rs {theirs_total} frames",
        captures.len()
    );
}

fn benches(c: &mut Criterion) {
    let captures = load_captures();
    check_equal_work(&captures);
    let total: usize = captures.iter().map(|c| c.bytes.len()).sum();
    let mut events = Vec::new();

    let mut all = c.benchmark_group("sml-all-captures");
    all.throughput(Throughput::Bytes(total as u64))
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2));
    all.bench_function("native/wattlet", |b| {
        b.iter(|| {
            captures
                .iter()
                .map(|c| wattlet_count(&c.bytes, &mut events))
                .sum::<usize>()
        })
    });
    all.bench_function("peer/sml-rs", |b| {
        b.iter(|| {
            captures
                .iter()
                .map(|c| sml_rs_count(&c.bytes))
                .sum::<usize>()
        })
    });
    all.finish();

    // The five largest captures one by one (ties broken by name, as loaded).
    let mut largest: Vec<&Capture> = captures.iter().collect();
    largest.sort_by_key(|c| std::cmp::Reverse(c.bytes.len()));
    let mut each = c.benchmark_group("sml-largest-captures");
    each.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    for capture in largest.into_iter().take(5) {
        let name = capture.name.rsplit('/').next().unwrap_or(&capture.name);
        each.throughput(Throughput::Bytes(capture.bytes.len() as u64));
        each.bench_with_input(
            BenchmarkId::new("native/wattlet", name),
            &capture.bytes,
            |b, bytes| b.iter(|| wattlet_count(bytes, &mut events)),
        );
        each.bench_with_input(
            BenchmarkId::new("peer/sml-rs", name),
            &capture.bytes,
            |b, bytes| b.iter(|| sml_rs_count(bytes)),
        );
    }
    each.finish();
}

criterion_group!(parse_benches, benches);
criterion_main!(parse_benches);
