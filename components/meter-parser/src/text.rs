//! Text telegrams: IEC 62056-21 readouts (modes C and D) and DSMR P1.
//!
//! Both start with `/XXXZ<identification>` and end at `!`. What follows the `!` tells them apart:
//! four hex digits are a DSMR CRC-16/ARC over `/`…`!`; a line end, ETX and a BCC close an
//! IEC 62056-21 readout framed by STX; a bare line end is a mode D push without checksum.

use crate::units::{Unit, text_unit};
use crate::{
    Decimal, DecoderOptions, Integrity, Obis, Protocol, Reading, SkipReason, Telegram, Value,
};
use crc::{CRC_16_ARC, Crc, Table};

static DSMR_CRC: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_ARC);
const STX: u8 = 0x02;
const ETX: u8 = 0x03;
/// A header line longer than this is not an identification line.
const MAX_HEADER: usize = 128;

/// Where a text telegram's meter identity is found, most specific first.
const ID_CODES: [Obis; 5] = [
    Obis::new(0, 0, 96, 1, 1, 255),
    Obis::new(0, 0, 96, 1, 0, 255),
    Obis::new(1, 0, 0, 0, 0, 255),
    Obis::new(1, 0, 96, 1, 0, 255),
    Obis::new(0, 0, 96, 1, 255, 255),
];

#[derive(Debug, PartialEq)]
pub(crate) enum TextStep {
    NeedMore,
    Telegram {
        len: usize,
        telegram: Telegram,
    },
    Skip {
        len: usize,
        reason: SkipReason,
        detail: String,
    },
}

/// Is `buf` (starting with `/`) plausibly the start of a text telegram? `None`: need more bytes.
pub(crate) fn is_start(buf: &[u8]) -> Option<bool> {
    if buf.get(1) == Some(&b'?') {
        return Some(true);
    }
    let head = &buf[1.min(buf.len())..buf.len().min(5)];
    let plausible = head.iter().enumerate().all(|(i, b)| {
        if i < 3 {
            b.is_ascii_alphabetic()
        } else {
            b.is_ascii_alphanumeric()
        }
    });
    match (plausible, head.len()) {
        (false, _) => Some(false),
        (true, 4) => Some(true),
        (true, _) => None,
    }
}

#[derive(Debug, Default)]
pub(crate) struct TextScanner {
    /// How far the search for the end has got, so a slow stream is read once.
    searched: usize,
}

