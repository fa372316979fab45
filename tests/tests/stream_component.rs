//! The DEBS operators component under wasmtime gives the native library's rows, row for row, on
//! generated data pushed in batches of every size; its snapshots restore in a new instance and
//! natively (and native ones in the component), also for the per-house Q1 a stream worker runs;
//! bad snapshots and absurd values give an answer, not a trap.

use std::fmt::Debug;
use std::sync::OnceLock;

use wattlet_runtime::stream::{StreamComponent, StreamInstance};
use wattlet_runtime::{engine as runtime, locate as components};
use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::{Config, Event, Outputs, Pipeline, Property, Queries};

const LATENESS: u32 = 10;

fn stream_component() -> &'static StreamComponent {
    static COMPONENT: OnceLock<StreamComponent> = OnceLock::new();
    COMPONENT.get_or_init(|| {
        let path = components::locate("wattlet-stream-analytics", None)
            .expect("the component is built by the README's test command before the tests run");
        StreamComponent::load(&runtime::engine().expect("engine"), &path).expect("component loads")
    })
}

/// 4 houses, 60 plugs, 2 h, with events late within the bound and beyond it.
fn events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        Generator::new(GenConfig {
            seed: 16,
            houses: 4,
            plugs: 60,
            duration: 2 * 3600,
            gaps_per_day: 6.0,
            late_within: 0.03,
            late_beyond: 0.005,
            lateness: LATENESS,
            ..GenConfig::default()
        })
        .collect()
    })
}

/// Batch sizes that vary: single events, odd sizes, the bench's 1,000 and 10,000.
const SIZES: [usize; 9] = [1, 2, 7, 64, 1000, 333, 10_000, 1, 4096];

fn batches(events: &[Event]) -> impl Iterator<Item = &[Event]> {
    let mut rest = events;
    let mut n = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (batch, tail) = rest.split_at(SIZES[n % SIZES.len()].min(rest.len()));
        rest = tail;
        n += 1;
        Some(batch)
    })
}

/// Both queries over all events, the lateness of the generated data.
fn both() -> Config {
    Config {
        lateness: LATENESS,
        ..Config::default()
    }
}

fn native_run(config: Config, events: &[Event]) -> (Outputs, Pipeline) {
    let mut p = Pipeline::new(config);
    let mut out = Outputs::default();
    for e in events {
        p.push_into(e, &mut out);
    }
    out.append(&mut p.finish());
    (out, p)
}

fn instance(config: Config) -> StreamInstance {
    let mut instance = stream_component().instantiate().expect("instance");
    instance.new_pipeline(config).expect("pipeline");
    instance
}

fn push_all(instance: &mut StreamInstance, events: &[Event], out: &mut Outputs) {
    for batch in batches(events) {
        out.append(&mut instance.push(batch).expect("component did not trap"));
    }
}

fn same_list<T: PartialEq + Debug>(what: &str, got: &[T], want: &[T]) {
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: first difference at row {i} of {}/{}\n got: {:?}\nwant: {:?}",
            got.len(),
            want.len(),
            got[i],
            want[i]
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: row counts differ");
}

fn assert_same(got: &Outputs, want: &Outputs) {
    same_list("house forecasts", &got.houses, &want.houses);
    same_list("plug forecasts", &got.plugs, &want.plugs);
    same_list("outliers", &got.outliers, &want.outliers);
}

#[test]
fn component_equals_native_row_for_row() {
    let events = events();
    let (want, native) = native_run(both(), events);
    assert!(native.stats().late > 0, "the data has late events");
    assert!(!want.houses.is_empty() && !want.plugs.is_empty() && !want.outliers.is_empty());

    let mut instance = instance(both());
    let mut got = Outputs::default();
    push_all(&mut instance, events, &mut got);
    got.append(&mut instance.finish().expect("finish"));
    assert_same(&got, &want);
    assert_eq!(instance.stats().expect("stats"), native.stats());
    println!(
        "{} events ({} late): {} house, {} plug, {} outlier rows, equal",
        events.len(),
        native.stats().late,
        want.houses.len(),
        want.plugs.len(),
        want.outliers.len()
    );
}

