//! The challenge CSV: exact values, and one hostile line per kind of error, each naming its line
//! and field.

use std::io::Cursor;

use wattlet_stream_analytics::event::{
    EventReader, Field, ParseError, Problem, ReadError, parse_line, parse_milli,
};
use wattlet_stream_analytics::{Event, Property};

fn error(line: &str) -> ParseError {
    match parse_line(line, 7) {
        Ok(e) => panic!("{line:?} parsed as {e:?}"),
        Err(e) => {
            assert_eq!(e.line, 7);
            let text = e.to_string();
            assert!(text.starts_with("line 7: field "), "{text}");
            e
        }
    }
}

#[test]
fn a_challenge_line_parses_exactly() {
    let e = parse_line("0,1377986401,68.451,0,11,0,0", 1).unwrap();
    assert_eq!(
        e,
        Event {
            id: 0,
            ts: 1_377_986_401,
            value_mw: 68_451,
            property: Property::Work,
            plug: 11,
            household: 0,
            house: 0
        }
    );
    let e = parse_line("4,1377986401,19.828,1,1,0,0\r", 1).unwrap();
    assert_eq!((e.value_mw, e.property), (19_828, Property::Load));
    assert_eq!(e.to_csv(), "4,1377986401,19.828,1,1,0,0");
}

#[test]
fn decimals_are_exact_and_rounded_half_away_from_zero() {
    assert_eq!(parse_milli("12.345"), Ok(12_345));
    assert_eq!(parse_milli("12"), Ok(12_000));
    assert_eq!(parse_milli("0.1"), Ok(100));
    assert_eq!(parse_milli(".5"), Ok(500));
    assert_eq!(parse_milli("5."), Ok(5_000));
    assert_eq!(parse_milli("-1.5"), Ok(-1_500));
    assert_eq!(parse_milli("0.0004999"), Ok(0));
    assert_eq!(parse_milli("0.0005"), Ok(1));
    assert_eq!(parse_milli("-0.0005"), Ok(-1));
    assert_eq!(parse_milli("2.9995"), Ok(3_000));
    // A float would give 0.1 + 0.2 != 0.3; the integers do.
    assert_eq!(
        parse_milli("0.1").unwrap() + parse_milli("0.2").unwrap(),
        parse_milli("0.3").unwrap()
    );
}

#[test]
fn missing_field() {
    let e = error("1,1377986401,1.0,1,5,0");
    assert_eq!((e.field, e.problem), (Field::HouseId, Problem::Missing));
}

#[test]
fn empty_field() {
    let e = error("1,,1.0,1,5,0,0");
    assert_eq!((e.field, e.problem), (Field::Timestamp, Problem::Empty));
}

#[test]
fn too_many_fields() {
    let e = error("1,1377986401,1.0,1,5,0,0,9");
    assert_eq!(
        (e.field, e.problem),
        (Field::HouseId, Problem::TooManyColumns(8))
    );
}

#[test]
fn id_not_a_number() {
    let e = error("x1,1377986401,1.0,1,5,0,0");
    assert_eq!(e.field, Field::Id);
    assert!(matches!(e.problem, Problem::NotInteger(_)));
}

#[test]
fn negative_id() {
    assert_eq!(error("-1,1377986401,1.0,1,5,0,0").field, Field::Id);
}

#[test]
fn timestamp_beyond_u32() {
    let e = error("1,4294967296,1.0,1,5,0,0");
    assert_eq!(e.field, Field::Timestamp);
    assert!(matches!(e.problem, Problem::OutOfRange(_)));
}

#[test]
fn value_not_decimal() {
    for v in ["abc", "1.2.3", "1e3", "-", ".", "nan", "inf", "0x10", "١٢"] {
        let line = format!("1,1377986401,{v},1,5,0,0");
        match parse_line(&line, 3) {
            Ok(e) => panic!("{v:?} parsed as {e:?}"),
            Err(e) => {
                assert_eq!(e.line, 3, "{v:?}");
                assert_eq!(e.field, Field::Value, "{v:?}");
                assert!(
                    matches!(e.problem, Problem::NotDecimal(_)),
                    "{v:?}: {:?}",
                    e.problem
                );
            }
        }
    }
}

#[test]
fn decimal_comma_shifts_the_columns() {
    // "1,5" is two columns: the first one that then fails is named.
    let e = error("1,1377986401,1,5,1,5,0,0");
    assert_eq!(
        (e.field, e.problem),
        (Field::Property, Problem::UnknownProperty("5".into()))
    );
}

#[test]
fn value_overflow() {
    let e = error("1,1377986401,99999999999999999999,1,5,0,0");
    assert_eq!(e.field, Field::Value);
    assert!(matches!(e.problem, Problem::OutOfRange(_)));
}

#[test]
fn unknown_property() {
    let e = error("1,1377986401,1.0,2,5,0,0");
    assert_eq!(
        (e.field, e.problem),
        (Field::Property, Problem::UnknownProperty("2".into()))
    );
}

#[test]
fn bad_plug_household_house() {
    assert_eq!(error("1,1377986401,1.0,1,p,0,0").field, Field::PlugId);
    assert_eq!(
        error("1,1377986401,1.0,1,5,4294967296,0").field,
        Field::HouseholdId
    );
    assert_eq!(error("1,1377986401,1.0,1,5,0,1.5").field, Field::HouseId);
}

#[test]
fn binary_garbage_is_an_error_not_a_panic() {
    let e = error("\u{0}\u{1}\u{fffd},\u{7f}");
    assert_eq!(e.field, Field::Id);
}

#[test]
fn the_reader_names_the_line_and_skips_blank_lines() {
    let text =
        "0,1377986401,1.000,1,1,0,0\n\n2,1377986402,2.000,1,1,0,0\r\n3,1377986403,oops,1,1,0,0\n";
    let got: Vec<_> = EventReader::new(Cursor::new(text)).collect();
    assert_eq!(got.len(), 3);
    assert!(got[0].is_ok() && got[1].is_ok());
    match &got[2] {
        Err(ReadError::Parse(e)) => {
            assert_eq!((e.line, e.field), (4, Field::Value));
            assert_eq!(
                e.to_string(),
                "line 4: field value: not a decimal number: \"oops\""
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_utf8_is_a_read_error_with_its_line() {
    let bytes: &[u8] = b"0,1377986401,1.000,1,1,0,0\n\xff\xfe,1,2\n";
    let got: Vec<_> = EventReader::new(Cursor::new(bytes)).collect();
    match got.last() {
        Some(Err(ReadError::Io { line, .. })) => assert_eq!(*line, 2),
        other => panic!("{other:?}"),
    }
}
