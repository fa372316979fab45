//! Data sets of a text readout, `address(value*unit)(…)`, turned into readings.
//!
//! Most data sets carry one value. The others: a value with the time it was reached (DSMR sends
//! the time first, IEC 62056-21 meters such as the ISKRA MT174 send it last), DSMR profiles
//! (`(count)(captured codes…)(time)(value)…`, e.g. the Fluvius monthly maxima 0-0:98.1.0) and the
//! DSMR 2.2/3 hourly gas value, whose value arrives on the next line.

use super::stamp::{self, Stamp};
use crate::units::{Unit, text_unit};
use crate::{Decimal, MeterTime, Obis, Reading, Value};

/// Where a text telegram's meter identity is found, most specific first.
const ID_CODES: [Obis; 5] = [
    Obis::new(0, 0, 96, 1, 1, 255),
    Obis::new(0, 0, 96, 1, 0, 255),
    Obis::new(1, 0, 0, 0, 0, 255),
    Obis::new(1, 0, 96, 1, 0, 255),
    Obis::new(0, 0, 96, 1, 255, 255),
];

/// OBIS value group A of heat meters (IEC 62056-61 medium).
const HEAT: u8 = 6;

pub(crate) struct Parsed {
    pub(crate) readings: Vec<Reading>,
    pub(crate) notes: Vec<String>,
}

/// A data set as sent, before its values are read.
struct DataSet {
    obis: Obis,
    /// Sent without the `A-B:` groups, so the medium is the meter's, not the address's.
    reduced: bool,
    groups: Vec<String>,
}

impl Parsed {
    /// Data sets between the identification line (or STX) and `!`; several may share a line, and
    /// a line that starts with `(` continues the data set before it.
    pub(crate) fn new(body: &[u8]) -> Parsed {
        let mut parsed = Parsed {
            readings: Vec::new(),
            notes: Vec::new(),
        };
        let sets = parsed.lex(body);
        let heat = is_heat_meter(&sets);
        for mut set in sets {
            if heat && set.reduced {
                set.obis.0[0] = HEAT;
            }
            parsed.data_set(set.obis, &set.groups);
        }
        parsed
    }

