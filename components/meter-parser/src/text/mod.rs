//! Text telegrams: IEC 62056-21 readouts (modes C and D) and DSMR P1.
//!
//! Both start with `/XXXZ<identification>` and end at `!`. What follows the `!` tells them apart:
//! hex digits are a DSMR CRC-16/ARC over `/`…`!`; a line end, ETX and a BCC close an IEC 62056-21
//! readout framed by STX; a bare line end is a mode D push without checksum.
//!
//! A readout may also arrive without its identification line (D0 gateways answer with the data
//! lines only, or with a partial header). Such a readout is accepted only as a run of lines that
//! are all data sets, optionally framed by STX, ended by a `!` line (see `line.rs`).

mod dataset;
mod line;
mod stamp;

use crate::{DecoderOptions, Integrity, Protocol, SkipReason, Telegram};
use crc::{CRC_16_ARC, Crc, Table};
use dataset::Parsed;
pub(crate) use line::{Line, data_line};

static DSMR_CRC: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_ARC);
const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const ACK: u8 = 0x06;
/// A header line longer than this is not an identification line.
const MAX_HEADER: usize = 128;
/// `ACK V Z Y`: the option select message of IEC 62056-21 modes C and E.
const MAX_ACK: usize = 8;

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
/// `/`, three letters of manufacturer, a baud character (a digit in IEC 62056-21, but DSMR
/// devices send others, e.g. `/NWA-WARMTELINK`).
pub(crate) fn is_start(buf: &[u8]) -> Option<bool> {
    if buf.get(1) == Some(&b'?') {
        return Some(true);
    }
    let head = &buf[1.min(buf.len())..buf.len().min(5)];
    let plausible = head.iter().enumerate().all(|(i, &b)| {
        if i < 3 {
            b.is_ascii_alphabetic()
        } else {
            b.is_ascii_graphic() && !matches!(b, b'/' | b'!' | b'(' | b')')
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
    /// The readout began with data lines, not with `/`.
    headerless: bool,
    /// The `/` began a line (see `Decoder::begins_line`).
    line_start: bool,
}

impl TextScanner {
    /// A telegram that starts with `/`.
    pub(crate) fn identified(line_start: bool) -> Self {
        TextScanner {
            line_start,
            ..TextScanner::default()
        }
    }

    pub(crate) fn headerless() -> Self {
        TextScanner {
            headerless: true,
            line_start: true,
            ..TextScanner::default()
        }
    }

    /// `buf` starts with `/` (or, headerless, with a data line). `eof`: no more bytes will come.
    pub(crate) fn advance(
        &mut self,
        buf: &[u8],
        eof: bool,
        max_len: usize,
        options: &DecoderOptions,
        offset: u64,
    ) -> TextStep {
        if self.headerless {
            return self.advance_headerless(buf, eof, max_len, options, offset);
        }
        let Some(header_end) = buf
            .iter()
            .take(MAX_HEADER)
            .position(|&b| b == b'\r' || b == b'\n')
        else {
            return if buf.len() >= MAX_HEADER || eof {
                not_a_header()
            } else {
                TextStep::NeedMore
            };
        };
        if !buf[1..header_end].iter().all(|b| matches!(b, 0x20..=0x7e)) {
            return not_a_header();
        }
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
                    return cut_short(buf, header_end, i, "a new telegram began before '!'");
                }
                0x1b if buf[i..].starts_with(&crate::sml::START) => {
                    return cut_short(buf, header_end, i, "an SML frame began before '!'");
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
                cut_short(buf, header_end, buf.len(), "stream ended before '!'")
            } else {
                TextStep::NeedMore
            };
        };
        let mut notes = Vec::new();
        let data = data_start(buf, header_end, bang, &mut notes);
        let stx = (buf.get(data) == Some(&STX)).then_some(data);
        let Some(trailer) = Trailer::read(buf, bang, stx.is_some(), eof) else {
            return TextStep::NeedMore;
        };
        let header = String::from_utf8_lossy(&buf[1..header_end])
            .trim()
            .to_owned();
        let body = stx.map_or(data, |i| i + 1);
        let start = Start {
            header: Some(header),
            line_start: self.line_start,
        };
        finish(buf, body, bang, stx, trailer, notes, start, options, offset)
    }

    /// A readout without identification: data lines (after an optional STX) up to a `!` line.
    fn advance_headerless(
        &mut self,
        buf: &[u8],
        eof: bool,
        max_len: usize,
        options: &DecoderOptions,
        offset: u64,
    ) -> TextStep {
        let first = usize::from(buf.first() == Some(&STX));
        let mut pos = self.searched.max(first);
        let bang = loop {
            if pos >= max_len {
                return TextStep::Skip {
                    len: pos,
                    reason: SkipReason::Oversized,
                    detail: format!("no '!' within {max_len} bytes"),
                };
            }
            match buf.get(pos) {
                None if eof => return truncated(buf.len()),
                None => {
                    self.searched = pos;
                    return TextStep::NeedMore;
                }
                Some(b'\r' | b'\n') => pos += 1,
                Some(b'!') => break pos,
                Some(_) => match data_line(&buf[pos..], pos == first, max_len - pos) {
                    Line::Data(len) => pos += len,
                    Line::Prefix if eof => return truncated(buf.len()),
                    Line::Prefix => {
                        self.searched = pos;
                        return TextStep::NeedMore;
                    }
                    // The first line was a data line when the run was started; this guards
                    // against an empty skip all the same.
                    Line::Invalid if pos <= first => {
                        return TextStep::Skip {
                            len: pos.max(1),
                            reason: SkipReason::Garbage,
                            detail: "not a data line".into(),
                        };
                    }
                    Line::Invalid => {
                        return TextStep::Skip {
                            len: pos,
                            reason: SkipReason::Truncated,
                            detail: "data lines without identification not ended by '!'".into(),
                        };
                    }
                },
            }
        };
        self.searched = bang;
        let stx = (first == 1).then_some(0);
        let Some(trailer) = Trailer::read(buf, bang, stx.is_some(), eof) else {
            return TextStep::NeedMore;
        };
        if let Check::Crc { .. } = trailer.check {
            return TextStep::Skip {
                len: trailer.len,
                reason: SkipReason::Truncated,
                detail: "DSMR data lines without their identification line: the CRC cannot be \
                         checked"
                    .into(),
            };
        }
        let start = Start {
            header: None,
            line_start: true,
        };
        finish(
            buf,
            first,
            bang,
            stx,
            trailer,
            Vec::new(),
            start,
            options,
            offset,
        )
    }
}

/// How a telegram began.
struct Start {
    /// The identification line, without `/`.
    header: Option<String>,
    /// It began a line.
    line_start: bool,
}

fn not_a_header() -> TextStep {
    TextStep::Skip {
        len: 1,
        reason: SkipReason::Garbage,
        detail: "'/' not followed by an identification line".into(),
    }
}

/// A telegram cut off at `end` before its `!`: truncated if it had begun to send data sets, else
/// the `/` began no telegram (a line of prose, a cut-off identification line).
fn cut_short(buf: &[u8], header_end: usize, end: usize, detail: &str) -> TextStep {
    let data = data_start(buf, header_end, end, &mut Vec::new());
    let body = data + usize::from(buf.get(data) == Some(&STX));
    if Parsed::new(&buf[body.min(end)..end]).readings.is_empty() {
        return TextStep::Skip {
            len: 1,
            reason: SkipReason::Garbage,
            detail: format!("identification line without data sets: {detail}"),
        };
    }
    TextStep::Skip {
        len: end,
        reason: SkipReason::Truncated,
        detail: detail.into(),
    }
}

fn truncated(len: usize) -> TextStep {
    TextStep::Skip {
        len,
        reason: SkipReason::Truncated,
        detail: "stream ended before '!'".into(),
    }
}

/// Where the data begins after the identification line: past blank lines and the option
/// select message `ACK V Z Y CR LF` that a probe reads back in mode C and E sessions.
fn data_start(buf: &[u8], header_end: usize, bang: usize, notes: &mut Vec<String>) -> usize {
    let skip_line_ends = |from: usize| {
        from + buf[from..bang]
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count()
    };
    let data = skip_line_ends(header_end);
    if buf.get(data) != Some(&ACK) {
        return data;
    }
    let Some(end) = buf[data..bang]
        .iter()
        .take(MAX_ACK)
        .position(|&b| b == b'\r' || b == b'\n')
    else {
        return data;
    };
    notes.push(format!(
        "option select message {:?} read back before the data",
        String::from_utf8_lossy(&buf[data..data + end])
    ));
    skip_line_ends(data + end)
}

/// The telegram from its checked trailer: protocol by checksum, readings from `body..bang`.
#[allow(clippy::too_many_arguments)]
fn finish(
    buf: &[u8],
    body: usize,
    bang: usize,
    stx: Option<usize>,
    trailer: Trailer,
    mut notes: Vec<String>,
    start: Start,
    options: &DecoderOptions,
    offset: u64,
) -> TextStep {
    let parsed = Parsed::new(&buf[body..bang]);
    notes.extend(parsed.notes);
    let (protocol, integrity) = match trailer.check {
        Check::None => (Protocol::Iec62056_21, Integrity::Unchecked),
        Check::Crc { sent, digits } => {
            if digits < 4 {
                notes.push(format!(
                    "DSMR CRC sent with {digits} hex digits (leading zeros dropped)"
                ));
            }
            match dsmr_crc(&buf[..=bang], sent) {
                Some(integrity) => (Protocol::Dsmr, integrity),
                None if parsed.readings.is_empty() => return no_data_sets(),
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
            }
        }
        Check::Bcc { sent, etx } => {
            let from = stx.map_or(0, |i| i + 1);
            let bcc = buf[from..=etx].iter().fold(0u8, |acc, b| acc ^ b);
            if bcc == sent {
                (Protocol::Iec62056_21, Integrity::Verified)
            } else if parsed.readings.is_empty() {
                return no_data_sets();
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
    // Without a checksum, what tells a readout from prose that has a '/' and a '!' is that it
    // begins a line and holds data sets.
    if integrity == Integrity::Unchecked && (parsed.readings.is_empty() || !start.line_start) {
        return no_data_sets();
    }
    if stx.is_some() && !matches!(trailer.check, Check::Bcc { .. }) {
        notes.push("STX without ETX and BCC".into());
    }
    TextStep::Telegram {
        len: trailer.len,
        telegram: Telegram {
            protocol,
            meter_id: dataset::meter_id(&parsed.readings),
            header: start.header,
            readings: parsed.readings,
            integrity,
            offset,
            length: trailer.len as u64,
            notes,
        },
    }
}

fn no_data_sets() -> TextStep {
    TextStep::Skip {
        len: 1,
        reason: SkipReason::Garbage,
        detail: "no checksum that verifies, and no data set or not at a line start".into(),
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
    Crc { sent: u16, digits: usize },
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
            // Some meters drop the CRC's leading zeros (`!B9F`); then a line end follows.
            let closed =
                hex_digits == 4 || matches!(buf.get(after + hex_digits), Some(b'\r' | b'\n'));
            if closed {
                let text = std::str::from_utf8(&buf[after..after + hex_digits]).ok()?;
                let sent = u16::from_str_radix(text, 16).ok()?;
                let len = line_end(buf, after + hex_digits, eof)?;
                return Some(Trailer {
                    len,
                    check: Check::Crc {
                        sent,
                        digits: hex_digits,
                    },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_detection() {
        assert_eq!(is_start(b"/ISK5\\2M550E"), Some(true));
        assert_eq!(is_start(b"/ISk5MT174-0001"), Some(true));
        assert_eq!(is_start(b"/NWA-WARMTELINK"), Some(true));
        assert_eq!(is_start(b"/?!\r\n"), Some(true));
        assert_eq!(is_start(b"/12"), Some(false));
        assert_eq!(is_start(b"/IS"), None);
        assert_eq!(is_start(b"/IS\x005"), Some(false));
        assert_eq!(is_start(b"/ISK/"), Some(false));
    }
}
