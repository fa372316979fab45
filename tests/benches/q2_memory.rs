//! The heap Q2's state holds (the operator alone, under a counting allocator) and its snapshot's
//! size, after generated events of `BENCH_HOUSES` houses (default 1) of 53 plugs each (the full
//! scale's average) over `BENCH_HOURS` hours (default 25: the 24 h window full).
//!
//! `cargo bench -p wattlet-e2e --bench q2_memory` (`BENCH_HOUSES=40`: a day at the challenge's
//! full scale, ~134 M events, ~6 GB of events held in memory while it runs).

use std::time::Instant;

use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::{Config, Event, Pipeline, Queries};
use wattlet_testkit::env_or;
use wattlet_testkit::heap::{self, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let houses: u32 = env_or("BENCH_HOUSES", 1);
    let hours: u32 = env_or("BENCH_HOURS", 25);
    let config = GenConfig {
        seed: 2,
        duration: hours * 3600,
        houses,
        plugs: houses * 53,
        ..GenConfig::default()
    };
    let events: Vec<Event> = Generator::new(config).collect();
    let q2 = Config {
        queries: Queries {
            forecast: false,
            outliers: true,
        },
        per_house: false,
        ..Config::default()
    };
    let before = heap::in_use();
    let started = Instant::now();
    let mut pipeline = Pipeline::new(q2);
    for (i, e) in events.iter().enumerate() {
        pipeline.push(e);
        if i % 10_000_000 == 9_999_999 {
            eprintln!("{} of {} events", i + 1, events.len());
        }
    }
    let took = started.elapsed();
    let held = heap::in_use() - before;
    let mib = |bytes: f64| bytes / f64::from(1 << 20);
    println!(
        "Q2, {houses} house(s) of 53 plugs, {hours} h: {} events in {:.1} s; state {:.1} MiB \
         ({:.1} MiB per house), snapshot {:.1} MiB",
        events.len(),
        took.as_secs_f64(),
        mib(held as f64),
        mib(held as f64) / f64::from(houses),
        mib(pipeline.snapshot().len() as f64)
    );
}
