//! The generator and the REFIT converter.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Cursor;

use common::{Gunzip, refit_file, small};
use wattlet_stream_analytics::event::EventReader;
use wattlet_stream_analytics::generate::{GenConfig, Generator, write_csv};
use wattlet_stream_analytics::refit::{RefitConfig, RefitError, RefitReader, parse_iso};
use wattlet_stream_analytics::{Event, PlugKey, Property};

#[test]
fn the_generator_is_deterministic_and_round_trips_through_csv() {
    let a = small(5, 3, 12, 30, (1, 2), 1);
    assert_eq!(a, small(5, 3, 12, 30, (1, 2), 1));
    assert_ne!(a, small(6, 3, 12, 30, (1, 2), 1));
    let mut csv = Vec::new();
    assert_eq!(
        write_csv(a.iter().copied(), &mut csv).unwrap(),
        a.len() as u64
    );
    let back: Vec<Event> = EventReader::new(Cursor::new(csv))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back, a);
}

#[test]
fn generated_data_has_the_challenge_shape() {
    let events = small(7, 4, 40, 120, (1, 2), 1);
    let ids: HashSet<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    let plugs: HashSet<PlugKey> = events.iter().map(Event::key).collect();
    assert_eq!(plugs.len(), 40);
    assert_eq!(
        events.iter().map(|e| e.house).collect::<HashSet<_>>().len(),
        4
    );
    // Some events out of order, some beyond the lateness bound.
    let mut max = 0;
    let (mut behind, mut late) = (0, 0);
    for e in &events {
        if e.ts < max {
            behind += 1;
        }
        if e.ts + 10 < max {
            late += 1;
        }
        max = max.max(e.ts);
    }
    assert!(behind > 100 && late > 0, "{behind} behind, {late} late");
    // About one load per 1.5 s per plug.
    let loads = events.iter().filter(|e| e.is_load()).count() as f64;
    let rate = loads / 40.0 / 7200.0;
    assert!((0.5..0.75).contains(&rate), "{rate} loads/s per plug");
    // Work is cumulative: never decreasing per plug, in time order.
    let mut sorted: Vec<&Event> = events
        .iter()
        .filter(|e| e.property == Property::Work)
        .collect();
    sorted.sort_by_key(|e| (e.ts, e.id));
    let mut last: HashMap<PlugKey, i64> = HashMap::new();
    for e in sorted {
        let prev = last.insert(e.key(), e.value_mw).unwrap_or(i64::MIN);
        assert!(e.value_mw >= prev, "work went down for {:?}", e.key());
    }
    assert!(events.iter().all(|e| e.value_mw >= 0));
}

#[test]
fn full_scale_config_has_2125_plugs_in_40_houses() {
    let c = GenConfig {
        duration: 4,
        ..GenConfig::default()
    };
    let events: Vec<Event> = Generator::new(c).collect();
    let plugs: HashSet<PlugKey> = events.iter().map(Event::key).collect();
    assert_eq!(plugs.len(), 2125);
    assert_eq!(
        events.iter().map(|e| e.house).collect::<HashSet<_>>().len(),
        40
    );
}

#[test]
fn iso_timestamps() {
    assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_iso("2013-09-17T22:08:00Z"), Some(1_379_455_680));
    assert_eq!(parse_iso("2016-02-29T12:00:30Z"), Some(1_456_747_230));
    for bad in [
        "2013-09-17 22:08:00Z",
        "2013-13-01T00:00:00Z",
        "2013-09-17T22:08:00",
        "x",
        "2013-09-17T2a:08:00Z",
    ] {
        assert_eq!(parse_iso(bad), None, "{bad}");
    }
}

const HEADER: &str = "timestamp_utc,mains_w,kettle_w,dishwasher_w,washing_machine_w,microwave_w\n";