    fn lex(&mut self, body: &[u8]) -> Vec<DataSet> {
        let mut sets = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let Some(open) = body[i..].iter().position(|&b| b == b'(').map(|p| i + p) else {
                self.note_stray(&body[i..]);
                break;
            };
            let address = &body[i..open];
            let mut groups = Vec::new();
            let mut j = open;
            loop {
                while body.get(j) == Some(&b'(') {
                    let Some(close) = body[j..].iter().position(|&b| b == b')').map(|p| j + p)
                    else {
                        self.notes.push(format!(
                            "unterminated value after {:?}; skipped",
                            String::from_utf8_lossy(address).trim()
                        ));
                        return sets;
                    };
                    groups.push(String::from_utf8_lossy(&body[j + 1..close]).into_owned());
                    j = close + 1;
                }
                // DSMR 2.2/3 sends the hourly gas value alone on the next line.
                let next_line = j + body[j..]
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                if next_line > j && body.get(next_line) == Some(&b'(') {
                    j = next_line;
                } else {
                    break;
                }
            }
            if let Some(set) = self.address(address, groups) {
                sets.push(set);
            }
            i = j;
        }
        sets
    }

    fn note_stray(&mut self, bytes: &[u8]) {
        let stray: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if !stray.is_empty() {
            self.notes.push(format!(
                "{} stray bytes skipped: {}",
                stray.len(),
                crate::hex(&stray)
            ));
        }
    }

    fn address(&mut self, address: &[u8], groups: Vec<String>) -> Option<DataSet> {
        // Line breaks and control bytes (line noise, STX echoes) may precede an address.
        let start = address
            .iter()
            .position(|b| b.is_ascii_graphic())
            .unwrap_or(address.len());
        self.note_stray(&address[..start]);
        let Ok(address) = std::str::from_utf8(&address[start..]) else {
            self.notes
                .push("data set address is not text; skipped".into());
            return None;
        };
        // Meters write the address right before its `(`; prose puts a space there (`1.2 (a)`).
        let address = address.trim_start();
        match address.parse::<Obis>() {
            Ok(obis) => Some(DataSet {
                obis,
                reduced: !address.contains(':'),
                groups,
            }),
            Err(_) => {
                self.notes
                    .push(format!("data set {address:?} has no OBIS address; skipped"));
                None
            }
        }
    }

    fn data_set(&mut self, obis: Obis, groups: &[String]) {
        match groups {
            [one] => {
                let (value, unit) = self.value(obis, one);
                self.push(obis, value, unit, None);
            }
            _ if self.profile(obis, groups) || self.hourly_gas(obis, groups) => {}
            [a, b] => self.timed(obis, a, b),
            _ => self.push(obis, raw(groups), None, None),
        }
    }

    fn push(&mut self, obis: Obis, value: Value, unit: Option<Unit>, time: Option<MeterTime>) {
        self.readings.push(Reading {
            obis,
            value,
            unit,
            status: None,
            time,
        });
    }

    /// A value and the time it was reached, in either order: DSMR `(time)(value*unit)`, IEC
    /// 62056-21 maximum demand `(value*unit)(time)`.
    fn timed(&mut self, obis: Obis, a: &str, b: &str) {
        let number = |text: &str| parse_number(text).is_some();
        let (value, stamp) = match (stamp::parse(a), stamp::parse(b)) {
            (Some(stamp), None) if number(b) => (b, Some(stamp)),
            (None, Some(stamp)) if number(a) => (a, Some(stamp)),
            // A maximum not reached yet has no time.
            (None, None) if b.trim().is_empty() && number(a) => (a, None),
            _ => {
                self.push(obis, raw(&[a, b]), None, None);
                return;
            }
        };
        let (value, unit) = self.value(obis, value);
        let time = stamp.and_then(|s| self.time(obis, s));
        self.push(obis, value, unit, time);
    }

    /// Only a stamp with a UTC offset becomes the reading's time; a wall-clock time is kept in
    /// the notes, as a guessed zone would be wrong by an hour or two.
    fn time(&mut self, obis: Obis, stamp: Stamp) -> Option<MeterTime> {
        match stamp {
            Stamp::Utc(seconds) => Some(MeterTime::UnixSeconds(seconds)),
            Stamp::Local(civil) => {
                self.notes.push(format!(
                    "{obis}: time {civil} is the meter's clock without a UTC offset; not set as \
                     the reading's time"
                ));
                None
            }
            Stamp::Unset => None,
        }
    }

    /// DSMR profile `(count)(code)…(code)` then `count` entries of a time and one field per
    /// code: a reading per value field under the profile's own code, timed by the stamp before
    /// it (0-0:98.1.0: period end, time of the maximum, maximum; 1-0:99.97.0: end of the power
    /// failure, its duration). `false` if the groups are not shaped so.
    fn profile(&mut self, obis: Obis, groups: &[String]) -> bool {
        let Some(count) = groups.first().and_then(|g| small_count(g)) else {
            return false;
        };
        let codes = groups[1..]
            .iter()
            .take_while(|g| g.contains(':') && g.trim().parse::<Obis>().is_ok())
            .count();
        let entries = &groups[1 + codes..];
        if codes == 0 {
            return false;
        }
        if count == 0 {
            // An empty profile may end with one empty group.
            return entries.len() <= 1 && entries.iter().all(|g| g.trim().is_empty());
        }
        if entries.len() != count * (codes + 1) {
            return false;
        }
        for entry in entries.chunks(codes + 1) {
            let mut stamp = stamp::parse(&entry[0]);
            for field in &entry[1..] {
                match stamp::parse(field) {
                    Some(s @ (Stamp::Utc(_) | Stamp::Unset)) => stamp = Some(s),
                    _ => {
                        let (value, unit) = self.value(obis, field);
                        let time = stamp.and_then(|s| self.time(obis, s));
                        self.push(obis, value, unit, time);
                    }
                }
            }
        }
        true
    }

    /// DSMR 2.2/3 `0-n:24.3.0(time)(status)(period)(count)(code)(unit)` and `count` values (the
    /// first on the next line): readings under 0-n:24.3.0 in `unit`, timed by the stamp.
    fn hourly_gas(&mut self, obis: Obis, groups: &[String]) -> bool {
        let [time, _status, _period, count, code, unit, values @ ..] = groups else {
            return false;
        };
        let shaped = small_count(count) == Some(values.len())
            && !values.is_empty()
            && code.contains(':')
            && code.trim().parse::<Obis>().is_ok()
            && text_unit(unit.trim()).is_some();
        if !shaped {
            return false;
        }
        let stamp = stamp::parse(time);
        for value in values {
            let text = if value.contains('*') {
                value.clone()
            } else {
                format!("{}*{}", value.trim(), unit.trim())
            };
            let (value, unit) = self.value(obis, &text);
            let time = stamp.and_then(|s| self.time(obis, s));
            self.push(obis, value, unit, time);
        }
        true
    }

    fn value(&mut self, obis: Obis, text: &str) -> (Value, Option<Unit>) {
        let Some((number, unit)) = parse_number(text) else {
            return (Value::Text(text.trim().to_owned()), None);
        };
        match unit {
            // Identifiers, versions and codes are digits, not quantities: `0002` stays `0002`.
            None if is_identifier(obis) => (Value::Text(text.trim().to_owned()), None),
            None => (Value::Number(number), None),
            Some(unit) => match text_unit(unit) {
                Some((base, exponent)) => {
                    let scaled = Decimal {
                        mantissa: number.mantissa,
                        scaler: number.scaler.saturating_add(exponent),
                    };
                    (Value::Number(scaled), Some(base))
                }
                None => {
                    self.notes.push(format!(
                        "{obis}: unknown unit {unit:?} kept without a symbol"
                    ));
                    (Value::Number(number), None)
                }
            },
        }
    }
}

