//! A parser call that runs away does not stop the edge from reading: the real parser behind
//! `tests/components/runaway-parser` (composed by `./dev`), which never returns from the push
//! that completes `RUNAWAY:LOOP` in the byte stream and allocates without end on
//! `RUNAWAY:GROW`, fed a real SML capture with both markers by a simulated meter on a
//! pseudo-terminal. The call is stopped at its time or memory limit, counted, and a fresh
//! instance decodes the telegrams that follow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wattlet_edge::config::{Framing, MeterConfig};
use wattlet_edge::reader::{self, MeterFeed, ReaderCounters};
use wattlet_meter_parser::{Protocol, capture};
use wattlet_runtime::meter::ParserComponent;
use wattlet_runtime::sandbox::Limits;
use wattlet_survey::obis::{ENERGY_IMPORT, POWER_SUM};
use wattlet_testkit::{Meter, wait_for};

const CALL_LIMIT: Duration = Duration::from_millis(500);

#[test]
fn a_runaway_parser_call_is_stopped_and_the_reader_reads_on() {
    let path = wattlet_runtime::locate::locate("wattlet-runaway-parser-composed", None)
        .unwrap_or_else(|e| {
            panic!("{e} (./dev test composes it with the real parser: see build_components)")
        });
    let sml =
        capture::load(&capture::testdata_dir().join("sml/libsml-testing/ISKRA_MT175_eHZ.bin"))
            .expect("capture");
    // Telegrams, a push that never returns, telegrams, a push that eats memory, telegrams.
    let mut bytes = sml.clone();
    bytes.extend_from_slice(b"RUNAWAY:LOOP");
    bytes.extend_from_slice(&sml);
    bytes.extend_from_slice(b"RUNAWAY:GROW");
    bytes.extend_from_slice(&sml);
    let simulated = Meter::replay(bytes, Duration::from_millis(100));

    let engine = wattlet_runtime::engine::engine().expect("engine");
    let limits = Limits {
        call: CALL_LIMIT,
        memory: 32 << 20,
    };
    let parser = Arc::new(
        ParserComponent::load(&engine, &path)
            .expect("the runaway parser loads")
            .with_limits(limits),
    );
    let meter = MeterConfig {
        uuid: "runaway-meter".into(),
        device: simulated.path.clone(),
        protocol: Protocol::Sml,
        baud: 9600,
        framing: Framing::EightN1,
        model: None,
        expected: vec![ENERGY_IMPORT.to_owned(), POWER_SUM.to_owned()],
    };
    let feed = Arc::new(MeterFeed::default());
    let counters = ReaderCounters::default();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = reader::spawn(meter, parser, feed.clone(), counters.clone(), stop.clone());

    let sequence = || feed.latest().map_or(0, |latest| latest.sequence);
    for failures in 1..=2 {
        let started = Instant::now();
        wait_for(
            Duration::from_secs(120),
            &format!("parser failure {failures}"),
            || counters.parser_failures.get() >= failures,
        );
        let after = sequence();
        wait_for(
            Duration::from_secs(120),
            &format!("a telegram after parser failure {failures}"),
            || sequence() > after,
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{:?}",
            started.elapsed()
        );
    }
    let latest = feed.latest().expect("a reading");
    assert!(
        latest.values.iter().any(|(code, _)| code == ENERGY_IMPORT),
        "{latest:?}"
    );
    assert!(counters.telegrams.get() >= 3);
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("reader");
    simulated.finish();
}
