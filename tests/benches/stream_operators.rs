//! Events/s of the DEBS operators (reordering + Q1 + Q2) natively and as the WIT component under
//! wasmtime, in one run on the same data: full-scale-shaped generated events (40 houses, 2,125
//! plugs, 20 min of event time by default), the component fed in batches of 1,000 and 10,000.
//! The component's time includes the host's conversion of each batch and of the rows back; its
//! rows are checked equal to the native ones after the timing.
//!
//! The three runs alternate for several rounds (the machine is shared: a burst of load then hits
//! every variant alike); the table gives each one's fastest round and the median, and the ratio
//! of the fastest.
//!
//! `cargo bench -p wattlet-e2e --bench stream_operators` (WATTLET_STREAM_MINUTES, default 20;
//! WATTLET_STREAM_ROUNDS, default 3).
//! Needs the component built (`./dev test` or build_components), in the same target directory or
//! `$WATTLET_COMPONENTS`.

use std::time::{Duration, Instant};

use wattlet_runtime::stream::StreamComponent;
use wattlet_runtime::{engine as runtime, locate as components};
use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::{Config, Event, Outputs, Pipeline};
use wattlet_testkit::env_or;

fn native(events: &[Event]) -> (Duration, Outputs) {
    let started = Instant::now();
    let mut p = Pipeline::new(Config::default());
    let mut out = Outputs::default();
    for e in events {
        p.push_into(e, &mut out);
    }
    out.append(&mut p.finish());
    (started.elapsed(), out)
}

fn component(component: &StreamComponent, events: &[Event], batch: usize) -> (Duration, Outputs) {
    let mut instance = component.instantiate().expect("instance");
    let started = Instant::now();
    instance.new_pipeline(Config::default()).expect("pipeline");
    let mut out = Outputs::default();
    for chunk in events.chunks(batch) {
        out.append(&mut instance.push(chunk).expect("push"));
    }
    out.append(&mut instance.finish().expect("finish"));
    (started.elapsed(), out)
}

fn main() {
    let minutes: u32 = env_or("WATTLET_STREAM_MINUTES", 20);
    let config = GenConfig {
        duration: minutes * 60,
        ..GenConfig::default()
    };
    let (houses, plugs) = (config.houses, config.plugs);
    let events: Vec<Event> = Generator::new(config).collect();
    let path = components::locate("wattlet-stream-analytics", None).expect("component built");
    let loaded = Instant::now();
    let stream = StreamComponent::load(&runtime::engine().expect("engine"), &path).expect("load");
    println!(
        "{houses} houses, {plugs} plugs, {minutes} min of event time: {} events; component {} \
         loaded in {:.2} s (compiled or from the cache)",
        events.len(),
        path.display(),
        loaded.elapsed().as_secs_f64()
    );

    let rounds: usize = env_or("WATTLET_STREAM_ROUNDS", 3);
    let names = [
        "native Pipeline::push_into",
        "component, batches of 1,000",
        "component, batches of 10,000",
    ];
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut want = Outputs::default();
    for round in 0..rounds {
        let (time, out) = native(&events);
        times[0].push(time);
        if round == 0 {
            want = out;
        }
        for (i, batch) in [(1, 1000), (2, 10_000)] {
            let (time, got) = component(&stream, &events, batch);
            assert!(
                got == want,
                "component rows differ from native (batch {batch})"
            );
            times[i].push(time);
        }
    }
    let rate = |t: Duration| events.len() as f64 / t.as_secs_f64();
    let best = |ts: &[Duration]| ts.iter().copied().min().unwrap_or_default();
    let median = |ts: &[Duration]| {
        let mut ts = ts.to_vec();
        ts.sort();
        ts[ts.len() / 2]
    };
    let native_rate = rate(best(&times[0]));
    println!(
        "rows: {} house, {} plug, {} outlier (component = native)",
        want.houses.len(),
        want.plugs.len(),
        want.outliers.len()
    );
    println!();
    println!(
        "| run ({rounds} rounds) | best s | events/s (best) | events/s (median) | component/native |"
    );
    println!("|---|---|---|---|---|");
    for (name, ts) in names.iter().zip(&times) {
        println!(
            "| {name} | {:.2} | {:.0} | {:.0} | {:.2} |",
            best(ts).as_secs_f64(),
            rate(best(ts)),
            rate(median(ts)),
            rate(best(ts)) / native_rate
        );
    }
}