/// The groups as sent, `(a)(b)…`, for data sets whose shape is not known.
fn raw<S: AsRef<str>>(groups: &[S]) -> Value {
    Value::Text(groups.iter().map(|g| format!("({})", g.as_ref())).collect())
}

/// A profile's entry count: a few digits, small enough that no count can make us allocate.
fn small_count(text: &str) -> Option<usize> {
    let text = text.trim();
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Registers whose unitless digits are identifiers or codes, not numbers (leading zeros matter):
/// identification numbers (C.0.0, 0.0.x, 96.1.x), program and P1 versions (0.2.x), the meter's
/// local time and date (0.9.x), breaker and valve states (96.3.x, 0-n:24.4.0), status words
/// (96.5.x), messages (96.13.x), the tariff indicator (96.14.0), error registers (F.F), M-Bus
/// device types (0-n:24.1.0) and a heat meter's device data (group 9 of medium 6).
fn is_identifier(obis: Obis) -> bool {
    let [a, _, c, d, ..] = obis.0;
    matches!((c, d), (0, 0 | 2 | 9) | (96, 1 | 3 | 5 | 13 | 14) | (97, _))
        || (a == 0 && c == 24 && matches!(d, 1 | 4))
        || (a == HEAT && c == 9)
}

/// A readout in reduced codes (`6.8`, `9.21`) is a heat meter's when it reports volume, flow or
/// temperature and nothing electrical: IEC 62056-21 heat meters (Landis+Gyr Ultraheat, Siemens
/// 2WR5) send such codes, which would otherwise default to electricity (A = 1).
fn is_heat_meter(sets: &[DataSet]) -> bool {
    let units: Vec<u8> = sets
        .iter()
        .filter(|s| s.reduced)
        .flat_map(|s| s.groups.iter())
        .flat_map(|g| g.split('&'))
        .filter_map(|part| parse_number(part).and_then(|(_, unit)| unit))
        .filter_map(|unit| text_unit(unit).map(|(u, _)| u.0))
        .collect();
    // m3, m3/h, degC, J vs V, A, var, varh, VA, VAh, Hz.
    let thermal = units.iter().any(|u| matches!(u, 9 | 13 | 15 | 25));
    let electrical = units
        .iter()
        .any(|u| matches!(u, 28 | 29 | 31 | 32 | 33 | 35 | 44));
    thermal && !electrical
}

/// The meter identity among a telegram's readings: the equipment identifier, else the
/// identification number 0.0.0 of whatever medium.
pub(crate) fn meter_id(readings: &[Reading]) -> Option<String> {
    let fallback = |r: &&Reading| matches!(r.obis.0, [_, 0, 0, 0, 0, 255]);
    let found = ID_CODES
        .iter()
        .find_map(|code| readings.iter().find(|r| r.obis == *code))
        .or_else(|| readings.iter().find(fallback))?;
    match &found.value {
        Value::Text(t) if found.obis.0[2] == 96 => Some(decode_hex_id(t)),
        Value::Text(t) => Some(t.trim().to_owned()),
        Value::Number(d) => Some(d.to_string()),
        _ => None,
    }
}

/// DSMR equipment identifiers are ASCII sent as hex digits.
fn decode_hex_id(text: &str) -> String {
    let bytes = text.as_bytes();
    if bytes.len() >= 2 && bytes.len().is_multiple_of(2) && bytes.iter().all(u8::is_ascii_hexdigit)
    {
        let decoded: Option<String> = bytes
            .chunks(2)
            .map(|pair| {
                let s = std::str::from_utf8(pair).ok()?;
                let b = u8::from_str_radix(s, 16).ok()?;
                (b.is_ascii_graphic()).then_some(char::from(b))
            })
            .collect();
        if let Some(decoded) = decoded {
            return decoded;
        }
    }
    text.trim().to_owned()
}

/// `[-]digits[.digits][*unit]` with at most 18 digits (exact in i64); anything else is text.
pub(crate) fn parse_number(text: &str) -> Option<(Decimal, Option<&str>)> {
    let (number, unit) = match text.split_once('*') {
        Some((n, u)) => (n.trim(), Some(u.trim()).filter(|u| !u.is_empty())),
        None => (text.trim(), None),
    };
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all = int.len() + frac.len();
    if all == 0 || all > 18 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    if unit.is_some_and(|u| !u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/')) {
        return None;
    }
    let mut mantissa: i64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa * 10 + i64::from(b - b'0');
    }
    let scaler = -(frac.len() as i8);
    let mantissa = if negative { -mantissa } else { mantissa };
    Some((Decimal { mantissa, scaler }, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_exact() {
        let (d, unit) = parse_number("00032549.5061662*kWh").unwrap();
        assert_eq!(
            d,
            Decimal {
                mantissa: 325_495_061_662,
                scaler: -7
            }
        );
        assert_eq!(unit, Some("kWh"));
        assert_eq!(
            parse_number(" 20000").unwrap().0,
            Decimal {
                mantissa: 20000,
                scaler: 0
            }
        );
        assert_eq!(
            parse_number("-1.5*W").unwrap().0,
            Decimal {
                mantissa: -15,
                scaler: -1
            }
        );
        assert_eq!(parse_number("013925.5*").unwrap().1, None);
        for text in [
            "",
            "230211111541W",
            "088*C&082*C",
            "1234567890123456789",
            "1.2.3",
            ".",
        ] {
            assert!(parse_number(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn hex_equipment_ids_are_decoded() {
        assert_eq!(
            decode_hex_id("4530303433303037303532383730333138"),
            "E0043007052870318"
        );
        assert_eq!(decode_hex_id("1ESY1336001560"), "1ESY1336001560");
        assert_eq!(decode_hex_id("00000000000000"), "00000000000000");
    }

    #[test]
    fn identifiers_keep_their_digits() {
        let parsed = Parsed::new(b"0-0:96.14.0(0002)\r\n1-3:0.2.8(50)\r\n0-0:96.7.21(00004)\r\n");
        let values: Vec<&Value> = parsed.readings.iter().map(|r| &r.value).collect();
        assert_eq!(
            values,
            [
                &Value::Text("0002".into()),
                &Value::Text("50".into()),
                &Value::Number(Decimal {
                    mantissa: 4,
                    scaler: 0
                })
            ]
        );
    }
}
