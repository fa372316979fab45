//! The meter parser as a wasm component under wasmtime vs the same library compiled natively and
//! vs the peer crate sml-rs compiled natively, in the same run, on the same bytes: every real SML
//! capture concatenated into one stream and fed in serial-port-sized chunks through one
//! long-lived decoder (as the edge daemon does; sml-rs gets the whole stream at once, its best
//! case), plus the cost of instantiating the component.
//!
//! Run: `cargo build --profile component --target wasm32-wasip2 -p wattlet-meter-parser &&
//!       cargo bench -p wattlet-runtime --bench component`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The peer, exactly as the parser's own bench runs it.
#[path = "../../../components/meter-parser/benches/peer/sml_rs.rs"]
mod sml_rs_peer;
use sml_rs_peer::sml_rs_count;
use wattlet_meter_parser::{DecoderOptions, Event, capture};
use wattlet_runtime::meter::{MeterDecoder, NativeDecoder, ParserComponent};
use wattlet_runtime::{engine as runtime, locate as components};

/// Chunk sizes of the feed: one read from a serial port at 9600 baud in ~0.25 s, and the
/// edge daemon's buffered read of a whole measurement cycle.
const CHUNKS: [usize; 2] = [256, 4096];

fn testdata() -> PathBuf {
    capture::testdata_dir()
}

/// All SML captures, concatenated in a fixed order.
fn sml_stream() -> Vec<u8> {
    let dir = testdata().join("sml");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join("libsml-testing"))
        .expect("libsml-testing captures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    paths.sort();
    paths.push(dir.join("vzlogger/MeterSML.cpp__EMH_basic.hex"));
    paths.iter().flat_map(|p: &PathBuf| load(p)).collect()
}

fn load(path: &Path) -> Vec<u8> {
    capture::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn feed(decoder: &mut dyn MeterDecoder, stream: &[u8], chunk: usize) -> usize {
    let mut telegrams = 0;
    for chunk in stream.chunks(chunk) {
        let events = decoder.push(chunk).expect("push");
        telegrams += events
            .iter()
            .filter(|e| matches!(e, Event::Telegram(_)))
            .count();
    }
    telegrams
}

fn bench(c: &mut Criterion) {
    let stream = sml_stream();
    let path = components::locate("wattlet-meter-parser", None).unwrap_or_else(|e| panic!("{e}"));
    let component =
        ParserComponent::load(&runtime::engine().expect("engine"), &path).expect("component");
    let options = DecoderOptions::default();

    // Equal work: both must find the same telegrams in the stream.
    let native_count = feed(&mut NativeDecoder::new(options.clone()), &stream, CHUNKS[0]);
    let wasm_count = feed(
        &mut component.decoder(&options).expect("instance"),
        &stream,
        CHUNKS[0],
    );
    assert_eq!(native_count, wasm_count, "native and component disagree");
    assert!(
        native_count > 200,
        "only {native_count} telegrams in the stream"
    );
    // Equal work for the peer: every frame it parses, the component decodes too.
    let peer_count = sml_rs_count(&stream);
    assert!(
        wasm_count >= peer_count,
        "component {wasm_count} telegrams, sml-rs {peer_count} frames"
    );

    for chunk in CHUNKS {
        let mut group = c.benchmark_group(format!("meter-parser/sml-stream/chunk-{chunk}"));
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.measurement_time(Duration::from_secs(6));
        let mut native = NativeDecoder::new(options.clone());
        group.bench_function("native", |b| {
            b.iter(|| black_box(feed(&mut native, black_box(&stream), chunk)))
        });
        let mut wasm = component.decoder(&options).expect("instance");
        group.bench_function("wasm-component", |b| {
            b.iter(|| black_box(feed(&mut wasm, black_box(&stream), chunk)))
        });
        group.bench_function("peer/sml-rs-native", |b| {
            b.iter(|| black_box(sml_rs_count(black_box(&stream))))
        });
        group.finish();
    }

    let mut group = c.benchmark_group("meter-parser/instantiate");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("wasm-component", |b| {
        b.iter(|| black_box(component.decoder(&options).expect("instance")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
