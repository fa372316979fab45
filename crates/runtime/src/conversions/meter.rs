//! `wattlet:meter` ↔ the meter parser library's types.

use wattlet_meter_parser as native;

use crate::meter::bindings::wattlet::meter::types as wit;

impl From<native::Protocol> for wit::Protocol {
    fn from(p: native::Protocol) -> Self {
        match p {
            native::Protocol::Sml => wit::Protocol::Sml,
            native::Protocol::Iec62056_21 => wit::Protocol::Iec6205621,
            native::Protocol::Dsmr => wit::Protocol::Dsmr,
        }
    }
}

impl From<wit::Protocol> for native::Protocol {
    fn from(p: wit::Protocol) -> Self {
        match p {
            wit::Protocol::Sml => native::Protocol::Sml,
            wit::Protocol::Iec6205621 => native::Protocol::Iec62056_21,
            wit::Protocol::Dsmr => native::Protocol::Dsmr,
        }
    }
}

impl From<&native::DecoderOptions> for wit::DecoderOptions {
    fn from(options: &native::DecoderOptions) -> Self {
        wit::DecoderOptions {
            protocol: options.protocol.map(wit::Protocol::from),
            strict_inner_checksums: options.strict_inner_checksums,
            dzg_unsigned_power: options.dzg_unsigned_power,
        }
    }
}

impl From<wit::Integrity> for native::Integrity {
    fn from(integrity: wit::Integrity) -> Self {
        match integrity {
            wit::Integrity::Verified => native::Integrity::Verified,
            wit::Integrity::VerifiedLineEndsRestored => native::Integrity::VerifiedLineEndsRestored,
            wit::Integrity::Unchecked => native::Integrity::Unchecked,
            wit::Integrity::InnerChecksumMismatch => native::Integrity::InnerChecksumMismatch,
        }
    }
}

impl From<wit::SkipReason> for native::SkipReason {
    fn from(reason: wit::SkipReason) -> Self {
        match reason {
            wit::SkipReason::Garbage => native::SkipReason::Garbage,
            wit::SkipReason::Truncated => native::SkipReason::Truncated,
            wit::SkipReason::ChecksumMismatch => native::SkipReason::ChecksumMismatch,
            wit::SkipReason::Malformed => native::SkipReason::Malformed,
            wit::SkipReason::Oversized => native::SkipReason::Oversized,
            wit::SkipReason::RequestEcho => native::SkipReason::RequestEcho,
        }
    }
}

impl From<wit::Event> for native::Event {
    fn from(event: wit::Event) -> Self {
        match event {
            wit::Event::Telegram(t) => native::Event::Telegram(native::Telegram {
                protocol: t.protocol.into(),
                meter_id: t.meter_id,
                header: t.header,
                readings: t.readings.into_iter().map(native::Reading::from).collect(),
                integrity: t.integrity.into(),
                offset: t.offset,
                length: t.length,
                notes: t.notes,
            }),
            wit::Event::Skipped(s) => native::Event::Skipped(native::Skipped {
                offset: s.offset,
                length: s.length,
                reason: s.reason.into(),
                detail: s.detail,
            }),
        }
    }
}

impl From<wit::Value> for native::Value {
    fn from(value: wit::Value) -> Self {
        match value {
            wit::Value::Number(n) => native::Value::Number(native::Decimal {
                mantissa: n.mantissa,
                scaler: n.scaler,
            }),
            wit::Value::Text(t) => native::Value::Text(t),
            wit::Value::Octets(o) => native::Value::Octets(o),
            wit::Value::Boolean(b) => native::Value::Boolean(b),
        }
    }
}

impl From<wit::MeterTime> for native::MeterTime {
    fn from(time: wit::MeterTime) -> Self {
        match time {
            wit::MeterTime::SecondsIndex(s) => native::MeterTime::SecondsIndex(s),
            wit::MeterTime::UnixSeconds(s) => native::MeterTime::UnixSeconds(s),
        }
    }
}

impl From<wit::Reading> for native::Reading {
    fn from(r: wit::Reading) -> Self {
        let wit::Obis { a, b, c, d, e, f } = r.obis;
        native::Reading {
            obis: native::Obis([a, b, c, d, e, f]),
            value: r.value.into(),
            unit: r.unit.map(native::Unit),
            status: r.status,
            time: r.time.map(native::MeterTime::from),
        }
    }
}
