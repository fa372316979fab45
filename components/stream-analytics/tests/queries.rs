//! `Config::queries`: a pipeline with one query off emits exactly that query's part of a run
//! with both; `Config::per_house` is one pipeline per house, in arrival order.

mod common;

use common::{assert_same, run_pipeline, small};
use std::collections::BTreeMap;

use wattlet_stream_analytics::{Config, Event, Outputs, Pipeline, Queries, Stats};

fn run_with(events: &[Event], forecast: bool, outliers: bool) -> Outputs {
    let mut p = Pipeline::new(Config {
        lateness: 10,
        queries: Queries { forecast, outliers },
        ..Config::default()
    });
    let mut out = Outputs::default();
    for e in events {
        p.push_into(e, &mut out);
    }
    out.append(&mut p.finish());
    out
}

#[test]
fn one_query_emits_its_part_of_a_run_with_both() {
    let events = small(21, 3, 12, 3 * 60, (2, 9), 1);
    let (both, _) = run_pipeline(&events, 10);
    assert!(!both.houses.is_empty() && !both.outliers.is_empty());
    let q1 = run_with(&events, true, false);
    assert!(q1.outliers.is_empty());
    assert_same(
        &q1,
        &Outputs {
            outliers: Vec::new(),
            ..both.clone()
        },
    );
    let q2 = run_with(&events, false, true);
    assert!(q2.houses.is_empty() && q2.plugs.is_empty());
    assert_same(
        &q2,
        &Outputs {
            houses: Vec::new(),
            plugs: Vec::new(),
            outliers: both.outliers.clone(),
        },
    );
    assert!(run_with(&events, false, false).is_empty());
}

#[test]
fn a_config_without_queries_deserializes_to_both() {
    let config: Config = serde_json::from_str(r#"{"lateness": 5}"#).unwrap();
    assert_eq!(config.queries, Queries::default());
    assert_eq!(config.lateness, 5);
}

#[test]
fn per_house_is_a_pipeline_per_house_in_arrival_order() {
    // Late events and a small bound, so that the houses' watermarks differ from the global one.
    let events = small(23, 3, 12, 50 * 60, (2, 9), 1);
    let config = Config {
        lateness: 3,
        queries: Queries {
            forecast: true,
            outliers: false,
        },
        per_house: false,
    };
    let mut houses: BTreeMap<u32, Pipeline> = BTreeMap::new();
    let mut want = Outputs::default();
    for e in &events {
        let house = houses
            .entry(e.house)
            .or_insert_with(|| Pipeline::new(config));
        house.push_into(e, &mut want);
    }
    for p in houses.values_mut() {
        want.append(&mut p.finish());
    }
    assert!(houses.len() == 3 && !want.houses.is_empty());
    let late: u64 = houses.values().map(|p| p.stats().late).sum();
    assert!(late > 0, "the data must have late events");

    // The same events into one per-house pipeline, restored from its snapshot now and then.
    let per_house = Config {
        per_house: true,
        ..config
    };
    let mut p = Pipeline::new(per_house);
    let mut got = Outputs::default();
    for (n, e) in events.iter().enumerate() {
        if n % 997 == 500 {
            p = Pipeline::restore(&p.snapshot()).expect("restore");
            assert_eq!(p.config(), per_house);
        }
        p.push_into(e, &mut got);
    }
    got.append(&mut p.finish());
    assert_same(&got, &want);
    assert_eq!(
        p.stats(),
        Stats {
            events: events.len() as u64,
            late,
            outputs: want.len() as u64,
        }
    );
}
