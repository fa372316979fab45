//! Events/s of reordering + Q1 + Q2 (the whole [`Pipeline`]) on generated data, natively.
//!
//! Two shapes: full-scale width (40 houses, 2,125 plugs) over a few minutes, and a narrow one
//! (4 houses, 100 plugs) over an hour, where the 1 h window fills. Each iteration runs the stream
//! from a fresh pipeline through `finish`. Full scale over an hour: `cargo run --release
//! --example throughput`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::{Event, Outputs, Pipeline};

fn run(events: &[Event]) -> usize {
    let mut p = Pipeline::default();
    let mut out = Outputs::default();
    let mut rows = 0;
    for e in events {
        p.push_into(e, &mut out);
        rows += out.len();
        out.clear();
    }
    rows + p.finish().len()
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let shapes = [
        (
            "40 houses, 2125 plugs, 5 min",
            GenConfig {
                duration: 300,
                ..GenConfig::default()
            },
        ),
        (
            "4 houses, 100 plugs, 1 h",
            GenConfig {
                houses: 4,
                plugs: 100,
                duration: 3_600,
                ..GenConfig::default()
            },
        ),
    ];
    for (name, config) in shapes {
        let events: Vec<Event> = Generator::new(config).collect();
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &events, |b, events| {
            b.iter(|| black_box(run(events)))
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
