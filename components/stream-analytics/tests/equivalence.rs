//! The operators equal the from-scratch reference, row for row.

mod common;

use common::{Gunzip, assert_same, refit_file, run_pipeline, small};
use wattlet_stream_analytics::refit::{RefitConfig, RefitReader};
use wattlet_stream_analytics::{Event, Outputs, reference};

/// Runs both, asserts equality; returns the outputs and the late count.
fn check(events: &[Event], lateness: u32) -> (Outputs, u64) {
    let t0 = std::time::Instant::now();
    let (got, pipeline) = run_pipeline(events, lateness);
    let t1 = std::time::Instant::now();
    let want = reference::run(events, lateness);
    eprintln!("operators {:?}, reference {:?}", t1 - t0, t1.elapsed());
    assert_same(&got, &want);
    let stats = pipeline.stats();
    assert_eq!(stats.events, events.len() as u64);
    assert_eq!(stats.outputs, got.len() as u64);
    eprintln!(
        "{} events ({} late): {} house, {} plug forecasts, {} outliers",
        stats.events,
        stats.late,
        got.houses.len(),
        got.plugs.len(),
        got.outliers.len()
    );
    assert!(!got.houses.is_empty() && !got.plugs.is_empty() && !got.outliers.is_empty());
    (got, stats.late)
}

#[test]
fn dense_hours_with_out_of_order_and_late_events() {
    // 2–6 s per plug for 100 min: the 1 h window slides, events arrive out of order. (Sizes here
    // keep the from-scratch reference to seconds in the unoptimised test build.)
    let events = small(1, 3, 12, 100, (2, 6), 3);
    assert!(
        check(&events, 10).1 > 0,
        "the data must contain late events"
    );
}

#[test]
fn three_sparse_days_use_past_days_medians() {
    // Three days, so slices have one and two past days (multi-day medians, the 24 h window
    // expires); sparse so that the reference stays quick.
    let events = small(2, 3, 12, 72 * 60, (300, 900), 60);
    let (out, _) = check(&events, 10);
    // Points on the third day: their slices have two past days.
    assert!(
        out.plugs
            .iter()
            .any(|f| f.at > u64::from(events[0].ts) + 2 * 86_400)
    );
}

#[test]
fn other_lateness_bounds() {
    let events = small(3, 2, 5, 30, (1, 4), 1);
    for lateness in [0, 1, 30, 600] {
        check(&events, lateness);
    }
}

#[test]
fn equal_timestamps_and_ids_in_any_order() {
    // Same ts for many events, arriving in reverse id order: ties must break the same way.
    let mut events = small(4, 2, 6, 60, (5, 5), 5);
    events.reverse();
    check(&events, u32::MAX / 2);
}

fn refit(name: &str, house: u32, hours: u32) -> Option<Vec<Event>> {
    let path = refit_file(name)?;
    let mut gz = Gunzip::open(&path)?;
    let config = RefitConfig {
        house,
        work_every: 10,
        first_id: 0,
        max_seconds: Some(hours * 3600),
    };
    Some(
        RefitReader::new(&mut gz.reader, config)
            .collect::<Result<_, _>>()
            .unwrap(),
    )
}

#[test]
fn refit_house2_first_day_with_its_gaps() {
    // 26 h: the 24 h window expires values, the last 2 h of slices have a past day; gaps of
    // 2–15 min in the first day.
    let Some(events) = refit("house2.csv.gz", 2, 26) else {
        return;
    };
    assert!(events.len() > 10_000, "{} events", events.len());
    check(&events, 10);
}

#[test]
fn refit_houses_2_and_20_together() {
    // House 20 moved by whole days onto house 2's first hours (time of day kept), one stream.
    let (Some(a), Some(b)) = (refit("house2.csv.gz", 2, 6), refit("house20.csv.gz", 20, 6)) else {
        return;
    };
    let shift = (b[0].ts - a[0].ts) / 86_400 * 86_400;
    let mut events: Vec<Event> = a
        .into_iter()
        .chain(b.into_iter().map(|e| Event {
            ts: e.ts - shift,
            ..e
        }))
        .collect();
    events.sort_by_key(|e| (e.ts, e.house));
    for (i, e) in events.iter_mut().enumerate() {
        e.id = i as u64;
    }
    check(&events, 10);
}

#[test]
#[ignore = "a minute unoptimised: cargo test --release -p wattlet-stream-analytics -- --ignored"]
fn larger_generated_data() {
    // 26 h, 5 houses, 40 plugs, several seeds, ticks and lateness bounds.
    for (seed, interval, tick, lateness) in [
        (100, (30, 90), 1, 10),
        (101, (20, 60), 5, 3),
        (102, (60, 120), 30, 60),
    ] {
        let events = small(seed, 5, 40, 26 * 60, interval, tick);
        check(&events, lateness);
    }
}

#[test]
#[ignore = "minutes unoptimised: cargo test --release -p wattlet-stream-analytics -- --ignored"]
fn refit_five_days_of_each_house() {
    for (name, house) in [("house2.csv.gz", 2), ("house20.csv.gz", 20)] {
        let Some(events) = refit(name, house, 5 * 24) else {
            return;
        };
        check(&events, 10);
    }
}
