//! Text telegrams of meters and gateways that are not in `shared/testdata`: one test per class of
//! real meter behaviour, on telegrams built here to the meters' documented shapes (ISKRA MT174
//! mode C readouts, DSMR 2.2/3, Fluvius e-MUCS, NWA Warmtelink, Landis+Gyr and Siemens heat
//! meters, D0 gateway answers). Checksums are computed, so integrity is asserted, not assumed.
//!
//! Every stream built here is also a fuzz seed (`fuzz/seeds/`, see `fuzz_seeds_are_these_streams`).

mod support;
mod telegrams;

use support::*;
use telegrams::*;
use wattlet_meter_parser::{
    DecoderOptions, Event, Integrity, MeterTime, Protocol, Reading, SkipReason, Value, capture,
};

// ---------------------------------------------------------------------------------------------
// IEC 62056-21 maximum demand: value first, then the time it was reached
// ---------------------------------------------------------------------------------------------

#[test]
fn iec_max_demand_keeps_value_and_unit_with_the_time_after_it() {
    let bytes = mt174();
    let events = decode("mt174", &bytes);
    let t = single("mt174", &events);
    assert_eq!(t.protocol, Protocol::Iec62056_21);
    assert_eq!(t.integrity, Integrity::Verified);
    assert_eq!(t.header.as_deref(), Some("ISk5MT174-0001"));
    for (code, mantissa) in [
        ("1-0:1.6.0*255", 2468),
        ("1-0:1.6.1*255", 2468),
        ("1-0:1.6.2*255", 1357),
        ("1-0:2.6.0*255", 912),
    ] {
        let r = reading(t, code);
        assert_quantity(r, mantissa, 0, Some("W"));
        // The meter's clock has no UTC offset: the time is noted, not guessed.
        assert_eq!(r.time, None, "{code}");
    }
    assert!(
        has_note(t, "1-0:1.6.0*255: time 2023-12-01 09:30:00"),
        "{:?}",
        t.notes
    );
    assert_quantity(reading(t, "1-0:1.8.0*255"), 12_345_678, 0, Some("Wh"));

    // Line noise right before the `/` does not hide the readout.
    let mut noisy = b"x7".to_vec();
    noisy.extend(&bytes);
    let events = decode("noisy", &noisy);
    assert_eq!(single("noisy", &events).offset, 2);

    // DSMR sends the time first, with its offset: that stays right and becomes the reading's time.
    let flu = capture::load(&capture::testdata_dir().join("dsmr/dsmr5/flu.txt")).unwrap();
    let events = decode("flu", &flu);
    let r = reading(single("flu", &events), "1-0:1.6.0");
    assert_quantity(r, 2521, 0, Some("W"));
    // 230204073000W: 2023-02-04 07:30 CET.
    assert_eq!(r.time, Some(MeterTime::UnixSeconds(1_675_492_200)));
}

// ---------------------------------------------------------------------------------------------
// Option select echo before STX
// ---------------------------------------------------------------------------------------------

#[test]
fn option_select_echo_before_stx_loses_nothing_and_the_bcc_is_checked() {
    let bytes = mt174_session();
    for options in [
        DecoderOptions::default(),
        DecoderOptions {
            strict_inner_checksums: true,
            ..DecoderOptions::default()
        },
    ] {
        let events = decode_checked("session", &bytes, options);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::Telegram(_) => "telegram",
                Event::Skipped(s) => s.reason.as_str(),
            })
            .collect();
        assert_eq!(kinds, ["request-echo", "telegram"], "{events:#?}");
        let t = single("session", &events);
        assert_eq!(t.integrity, Integrity::Verified);
        // The first data set after the echo is there, and first.
        assert_eq!(t.readings[0].obis, obis("0-0:C.1.0*255"));
        assert_eq!(t.readings.len(), 12);
        assert_eq!(t.meter_id.as_deref(), Some("09610"));
        assert!(has_note(t, "option select"), "{:?}", t.notes);
    }
    // The same readout without the echo gives the same readings.
    let plain = decode("mt174", &mt174());
    assert_eq!(
        single("mt174", &plain).readings,
        single("session", &decode("session", &bytes)).readings
    );
}

// ---------------------------------------------------------------------------------------------
// Readouts without identification, and prose
// ---------------------------------------------------------------------------------------------

