//! Events/s of the whole pipeline (reordering + Q1 + Q2) on full-scale-shaped generated data:
//! 40 houses, 2,125 plugs, one hour of event time by default.
//!
//! `cargo run --release -p wattlet-stream-analytics --example throughput [MINUTES [SEED [HOUSES PLUGS]]]`
//! (fewer houses make the 24 h windows affordable: `throughput 1800 2014 2 106`, two houses of
//! the full scale's 53 plugs over 30 h).

use std::time::Instant;

use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::{Event, Outputs, Pipeline};

fn main() {
    let mut args = std::env::args().skip(1);
    let minutes: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2014);
    let defaults = GenConfig::default();
    let houses = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(defaults.houses);
    let plugs = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(defaults.plugs);
    let config = GenConfig {
        seed,
        duration: minutes * 60,
        houses,
        plugs,
        ..defaults
    };
    let (houses, plugs) = (config.houses, config.plugs);
    let started = Instant::now();
    let events: Vec<Event> = Generator::new(config).collect();
    let generated = started.elapsed();

    let mut p = Pipeline::default();
    let mut out = Outputs::default();
    let (mut houses_rows, mut plug_rows, mut outlier_rows) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    for e in &events {
        p.push_into(e, &mut out);
        houses_rows += out.houses.len();
        plug_rows += out.plugs.len();
        outlier_rows += out.outliers.len();
        out.clear();
    }
    let last = p.finish();
    let took = started.elapsed();
    houses_rows += last.houses.len();
    plug_rows += last.plugs.len();
    outlier_rows += last.outliers.len();

    let stats = p.stats();
    let rate = events.len() as f64 / took.as_secs_f64();
    println!(
        "{houses} houses, {plugs} plugs, {minutes} min of event time: {} events ({} late) \
         generated in {:.2} s",
        events.len(),
        stats.late,
        generated.as_secs_f64()
    );
    println!(
        "pipeline (reorder + Q1 + Q2), one thread: {:.3} s, {:.0} events/s; rows: {houses_rows} \
         house forecasts, {plug_rows} plug forecasts, {outlier_rows} outliers",
        took.as_secs_f64(),
        rate
    );
}
