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

#[test]
fn snapshots_restore_to_an_identical_continuation() {
    let events = small(13, 3, 10, 26 * 60, (20, 60), 1);
    let (want, _) = run_pipeline(&events, 10);
    let mut p = Pipeline::new(Config {
        lateness: 10,
        ..Config::default()
    });
    let mut got = Outputs::default();
    for (n, e) in events.iter().enumerate() {
        if n % (events.len() / 5 + 1) == 7 {
            let bytes = p.snapshot();
            p = Pipeline::restore(&bytes).expect("own snapshot restores");
        }
        p.push_into(e, &mut got);
    }
    got.append(&mut p.finish());
    assert_same(&got, &want);
}

#[test]
fn bad_snapshots_are_errors() {
    use wattlet_stream_analytics::snapshot::RestoreError;
    let events = small(14, 2, 6, 90, (2, 9), 1);
    let mut p = Pipeline::default();
    for e in &events[..events.len() / 2] {
        p.push(e);
    }
    let good = p.snapshot();
    assert!(Pipeline::restore(&good).is_ok());
    assert!(matches!(
        Pipeline::restore(&[]),
        Err(RestoreError::NotASnapshot(0))
    ));
    assert!(Pipeline::restore(b"{\"reorder\":1}").is_err());
    for cut in [1, 4, 5, good.len() / 2, good.len() - 9, good.len() - 1] {
        assert!(Pipeline::restore(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x10;
    assert_eq!(
        Pipeline::restore(&flipped).err(),
        Some(RestoreError::Checksum)
    );
    let mut format = good.clone();
    format[3] = 99;
    assert_eq!(
        Pipeline::restore(&format).err(),
        Some(RestoreError::Format(99))
    );
    // A well-formed snapshot of an inconsistent state (checksum recomputed over altered bytes):
    // an error, not a panic, whatever the alteration.
    let mut seed = 1u64;
    for _ in 0..300 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut bytes = good[..good.len() - 8].to_vec();
        let at = 4 + (seed >> 33) as usize % (bytes.len() - 4);
        bytes[at] = (seed >> 20) as u8;
        let sum = fnv1a(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        if let Ok(q) = Pipeline::restore(&bytes) {
            // Decoded and consistent: it must also run.
            let mut q = q;
            for e in &events[events.len() / 2..] {
                q.push(e);
            }
            q.finish();
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
