//! Building telegrams with their checksums, and decoding them with the invariants every stream
//! must keep (chunking changes nothing, every byte is in one event).

use crc::{CRC_16_ARC, Crc};
use wattlet_meter_parser::{
    Decimal, Decoder, DecoderOptions, Event, Obis, Reading, Skipped, Telegram, Value,
};

const ARC: Crc<u16> = Crc::<u16>::new(&CRC_16_ARC);
const STX: u8 = 0x02;
const ETX: u8 = 0x03;

// ---------------------------------------------------------------------------------------------
// Building telegrams
// ---------------------------------------------------------------------------------------------

pub fn lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\r\n")).collect()
}

/// IEC 62056-21 data message: STX, data, `!` CR LF, ETX, BCC (XOR from after STX through ETX).
pub fn framed(data: &str) -> Vec<u8> {
    let mut block = data.as_bytes().to_vec();
    block.extend_from_slice(b"!\r\n");
    block.push(ETX);
    let bcc = block.iter().fold(0u8, |acc, b| acc ^ b);
    let mut out = vec![STX];
    out.extend(block);
    out.push(bcc);
    out
}

/// A mode C readout: identification line, then the framed data message.
pub fn mode_c(ident: &str, data: &str) -> Vec<u8> {
    let mut out = format!("/{ident}\r\n").into_bytes();
    out.extend(framed(data));
    out
}

/// A DSMR telegram with its CRC-16/ARC over `/`…`!`, written as `{:04X}`.
pub fn dsmr(header: &str, data: &str) -> Vec<u8> {
    let mut out = format!("/{header}\r\n\r\n{data}!").into_bytes();
    let crc = ARC.checksum(&out);
    out.extend(format!("{crc:04X}\r\n").bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding and reading
// ---------------------------------------------------------------------------------------------

pub fn decode_whole(bytes: &[u8], options: DecoderOptions) -> Vec<Event> {
    let mut decoder = Decoder::new(options);
    let mut events = decoder.push(bytes);
    events.extend(decoder.finish());
    events
}

/// Decodes in one push and in chunks of every size up to 64; all must agree, and the events must
/// account for every byte, in order.
pub fn decode_checked(name: &str, bytes: &[u8], options: DecoderOptions) -> Vec<Event> {
    let whole = decode_whole(bytes, options.clone());
    let mut next = 0;
    for event in &whole {
        let (offset, length) = match event {
            Event::Telegram(t) => (t.offset, t.length),
            Event::Skipped(s) => (s.offset, s.length),
        };
        assert!(length > 0, "{name}: empty event {event:?}");
        assert_eq!(offset, next, "{name}: gap or overlap before {event:?}");
        next = offset + length;
    }
    assert_eq!(next, bytes.len() as u64, "{name}: bytes left over");
    for chunk in 1..=64 {
        let mut decoder = Decoder::new(options.clone());
        let mut events = Vec::new();
        for part in bytes.chunks(chunk) {
            decoder.push_into(part, &mut events);
        }
        events.extend(decoder.finish());
        assert!(
            events == whole,
            "{name}: chunks of {chunk} differ from one push"
        );
    }
    whole
}

pub fn decode(name: &str, bytes: &[u8]) -> Vec<Event> {
    decode_checked(name, bytes, DecoderOptions::default())
}

pub fn telegrams(events: &[Event]) -> Vec<&Telegram> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Telegram(t) => Some(t),
            Event::Skipped(_) => None,
        })
        .collect()
}

pub fn skips(events: &[Event]) -> Vec<&Skipped> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Skipped(s) => Some(s),
            Event::Telegram(_) => None,
        })
        .collect()
}

pub fn single<'e>(name: &str, events: &'e [Event]) -> &'e Telegram {
    match telegrams(events).as_slice() {
        [t] => t,
        _ => panic!("{name}: expected one telegram, got {events:#?}"),
    }
}

pub fn obis(text: &str) -> Obis {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

pub fn reading<'t>(telegram: &'t Telegram, code: &str) -> &'t Reading {
    telegram.reading(obis(code)).unwrap_or_else(|| {
        let codes: Vec<String> = telegram
            .readings
            .iter()
            .map(|r| r.obis.to_string())
            .collect();
        panic!("no reading {code}; readings: {codes:?}")
    })
}

/// A reading's value and unit symbol, compared by value (`2468` W equals `2468000e-3` W).
pub fn assert_quantity(reading: &Reading, mantissa: i64, scaler: i8, unit: Option<&str>) {
    let Value::Number(actual) = reading.value else {
        panic!("{} is not a number: {:?}", reading.obis, reading.value);
    };
    let expected = Decimal { mantissa, scaler };
    let common = actual.scaler.min(scaler);
    let at = |d: Decimal| i128::from(d.mantissa) * 10i128.pow((d.scaler - common) as u32);
    assert_eq!(
        at(actual),
        at(expected),
        "{}: got {actual}, expected {expected}",
        reading.obis
    );
    assert_eq!(
        reading.unit.and_then(|u| u.symbol()),
        unit,
        "{}",
        reading.obis
    );
}

pub fn assert_text(reading: &Reading, text: &str) {
    assert_eq!(reading.value, Value::Text(text.into()), "{}", reading.obis);
    assert_eq!(reading.unit, None, "{}", reading.obis);
}

pub fn has_note(telegram: &Telegram, fragment: &str) -> bool {
    telegram.notes.iter().any(|n| n.contains(fragment))
}