#[test]
fn gateway_readout_of_data_lines_only_is_a_telegram() {
    let bytes = gateway_data_lines();
    let events = decode("data lines", &bytes);
    let t = single("data lines", &events);
    assert_eq!(t.header, None);
    assert_eq!(t.protocol, Protocol::Iec62056_21);
    assert_eq!(t.integrity, Integrity::Unchecked);
    assert_eq!(t.meter_id.as_deref(), Some("00012345"));
    // 0321.456 GJ in J; several data sets per line are all read.
    assert_quantity(reading(t, "6-0:6.8.0"), 321_456, 6, Some("J"));
    assert_quantity(reading(t, "6-0:6.26.0*1"), 700_100, -2, Some("m3"));
    assert_eq!(t.readings.len(), 15, "{:#?}", t.readings);
    // The blank lines before it are reported, the readout ends the stream.
    assert_eq!(skips(&events).len(), 1);
    assert_eq!((t.offset, t.offset + t.length), (2, bytes.len() as u64));
}

#[test]
fn gateway_data_message_without_identification_is_verified_by_its_bcc() {
    let bytes = gateway_data_message();
    let events = decode("data message", &bytes);
    let t = single("data message", &events);
    assert_eq!(t.header, None);
    assert_eq!(t.integrity, Integrity::Verified);
    assert_eq!(t.meter_id.as_deref(), Some("09610"));
    assert_quantity(reading(t, "1-0:1.6.0*255"), 2468, 0, Some("W"));

    // A BCC that does not verify is kept as such, and dropped in strict mode.
    let mut broken = bytes.clone();
    let n = broken.len();
    broken[n - 1] ^= 0x55;
    let events = decode("broken bcc", &broken);
    assert_eq!(
        single("broken bcc", &events).integrity,
        Integrity::InnerChecksumMismatch
    );
    let strict = DecoderOptions {
        strict_inner_checksums: true,
        ..DecoderOptions::default()
    };
    let events = decode_checked("broken bcc strict", &broken, strict);
    assert!(telegrams(&events).is_empty());
    assert!(
        skips(&events)
            .iter()
            .any(|s| s.reason == SkipReason::ChecksumMismatch)
    );
}

#[test]
fn gateway_readout_with_partial_header_is_a_telegram_after_the_header_rest() {
    let bytes = gateway_partial_header();
    let events = decode("partial header", &bytes);
    let t = single("partial header", &events);
    assert_eq!(t.header, None);
    assert_eq!(t.integrity, Integrity::Verified);
    assert_eq!(t.readings.len(), 12);
    match skips(&events).as_slice() {
        [s] => {
            assert_eq!(s.reason, SkipReason::Garbage);
            assert_eq!((s.offset, s.length), (0, "ISk5MT174-0001\r\n".len() as u64));
        }
        other => panic!("{other:#?}"),
    }

    // Without STX: mode D data lines after what is left of the identification.
    let mut bytes = b"5Q3DA1004 V3.04\r\n\r\n".to_vec();
    bytes.extend(
        lines(&[
            "1-0:0.0.0*255(1336001560)",
            "1-0:1.8.0*255(00032549.5061662*kWh)",
            "1-0:1.7.0*255(001688.21*W)",
            "!",
        ])
        .bytes(),
    );
    let events = decode("mode d rest", &bytes);
    let t = single("mode d rest", &events);
    assert_eq!(t.integrity, Integrity::Unchecked);
    assert_eq!(t.meter_id.as_deref(), Some("1336001560"));
    assert_quantity(reading(t, "1-0:1.7.0*255"), 168_821, -2, Some("W"));
}

#[test]
fn data_lines_after_a_cut_data_line_are_not_a_telegram() {
    // A capture that starts inside a data line: the rest of a telegram whose start was missed.
    let bytes = lines(&[
        "9.5061662*kWh)",
        "1-0:21.7.0*255(000557.29*W)",
        "1-0:1.7.0*255(001688.21*W)",
        "!",
    ])
    .into_bytes();
    let events = decode("tail", &bytes);
    assert!(telegrams(&events).is_empty(), "{events:#?}");

    // DSMR data lines without identification: the CRC covers the missing header.
    let bytes = lines(&["1-0:1.8.1(006285.065*kWh)", "1-0:1.7.0(00.335*kW)", "!E56C"]).into_bytes();
    let events = decode("dsmr tail", &bytes);
    assert!(telegrams(&events).is_empty(), "{events:#?}");
    assert!(
        skips(&events)
            .iter()
            .any(|s| s.reason == SkipReason::Truncated && s.detail.contains("CRC")),
        "{events:#?}"
    );
}

