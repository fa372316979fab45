//! SML messages (SML 1.04 §7): Open, GetList, GetProfileList and Close responses.
//!
//! Parsing is lenient where real meters deviate (absent values, bare time fields, either integer
//! signedness) and exact where a deviation would change a reading.

use super::tlv::{Element, Reader, TlvError};
use super::transport::{KERMIT, X25};
use crate::{
    Decimal, DecoderOptions, Integrity, MeterTime, Obis, Protocol, Reading, SkipReason, Telegram,
    Value,
};

const OPEN_RESPONSE: u64 = 0x0101;
const GET_PROFILE_LIST_RESPONSE: u64 = 0x0501;
const GET_LIST_RESPONSE: u64 = 0x0701;

const POWER_SUM: Obis = Obis::new(1, 0, 16, 7, 0, 255);

/// What a frame's payload yields: a telegram, or why there is none (reason and detail).
pub(crate) fn parse_frame(
    payload: &[u8],
    options: &DecoderOptions,
    offset: u64,
    length: u64,
    mut notes: Vec<String>,
) -> Result<Telegram, (SkipReason, String)> {
    let mut state = FrameState {
        options,
        server_id: None,
        readings: Vec::new(),
        notes: &mut notes,
        crc_mismatches: 0,
    };
    let mut reader = Reader::new(payload);
    let mut messages = 0;
    while !reader.at_end() {
        // Meters pad between messages with 0x00 (read as end-of-message marks).
        if reader.peek() == Some(0x00) {
            reader.pos += 1;
            continue;
        }
        let at = reader.pos;
        match state.message(&mut reader) {
            Ok(()) => messages += 1,
            Err(e) if messages == 0 => {
                return Err((SkipReason::Malformed, format!("first message: {e}")));
            }
            Err(e) => {
                state.notes.push(format!(
                    "message at payload byte {at}: {e}; rest of the frame skipped"
                ));
                break;
            }
        }
    }
    if messages == 0 {
        return Err((SkipReason::Malformed, "frame holds no SML message".into()));
    }
    let crc_mismatches = state.crc_mismatches;
    // A checksum failure, reported as such (like a bad IEC 62056-21 BCC), not as malformed.
    if crc_mismatches > 0 && options.strict_inner_checksums {
        return Err((
            SkipReason::ChecksumMismatch,
            format!("{crc_mismatches} message CRC mismatch(es) under a valid transport CRC"),
        ));
    }
    let FrameState {
        server_id,
        readings,
        ..
    } = state;
    Ok(Telegram {
        protocol: Protocol::Sml,
        meter_id: server_id.map(hex_id),
        header: None,
        readings,
        integrity: if crc_mismatches > 0 {
            Integrity::InnerChecksumMismatch
        } else {
            Integrity::Verified
        },
        offset,
        length,
        notes,
    })
}

/// Lower-case hex of the server id, as `crate::hex` gives it. Written out by hand because
/// formatting byte by byte (a `format!` each) cost a fifth of the time spent on a telegram.
fn hex_id(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

struct FrameState<'o, 'n, 'p> {
    options: &'o DecoderOptions,
    server_id: Option<&'p [u8]>,
    readings: Vec<Reading>,
    notes: &'n mut Vec<String>,
    crc_mismatches: usize,
}

impl<'p> FrameState<'_, '_, 'p> {
    fn message(&mut self, r: &mut Reader<'p>) -> Result<(), TlvError> {
        let start = r.pos;
        let fields = r.list()?;
        if fields != 6 {
            return Err(TlvError::Unexpected {
                expected: "message of 6 fields",
                found: "another list",
                at: start,
            });
        }
        let _transaction_id = r.octets_opt()?;
        let _group_no = r.integer_opt()?;
        let _abort_on_error = r.integer_opt()?;
        let body_start = r.pos;
        if r.list()? != 2 {
            return Err(TlvError::Unexpected {
                expected: "message body choice of 2",
                found: "another list",
                at: body_start,
            });
        }
        let tag = r.integer_opt()?.unwrap_or(-1);
        match u64::try_from(tag).unwrap_or(u64::MAX) {
            OPEN_RESPONSE => self.open_response(r)?,
            GET_LIST_RESPONSE => self.get_list_response(r)?,
            GET_PROFILE_LIST_RESPONSE => self.get_profile_list_response(r)?,
            _ => r.skip()?,
        }
        let crc_end = r.pos;
        let sent = r.integer_opt()?;
        match r.next()? {
            Element::EndOfMessage => {}
            other => {
                return Err(TlvError::Unexpected {
                    expected: "end of message",
                    found: other.kind(),
                    at: crc_end,
                });
            }
        }
        let covered = r.bytes(start, crc_end);
        let matches = |crc: u16| sent == Some(i128::from(crc));
        // The CRC field is an Unsigned16 read big-endian, the CRC sent low byte first.
        let x25 = X25.checksum(covered).swap_bytes();
        // Kermit only when X.25 fails: almost every meter sends X.25, and each pass reads the
        // whole message again.
        let kermit_matches = || {
            let kermit = KERMIT.checksum(covered);
            matches(kermit) || matches(kermit.swap_bytes())
        };
        if !(matches(x25) || kermit_matches()) {
            self.crc_mismatches += 1;
            self.notes.push(format!(
                "message CRC mismatch at payload byte {start}: sent {}, X.25 gives {x25:04x}",
                sent.map_or("none".into(), |s| format!("{s:04x}")),
            ));
        }
        Ok(())
    }

