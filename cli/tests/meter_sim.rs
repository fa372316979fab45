//! `wattlet meter sim` end to end: the real binary writes SML on a pty, this test reads the slave
//! device as the edge daemon will and decodes it with the parser library.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wattlet_meter_parser::{
    Decoder, DecoderOptions, Event, Integrity, Obis, SkipReason, Telegram, Unit, Value,
};

const IMPORT: Obis = Obis::new(1, 0, 1, 8, 0, 255);
const EXPORT: Obis = Obis::new(1, 0, 2, 8, 0, 255);
const POWER: Obis = Obis::new(1, 0, 16, 7, 0, 255);
const SERVER_ID: &str = "0a01574c540000bc614e";

fn mantissa(t: &Telegram, obis: Obis) -> (i64, Option<Unit>) {
    let r = t.reading(obis).unwrap_or_else(|| panic!("{obis} missing"));
    match r.value {
        Value::Number(d) => (d.mantissa, r.unit),
        ref other => panic!("{obis}: {other:?}"),
    }
}

#[test]
fn simulated_meter_on_a_pty_decodes_cleanly() {
    let mut child = wattlet_testkit::binary!("wattlet")
        .args(["meter", "sim", "--interval-ms", "50", "--count", "20"])
        // 40 kW mean: 20 kW at simulated midnight moves 1.8.0 by 0.28 Wh per 50 ms frame, so
        // it rises at the 0.1 Wh resolution of every frame.
        .args(["--power-w", "40000", "--server-id", SERVER_ID])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wattlet");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read slave path");
    let slave = line.trim().to_owned();
    assert!(slave.starts_with("/dev/pts/"), "slave path: {slave:?}");

    // A reader thread: File::read blocks, so bytes reach the test through a channel with a
    // deadline. It ends with EIO when the simulator exits and the master closes.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut port = std::fs::File::open(&slave).expect("open slave");
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = port.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let mut decoder = Decoder::new(DecoderOptions::default());
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(bytes) => events.extend(decoder.push(&bytes)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if child.try_wait().expect("wait").is_some() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    events.extend(decoder.finish());
    // The reader may see the hangup a moment before the process has exited: give it 3 s.
    let exit_deadline = Instant::now() + Duration::from_secs(3);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > exit_deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "wattlet meter sim failed: {stderr}");

    let telegrams: Vec<&Telegram> = events
        .iter()
        .filter_map(|e| match e {
            Event::Telegram(t) => Some(t),
            Event::Skipped(_) => None,
        })
        .collect();
    let mismatches = events
        .iter()
        .filter(|e| matches!(e, Event::Skipped(s) if s.reason == SkipReason::ChecksumMismatch))
        .count();
    assert!(
        telegrams.len() >= 15,
        "{} telegrams; events: {events:?}",
        telegrams.len()
    );
    assert_eq!(mismatches, 0, "{events:?}");
    let mut last_import = i64::MIN;
    for t in &telegrams {
        assert_eq!(t.integrity, Integrity::Verified, "{t:?}");
        assert_eq!(t.meter_id.as_deref(), Some(SERVER_ID));
        let (import, unit) = mantissa(t, IMPORT);
        assert_eq!(unit, Some(Unit::WATT_HOUR));
        assert!(
            import > last_import,
            "1.8.0 not rising: {import} after {last_import}"
        );
        last_import = import;
        assert_eq!(mantissa(t, EXPORT).1, Some(Unit::WATT_HOUR));
        let (power, unit) = mantissa(t, POWER);
        assert_eq!(unit, Some(Unit::WATT));
        assert!(power > 0);
    }
}

#[test]
fn bad_server_id_is_an_error_not_a_panic() {
    let ran = wattlet_testkit::run(
        wattlet_testkit::binary!("wattlet").args([
            "meter",
            "sim",
            "--server-id",
            "zz",
            "--count",
            "1",
        ]),
        None,
    );
    assert_eq!(ran.status.code(), Some(2));
    assert!(ran.stderr.contains("not hex"));
}
