//! The decoder against real captures (`shared/testdata`, see the SOURCES.md files there).
//!
//! Expectations come from those SOURCES tables where they exist (peer parse counts, DSMR CRC
//! status, IEC BCC status), so a new capture with its table row is tested without code changes.
//! Quirks the captures do not contain (Kermit CRC, 4 padding bytes, a wrong message CRC) are
//! derived from a real frame rather than written by hand.

use std::path::{Path, PathBuf};

use crc::{CRC_16_IBM_SDLC, CRC_16_KERMIT, Crc};
use wattlet_meter_parser::{
    Decimal, Decoder, DecoderOptions, Event, Integrity, MeterTime, Obis, Protocol, Reading,
    SkipReason, Skipped, Telegram, Value, capture,
};

const X25: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);
const KERMIT: Crc<u16> = Crc::<u16>::new(&CRC_16_KERMIT);
const START: [u8; 8] = [0x1b, 0x1b, 0x1b, 0x1b, 0x01, 0x01, 0x01, 0x01];
const ESCAPE: [u8; 4] = [0x1b; 4];

// ---------------------------------------------------------------------------------------------
// Test data and decoding helpers
// ---------------------------------------------------------------------------------------------

fn testdata() -> PathBuf {
    capture::testdata_dir()
}

fn load(relative: &str) -> Vec<u8> {
    let path = testdata().join(relative);
    capture::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn sources(dir: &str) -> String {
    let path = testdata().join(dir).join("SOURCES.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every capture file below `dir`, as paths relative to the test data root.
fn captures_in(dir: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("bin" | "hex" | "txt")
            ) {
                let relative = path.strip_prefix(root).unwrap();
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let root = testdata();
    let mut out = Vec::new();
    walk(&root, &root.join(dir), &mut out);
    out.sort();
    assert!(!out.is_empty(), "no captures in {dir}");
    out
}

fn all_captures() -> Vec<String> {
    ["sml", "dsmr", "iec62056-21"]
        .iter()
        .flat_map(|dir| captures_in(dir))
        .collect()
}

fn decode_with(bytes: &[u8], options: DecoderOptions) -> Vec<Event> {
    let mut decoder = Decoder::new(options);
    let mut events = decoder.push(bytes);
    events.extend(decoder.finish());
    events
}

fn decode(bytes: &[u8]) -> Vec<Event> {
    decode_with(bytes, DecoderOptions::default())
}

fn strict() -> DecoderOptions {
    DecoderOptions {
        strict_inner_checksums: true,
        ..DecoderOptions::default()
    }
}

/// xorshift64*: a fixed-seed generator is enough to vary chunk sizes reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn decode_chunked(bytes: &[u8], options: DecoderOptions, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let mut decoder = Decoder::new(options);
    let mut events = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let size = (1 + rng.next() % 64) as usize;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        decoder.push_into(chunk, &mut events);
        rest = tail;
    }
    events.extend(decoder.finish());
    events
}

fn telegrams(events: &[Event]) -> Vec<&Telegram> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Telegram(t) => Some(t),
            Event::Skipped(_) => None,
        })
        .collect()
}

fn skips(events: &[Event]) -> Vec<&Skipped> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Skipped(s) => Some(s),
            Event::Telegram(_) => None,
        })
        .collect()
}

fn span(event: &Event) -> (u64, u64) {
    match event {
        Event::Telegram(t) => (t.offset, t.length),
        Event::Skipped(s) => (s.offset, s.length),
    }
}

/// Events are in stream order, non-empty, do not overlap, stay inside the stream and together
/// account for every byte of it.
fn assert_coverage(name: &str, stream_len: usize, events: &[Event]) {
    let mut next = 0u64;
    for (i, event) in events.iter().enumerate() {
        let (offset, length) = span(event);
        assert!(length > 0, "{name}: event {i} is empty: {event:?}");
        assert!(
            offset >= next,
            "{name}: event {i} at {offset} overlaps the previous one ending at {next}"
        );
        assert_eq!(
            offset, next,
            "{name}: bytes {next}..{offset} are in no event (before event {i})"
        );
        next = offset + length;
        assert!(
            next <= stream_len as u64,
            "{name}: event {i} ends at {next}, after the stream's {stream_len} bytes"
        );
    }
    assert_eq!(
        next, stream_len as u64,
        "{name}: bytes {next}..{stream_len} are in no event"
    );
}

fn obis(text: &str) -> Obis {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn reading<'t>(telegram: &'t Telegram, code: &str) -> &'t Reading {
    telegram.reading(obis(code)).unwrap_or_else(|| {
        panic!(
            "no reading {code} at offset {}; readings: {:?}",
            telegram.offset,
            telegram
                .readings
                .iter()
                .map(|r| r.obis.to_string())
                .collect::<Vec<_>>()
        )
    })
}

/// The base-unit symbol of a reading (`Wh`, `W`, …).
fn unit(reading: &Reading) -> Option<&'static str> {
    reading.unit.and_then(|u| u.symbol())
}

fn number(telegram: &Telegram, code: &str) -> Decimal {
    match &reading(telegram, code).value {
        Value::Number(d) => *d,
        other => panic!("{code} is not a number: {other:?}"),
    }
}

/// `mantissa × 10^scaler` as an exact integer at the given (smaller or equal) scaler.
fn at_scaler(d: Decimal, scaler: i32) -> i128 {
    let shift = i32::from(d.scaler) - scaler;
    i128::from(d.mantissa) * 10i128.pow(shift as u32)
}

