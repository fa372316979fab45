//! `Config::queries`: a pipeline with one query off emits exactly that query's part of a run
//! with both, and the per-house Q1 of the distributed run equals Q1 of the whole stream.

mod common;

use common::{assert_same, run_pipeline, small};
use wattlet_stream_analytics::{Config, Event, Outputs, Pipeline, Queries};

fn run_with(events: &[Event], forecast: bool, outliers: bool) -> Outputs {
    let mut p = Pipeline::new(Config {
        lateness: 10,
        queries: Queries { forecast, outliers },
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