impl TextScanner {
    /// `buf` starts with `/`. `eof`: no more bytes will come.
    pub(crate) fn advance(
        &mut self,
        buf: &[u8],
        eof: bool,
        max_len: usize,
        options: &DecoderOptions,
        offset: u64,
    ) -> TextStep {
        let Some(header_end) = buf
            .iter()
            .take(MAX_HEADER)
            .position(|&b| b == b'\r' || b == b'\n')
        else {
            return if buf.len() >= MAX_HEADER || eof {
                TextStep::Skip {
                    len: 1,
                    reason: SkipReason::Garbage,
                    detail: "'/' not followed by an identification line".into(),
                }
            } else {
                TextStep::NeedMore
            };
        };
        if buf.get(1) == Some(&b'?') {
            let len = line_end(buf, header_end, eof);
            return match len {
                Some(len) => TextStep::Skip {
                    len,
                    reason: SkipReason::RequestEcho,
                    detail: String::from_utf8_lossy(&buf[..header_end]).into_owned(),
                },
                None => TextStep::NeedMore,
            };
        }
        let start = self.searched.max(header_end);
        let mut bang = None;
        for (i, &b) in buf.iter().enumerate().skip(start) {
            if i >= max_len {
                return TextStep::Skip {
                    len: i,
                    reason: SkipReason::Oversized,
                    detail: format!("no '!' within {max_len} bytes"),
                };
            }
            match b {
                b'!' => {
                    bang = Some(i);
                    break;
                }
                b'/' if buf[i - 1] == b'\n' => {
                    return TextStep::Skip {
                        len: i,
                        reason: SkipReason::Truncated,
                        detail: "a new telegram began before '!'".into(),
                    };
                }
                0x1b if buf[i..].starts_with(&crate::sml::START) => {
                    return TextStep::Skip {
                        len: i,
                        reason: SkipReason::Truncated,
                        detail: "an SML frame began before '!'".into(),
                    };
                }
                // A start sequence cut off by the end of the data decides nothing yet; deciding
                // (or hitting `max_len`) before it is complete would depend on the chunking.
                0x1b if !eof && crate::sml::START.starts_with(&buf[i..]) => {
                    self.searched = i;
                    return TextStep::NeedMore;
                }
                _ => {}
            }
        }
        let Some(bang) = bang else {
            self.searched = buf.len().saturating_sub(crate::sml::START.len());
            return if eof {
                TextStep::Skip {
                    len: buf.len(),
                    reason: SkipReason::Truncated,
                    detail: "stream ended before '!'".into(),
                }
            } else {
                TextStep::NeedMore
            };
        };
        let stx = buf[header_end..bang]
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .map(|i| header_end + i)
            .filter(|&i| buf[i] == STX);
        let Some(trailer) = Trailer::read(buf, bang, stx.is_some(), eof) else {
            return TextStep::NeedMore;
        };
        let parsed = Parsed::new(buf, header_end, stx.map_or(header_end, |i| i + 1), bang);
        let mut notes = parsed.notes;
        let (protocol, integrity) = match trailer.check {
            Check::None => (Protocol::Iec62056_21, Integrity::Unchecked),
            Check::Crc(sent) => match dsmr_crc(&buf[..=bang], sent) {
                Some(integrity) => (Protocol::Dsmr, integrity),
                None => {
                    return TextStep::Skip {
                        len: trailer.len,
                        reason: SkipReason::ChecksumMismatch,
                        detail: format!(
                            "DSMR CRC {sent:04X} does not match {:04X}",
                            DSMR_CRC.checksum(&buf[..=bang])
                        ),
                    };
                }
            },
            Check::Bcc { sent, etx } => {
                let from = stx.map_or(0, |i| i + 1);
                let bcc = buf[from..=etx].iter().fold(0u8, |acc, b| acc ^ b);
                if bcc == sent {
                    (Protocol::Iec62056_21, Integrity::Verified)
                } else if options.strict_inner_checksums {
                    return TextStep::Skip {
                        len: trailer.len,
                        reason: SkipReason::ChecksumMismatch,
                        detail: format!("BCC {sent:02x} does not match {bcc:02x}"),
                    };
                } else {
                    notes.push(format!("BCC {sent:02x} does not match {bcc:02x}"));
                    (Protocol::Iec62056_21, Integrity::InnerChecksumMismatch)
                }
            }
        };
        if stx.is_some() && !matches!(trailer.check, Check::Bcc { .. }) {
            notes.push("STX without ETX and BCC".into());
        }
        let meter_id = ID_CODES.iter().find_map(|code| {
            parsed
                .readings
                .iter()
                .find(|r| r.obis == *code)
                .and_then(|r| match &r.value {
                    Value::Text(t) => Some(decode_hex_id(t)),
                    Value::Number(d) => Some(d.to_string()),
                    _ => None,
                })
        });
        TextStep::Telegram {
            len: trailer.len,
            telegram: Telegram {
                protocol,
                meter_id,
                header: Some(
                    String::from_utf8_lossy(&buf[1..header_end])
                        .trim()
                        .to_owned(),
                ),
                readings: parsed.readings,
                integrity,
                offset,
                length: trailer.len as u64,
                notes,
            },
        }
    }
}

/// The end of the line that begins at `at` (CR LF, LF or CR); `None`: need more bytes.
fn line_end(buf: &[u8], at: usize, eof: bool) -> Option<usize> {
    match (buf.get(at), buf.get(at + 1)) {
        (Some(b'\r'), Some(b'\n')) => Some(at + 2),
        (Some(b'\r' | b'\n'), Some(_)) => Some(at + 1),
        (Some(b'\r' | b'\n'), None) if eof => Some(at + 1),
        (Some(b'\r'), None) => None,
        (Some(b'\n'), None) => Some(at + 1),
        (Some(_), _) => Some(at),
        (None, _) if eof => Some(at),
        (None, _) => None,
    }
}

enum Check {
    None,
    Crc(u16),
    Bcc { sent: u8, etx: usize },
}

struct Trailer {
    len: usize,
    check: Check,
}

impl Trailer {
    /// Reads what follows `!`; `None` when the bytes that decide it have not arrived yet.
    fn read(buf: &[u8], bang: usize, stx: bool, eof: bool) -> Option<Trailer> {
        let after = bang + 1;
        let hex_digits = buf[after..]
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if hex_digits > 0 {
            if hex_digits < 4 && buf.len() < after + 4 && !eof {
                return None;
            }
            if hex_digits == 4 {
                let text = std::str::from_utf8(&buf[after..after + 4]).ok()?;
                let sent = u16::from_str_radix(text, 16).ok()?;
                let len = line_end(buf, after + 4, eof)?;
                return Some(Trailer {
                    len,
                    check: Check::Crc(sent),
                });
            }
        }
        let len = line_end(buf, after, eof)?;
        if !stx {
            return Some(Trailer {
                len,
                check: Check::None,
            });
        }
        match buf.get(len) {
            Some(&ETX) => match buf.get(len + 1) {
                Some(&sent) => Some(Trailer {
                    len: len + 2,
                    check: Check::Bcc { sent, etx: len },
                }),
                None if eof => Some(Trailer {
                    len: len + 1,
                    check: Check::None,
                }),
                None => None,
            },
            Some(_) => Some(Trailer {
                len,
                check: Check::None,
            }),
            None if eof => Some(Trailer {
                len,
                check: Check::None,
            }),
            None => None,
        }
    }
}

