//! Power cuts: `wattlet edge` killed with SIGKILL at random instants while it measures and
//! uploads, and restarted each time. The device has a second meter the cloud refuses (not
//! wired to it), whose measurements are set aside. Afterwards every measurement the edge took
//! is either in the cloud (the good meter's) or set aside on the device (the stuck meter's):
//! none lost, none twice, none in both.
//!
//! `WATTLET_CRASH_TRIALS` sets the number of kills (default 200).

use std::time::{Duration, Instant};

use wattlet_testkit::{
    ConsentingEdge, Meter, Rng, add_meter, env_or, journal, pending, set_aside, spawn_edge,
    wait_for,
};

/// The binary a device runs.
const EDGE: &str = env!("CARGO_BIN_EXE_wattlet-edge");
const METER: &str = "5a0e8c71-2b3d-4e6f-8a9b-0c1d2e3f4a5b";
/// A meter of the device the cloud does not know.
const STUCK: &str = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";

#[test]
fn sigkill_at_random_instants_loses_and_duplicates_nothing() {
    let trials: u32 = env_or("WATTLET_CRASH_TRIALS", 200);
    let temp = tempfile::tempdir().expect("temp dir");
    let ConsentingEdge {
        cloud,
        device,
        meter,
        dir: edge_dir,
        config,
    } = ConsentingEdge::start(
        temp.path(),
        METER,
        Duration::from_millis(100),
        ("150ms", "250ms", "1s"),
    );
    let stuck_meter = Meter::start(Duration::from_millis(100));
    add_meter(&config, STUCK, &stuck_meter.path);

    // A first run compiles the components into wasmtime's cache (on a fresh machine that
    // takes longer than any kill window); the trials then start in milliseconds.
    let mut warm_up = spawn_edge(EDGE, &config);
    wait_for(Duration::from_secs(180), "the first measurement", || {
        !journal(&edge_dir).is_empty()
    });
    warm_up.kill().expect("SIGKILL");
    warm_up.wait().expect("reap");

    let began = Instant::now();
    let mut rng = Rng::new(0x5eed_0f00_d1ce_c0de);
    let mut kills_after_a_measurement = 0;
    let mut kills_with_unsent_rows = 0;
    let mut kills_after_setting_aside = 0;
    for _ in 0..trials {
        let before = journal(&edge_dir).len();
        let aside_before = set_aside(&edge_dir).len();
        let mut edge = spawn_edge(EDGE, &config);
        let window = 1000 * u64::from(wattlet_testkit::patience());
        std::thread::sleep(Duration::from_millis(50 + rng.below(window)));
        edge.kill().expect("SIGKILL");
        edge.wait().expect("reap");
        if journal(&edge_dir).len() > before {
            kills_after_a_measurement += 1;
        }
        if pending(&edge_dir) > 0 {
            kills_with_unsent_rows += 1;
        }
        if set_aside(&edge_dir).len() > aside_before {
            kills_after_setting_aside += 1;
        }
    }
    let killing = began.elapsed();

    // One clean run delivers what the killed ones left behind.
    let mut edge = spawn_edge(EDGE, &config);
    drop(meter);
    drop(stuck_meter);
    wait_for(Duration::from_secs(30), "the buffer to drain", || {
        pending(&edge_dir) == 0
    });
    edge.kill().expect("SIGKILL");
    edge.wait().expect("reap");

    let taken = journal(&edge_dir);
    let stored = cloud.measurements(&device, METER);
    let aside = set_aside(&edge_dir);
    assert!(
        aside
            .iter()
            .all(|(_, meter, code)| meter == STUCK && code == "meter_not_wired"),
        "set aside: {aside:?}"
    );
    let mut delivered: Vec<String> = stored.clone();
    delivered.extend(aside.iter().map(|(uuid, ..)| uuid.clone()));
    delivered.sort();
    let lost = taken
        .iter()
        .filter(|u| delivered.binary_search(u).is_err())
        .count();
    let foreign = delivered
        .iter()
        .filter(|u| taken.binary_search(u).is_err())
        .count();
    let mut distinct = delivered.clone();
    distinct.dedup();
    let duplicated = delivered.len() - distinct.len();
    eprintln!(
        "crash test: {trials} SIGKILLs in {:.1} s; {} measurements taken, {} in the cloud, {} set \
         aside; {kills_after_a_measurement} kills after a new measurement, \
         {kills_with_unsent_rows} with unsent rows in the buffer, {kills_after_setting_aside} \
         after setting rows aside; lost {lost}, duplicated {duplicated}, unknown {foreign}",
        killing.as_secs_f64(),
        taken.len(),
        stored.len(),
        aside.len(),
    );
    assert!(
        taken.len() >= trials as usize / 4,
        "too few measurements to mean anything: {}",
        taken.len()
    );
    assert!(
        kills_with_unsent_rows > 0,
        "no kill hit a buffer with unsent rows"
    );
    assert!(
        !aside.is_empty() && !stored.is_empty(),
        "the stuck meter blocked the good one, or nothing was refused"
    );
    assert_eq!((lost, duplicated, foreign), (0, 0, 0));
}
