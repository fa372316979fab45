//! All operator state serializes: a pipeline saved mid-stream and restored continues exactly as
//! an uninterrupted one.

mod common;

use common::{assert_same, run_pipeline, small};
use wattlet_stream_analytics::{Config, Outputs, Pipeline};

#[test]
fn restored_pipelines_continue_identically() {
    // Two days so that past-day histories and the 24 h window are in the state.
    let events = small(11, 3, 10, 49 * 60, (20, 60), 1);
    let (want, _) = run_pipeline(&events, 10);
    let mut p = Pipeline::new(Config {
        lateness: 10,
        ..Config::default()
    });
    let mut got = Outputs::default();
    // Save and restore at irregular points (the reorder buffer is usually non-empty).
    let cuts: Vec<usize> = (1..12).map(|i| i * events.len() / 12 + i).collect();
    let mut restores = 0;
    for (n, e) in events.iter().enumerate() {
        if cuts.contains(&n) {
            let json = serde_json::to_string(&p).unwrap();
            p = serde_json::from_str(&json).unwrap();
            restores += 1;
        }
        p.push_into(e, &mut got);
    }
    let json = serde_json::to_string(&p).unwrap();
    let mut p: Pipeline = serde_json::from_str(&json).unwrap();
    got.append(&mut p.finish());
    assert_eq!(restores, 11);
    assert_same(&got, &want);
    assert_eq!(p.stats().outputs, want.len() as u64);
}

#[test]
fn a_restored_pipeline_serializes_to_the_same_state() {
    let events = small(12, 2, 6, 90, (2, 9), 1);
    let mut p = Pipeline::default();
    for e in &events[..events.len() / 2] {
        p.push(e);
    }
    let a: serde_json::Value = serde_json::to_value(&p).unwrap();
    let q: Pipeline = serde_json::from_value(a.clone()).unwrap();
    assert_eq!(serde_json::to_value(&q).unwrap(), a);
}