    fn open_response(&mut self, r: &mut Reader<'p>) -> Result<(), TlvError> {
        let fields = r.list()?;
        let mut server_id = None;
        for i in 0..fields {
            if i == 3 {
                server_id = r.octets_opt()?;
            } else {
                r.skip()?;
            }
        }
        if self.server_id.is_none() {
            self.server_id = server_id;
        }
        Ok(())
    }

    fn get_list_response(&mut self, r: &mut Reader<'p>) -> Result<(), TlvError> {
        let fields = r.list()?;
        for i in 0..fields {
            match i {
                1 => {
                    if let Some(id) = r.octets_opt()? {
                        self.server_id = Some(id);
                    }
                }
                4 => {
                    let entries = r.list()?;
                    // A well-formed entry takes at least 8 bytes (TL and 7 fields): the bytes left
                    // bound the reservation however large a count the frame claims.
                    self.readings.reserve(entries.min(r.remaining() / 8));
                    for _ in 0..entries {
                        self.list_entry(r)?;
                    }
                }
                _ => r.skip()?,
            }
        }
        Ok(())
    }

    /// SML_ListEntry: objName, status, valTime, unit, scaler, value, valueSignature.
    fn list_entry(&mut self, r: &mut Reader<'p>) -> Result<(), TlvError> {
        let at = r.pos;
        let fields = r.list()?;
        if fields != 7 {
            for _ in 0..fields {
                r.skip()?;
            }
            self.notes.push(format!(
                "list entry at payload byte {at} has {fields} fields, not 7; skipped"
            ));
            return Ok(());
        }
        let name = r.octets_opt()?;
        let status = r.integer_opt()?;
        let time = self.time(r)?;
        let unit = r.integer_opt()?;
        let scaler = r.integer_opt()?;
        let value = r.next()?;
        r.skip()?; // valueSignature
        self.push_reading(at, name, status, time, unit, scaler, value, r)
    }

    /// SML_GetProfileList.Res: readings of one period, all stamped with valTime.
    fn get_profile_list_response(&mut self, r: &mut Reader<'p>) -> Result<(), TlvError> {
        let fields = r.list()?;
        let mut time = None;
        for i in 0..fields {
            match i {
                0 => {
                    if let Some(id) = r.octets_opt()? {
                        self.server_id = Some(id);
                    }
                }
                4 => time = self.time(r)?,
                6 => {
                    let entries = r.list()?;
                    for _ in 0..entries {
                        let at = r.pos;
                        let entry_fields = r.list()?;
                        if entry_fields != 5 {
                            for _ in 0..entry_fields {
                                r.skip()?;
                            }
                            self.notes.push(format!(
                                "period entry at payload byte {at} has {entry_fields} fields, not 5; skipped"
                            ));
                            continue;
                        }
                        let name = r.octets_opt()?;
                        let unit = r.integer_opt()?;
                        let scaler = r.integer_opt()?;
                        let value = r.next()?;
                        r.skip()?;
                        self.push_reading(at, name, None, time, unit, scaler, value, r)?;
                    }
                }
                _ => r.skip()?,
            }
        }
        Ok(())
    }