#[test]
fn prose_is_never_a_telegram() {
    let bytes = prose();
    let events = decode("prose", &bytes);
    assert!(telegrams(&events).is_empty(), "{events:#?}");
    assert!(
        skips(&events)
            .iter()
            .all(|s| s.reason == SkipReason::Garbage),
        "{events:#?}"
    );

    // A readout right after prose is found, from its own '/'.
    let bytes = prose_then_mt174();
    let events = decode("prose then mt174", &bytes);
    let t = single("prose then mt174", &events);
    assert_eq!(t.offset, prose().len() as u64);
    assert_eq!(t.integrity, Integrity::Verified);
}

// ---------------------------------------------------------------------------------------------
// DSMR 2.2/3 gas on the next line
// ---------------------------------------------------------------------------------------------

#[test]
fn dsmr22_and_dsmr3_gas_value_on_the_next_line_is_read() {
    let events = decode("dsmr 2.2", &dsmr22());
    let t = single("dsmr 2.2", &events);
    // DSMR 2.2 sends no CRC.
    assert_eq!(t.integrity, Integrity::Unchecked);
    let gas = reading(t, "0-1:24.3.0");
    assert_quantity(gas, 1_234_567, -3, Some("m3"));
    assert_eq!(gas.time, None);
    assert!(
        has_note(t, "0-1:24.3.0*255: time 2023-12-04 19:00:00"),
        "{:?}",
        t.notes
    );
    // The data set after the continuation line is still its own.
    assert_text(reading(t, "0-1:24.4.0"), "1");
    assert_eq!(t.readings.len(), 16, "{:#?}", t.readings);
    assert!(
        t.notes.iter().all(|n| !n.contains("skipped")),
        "{:?}",
        t.notes
    );

    let events = decode("dsmr 3", &dsmr3());
    let t = single("dsmr 3", &events);
    assert_quantity(reading(t, "0-1:24.3.0"), 1001, -3, Some("m3"));
    assert_eq!(t.meter_id.as_deref(), Some("K8EG004046395507"));
}

// ---------------------------------------------------------------------------------------------
// DSMR variants: identification and CRC
// ---------------------------------------------------------------------------------------------

#[test]
fn dsmr_identification_with_a_baud_character_that_is_not_a_digit() {
    let events = decode("warmtelink", &warmtelink());
    let t = single("warmtelink", &events);
    assert_eq!(t.protocol, Protocol::Dsmr);
    assert_eq!(t.integrity, Integrity::Verified);
    assert_eq!(t.header.as_deref(), Some("NWA-WARMTELINK"));
    assert_eq!(t.meter_id.as_deref(), Some("NWA12345678"));
    let heat = reading(t, "0-1:24.2.1");
    assert_quantity(heat, 12_345, 6, Some("J"));
    // 231205140000W: 2023-12-05 14:00 CET.
    assert_eq!(heat.time, Some(MeterTime::UnixSeconds(1_701_781_200)));
    assert_text(reading(t, "1-3:0.2.8"), "42");
    assert_text(reading(t, "0-1:24.1.0"), "004");
}

