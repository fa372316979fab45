//! The edge's probe reader on a real serial device path: real captures replayed on a
//! pseudo-terminal (as `wattlet meter sim --replay` does), read with the protocol's line
//! settings and decoded by the parser component. What the reader publishes must be the
//! readings of interest of a telegram of that capture, in the Data API's units.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wattlet_edge::config::{Framing, MeterConfig};
use wattlet_edge::reader::{self, Latest, MeterFeed, ReaderCounters, registers};
use wattlet_meter_parser::{Decoder, DecoderOptions, Event, Protocol, capture};
use wattlet_runtime::meter::ParserComponent;
use wattlet_survey::obis::{ENERGY_IMPORT, POWER_IMPORT, POWER_SUM};
use wattlet_survey::reading::{Reduced, reduce};
use wattlet_testkit::{Meter, wait_for};

/// A telegram reduced to what a measurement takes: (readings of interest, missing codes).
type Reduction = (Vec<(String, f64)>, Vec<String>);

fn reduction(reduced: Reduced) -> Reduction {
    (reduced.values, reduced.missing)
}

/// Replays `file` on a pty and returns the first reading the edge's reader publishes, with
/// every reduction of the capture's telegrams decoded natively.
fn read_through_a_probe(
    file: &str,
    protocol: Protocol,
    baud: u32,
    expected: &[&str],
) -> (Latest, Vec<Reduction>) {
    let path = capture::testdata_dir().join(file);
    let bytes = capture::load(&path).expect("capture");
    let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    let mut decoder = Decoder::new(DecoderOptions {
        protocol: Some(protocol),
        ..DecoderOptions::default()
    });
    let mut events = decoder.push(&bytes);
    events.extend(decoder.finish());
    let reductions: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Telegram(t) => Some(reduction(reduce(&registers(t), &expected))),
            Event::Skipped(_) => None,
        })
        .collect();
    assert!(!reductions.is_empty(), "{file} holds telegrams");

    let simulated = Meter::replay(bytes, Duration::from_millis(100));
    let meter = MeterConfig {
        uuid: "meter-under-test".into(),
        device: simulated.path.clone(),
        protocol,
        baud,
        framing: Framing::EightN1,
        model: None,
        expected,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let engine = wattlet_runtime::engine::engine().expect("engine");
    let component =
        wattlet_runtime::locate::locate("wattlet-meter-parser", None).expect("component");
    let parser = Arc::new(ParserComponent::load(&engine, &component).expect("parser"));
    let feed = Arc::new(MeterFeed::default());
    let counters = ReaderCounters::default();
    let reader = reader::spawn(meter, parser, feed.clone(), counters.clone(), stop.clone());
    // The first load compiles the parser component (minutes under qemu with a cold cache).
    let mut latest = None;
    wait_for(
        Duration::from_secs(60),
        &format!("a telegram from {file}"),
        || {
            latest = feed.latest();
            latest.is_some()
        },
    );
    let latest = latest.expect("a reading");
    assert!(counters.telegrams.get() >= 1, "telegrams are counted");
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    simulated.finish();
    (latest, reductions)
}

#[test]
fn sml_capture_through_a_probe() {
    let (latest, reductions) = read_through_a_probe(
        "sml/libsml-testing/ISKRA_MT175_eHZ.bin",
        Protocol::Sml,
        9600,
        &[ENERGY_IMPORT, POWER_SUM],
    );
    assert!(
        latest.values.iter().any(|(code, _)| code == ENERGY_IMPORT),
        "{latest:?}"
    );
    assert!(
        reductions.contains(&(latest.values.clone(), latest.missing.clone())),
        "{latest:?} is not a telegram of the capture"
    );
}

#[test]
fn dsmr_capture_through_a_probe_sums_the_tariffs() {
    let (latest, reductions) = read_through_a_probe(
        "dsmr/dsmr5/flu.txt",
        Protocol::Dsmr,
        115_200,
        &[ENERGY_IMPORT, POWER_IMPORT],
    );
    // 1-0:1.8.1(001114.057*kWh) + 1-0:1.8.2(000997.282*kWh), and 1-0:1.7.0(00.031*kW).
    let value = |code: &str| {
        latest
            .values
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, v)| *v)
    };
    assert_eq!(value(ENERGY_IMPORT), Some(2111.339));
    assert_eq!(value(POWER_IMPORT), Some(0.031));
    assert!(latest.missing.is_empty(), "{latest:?}");
    assert!(reductions.contains(&(latest.values.clone(), latest.missing.clone())));
}