/// Compares values, not representations: 576.239 kWh-as-`576239e0` equals `576239000e-3`.
fn assert_value(actual: Decimal, mantissa: i64, scaler: i8, what: &str) {
    let expected = Decimal { mantissa, scaler };
    let common = i32::from(actual.scaler.min(scaler));
    assert_eq!(
        at_scaler(actual, common),
        at_scaler(expected, common),
        "{what}: got {actual} ({actual:?}), expected {expected}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// The bytes of a telegram or skipped range.
fn slice(bytes: &[u8], offset: u64, length: u64) -> &[u8] {
    &bytes[offset as usize..(offset + length) as usize]
}

// ---------------------------------------------------------------------------------------------
// SOURCES.md tables
// ---------------------------------------------------------------------------------------------

/// The rows of the first Markdown table after `heading` (or at the top when `None`), as cells,
/// keyed by the header row; the separator row is dropped.
fn table(markdown: &str, heading: Option<&str>) -> (Vec<String>, Vec<Vec<String>>) {
    let text = match heading {
        Some(h) => {
            markdown
                .split_once(h)
                .unwrap_or_else(|| panic!("no {h:?} in SOURCES.md"))
                .1
        }
        None => markdown,
    };
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'));
    let header = cells(lines.next().expect("table without header"));
    let rows: Vec<Vec<String>> = lines
        .map(cells)
        .filter(|row| {
            !row.iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        })
        .collect();
    for row in &rows {
        assert_eq!(row.len(), header.len(), "row {row:?} vs header {header:?}");
    }
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no column {name:?} in {header:?}"))
}

struct PeerRow {
    vector: String,
    /// The most frames any peer parsed.
    best_parsed: usize,
    /// The most frames any peer rejected for a transport CRC.
    crc_failures: usize,
}

/// `4/4, crcfail 3`, `14/14, transport-invalid 2`, `0/11, ValueError…`, `12`.
fn peer_cell(cell: &str) -> (usize, usize) {
    let digits: String = cell.chars().take_while(char::is_ascii_digit).collect();
    let parsed = digits
        .parse()
        .unwrap_or_else(|_| panic!("peer cell {cell:?} does not start with a count"));
    let mut crc_failures = 0;
    for key in ["crcfail", "transport-invalid"] {
        if let Some((_, after)) = cell.split_once(key) {
            let n: String = after
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            crc_failures = n
                .parse()
                .unwrap_or_else(|_| panic!("no count after {key:?} in {cell:?}"));
        }
    }
    (parsed, crc_failures)
}

fn peer_table() -> Vec<PeerRow> {
    let (header, rows) = table(&sources("sml"), Some("## Parse results of peer libraries"));
    assert_eq!(
        header[0], "vector",
        "unexpected peer table header {header:?}"
    );
    assert!(header.len() >= 2, "peer table has no peer column");
    rows.iter()
        .map(|row| {
            let cells: Vec<(usize, usize)> = row[1..].iter().map(|c| peer_cell(c)).collect();
            PeerRow {
                vector: row[0].clone(),
                best_parsed: cells.iter().map(|c| c.0).max().unwrap(),
                crc_failures: cells.iter().map(|c| c.1).max().unwrap(),
            }
        })
        .collect()
}

#[test]
fn peer_cells_are_read_as_documented() {
    assert_eq!(peer_cell("4/4, crcfail 3"), (4, 3));
    assert_eq!(peer_cell("14/14, transport-invalid 2"), (14, 2));
    assert_eq!(
        peer_cell("0/11, ValueError: value is required! x11"),
        (0, 0)
    );
    assert_eq!(peer_cell("12"), (12, 0));
}

// ---------------------------------------------------------------------------------------------
// Against the peers (sml/SOURCES.md)
// ---------------------------------------------------------------------------------------------

#[test]
fn sml_at_least_as_good_as_every_peer() {
    let rows = peer_table();
    assert!(
        !rows.is_empty(),
        "the peer table in sml/SOURCES.md yielded no rows"
    );
    let mut failures = Vec::new();
    for row in &rows {
        let bytes = load(&format!("sml/{}", row.vector));
        let events = decode(&bytes);
        let ours = telegrams(&events).len();
        let crc_skips = skips(&events)
            .iter()
            .filter(|s| s.reason == SkipReason::ChecksumMismatch)
            .count();
        if ours < row.best_parsed {
            failures.push(format!(
                "{}: {ours} telegrams, a peer parsed {}",
                row.vector, row.best_parsed
            ));
        }
        if crc_skips < row.crc_failures {
            failures.push(format!(
                "{}: {crc_skips} checksum-mismatch skips, peers found {} CRC failures",
                row.vector, row.crc_failures
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn peer_table_lists_every_sml_binary_capture() {
    let rows = peer_table();
    for capture in captures_in("sml") {
        let vector = capture.strip_prefix("sml/").unwrap();
        // .hex twins of .bin files are byte-identical (see hex_captures_equal_their_binary_twins).
        let twin = vector.replace(".hex", ".bin");
        assert!(
            rows.iter().any(|r| r.vector == vector || r.vector == twin),
            "{capture} has no row in the peer table"
        );
    }
}

#[test]
fn hex_captures_equal_their_binary_twins() {
    for capture in captures_in("sml") {
        if let Some(stem) = capture.strip_suffix(".hex") {
            let bin = format!("{stem}.bin");
            if testdata().join(&bin).is_file() {
                assert_eq!(load(&capture), load(&bin), "{capture} vs {bin}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DSMR and IEC 62056-21
// ---------------------------------------------------------------------------------------------

#[test]
fn dsmr_captures_verify_as_the_sources_table_says() {
    let (header, rows) = table(&sources("dsmr"), None);
    let file = column(&header, "file");
    let crc = column(&header, "CRC");
    assert!(!rows.is_empty(), "no rows in dsmr/SOURCES.md");
    let mut restored = 0;
    for capture in captures_in("dsmr") {
        let name = capture.strip_prefix("dsmr/").unwrap();
        let row = rows
            .iter()
            .find(|r| r[file] == name)
            .unwrap_or_else(|| panic!("{capture} has no row in dsmr/SOURCES.md"));
        let status = &row[crc];
        let (expected, crc_text) = if let Some(hex) = status.strip_prefix("OK ") {
            (Integrity::Verified, hex.trim())
        } else if status.contains("LF->CRLF") {
            restored += 1;
            let hex = status
                .split_whitespace()
                .find(|w| w.len() == 4 && w.chars().all(|c| c.is_ascii_hexdigit()))
                .unwrap_or_else(|| panic!("no CRC in {status:?}"));
            (Integrity::VerifiedLineEndsRestored, hex)
        } else {
            panic!("{capture}: unknown CRC status {status:?}");
        };
        let bytes = load(&capture);
        let events = decode(&bytes);
        let found = telegrams(&events);
        assert_eq!(found.len(), 1, "{capture}: {events:#?}");
        let telegram = found[0];
        assert_eq!(telegram.protocol, Protocol::Dsmr, "{capture}");
        assert_eq!(telegram.integrity, expected, "{capture}");
        // The telegram ends with the CRC the table names.
        let text = slice(&bytes, telegram.offset, telegram.length);
        let bang = text.iter().rposition(|&b| b == b'!').unwrap();
        assert_eq!(
            std::str::from_utf8(&text[bang + 1..bang + 5]).unwrap(),
            crc_text,
            "{capture}"
        );
        assert!(!telegram.readings.is_empty(), "{capture}");
    }
    // t211.txt is the one capture stored with LF line ends.
    assert_eq!(
        restored, 1,
        "expected exactly one LF-only capture (t211.txt)"
    );
}

#[test]
fn dsmr_lf_capture_is_verified_with_line_ends_restored() {
    let events = decode(&load("dsmr/dsmr5/t211.txt"));
    let found = telegrams(&events);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].integrity, Integrity::VerifiedLineEndsRestored);
    assert_value(number(found[0], "1-0:1.8.1"), 341_156, 0, "t211 1-0:1.8.1");
}

#[test]
fn dsmr_values_in_base_units() {
    for (file, code, mantissa, scaler) in [
        ("dsmr/dsmr5/isk.txt", "1-0:1.8.1", 576_239, 0),
        ("dsmr/dsmr5/kaifa.txt", "1-0:1.8.1", 6_285_065, 0),
        ("dsmr/dsmr5/flu.txt", "1-0:1.8.1", 1_114_057, 0),
        ("dsmr/dsmr5/mcs.txt", "1-0:1.8.1", 1000, 0),
    ] {
        let events = decode(&load(file));
        let telegram = telegrams(&events)[0];
        let r = reading(telegram, code);
        assert_eq!(unit(r), Some("Wh"), "{file} {code}");
        assert_value(number(telegram, code), mantissa, scaler, file);
    }
}

#[test]
fn iec_captures_decode_and_bcc_status_matches_sources() {
    let (header, rows) = table(&sources("iec62056-21"), None);
    let file = column(&header, "file");
    let notes = column(&header, "notes");
    let mut bad_bcc = 0;
    for capture in captures_in("iec62056-21") {
        let name = capture.strip_prefix("iec62056-21/").unwrap();
        let row = rows
            .iter()
            .find(|r| r[file] == name)
            .unwrap_or_else(|| panic!("{capture} has no row in iec62056-21/SOURCES.md"));
        let bcc_fails = row[notes].contains("BCC") && row[notes].contains("does not verify");
        let bytes = load(&capture);
        let events = decode(&bytes);
        let found = telegrams(&events);
        assert!(!found.is_empty(), "{capture}: no telegram: {events:#?}");
        for telegram in &found {
            assert_eq!(telegram.protocol, Protocol::Iec62056_21, "{capture}");
            assert!(!telegram.readings.is_empty(), "{capture}");
        }
        if bcc_fails {
            bad_bcc += 1;
            assert_eq!(
                found[0].integrity,
                Integrity::InnerChecksumMismatch,
                "{capture}"
            );
            assert!(
                found[0].notes.iter().any(|n| n.contains("BCC")),
                "{capture}: {:?}",
                found[0].notes
            );
            let strict_events = decode_with(&bytes, strict());
            assert!(
                telegrams(&strict_events).is_empty(),
                "{capture}: strict mode kept a telegram with a bad BCC"
            );
            assert!(
                skips(&strict_events)
                    .iter()
                    .any(|s| s.reason == SkipReason::ChecksumMismatch),
                "{capture}: {strict_events:#?}"
            );
            assert_coverage(&capture, bytes.len(), &strict_events);
        } else {
            assert_ne!(
                found[0].integrity,
                Integrity::InnerChecksumMismatch,
                "{capture}"
            );
        }
    }
    // ACE3000 and SIEC2WR5 per SOURCES.md.
    assert_eq!(
        bad_bcc, 2,
        "expected two captures whose BCC does not verify"
    );
}

#[test]
fn iec_values_in_base_units() {
    let events = decode(&load(
        "iec62056-21/dsmr_parser/example_telegrams.py__TELEGRAM_ESY5Q3DA1004_V304.txt",
    ));
    let telegram = telegrams(&events)[0];
    // 00032549.5061662*kWh
    assert_eq!(unit(reading(telegram, "1-0:1.8.0*255")), Some("Wh"));
    assert_value(
        number(telegram, "1-0:1.8.0*255"),
        325_495_061_662,
        -4,
        "ESY5Q3DA1004 1.8.0",
    );
    assert_value(number(telegram, "1-0:21.7.0*255"), 55_729, -2, "ESY 21.7.0");

    let events = decode(&load("iec62056-21/vzlogger/MeterD0.cpp__ACE3000_basic.txt"));
    let telegram = telegrams(&events)[0];
    // `1.8.0(013925.5*)`: no unit sent, the value is kept as is.
    assert_value(number(telegram, "1.8.0"), 139_255, -1, "ACE3000 1.8.0");
}

// ---------------------------------------------------------------------------------------------
// SML values
// ---------------------------------------------------------------------------------------------

#[test]
fn sml_values_in_base_units() {
    let events = decode(&load("sml/libsml-testing/DZG_DVS-7412.2_jmberg.bin"));
    let telegram = telegrams(&events)[0];
    // 65 033c9389 with scaler 52 ff, unit 1e (Wh).
    assert_eq!(unit(reading(telegram, "1-0:1.8.0")), Some("Wh"));
    assert_value(number(telegram, "1-0:1.8.0"), 54_301_577, -1, "DZG 1.8.0");

    let events = decode(&load("sml/libsml-testing/eBZ_DD3_DD32R06DTA-SMZ1.bin"));
    let telegram = telegrams(&events)[0];
    // Sent in kWh-resolution with scaler +3: 13024 × 10^3 Wh.
    assert_value(number(telegram, "1-0:1.8.0"), 13_024_000, 0, "eBZ 1.8.0");
}

// ---------------------------------------------------------------------------------------------
// Quirks from DESIGN.md "Edge", on real captures
// ---------------------------------------------------------------------------------------------

#[test]
fn quirk_capture_starts_mid_stream() {
    for file in [
        "sml/libsml-testing/dzg_dwsb20_2th_2byte.bin",
        "sml/libsml-testing/eBZ_DD3_DD32R06DTA-SMZ1.bin",
        "sml/libsml-testing/EasyMeter_Q3A_A1064V1009.bin",
    ] {
        let bytes = load(file);
        let first_start = find(&bytes, &START).expect("a start sequence") as u64;
        assert!(first_start > 0, "{file} does not start mid-stream");
        let events = decode(&bytes);
        let Event::Skipped(head) = &events[0] else {
            panic!("{file}: first event is not a skip: {:?}", events[0]);
        };
        assert!(
            matches!(head.reason, SkipReason::Garbage | SkipReason::Truncated),
            "{file}: {head:?}"
        );
        assert_eq!((head.offset, head.length), (0, first_start), "{file}");
        // What came before is the tail of an earlier frame: its end sequence is in the skip.
        let end_mark = [0x1b, 0x1b, 0x1b, 0x1b, 0x1a];
        assert!(contains(slice(&bytes, 0, first_start), &end_mark), "{file}");
        assert!(!telegrams(&events).is_empty(), "{file}");
    }

    // 8 start sequences and no end sequence: nothing is a telegram, every start is reported.
    let file = "sml/libsml-testing/DZG_DVS-7420.2V.G2_mtr1_error.bin";
    let bytes = load(file);
    let events = decode(&bytes);
    assert!(telegrams(&events).is_empty(), "{file}");
    let truncated = skips(&events)
        .iter()
        .filter(|s| s.reason == SkipReason::Truncated)
        .count();
    assert_eq!(truncated, 8, "{file}: {events:#?}");
}

#[test]
fn quirk_garbage_between_frames() {
    for (file, frames) in [
        ("sml/libsml-testing/EMH-ED300L_consumption.bin", 1),
        ("sml/libsml-testing/EMH-ED300L_delivery.bin", 2),
    ] {
        let bytes = load(file);
        let events = decode(&bytes);
        let found = telegrams(&events);
        assert_eq!(found.len(), frames, "{file}");
        assert!(found.iter().all(|t| t.integrity == Integrity::Verified));
        let is_garbage =
            |e: &Event| matches!(e, Event::Skipped(s) if s.reason == SkipReason::Garbage);
        // Garbage is reported in runs, one event per run, and never swallows a frame start.
        for pair in events.windows(2) {
            assert!(
                !(is_garbage(&pair[0]) && is_garbage(&pair[1])),
                "{file}: split garbage run {pair:?}"
            );
        }
        for skip in skips(&events) {
            if skip.reason == SkipReason::Garbage {
                assert!(!contains(slice(&bytes, skip.offset, skip.length), &START));
            }
        }
        // The decoder resynchronises: a garbage run is directly followed by a telegram.
        let resync = events
            .windows(2)
            .any(|w| is_garbage(&w[0]) && matches!(w[1], Event::Telegram(_)));
        assert!(resync, "{file}: {events:#?}");
    }
    // In delivery, garbage sits between the second good frame and a later (cut off) frame.
    let events = decode(&load("sml/libsml-testing/EMH-ED300L_delivery.bin"));
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Telegram(_) => "telegram".to_owned(),
            Event::Skipped(s) => s.reason.as_str().to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["garbage", "telegram", "telegram", "garbage", "truncated"],
        "{events:#?}"
    );
}

/// The first complete frame of a real capture, as sent.
fn first_frame(file: &str) -> (Vec<u8>, Telegram) {
    let bytes = load(file);
    let events = decode(&bytes);
    let telegram = telegrams(&events)
        .first()
        .copied()
        .cloned()
        .unwrap_or_else(|| panic!("{file}: no telegram"));
    let frame = slice(&bytes, telegram.offset, telegram.length).to_vec();
    assert!(frame.starts_with(&START), "{file}");
    let n = frame.len();
    assert_eq!(
        frame[n - 8..n - 4],
        ESCAPE,
        "{file}: end escape not on the grid"
    );
    assert_eq!(frame[n - 4], 0x1a, "{file}");
    (frame, telegram)
}

/// Replaces the transport CRC (last two bytes) with `crc` sent low byte first.
fn resign(frame: &mut [u8], crc: u16) {
    let n = frame.len();
    frame[n - 2..].copy_from_slice(&crc.to_le_bytes());
}

fn x25_resign(frame: &mut [u8]) {
    let n = frame.len();
    let crc = X25.checksum(&frame[..n - 2]);
    resign(frame, crc);
}

fn single_telegram(name: &str, frame: &[u8], options: DecoderOptions) -> Telegram {
    let events = decode_with(frame, options);
    assert_coverage(name, frame.len(), &events);
    match events.as_slice() {
        [Event::Telegram(t)] => t.clone(),
        other => panic!("{name}: expected one telegram, got {other:#?}"),
    }
}

#[test]
fn quirk_x25_transport_crc() {
    let file = "sml/libsml-testing/EMH_eHZ-HW8E2A5L0EK2P_2.bin";
    let (frame, _) = first_frame(file);
    let n = frame.len();
    // The meter's CRC is X.25 over everything before it, sent low byte first.
    assert_eq!(
        u16::from_le_bytes([frame[n - 2], frame[n - 1]]),
        X25.checksum(&frame[..n - 2])
    );
    let telegram = single_telegram(file, &frame, DecoderOptions::default());
    assert_eq!(telegram.integrity, Integrity::Verified);
    assert!(telegram.notes.is_empty(), "{:?}", telegram.notes);

    let mut broken = frame.clone();
    broken[n - 1] ^= 0x01;
    let events = decode(&broken);
    assert_coverage(file, broken.len(), &events);
    match events.as_slice() {
        [Event::Skipped(s)] => {
            assert_eq!(s.reason, SkipReason::ChecksumMismatch);
            assert_eq!((s.offset, s.length), (0, n as u64));
        }
        other => panic!("a frame with a bad CRC gave {other:#?}"),
    }
}

#[test]
fn quirk_multi_byte_tl_fields() {
    // A 48-byte signature: octet string with TL `83 02` (length 0x32 including the two TL bytes).
    let file = "sml/libsml-testing/ISKRA_MT175_eHZ.bin";
    let (frame, telegram) = first_frame(file);
    let Value::Octets(signature) = &reading(&telegram, "129-129:199.130.5").value else {
        panic!("signature is not octets");
    };
    assert_eq!(signature.len(), 48);
    let mut encoded = vec![0x83, 0x02];
    encoded.extend_from_slice(signature);
    assert!(
        contains(&frame, &encoded),
        "the signature is not sent with TL 83 02"
    );

    // A list of 21 entries: TL `f1 05`. Every entry must become a reading.
    let file = "sml/libsml-testing/HOLLEY_DTZ541-ZDBA.bin";
    let (frame, telegram) = first_frame(file);
    let tl = find(&frame, &[0xf1, 0x05, 0x77]).expect("list TL f1 05");
    let entries = usize::from(frame[tl] & 0x0f) << 4 | usize::from(frame[tl + 1] & 0x0f);
    assert_eq!(entries, 21);
    assert_eq!(telegram.readings.len(), entries, "{:?}", telegram.notes);
    assert_value(
        number(&telegram, "1-0:1.8.2"),
        1_773_601,
        -1,
        "Holley 1.8.2",
    );
    assert_value(number(&telegram, "1-0:14.7.0"), 500, -1, "Holley 14.7.0");
}

#[test]
fn quirk_odd_width_signed_integer() {
    let file = "sml/libsml-testing/dzg_dwsb20_2th_3byte.bin";
    let (frame, telegram) = first_frame(file);
    // 1-0:16.7.0 entry: … unit 62 1b (W), scaler 52 fe, value 54 xx xx xx (Integer24).
    let name = find(&frame, &[0x07, 0x01, 0x00, 0x10, 0x07, 0x00, 0xff]).expect("16.7.0");
    let value_at = name + find(&frame[name..], &[0x62, 0x1b, 0x52, 0xfe, 0x54]).unwrap() + 5;
    let raw = &frame[value_at..value_at + 3];
    assert!(
        raw[0] & 0x80 != 0,
        "the capture's 3-byte value is not negative"
    );
    let sign_extended = i64::from(i32::from_be_bytes([0xff, raw[0], raw[1], raw[2]]));
    let power = number(&telegram, "1-0:16.7.0");
    assert_value(power, sign_extended, -2, "16.7.0");
    assert_value(power, -78_851, -2, "16.7.0");
    assert_eq!(unit(reading(&telegram, "1-0:16.7.0")), Some("W"));
}

#[test]
fn quirk_list_entry_without_value() {
    let file = "sml/libsml-testing/EMH_eHZ-IW8E2A5L0EK2P_with_error.bin";
    let bytes = load(file);
    let events = decode(&bytes);
    let found = telegrams(&events);
    assert_eq!(found.len(), 11, "{file}");
    for telegram in found {
        assert_eq!(telegram.integrity, Integrity::Verified);
        assert!(telegram.reading(obis("1-0:96.50.2*6")).is_none());
        assert!(
            telegram
                .notes
                .iter()
                .any(|n| n.contains("1-0:96.50.2*6") && n.contains("no value")),
            "{:?}",
            telegram.notes
        );
        // The entries around the empty one are still read.
        for code in [
            "1-0:1.8.0",
            "1-0:16.7.0",
            "1-0:96.50.2*4",
            "129-129:199.130.5",
        ] {
            reading(telegram, code);
        }
    }
    // The empty entry is really in the frame: objName, then status 72 62 01 65 …, value 01.
    assert!(contains(
        &bytes,
        &[0x07, 0x01, 0x00, 0x60, 0x32, 0x02, 0x06]
    ));
}

#[test]
fn quirk_time_field_encodings() {
    // Holley DTZ541-ZDBA: valTime as a bare Unsigned32 right after status 65 001c0104.
    let file = "sml/libsml-testing/HOLLEY_DTZ541-ZDBA.bin";
    let (frame, telegram) = first_frame(file);
    let Some(MeterTime::SecondsIndex(t)) = reading(&telegram, "1-0:1.8.2").time else {
        panic!("{file}: no seconds index on 1.8.2");
    };
    let mut bare = vec![0x65, 0x00, 0x1c, 0x01, 0x04, 0x65];
    bare.extend_from_slice(&t.to_be_bytes());
    assert!(contains(&frame, &bare), "{file}: time {t} not sent bare");

    // Holley DTZ541-BDBA: SML_Time list (choice secIndex) 72 62 01 65 ….
    let file = "sml/libsml-testing/HOLLEY_DTZ541-BDBA_with_PIN.bin";
    let (frame, telegram) = first_frame(file);
    let Some(MeterTime::SecondsIndex(t)) = reading(&telegram, "1-0:1.8.0").time else {
        panic!("{file}: no seconds index on 1.8.0");
    };
    let mut listed = vec![0x72, 0x62, 0x01, 0x65];
    listed.extend_from_slice(&t.to_be_bytes());
    assert!(
        contains(&frame, &listed),
        "{file}: time {t} not sent as a list"
    );

    // DZG: the same list with a 3-byte Unsigned24 secIndex (72 62 01 64 …).
    let file = "sml/libsml-testing/dzg_dwsb20_2th_3byte.bin";
    let (frame, telegram) = first_frame(file);
    let Some(MeterTime::SecondsIndex(t)) = reading(&telegram, "1-0:1.8.0").time else {
        panic!("{file}: no seconds index on 1.8.0");
    };
    assert!(t < 1 << 24);
    let mut listed = vec![0x72, 0x62, 0x01, 0x64];
    listed.extend_from_slice(&t.to_be_bytes()[1..]);
    assert!(
        contains(&frame, &listed),
        "{file}: time {t} not sent as u24"
    );
}

#[test]
fn quirk_dzg_dvs74_power_encoded_as_integer16() {
    let file = "sml/libsml-testing/DZG_DVS-7412.2_jmberg.bin";
    let bytes = load(file);
    let telegram = single_telegram(file, &bytes, DecoderOptions::default());
    assert_value(number(&telegram, "1-0:16.7.0"), -29_912, -2, "default");
    assert!(
        telegram
            .notes
            .iter()
            .any(|n| n.contains("dzg-unsigned-power")),
        "{:?}",
        telegram.notes
    );
    let fixed = DecoderOptions {
        dzg_unsigned_power: true,
        ..DecoderOptions::default()
    };
    let telegram = single_telegram(file, &bytes, fixed.clone());
    assert_value(
        number(&telegram, "1-0:16.7.0"),
        35_624,
        -2,
        "dzg_unsigned_power",
    );
    // The other readings do not change.
    assert_value(number(&telegram, "1-0:1.8.0"), 54_301_577, -1, "1.8.0");

    // A correctly encoded negative value of another DZG model stays negative by default.
    let file = "sml/libsml-testing/DZG_DVS-7420.2V.G2_mtr2_neg.bin";
    let events = decode(&load(file));
    let telegram = telegrams(&events)[0];
    assert_value(number(telegram, "1-0:16.7.0"), -10_550, -2, file);
}

// ---------------------------------------------------------------------------------------------
// Quirks derived from a real frame
// ---------------------------------------------------------------------------------------------

/// The Holley DTZ541-BDBA frame: the meter family that sends Kermit, and it has no padding.
const HOLLEY: &str = "sml/libsml-testing/HOLLEY_DTZ541-BDBA_with_PIN.bin";

#[test]
fn derived_kermit_transport_crc() {
    let (mut frame, original) = first_frame(HOLLEY);
    let n = frame.len();
    let kermit = KERMIT.checksum(&frame[..n - 2]);
    assert_ne!(kermit, X25.checksum(&frame[..n - 2]));
    // Low byte first, as X.25 is sent; the decoder accepts the other order too.
    for crc in [kermit, kermit.swap_bytes()] {
        resign(&mut frame, crc);
        let telegram = single_telegram("kermit", &frame, DecoderOptions::default());
        assert_eq!(telegram.readings, original.readings);
        assert_eq!(telegram.integrity, Integrity::Verified);
        assert!(
            telegram.notes.iter().any(|n| n.contains("KERMIT")),
            "{:?}",
            telegram.notes
        );
    }
}

/// End of the SML element at `pos` (TL bytes included; lists recursively).
fn element_end(buf: &[u8], pos: usize) -> usize {
    let first = buf[pos];
    if first == 0x00 {
        return pos + 1;
    }
    let mut len = usize::from(first & 0x0f);
    let mut tl = 1;
    let mut more = first & 0x80 != 0;
    while more {
        let byte = buf[pos + tl];
        more = byte & 0x80 != 0;
        len = len << 4 | usize::from(byte & 0x0f);
        tl += 1;
    }
    if first & 0x70 == 0x70 {
        (0..len).fold(pos + tl, |p, _| element_end(buf, p))
    } else {
        pos + len
    }
}

#[test]
fn derived_wrong_message_crc_under_valid_transport_crc() {
    let (mut frame, original) = first_frame(HOLLEY);
    // First message: 76 transactionId groupNo abortOnError body crc16 endOfMessage.
    assert_eq!(frame[8], 0x76);
    let crc_at = (0..4).fold(9, |p, _| element_end(&frame, p));
    assert_eq!(frame[crc_at], 0x63, "message CRC is not an Unsigned16");
    assert!(
        !contains(&frame[8..crc_at + 3], &ESCAPE),
        "escapes would shift offsets"
    );
    frame[crc_at + 2] ^= 0x01;
    x25_resign(&mut frame);

    let telegram = single_telegram("message crc", &frame, DecoderOptions::default());
    assert_eq!(telegram.integrity, Integrity::InnerChecksumMismatch);
    assert!(
        telegram
            .notes
            .iter()
            .any(|n| n.contains("message CRC mismatch")),
        "{:?}",
        telegram.notes
    );
    assert_eq!(telegram.readings, original.readings);

    let events = decode_with(&frame, strict());
    assert_coverage("message crc strict", frame.len(), &events);
    match events.as_slice() {
        [Event::Skipped(s)] => {
            assert_eq!(s.reason, SkipReason::ChecksumMismatch, "{s:?}");
            assert_eq!((s.offset, s.length), (0, frame.len() as u64));
        }
        other => panic!("strict mode: expected one skip, got {other:#?}"),
    }
}

#[test]
fn derived_four_padding_bytes() {
    let (frame, original) = first_frame(HOLLEY);
    let n = frame.len();
    assert_eq!(
        frame[n - 3],
        0,
        "{HOLLEY}: expected a frame without padding"
    );
    // Same escaped payload, four zero bytes of padding announced in the end sequence.
    let rebuild = |padding: u8| {
        let mut out = frame[..n - 8].to_vec();
        out.extend(std::iter::repeat_n(0, usize::from(padding)));
        out.extend_from_slice(&ESCAPE);
        out.extend_from_slice(&[0x1a, padding, 0, 0]);
        x25_resign(&mut out);
        out
    };
    let padded = rebuild(4);
    let telegram = single_telegram("padding 4", &padded, DecoderOptions::default());
    assert_eq!(telegram.integrity, Integrity::Verified);
    assert_eq!(telegram.readings, original.readings);
    assert_eq!(telegram.notes, original.notes);

    // Beyond what any meter sends, the announced padding is refused rather than guessed.
    let over = rebuild(8);
    let events = decode(&over);
    assert_coverage("padding 8", over.len(), &events);
    assert!(telegrams(&events).is_empty(), "{events:#?}");
}

// ---------------------------------------------------------------------------------------------
// Streaming invariants
// ---------------------------------------------------------------------------------------------

fn option_sets() -> Vec<DecoderOptions> {
    let mut sets = vec![DecoderOptions::default(), strict()];
    for protocol in [Protocol::Sml, Protocol::Iec62056_21, Protocol::Dsmr] {
        sets.push(DecoderOptions {
            protocol: Some(protocol),
            ..DecoderOptions::default()
        });
    }
    sets
}

#[test]
fn chunking_does_not_change_events_and_every_byte_is_accounted_for() {
    let captures = all_captures();
    assert!(
        captures.len() > 40,
        "only {} captures found",
        captures.len()
    );
    for capture in &captures {
        let bytes = load(capture);
        for options in option_sets() {
            let whole = decode_with(&bytes, options.clone());
            let name = format!("{capture} {options:?}");
            assert_coverage(&name, bytes.len(), &whole);
            for seed in [1, 0x5eed, 0xdead_beef] {
                let chunked = decode_chunked(&bytes, options.clone(), seed);
                assert!(
                    chunked == whole,
                    "{name}: chunked (seed {seed}) differs from one push"
                );
            }
        }
    }
}

#[test]
fn concatenated_captures_decode_as_their_parts() {
    // A probe sees one long stream; captures back to back must not hide each other's telegrams.
    let mut stream = Vec::new();
    let mut expected = 0;
    for capture in all_captures() {
        let bytes = load(&capture);
        expected += telegrams(&decode(&bytes)).len();
        stream.extend_from_slice(&bytes);
    }
    let events = decode_chunked(&stream, DecoderOptions::default(), 42);
    assert_coverage("all captures", stream.len(), &events);
    // A capture cut mid-frame is followed by the next one's start sequence or garbage; the
    // decoder must resync there and lose none of the next capture's telegrams.
    assert_eq!(
        telegrams(&events).len(),
        expected,
        "telegrams in the concatenation vs in the parts"
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzz regressions (inputs as the fuzz targets take them: a selector byte, then the stream)
// ---------------------------------------------------------------------------------------------

/// Target `sml`, minimized: a frame start and more than `max_telegram_len` (512) bytes without
/// an end sequence. The oversized frame used to be cut wherever the buffered data ended, so one
/// push and chunks of 41 reported skips of different lengths.
const FUZZ_SML_OVERSIZED_CHUNKING: &[&str] = &[
    "e800ff6401018001621e52030c1b1b1b1b010101017607001c00026ddd620062007263a81501000000000000005a0100",
    "02ec3b0177070100070100620affff726201650c0e50e27777078181c78203ff010101ff6401018001621e5203650001",
    "77078181c782454d48010032e0017700007707010001095077078181c78203ff0101010800ff6401018001621e520365",
    "000177078181c78203ff0101010800ff64010180010032e0017707010000007707016500010104454d48010032e00177",
    "07010000007707010001090104454d480100e001770701000000770701000109018001621e520365000177078181c782",
    "03ff0101010800ff6401018001621e52036500010104454d48010032e001770701000000770701000109036500010104",
    "454d48010032e0017707010000007707010001090104454d48010032e001770701000000770701000109070100010932",
    "e0017707010000007707010001090104454d48010032e001770701000000770701000109070100010900000077070100",
    "0109036500010104454d48010032e0017707010000007707010001090104454d48010032e00177070100000077070100",
    "0109070100010932e0017707010000007707010001090104454d48010032e00177070100000077070100010701000109",
    "01000000770701000107010001090001090104454d48010032e001770701000000770701000107010001090100000077",
    "070100010701000109",
];

/// Target `dsmr`, minimized: a text telegram without `!` whose SML start sequence begins just
/// before `max_telegram_len` (512). With the start sequence cut by a chunk boundary the scan ran
/// on to 512 and reported Oversized; in one push it reported Truncated at the start sequence.
const FUZZ_TEXT_START_SEQUENCE_AT_LIMIT: &[&str] = &[
    "872f3f210d0a2f4c475a4c475a35325a4d4431322a32373832353330392a6b5768290d0a313d303a3200000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000002e382e30",
    "2a3235352830303031393934392e333232313439332a6b5768290d0a312d303a323137302e323535283030303734372e",
    "38352a57290d0a312d303a34312e372e302a323535283030303733372e32382a57290d0a312d303a36312e372e302a32",
    "353540303030362f33392e37332a5729f90a3129303a312e372e302a323535283030323132342e38362a57290d0a312d",
    "303a30362f33392e37332a57290d0a3129303a312e372e302a323535283030323132342e38362a57290d0a312d303a39",
    "363e352e352a323535283830290d0a302d303a39362e312e3235352a323535283145aa5931333133303032ffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffff36353529a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4",
    "a4a4a4a4a4a434362e302a6b5768290d0a322e382e30283030343332392e362a6b571b1b1b1b0101010168290d",
];

/// Decodes a fuzz input the way `fuzz/src/lib.rs` does and checks the same invariants.
fn replay_fuzz_input(protocol: Protocol, hex_lines: &[&str]) -> Vec<Event> {
    let data = hex::decode(hex_lines.concat()).unwrap();
    let (&selector, stream) = data.split_first().unwrap();
    let flags = selector & 0x40 != 0;
    let options = DecoderOptions {
        protocol: Some(protocol),
        strict_inner_checksums: flags,
        dzg_unsigned_power: flags,
        max_telegram_len: if selector & 0x80 != 0 { 512 } else { 64 * 1024 },
    };
    let whole = decode_with(stream, options.clone());
    assert_coverage("fuzz input", stream.len(), &whole);
    // The chunk size the fuzzer chose, and every other one.
    for chunk in 1..=64 {
        let mut decoder = Decoder::new(options.clone());
        let mut events = Vec::new();
        for part in stream.chunks(chunk) {
            decoder.push_into(part, &mut events);
        }
        events.extend(decoder.finish());
        assert!(events == whole, "chunks of {chunk} differ from one push");
    }
    whole
}

#[test]
fn fuzz_regression_oversized_sml_frame_is_cut_independently_of_chunking() {
    let events = replay_fuzz_input(Protocol::Sml, FUZZ_SML_OVERSIZED_CHUNKING);
    let oversized: Vec<_> = skips(&events)
        .into_iter()
        .filter(|s| s.reason == SkipReason::Oversized)
        .collect();
    // Cut at the first 4-byte group boundary past 512 bytes from the frame start.
    assert_eq!(oversized.len(), 1, "{events:#?}");
    assert_eq!(oversized[0].length, 516);
}

#[test]
fn fuzz_regression_text_telegram_cut_by_sml_start_near_the_size_limit() {
    let events = replay_fuzz_input(Protocol::Dsmr, FUZZ_TEXT_START_SEQUENCE_AT_LIMIT);
    let cut: Vec<_> = skips(&events)
        .into_iter()
        .filter(|s| s.detail.contains("SML frame began"))
        .collect();
    assert_eq!(cut.len(), 1, "{events:#?}");
    assert_eq!(cut[0].reason, SkipReason::Truncated);
    assert!(
        skips(&events)
            .iter()
            .all(|s| s.reason != SkipReason::Oversized)
    );
}