#[test]
fn dsmr_crc_with_three_hex_digits_is_verified() {
    let bytes = dsmr_short_crc();
    let bang = bytes.iter().rposition(|&b| b == b'!').unwrap();
    assert_eq!(&bytes[bang + 4..], b"\r\n", "not a three-digit CRC");
    let events = decode("short crc", &bytes);
    let t = single("short crc", &events);
    assert_eq!(t.protocol, Protocol::Dsmr);
    assert_eq!(t.integrity, Integrity::Verified);
    assert!(has_note(t, "3 hex digits"), "{:?}", t.notes);
    assert_eq!(t.length, bytes.len() as u64);

    // A changed value no longer matches it.
    let text = String::from_utf8(bytes).unwrap();
    let broken = text.replace("006285.065", "006285.066").into_bytes();
    let events = decode("short crc broken", &broken);
    assert!(telegrams(&events).is_empty());
    match skips(&events).as_slice() {
        [s] => {
            assert_eq!(s.reason, SkipReason::ChecksumMismatch);
            assert_eq!(s.length, broken.len() as u64);
        }
        other => panic!("{other:#?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers are strings
// ---------------------------------------------------------------------------------------------

#[test]
fn identifiers_versions_and_codes_keep_their_leading_zeros() {
    let t = single("dsmr 2.2", &decode("dsmr 2.2", &dsmr22())).clone();
    assert_text(reading(&t, "0-0:96.1.1"), "00000000000000");
    assert_eq!(t.meter_id.as_deref(), Some("00000000000000"));
    assert_text(reading(&t, "0-1:96.1.0"), "000000000000");
    assert_text(reading(&t, "0-0:96.14.0"), "0001");
    assert_text(reading(&t, "0-0:96.3.10"), "1");

    let t = single("mt174", &decode("mt174", &mt174())).clone();
    assert_eq!(t.meter_id.as_deref(), Some("09610"));
    assert_text(reading(&t, "0-0:C.1.0*255"), "09610");
    assert_text(reading(&t, "1-0:0.9.2*255"), "0231204");
    assert_text(reading(&t, "0-0:F.F*255"), "00000000");

    let esy = "iec62056-21/dsmr_parser/example_telegrams.py__TELEGRAM_ESY5Q3DB1024_V304.txt";
    let bytes = capture::load(&capture::testdata_dir().join(esy)).unwrap();
    let t = single(esy, &decode(esy, &bytes)).clone();
    assert_eq!(t.meter_id.as_deref(), Some("0272031312565"));
    assert_text(reading(&t, "1-0:0.0.0*255"), "0272031312565");

    let t = single("fluvius", &decode("fluvius", &fluvius())).clone();
    assert_text(reading(&t, "0-0:96.1.4"), "50217");
    assert_eq!(t.meter_id.as_deref(), Some("1SAG1234567890"));
}

// ---------------------------------------------------------------------------------------------
// Profiles, error registers, medium
// ---------------------------------------------------------------------------------------------

#[test]
fn profile_registers_become_timed_readings() {
    let events = decode("fluvius", &fluvius());
    let t = single("fluvius", &events);
    assert_eq!(t.integrity, Integrity::Verified);
    let maxima: Vec<&Reading> = t
        .readings
        .iter()
        .filter(|r| r.obis == obis("0-0:98.1.0"))
        .collect();
    assert_eq!(maxima.len(), 3, "{:#?}", t.readings);
    // Each month's maximum, at the time it was reached (S = CEST, W = CET).
    for (r, (watts, at)) in maxima.iter().zip([
        (4321, 1_692_292_500),
        (2987, 1_695_879_000),
        (5012, 1_698_685_200),
    ]) {
        assert_quantity(r, watts, 0, Some("W"));
        assert_eq!(r.time, Some(MeterTime::UnixSeconds(at)));
    }
    let failures: Vec<&Reading> = t
        .readings
        .iter()
        .filter(|r| r.obis == obis("1-0:99.97.0"))
        .collect();
    assert_eq!(failures.len(), 2);
    assert_quantity(failures[0], 240, 0, Some("s"));
    assert_eq!(
        failures[0].time,
        Some(MeterTime::UnixSeconds(1_691_656_200))
    );
    assert_quantity(failures[1], 3600, 0, Some("s"));
    assert_eq!(
        failures[1].time,
        Some(MeterTime::UnixSeconds(1_700_031_600))
    );
    assert_eq!(
        reading(t, "1-0:1.6.0").time,
        Some(MeterTime::UnixSeconds(1_701_539_100))
    );
    assert!(
        t.readings
            .iter()
            .all(|r| !matches!(&r.value, Value::Text(v) if v.starts_with('(')))
    );

    // Empty profiles give no readings and no raw text; the rest is read.
    let events = decode("empty profiles", &fluvius_empty_profiles());
    let t = single("empty profiles", &events);
    assert_eq!(t.integrity, Integrity::Verified);
    assert!(t.reading(obis("0-0:98.1.0")).is_none());
    assert!(t.reading(obis("1-0:99.97.0")).is_none());
    assert_quantity(reading(t, "1-0:1.7.0"), 1, 0, Some("W"));
    assert!(t.notes.is_empty(), "{:?}", t.notes);
}

#[test]
fn heat_meter_readout_is_heat_with_its_error_register() {
    let events = decode("ultraheat", &ultraheat());
    let t = single("ultraheat", &events);
    assert_eq!(t.integrity, Integrity::Verified);
    assert_eq!(t.header.as_deref(), Some("LUGCUH50"));
    // Reduced codes of a heat meter are medium 6, not electricity.
    assert!(
        t.readings.iter().all(|r| r.obis.0[0] == 6),
        "{:#?}",
        t.readings
    );
    assert_quantity(reading(t, "6-0:6.8.0"), 321_456, 6, Some("J"));
    assert_quantity(reading(t, "6-0:6.6.0"), 25_000, 0, Some("W"));
    assert_quantity(reading(t, "6-0:6.33.0"), 800, -3, Some("m3/h"));
    assert_quantity(reading(t, "6-0:6.31.0"), 87_000, 0, Some("h"));
    // `F(0)`: the error register, read as the code it is.
    assert_text(reading(t, "6-0:F.F"), "0");
    assert_text(reading(t, "6-0:9.21.0"), "00012345");
    assert_text(reading(t, "6-0:9.4.0"), "105.0*C&085.5*C");
    assert_eq!(t.meter_id.as_deref(), Some("00012345"));

    // The real Siemens 2WR5 capture: heat too, and its meter number keeps its zeros.
    let file = "iec62056-21/smartmeter-obis/testSerialRequestResponseD0.js__SIEC2WR5.txt";
    let bytes = capture::load(&capture::testdata_dir().join(file)).unwrap();
    let events = decode(file, &bytes);
    let t = single(file, &events);
    assert!(
        t.readings.iter().all(|r| r.obis.0[0] == 6),
        "{:#?}",
        t.readings
    );
    assert_quantity(reading(t, "6-0:6.8.0"), 29_055_000, 0, Some("Wh"));
    assert_text(reading(t, "6-0:F.F"), "0");
    assert_eq!(t.meter_id.as_deref(), Some("00010213"));

    // An electricity meter's reduced codes stay electricity.
    let file = "iec62056-21/vzlogger/MeterD0.cpp__LuG_E350.txt";
    let bytes = capture::load(&capture::testdata_dir().join(file)).unwrap();
    let events = decode(file, &bytes);
    let t = telegrams(&events)[0];
    assert_quantity(reading(t, "1-0:32.7.0"), 233, 0, Some("V"));
    assert!(t.readings.iter().all(|r| r.obis.0[0] == 1));
}

// ---------------------------------------------------------------------------------------------
// Fuzz regressions (inputs as the fuzz targets take them: a selector byte, then the stream)
// ---------------------------------------------------------------------------------------------

/// Target `dsmr`: an STX right after a control byte in garbage. The hunt tried it as a readout
/// without identification only where a chunk happened to begin, so chunks of 8 differed.
const FUZZ_STX_AFTER_CONTROL_BYTE: &[&str] = &[
    "077f7f7f7f7f2f3f210d0a2fff07414345305c336b3236305630322e31390d0a02462e46283030290d0a432e31283131",
    "3236313230303533333232333533290d0a432e352e30283030c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5",
    "02462e46283030290d0a432e312831313236313230303533333232333533290d0a432e352e30283030c5c5c5c5c5c5c5",
    "c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5",
    "c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5290d0a312e382e30",
    "283031333932352e352a295902020100210d0a03467f",
];

#[test]
fn fuzz_regression_headerless_start_does_not_depend_on_chunking() {
    let data = hex::decode(FUZZ_STX_AFTER_CONTROL_BYTE.concat()).unwrap();
    let (&selector, stream) = data.split_first().unwrap();
    assert_eq!(selector, 0x07, "chunks of 8, default options");
    let options = DecoderOptions {
        protocol: Some(Protocol::Dsmr),
        ..DecoderOptions::default()
    };
    let events = decode_checked("stx after control byte", stream, options);
    assert!(telegrams(&events).is_empty(), "{events:#?}");
}

// ---------------------------------------------------------------------------------------------
// Fuzz seeds
// ---------------------------------------------------------------------------------------------

/// `fuzz/seeds/` holds these streams so the fuzz targets start from every class above. Set
/// `WATTLET_WRITE_SEEDS=1` to rewrite them after changing a stream.
#[test]
fn fuzz_seeds_are_these_streams() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = std::env::var_os("WATTLET_WRITE_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let streams = streams();
    for (name, bytes) in &streams {
        let path = dir.join(name);
        if write {
            std::fs::write(&path, bytes).unwrap();
        }
        let seed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (WATTLET_WRITE_SEEDS=1 writes it)", path.display())
        });
        assert!(
            &seed == bytes,
            "{name} differs from its stream (WATTLET_WRITE_SEEDS=1)"
        );
    }
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(files, streams.len(), "{} holds other files", dir.display());
}
