//! The WIT export: `wattlet:meter/parser` over the native decoder, built for wasm32-wasip2.

use std::cell::RefCell;

use crate::{Decoder, DecoderOptions, Event, Integrity, MeterTime, Protocol, SkipReason, Value};

wit_bindgen::generate!({
    path: "../../wit/meter",
    world: "meter-parser",
});

use exports::wattlet::meter::parser::{Guest, GuestDecoder};
use wattlet::meter::types as wit;

struct Component;

export!(Component);

impl Guest for Component {
    type Decoder = DecoderResource;
}

/// The resource wraps the decoder in a RefCell: WIT methods take `&self`.
struct DecoderResource(RefCell<Decoder>);

impl GuestDecoder for DecoderResource {
    fn new(options: wit::DecoderOptions) -> Self {
        let options = DecoderOptions {
            protocol: options.protocol.map(protocol_from_wit),
            strict_inner_checksums: options.strict_inner_checksums,
            dzg_unsigned_power: options.dzg_unsigned_power,
            ..DecoderOptions::default()
        };
        DecoderResource(RefCell::new(Decoder::new(options)))
    }

    fn push(&self, chunk: Vec<u8>) -> Vec<wit::Event> {
        self.0
            .borrow_mut()
            .push(&chunk)
            .into_iter()
            .map(event_to_wit)
            .collect()
    }

    fn finish(&self) -> Vec<wit::Event> {
        self.0
            .borrow_mut()
            .finish()
            .into_iter()
            .map(event_to_wit)
            .collect()
    }
}

fn protocol_from_wit(p: wit::Protocol) -> Protocol {
    match p {
        wit::Protocol::Sml => Protocol::Sml,
        wit::Protocol::Iec6205621 => Protocol::Iec62056_21,
        wit::Protocol::Dsmr => Protocol::Dsmr,
    }
}

fn protocol_to_wit(p: Protocol) -> wit::Protocol {
    match p {
        Protocol::Sml => wit::Protocol::Sml,
        Protocol::Iec62056_21 => wit::Protocol::Iec6205621,
        Protocol::Dsmr => wit::Protocol::Dsmr,
    }
}

fn event_to_wit(event: Event) -> wit::Event {
    match event {
        Event::Telegram(t) => wit::Event::Telegram(wit::Telegram {
            protocol: protocol_to_wit(t.protocol),
            meter_id: t.meter_id,
            header: t.header,
            readings: t.readings.into_iter().map(reading_to_wit).collect(),
            integrity: match t.integrity {
                Integrity::Verified => wit::Integrity::Verified,
                Integrity::VerifiedLineEndsRestored => wit::Integrity::VerifiedLineEndsRestored,
                Integrity::Unchecked => wit::Integrity::Unchecked,
                Integrity::InnerChecksumMismatch => wit::Integrity::InnerChecksumMismatch,
            },
            offset: t.offset,
            length: t.length,
            notes: t.notes,
        }),
        Event::Skipped(s) => wit::Event::Skipped(wit::Skipped {
            offset: s.offset,
            length: s.length,
            reason: match s.reason {
                SkipReason::Garbage => wit::SkipReason::Garbage,
                SkipReason::Truncated => wit::SkipReason::Truncated,
                SkipReason::ChecksumMismatch => wit::SkipReason::ChecksumMismatch,
                SkipReason::Malformed => wit::SkipReason::Malformed,
                SkipReason::Oversized => wit::SkipReason::Oversized,
                SkipReason::RequestEcho => wit::SkipReason::RequestEcho,
            },
            detail: s.detail,
        }),
    }
}

fn reading_to_wit(r: crate::Reading) -> wit::Reading {
    let [a, b, c, d, e, f] = r.obis.0;
    wit::Reading {
        obis: wit::Obis { a, b, c, d, e, f },
        value: match r.value {
            Value::Number(n) => wit::Value::Number(wit::Decimal {
                mantissa: n.mantissa,
                scaler: n.scaler,
            }),
            Value::Text(t) => wit::Value::Text(t),
            Value::Octets(o) => wit::Value::Octets(o),
            Value::Boolean(b) => wit::Value::Boolean(b),
        },
        unit: r.unit.map(|u| u.0),
        status: r.status,
        time: r.time.map(|t| match t {
            MeterTime::SecondsIndex(s) => wit::MeterTime::SecondsIndex(s),
            MeterTime::UnixSeconds(s) => wit::MeterTime::UnixSeconds(s),
        }),
    }
}