/// CRC-16/ARC over `/`…`!`. Files that passed through text tools lost their CR before LF; the
/// CRC then matches only with the CRs restored, which is reported as such.
fn dsmr_crc(telegram: &[u8], sent: u16) -> Option<Integrity> {
    if DSMR_CRC.checksum(telegram) == sent {
        return Some(Integrity::Verified);
    }
    let mut digest = DSMR_CRC.digest();
    let mut restored = false;
    for (i, &b) in telegram.iter().enumerate() {
        if b == b'\n' && (i == 0 || telegram[i - 1] != b'\r') {
            digest.update(b"\r");
            restored = true;
        }
        digest.update(&[b]);
    }
    (restored && digest.finalize() == sent).then_some(Integrity::VerifiedLineEndsRestored)
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

struct Parsed {
    readings: Vec<Reading>,
    notes: Vec<String>,
}

impl Parsed {
    /// Data sets `address(value*unit)(…)` between the header line and `!`; several may share a line.
    fn new(buf: &[u8], header_end: usize, body_start: usize, bang: usize) -> Parsed {
        let mut parsed = Parsed {
            readings: Vec::new(),
            notes: Vec::new(),
        };
        let body = &buf[body_start.max(header_end)..bang];
        let mut i = 0;
        while i < body.len() {
            let Some(open) = body[i..].iter().position(|&b| b == b'(').map(|p| i + p) else {
                parsed.note_stray(&body[i..]);
                break;
            };
            let address = &body[i..open];
            let mut groups = Vec::new();
            let mut j = open;
            while body.get(j) == Some(&b'(') {
                let Some(close) = body[j..].iter().position(|&b| b == b')').map(|p| j + p) else {
                    parsed.notes.push(format!(
                        "unterminated value after {:?}; skipped",
                        String::from_utf8_lossy(address).trim()
                    ));
                    return parsed;
                };
                groups.push(&body[j + 1..close]);
                j = close + 1;
            }
            parsed.data_set(address, &groups);
            i = j;
        }
        parsed
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

    fn data_set(&mut self, address: &[u8], groups: &[&[u8]]) {
        // Line breaks and control bytes (line noise, STX echoes) may precede an address.
        let start = address
            .iter()
            .position(|b| b.is_ascii_graphic())
            .unwrap_or(address.len());
        self.note_stray(&address[..start]);
        let Ok(address) = std::str::from_utf8(&address[start..]) else {
            self.notes
                .push("data set address is not text; skipped".into());
            return;
        };
        let address = address.trim();
        let obis = match address.parse::<Obis>() {
            Ok(obis) => obis,
            Err(_) => {
                self.notes
                    .push(format!("data set {address:?} has no OBIS address; skipped"));
                return;
            }
        };
        let texts: Vec<String> = groups
            .iter()
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect();
        let (value, unit) = match texts.as_slice() {
            [one] => self.value(obis, one),
            // DSMR maximum-demand and gas lines: (timestamp)(value*unit).
            [_stamp, value] if parse_number(value).is_some() => self.value(obis, value),
            _ => (
                Value::Text(texts.iter().map(|t| format!("({t})")).collect()),
                None,
            ),
        };
        self.readings.push(Reading {
            obis,
            value,
            unit,
            status: None,
            time: None,
        });
    }

    fn value(&mut self, obis: Obis, text: &str) -> (Value, Option<Unit>) {
        let Some((number, unit)) = parse_number(text) else {
            return (Value::Text(text.trim().to_owned()), None);
        };
        match unit {
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

/// `[-]digits[.digits][*unit]` with at most 18 digits (exact in i64); anything else is text.
fn parse_number(text: &str) -> Option<(Decimal, Option<&str>)> {
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
    }

    #[test]
    fn start_detection() {
        assert_eq!(is_start(b"/ISK5\\2M550E"), Some(true));
        assert_eq!(is_start(b"/?!\r\n"), Some(true));
        assert_eq!(is_start(b"/12"), Some(false));
        assert_eq!(is_start(b"/IS"), None);
        assert_eq!(is_start(b"/IS\x005"), Some(false));
    }
}