fn convert(text: &str, work_every: u32) -> Vec<Result<Event, RefitError>> {
    let config = RefitConfig {
        house: 2,
        work_every,
        first_id: 100,
        max_seconds: None,
    };
    RefitReader::new(Cursor::new(text.to_string()), config).collect()
}

#[test]
fn refit_rows_become_a_load_per_appliance_and_work_from_the_loads() {
    let text = format!(
        "{HEADER}2013-09-17T22:08:00Z,694.3,0,0,2000.5,0\n2013-09-17T22:08:30Z,700,3.6,,2000.5,0\n"
    );
    let events: Vec<Event> = convert(&text, 2)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let loads: Vec<_> = events
        .iter()
        .filter(|e| e.is_load())
        .map(|e| (e.ts, e.plug, e.value_mw))
        .collect();
    // The mains column is not a plug; the empty dishwasher cell is no event.
    assert_eq!(
        loads,
        [
            (1_379_455_680, 0, 0),
            (1_379_455_680, 1, 0),
            (1_379_455_680, 2, 2_000_500),
            (1_379_455_680, 3, 0),
            (1_379_455_710, 0, 3_600),
            (1_379_455_710, 2, 2_000_500),
            (1_379_455_710, 3, 0)
        ]
    );
    // Work after every 2 rows of a plug: 2 × 2000.5 W × 30 s = 120,030 W·s = 33 Wh (33.341…).
    let work: Vec<_> = events
        .iter()
        .filter(|e| e.property == Property::Work)
        .map(|e| (e.plug, e.value_mw))
        .collect();
    assert_eq!(work, [(0, 0), (2, 33), (3, 0)]);
    assert!(events.iter().all(|e| e.house == 2 && e.household == 0));
    assert_eq!(events[0].id, 100);
}

#[test]
fn refit_errors_name_line_and_column() {
    let bad_time = convert(
        &format!("{HEADER}2013-09-17T22:08:00Z,1,0,0,0,0\nyesterday,1,0,0,0,0\n"),
        0,
    );
    match bad_time.last() {
        Some(Err(RefitError::Cell { line, column, .. })) => {
            assert_eq!((*line, column.as_str()), (3, "timestamp_utc"))
        }
        other => panic!("{other:?}"),
    }
    let bad_value = convert(&format!("{HEADER}2013-09-17T22:08:00Z,1,0,0,lots,0\n"), 0);
    match bad_value.last() {
        Some(Err(e @ RefitError::Cell { line: 2, .. })) => {
            assert!(e.to_string().contains("plug 2"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let short = convert(&format!("{HEADER}2013-09-17T22:08:00Z,1,0\n"), 0);
    assert!(matches!(
        short.last(),
        Some(Err(RefitError::Cell { line: 2, .. }))
    ));
    assert!(matches!(
        convert("a,b,c\n", 0).last(),
        Some(Err(RefitError::BadHeader(_)))
    ));
    assert!(matches!(
        convert("", 0).last(),
        Some(Err(RefitError::NoHeader))
    ));
}

#[test]
fn the_real_refit_file_converts() {
    let Some(path) = refit_file("house2.csv.gz") else {
        return;
    };
    let Some(mut gz) = Gunzip::open(&path) else {
        return;
    };
    let header = gz.lines().next().unwrap();
    assert_eq!(format!("{header}\n"), HEADER);
    drop(gz);
    let Some(mut gz) = Gunzip::open(&path) else {
        return;
    };
    let config = RefitConfig {
        house: 2,
        work_every: 10,
        first_id: 0,
        max_seconds: Some(7 * 86_400),
    };
    let events: Vec<Event> = RefitReader::new(&mut gz.reader, config)
        .collect::<Result<_, _>>()
        .unwrap();
    let loads = events.iter().filter(|e| e.is_load()).count();
    assert_eq!(loads % 4, 0, "four appliances per row");
    assert!(events.windows(2).all(|w| w[0].ts <= w[1].ts), "time order");
    assert!(events.last().unwrap().ts - events[0].ts < 7 * 86_400);
}