    /// SML_Time is a choice (secIndex, timestamp, localTimestamp); some meters send a bare u32.
    fn time(&mut self, r: &mut Reader<'p>) -> Result<Option<MeterTime>, TlvError> {
        let at = r.pos;
        match r.next()? {
            Element::Absent => Ok(None),
            Element::Uint(v, _) => Ok(u32::try_from(v).ok().map(MeterTime::SecondsIndex)),
            Element::List(2) => {
                let tag = r.integer_opt()?;
                match (tag, r.next()?) {
                    (Some(1), Element::Uint(v, _)) => {
                        Ok(u32::try_from(v).ok().map(MeterTime::SecondsIndex))
                    }
                    (Some(2), Element::Uint(v, _)) => Ok(Some(MeterTime::UnixSeconds(v as i64))),
                    (Some(3), Element::List(n)) => {
                        // localTimestamp: timestamp, localOffset (min), seasonTimeOffset (min).
                        let ts = r.integer_opt()?;
                        for _ in 1..n {
                            r.skip()?;
                        }
                        Ok(ts
                            .and_then(|t| i64::try_from(t).ok())
                            .map(MeterTime::UnixSeconds))
                    }
                    (_, Element::List(n)) => {
                        for _ in 0..n {
                            r.skip()?;
                        }
                        self.notes
                            .push(format!("unknown time encoding at payload byte {at}"));
                        Ok(None)
                    }
                    _ => {
                        self.notes
                            .push(format!("unknown time encoding at payload byte {at}"));
                        Ok(None)
                    }
                }
            }
            Element::List(n) => {
                for _ in 0..n {
                    r.skip()?;
                }
                self.notes
                    .push(format!("unknown time encoding at payload byte {at}"));
                Ok(None)
            }
            other => {
                self.notes.push(format!(
                    "time field at payload byte {at} is a {}; ignored",
                    other.kind()
                ));
                Ok(None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_reading(
        &mut self,
        at: usize,
        name: Option<&[u8]>,
        status: Option<i128>,
        time: Option<MeterTime>,
        unit: Option<i128>,
        scaler: Option<i128>,
        value: Element<'p>,
        r: &mut Reader<'p>,
    ) -> Result<(), TlvError> {
        let Some(obis) = name.and_then(Obis::from_slice) else {
            if let Element::List(n) = value {
                for _ in 0..n {
                    r.skip()?;
                }
            }
            self.notes.push(format!(
                "entry at payload byte {at} has no 6-byte OBIS name; skipped"
            ));
            return Ok(());
        };
        let scaler = scaler.and_then(|s| i8::try_from(s).ok()).unwrap_or(0);
        let value = match value {
            Element::Int(v, width) => {
                let v = self.dzg_power_fix(obis, v, width);
                Value::Number(Decimal {
                    mantissa: v,
                    scaler,
                })
            }
            Element::Uint(v, _) => match i64::try_from(v) {
                Ok(v) => Value::Number(Decimal {
                    mantissa: v,
                    scaler,
                }),
                Err(_) => {
                    self.notes
                        .push(format!("{obis}: value {v} exceeds 63 bits; skipped"));
                    return Ok(());
                }
            },
            Element::Bool(b) => Value::Boolean(b),
            Element::Octets(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) if text.chars().all(|c| !c.is_control()) => Value::Text(text.to_owned()),
                _ => Value::Octets(bytes.to_vec()),
            },
            Element::Absent | Element::EndOfMessage => {
                self.notes
                    .push(format!("{obis}: entry has no value; skipped"));
                return Ok(());
            }
            Element::List(n) => {
                for _ in 0..n {
                    r.skip()?;
                }
                self.notes
                    .push(format!("{obis}: list-typed value not supported; skipped"));
                return Ok(());
            }
        };
        self.readings.push(Reading {
            obis,
            value,
            unit: unit.and_then(|u| u8::try_from(u).ok()).map(crate::Unit),
            status: status.and_then(|s| u64::try_from(s).ok()),
            time,
        });
        Ok(())
    }

    /// DZG DVS74 firmware sends 1-0:16.7.0 as Integer16 although the value is unsigned
    /// (356.24 W arrives as -299.12 W). Only the server id tells the maker, not the model, so the
    /// fix is an option the device configuration turns on for that model.
    fn dzg_power_fix(&mut self, obis: Obis, value: i64, width: u8) -> i64 {
        let is_dzg = self
            .server_id
            .is_some_and(|id| id.get(2..5) == Some(b"DZG"));
        if obis != POWER_SUM || width != 2 || value >= 0 || !is_dzg {
            return value;
        }
        if self.options.dzg_unsigned_power {
            self.notes.push(format!(
                "{obis}: DZG Integer16 power {value} read as unsigned {}",
                value + 65536
            ));
            value + 65536
        } else {
            self.notes.push(format!(
                "{obis}: negative Integer16 power from a DZG meter; if this is a DVS74, enable dzg-unsigned-power"
            ));
            value
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_id_is_crate_hex() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::hex_id(&all), crate::hex(&all));
        assert_eq!(super::hex_id(&[]), "");
    }
}
