//! The documented readings of the challenge on hand-made streams, with the expected rows worked
//! out by hand (the reference could share a misreading; these cannot).

mod common;

use common::run_pipeline;
use wattlet_stream_analytics::reorder::Reorder;
use wattlet_stream_analytics::{Event, Outlier, Property};

/// 2013-09-01 00:00:00 UTC, a day boundary.
const T0: u32 = 1_377_993_600;
const DAY: u32 = 86_400;

fn load(id: u64, ts: u32, watts: i64, house: u32, plug: u32) -> Event {
    Event {
        id,
        ts,
        value_mw: watts * 1000,
        property: Property::Load,
        plug,
        household: 0,
        house,
    }
}

#[test]
fn forecast_points_and_plain_average_without_history() {
    let events = [
        load(0, T0 + 10, 100, 1, 0),
        load(1, T0 + 20, 200, 1, 0),
        load(2, T0 + 40, 300, 1, 0),
    ];
    let (out, _) = run_pipeline(&events, 10);
    // Points: multiples of 30 after the first event through the first after the last: +30, +60.
    let one_minute: Vec<_> = out.plugs.iter().filter(|f| f.slice_len == 60).collect();
    assert_eq!(one_minute.len(), 2);
    // At +30 only the loads before it (100, 200 W); at +60 all three.
    assert_eq!(
        (one_minute[0].at, one_minute[0].load_w),
        (u64::from(T0) + 30, 150.0)
    );
    assert_eq!(
        (one_minute[1].at, one_minute[1].load_w),
        (u64::from(T0) + 60, 200.0)
    );
    // The forecast is for s_{i+2}: two minutes on.
    assert_eq!(one_minute[0].ts, u64::from(T0) + 120);
    // Every slice length emits at every point, house rows too.
    assert_eq!(out.plugs.len(), 10);
    assert_eq!(out.houses.len(), 10);
    // Work events count for nothing but the output points.
    assert!(out.houses.iter().all(|h| h.house == 1));
}

#[test]
fn house_load_is_the_sum_of_plug_averages() {
    let events = [
        load(0, T0 + 1, 100, 1, 0),
        load(1, T0 + 2, 300, 1, 0), // plug 0 averages 200 W
        load(2, T0 + 3, 50, 1, 1),  // plug 1 averages 50 W
        load(3, T0 + 4, 7, 2, 0),   // another house
    ];
    let (out, _) = run_pipeline(&events, 10);
    let first: Vec<_> = out
        .houses
        .iter()
        .filter(|h| h.at == u64::from(T0) + 30 && h.slice_len == 60)
        .collect();
    assert_eq!(first.len(), 2);
    assert_eq!((first[0].house, first[0].load_w), (1, 250.0));
    assert_eq!((first[1].house, first[1].load_w), (2, 7.0));
}

#[test]
fn forecast_with_past_days_takes_the_median() {
    // The slice [T0 + 120, T0 + 180) (1 min) on three days: 100, 300, 200 W; then on day 3 the
    // slice two minutes earlier has 1000 W: its forecast for that slice is (1000 + median) / 2.
    let mut events = Vec::new();
    for (day, watts) in [(0, 100), (1, 300), (2, 200)] {
        events.push(load(day, T0 + day as u32 * DAY + 130, watts, 1, 0));
    }
    events.push(load(9, T0 + 3 * DAY + 10, 1000, 1, 0));
    let (out, _) = run_pipeline(&events, 10);
    let last = out.plugs.iter().rfind(|f| f.slice_len == 60).unwrap();
    assert_eq!(last.ts, u64::from(T0 + 3 * DAY + 120));
    assert_eq!(last.load_w, (1000.0 + 200.0) / 2.0);
    // On day 2 the slice two minutes before has no load: no forecast row for the slice at all.
    let day2 = out
        .plugs
        .iter()
        .filter(|f| f.slice_len == 60 && f.ts == u64::from(T0 + 2 * DAY + 120))
        .count();
    assert_eq!(
        day2, 0,
        "no load two minutes earlier on day 2, so no forecast for that slice"
    );
}