#[test]
fn per_house_q1_equals_native_and_restores_across() {
    // What a stream worker's Q1 task runs: several houses in one pipeline, each with its own
    // reordering.
    let config = Config {
        queries: Queries {
            forecast: true,
            outliers: false,
        },
        per_house: true,
        ..both()
    };
    let events = events();
    let (want, native) = native_run(config, events);
    assert!(!want.houses.is_empty() && want.outliers.is_empty());
    let (head, tail) = events.split_at(events.len() / 2 + 3);
    let mut first = instance(config);
    let mut got = Outputs::default();
    push_all(&mut first, head, &mut got);
    // The component's snapshot continues natively, and the native one in the component.
    let mut continued = Pipeline::restore(&first.snapshot().expect("snapshot")).expect("restore");
    assert_eq!(continued.config(), config);
    let mut natively = got.clone();
    for e in tail {
        continued.push_into(e, &mut natively);
    }
    natively.append(&mut continued.finish());
    assert_same(&natively, &want);
    let mut second = stream_component().instantiate().expect("instance");
    second
        .restore(&continued.snapshot())
        .expect("no trap")
        .expect("restores");
    assert_eq!(second.stats().expect("stats"), native.stats());
    push_all(&mut first, tail, &mut got);
    got.append(&mut first.finish().expect("finish"));
    assert_same(&got, &want);
}

#[test]
fn snapshots_restore_in_a_new_instance_and_natively() {
    let events = events();
    let (want, _) = native_run(both(), events);
    // Cut at irregular points (the reorder buffer is usually not empty there).
    for cut in [1, events.len() / 3 + 5, 2 * events.len() / 3 + 11] {
        let (head, tail) = events.split_at(cut);
        let mut first = instance(both());
        let mut got = Outputs::default();
        push_all(&mut first, head, &mut got);
        let snapshot = first.snapshot().expect("snapshot");

        // In a new instance.
        let mut second = stream_component().instantiate().expect("instance");
        assert_eq!(second.restore(&snapshot).expect("no trap"), Ok(()));
        assert_eq!(
            second.stats().expect("stats"),
            first.stats().expect("stats")
        );
        let mut component = got.clone();
        push_all(&mut second, tail, &mut component);
        component.append(&mut second.finish().expect("finish"));
        assert_same(&component, &want);

        // The same bytes natively: the encoding is the same on both sides.
        let mut native =
            Pipeline::restore(&snapshot).expect("component snapshot restores natively");
        let mut continued = got.clone();
        for e in tail {
            native.push_into(e, &mut continued);
        }
        continued.append(&mut native.finish());
        assert_same(&continued, &want);

        // And a native snapshot in the component.
        let mut native = Pipeline::new(Config {
            lateness: LATENESS,
            ..Config::default()
        });
        for e in head {
            native.push(e);
        }
        let mut third = stream_component().instantiate().expect("instance");
        assert_eq!(third.restore(&native.snapshot()).expect("no trap"), Ok(()));
        let mut from_native = got;
        push_all(&mut third, tail, &mut from_native);
        from_native.append(&mut third.finish().expect("finish"));
        assert_same(&from_native, &want);
    }
}

