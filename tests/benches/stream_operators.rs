//! Events/s of the DEBS operators (reordering + Q1 + Q2) natively and as the WIT component under
//! wasmtime, in one run on the same data: full-scale-shaped generated events (40 houses, 2,125
//! plugs, 20 min of event time by default), the component fed in batches of 1,000 and 10,000.
//! The component's time includes the host's conversion of each batch and of the rows back; its
//! rows are checked equal to the native ones after the timing.
//!
//! `cargo bench -p wattlet-e2e --bench stream_operators` (WATTLET_STREAM_MINUTES, default 20).
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

    let (native_time, want) = native(&events);
    let native_rate = events.len() as f64 / native_time.as_secs_f64();
    let mut rows = vec![("native Pipeline::push_into", native_time, native_rate)];
    for batch in [1000, 10_000] {
        let (time, got) = component(&stream, &events, batch);
        assert!(got == want, "component rows differ from native (batch {batch})");
        rows.push((
            if batch == 1000 {
                "component, batches of 1,000"
            } else {
                "component, batches of 10,000"
            },
            time,
            events.len() as f64 / time.as_secs_f64(),
        ));
    }
    println!(
        "rows: {} house, {} plug, {} outlier (component = native)",
        want.houses.len(),
        want.plugs.len(),
        want.outliers.len()
    );
    println!();
    println!("| run | s | events/s | component/native |");
    println!("|---|---|---|---|");
    for (what, time, rate) in rows {
        println!(
            "| {what} | {:.2} | {:.0} | {:.2} |",
            time.as_secs_f64(),
            rate,
            rate / native_rate
        );
    }
}