#[test]
fn a_gap_emits_nothing_and_costs_nothing() {
    // A year between two events: no rows inside the gap once the 2 h slice has ended.
    let events = [
        load(0, T0 + 5, 100, 1, 0),
        load(1, T0 + 365 * DAY + 5, 100, 1, 0),
    ];
    let (out, _) = run_pipeline(&events, 10);
    let last_before = out
        .plugs
        .iter()
        .filter(|f| f.at < u64::from(T0 + DAY))
        .map(|f| f.at)
        .max()
        .unwrap();
    assert_eq!(
        last_before,
        u64::from(T0) + 7200,
        "the 2 h slice holds data through its end"
    );
    assert!(
        out.plugs
            .iter()
            .all(|f| f.at <= u64::from(T0) + 7200 || f.at > u64::from(T0 + 365 * DAY))
    );
}

fn outliers(events: &[Event]) -> Vec<Outlier> {
    run_pipeline(events, 10).0.outliers
}

#[test]
fn outliers_are_emitted_on_change_and_evaluated_after_each_timestamp() {
    // House 1: plugs at 10 and 1000 W; house 2: one plug at 5 W. Global median over
    // {10, 1000, 5} = 10: house 1 has 1 of 2 above (plug 1000 W), house 2 none.
    let events = [
        load(0, T0 + 1, 10, 1, 0),
        load(1, T0 + 1, 1000, 1, 1),
        load(2, T0 + 1, 5, 2, 0),
        // Same state one second later: nothing new.
        load(3, T0 + 2, 10, 1, 0),
        load(4, T0 + 2, 1000, 1, 1),
        load(5, T0 + 2, 5, 2, 0),
    ];
    let got = outliers(&events);
    let w1h: Vec<_> = got.iter().filter(|o| o.window == 3600).collect();
    assert_eq!(w1h.len(), 2, "{got:#?}");
    assert_eq!(
        (
            w1h[0].ts,
            w1h[0].house,
            w1h[0].above,
            w1h[0].plugs,
            w1h[0].percent
        ),
        (T0 + 1, 1, 1, 2, 50.0)
    );
    assert_eq!(
        (w1h[1].house, w1h[1].above, w1h[1].plugs, w1h[1].percent),
        (2, 0, 1, 0.0)
    );
    // Order within one evaluation: (window, house).
    let order: Vec<_> = got.iter().map(|o| (o.window, o.house)).collect();
    assert_eq!(order, [(3600, 1), (3600, 2), (86_400, 1), (86_400, 2)]);
}

#[test]
fn the_window_is_half_open_and_an_emptied_house_starts_afresh() {
    // One plug, one value, then an hour later exactly: (t − 1 h, t] no longer holds the first
    // value; the 1 h window has only the new one. House 2 empties in the 1 h window and comes
    // back: its row is emitted again as a first appearance.
    let events = [
        load(0, T0, 100, 2, 0),
        load(1, T0 + 3600, 100, 1, 0),
        load(2, T0 + 7300, 100, 2, 0),
    ];
    let got: Vec<_> = outliers(&events)
        .into_iter()
        .filter(|o| o.window == 3600)
        .collect();
    let rows: Vec<_> = got
        .iter()
        .map(|o| (o.ts - T0, o.house, o.above, o.plugs))
        .collect();
    // At +3600 house 2's value (ts = T0) is out: no row for it, and it is forgotten. At +7300
    // house 1's value (+3600) is out too, house 2 reappears.
    assert_eq!(rows, [(0, 2, 0, 1), (3600, 1, 0, 1), (7300, 2, 0, 1)]);
}