#[test]
fn bad_snapshots_are_errors_not_traps() {
    let events = &events()[..20_000];
    let mut instance = instance(both());
    let mut got = Outputs::default();
    push_all(&mut instance, &events[..10_000], &mut got);
    let good = instance.snapshot().expect("snapshot");
    let mut garbage = vec![0u8; 4096];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in &mut garbage {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    let mut with_header = b"WSA\x01".to_vec();
    with_header.extend_from_slice(&garbage);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", garbage),
        ("garbage after the header", with_header),
        ("JSON", b"{\"reorder\":{}}".to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("half", good[..good.len() / 2].to_vec()),
        ("header only", good[..4].to_vec()),
        ("a flipped bit", flipped),
    ];
    for (what, bytes) in &cases {
        let answer = instance.restore(bytes).expect("a bad snapshot is no trap");
        let message = answer.expect_err(what);
        assert_eq!(
            Err(message.clone()),
            Pipeline::restore(bytes)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "{what}: the native library gives the same reason"
        );
        println!("{what}: {message}");
    }
    // Altered bytes under a recomputed checksum reach the decoder and the invariant check: an
    // answer either way, the same as the native library's, and a restored state runs as natively.
    let mut x = 7u64;
    let mut restored = 0;
    for _ in 0..60 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut bytes = good[..good.len() - 8].to_vec();
        let at = 4 + (x >> 33) as usize % (bytes.len() - 4);
        bytes[at] = (x >> 24) as u8;
        let sum = fnv1a(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        let mut other = stream_component().instantiate().expect("instance");
        let answer = other.restore(&bytes).expect("altered state is no trap");
        let native = Pipeline::restore(&bytes);
        assert_eq!(answer.is_ok(), native.is_ok(), "byte {at}: {answer:?}");
        if let Ok(mut native) = native {
            let mut want = Outputs::default();
            for e in &events[10_000..] {
                native.push_into(e, &mut want);
            }
            want.append(&mut native.finish());
            let mut got = Outputs::default();
            for batch in events[10_000..].chunks(1000) {
                got.append(&mut other.push(batch).expect("no trap"));
            }
            got.append(&mut other.finish().expect("no trap"));
            assert_same(&got, &want);
            restored += 1;
        }
    }
    println!("altered under a valid checksum: {restored} of 60 restored, as natively");
    // The pipeline held before the failed restores is intact.
    let (want, _) = native_run(both(), events);
    push_all(&mut instance, &events[10_000..], &mut got);
    got.append(&mut instance.finish().expect("finish"));
    assert_same(&got, &want);
}

/// The snapshot's checksum (`wattlet_stream_analytics::snapshot`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn absurd_values_neither_trap_nor_differ() {
    let event = |id: u64, ts: u32, value_mw: i64, property, plug, household, house| Event {
        id,
        ts,
        value_mw,
        property,
        plug,
        household,
        house,
    };
    let mut events: Vec<Event> = events()[..5_000].to_vec();
    let t = events.last().map_or(0, |e| e.ts);
    events.extend([
        event(u64::MAX, t, i64::MAX, Property::Load, 0, 0, 0),
        event(0, t, i64::MIN, Property::Load, 1, 0, 0),
        event(1, t, i64::MAX, Property::Load, u32::MAX, u32::MAX, u32::MAX),
        event(2, t + 1, i64::MAX, Property::Work, 0, 0, 0),
        event(3, t + 1, i64::MAX, Property::Load, 0, 0, 0),
        event(4, t + 1, i64::MAX, Property::Load, 0, 0, 0),
        event(5, t + 2, i64::MIN, Property::Load, 2, 1, 3),
        event(
            u64::MAX,
            u32::MAX - 100_000,
            i64::MAX,
            Property::Load,
            0,
            0,
            0,
        ),
        event(6, 0, 0, Property::Load, 0, 0, 0),
        event(7, u32::MAX, i64::MAX, Property::Load, 7, 7, 7),
        event(8, u32::MAX, i64::MIN, Property::Load, 7, 7, 7),
        event(9, u32::MAX, i64::MAX, Property::Work, 7, 7, 7),
        event(10, u32::MAX - 5, -1, Property::Load, 8, 0, 7),
        event(
            11,
            u32::MAX,
            i64::MAX,
            Property::Load,
            u32::MAX,
            u32::MAX,
            u32::MAX,
        ),
    ]);
    let (want, native) = native_run(both(), &events);
    for size in [1, 13, events.len()] {
        let mut instance = instance(both());
        let mut got = Outputs::default();
        for batch in events.chunks(size) {
            got.append(&mut instance.push(batch).expect("absurd values are no trap"));
        }
        got.append(&mut instance.finish().expect("finish"));
        assert_same(&got, &want);
        assert_eq!(instance.stats().expect("stats"), native.stats());
    }
}