#[test]
fn lateness_bound_is_inclusive() {
    let mut r = Reorder::new(10);
    let mut out = Vec::new();
    assert!(r.push(&load(0, 100, 1, 1, 0), &mut out));
    assert!(
        r.push(&load(1, 90, 1, 1, 0), &mut out),
        "exactly `lateness` old: accepted"
    );
    assert!(!r.push(&load(2, 89, 1, 1, 0), &mut out), "older: late");
    assert_eq!(r.late(), 1);
    assert!(out.is_empty(), "nothing is older than the watermark yet");
    assert!(r.push(&load(3, 101, 1, 1, 0), &mut out));
    assert_eq!(
        out.iter().map(|e| e.id).collect::<Vec<_>>(),
        [1],
        "ts 90 < 101 − 10"
    );
    r.finish(&mut out);
    assert_eq!(out.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 0, 3]);
}

#[test]
fn release_order_is_ts_then_id() {
    let mut r = Reorder::new(5);
    let mut out = Vec::new();
    for (id, ts) in [(5, 10), (3, 10), (4, 8), (1, 12), (2, 30)] {
        r.push(&load(id, ts, 1, 1, 0), &mut out);
    }
    r.finish(&mut out);
    assert_eq!(
        out.iter().map(|e| (e.ts, e.id)).collect::<Vec<_>>(),
        [(8, 4), (10, 3), (10, 5), (12, 1), (30, 2)]
    );
}

#[test]
fn finish_on_an_empty_stream_emits_nothing() {
    let (out, p) = run_pipeline(&[], 10);
    assert!(out.is_empty());
    assert_eq!(p.stats().events, 0);
}

#[test]
fn work_only_streams_emit_nothing() {
    let events: Vec<Event> = (0..100)
        .map(|i| Event {
            property: Property::Work,
            ..load(i, T0 + i as u32, 1, 1, 0)
        })
        .collect();
    let (out, _) = run_pipeline(&events, 10);
    assert!(out.is_empty());
}

#[test]
fn extreme_values_do_not_overflow_the_sums() {
    let huge = Event {
        value_mw: i64::MAX,
        ..load(0, T0 + 1, 0, 1, 0)
    };
    let events = [
        huge,
        Event { id: 1, ..huge },
        Event {
            id: 2,
            ts: T0 + 2,
            ..huge
        },
    ];
    let (out, _) = run_pipeline(&events, 10);
    assert_eq!(out, wattlet_stream_analytics::reference::run(&events, 10));
    assert!(
        out.plugs
            .iter()
            .all(|f| f.load_w == i64::MAX as f64 / 1000.0)
    );
}

#[test]
fn extreme_timestamps_and_keys_do_not_panic() {
    let big = |id: u64, ts: u32, value_mw: i64, property, key: u32| Event {
        id,
        ts,
        value_mw,
        property,
        plug: key,
        household: key,
        house: key,
    };
    let mut events = vec![load(0, T0, 5, 1, 0), load(1, T0 + 1, 7, 2, 0)];
    events.extend([
        big(u64::MAX, T0 + 1, i64::MAX, Property::Load, u32::MAX),
        big(2, T0 + 2, i64::MIN, Property::Load, 0),
        big(3, T0 + 2, i64::MAX, Property::Work, u32::MAX),
        big(u64::MAX, u32::MAX - 100_000, i64::MAX, Property::Load, 0),
        big(4, 0, 0, Property::Load, 0),
        big(5, u32::MAX, i64::MAX, Property::Load, 7),
        big(6, u32::MAX, i64::MIN, Property::Load, 7),
        big(7, u32::MAX, i64::MAX, Property::Work, 7),
        big(8, u32::MAX - 5, -1, Property::Load, 8),
        big(u64::MAX, u32::MAX, i64::MAX, Property::Load, u32::MAX),
    ]);
    for lateness in [0, 10, u32::MAX] {
        // Only the operators: the reference walks every 30 s point up to u32::MAX.
        let (_, p) = run_pipeline(&events, lateness);
        assert_eq!(p.stats().events, events.len() as u64);
    }
}
