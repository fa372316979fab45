//! SML transport v1: `1b1b1b1b 01010101` … `1b1b1b1b 1a <padding> <crc16>`.
//!
//! Inside the frame the sender escapes `1b1b1b1b` by doubling it; escapes sit on 4-byte boundaries
//! because the sender pads the payload to a multiple of four. Some meters (EasyMeter Q3A) put the
//! end escape off that boundary; it is still recognised so the frame is reported, not merged with
//! the next one.

use crc::{CRC_16_IBM_SDLC, CRC_16_KERMIT, Crc, Table};

const ESCAPE: [u8; 4] = [0x1b; 4];
pub(crate) const START: [u8; 8] = [0x1b, 0x1b, 0x1b, 0x1b, 0x01, 0x01, 0x01, 0x01];
const VERSION_1: [u8; 4] = [0x01; 4];
const END_MARK: u8 = 0x1a;
/// The standard allows 0–3 padding bytes; meters send up to 4 (DZG) and the CRC still matches.
const MAX_PADDING: u8 = 4;

pub(crate) static X25: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_SDLC);
/// Holley DTZ541 sends CRC-16/KERMIT where the standard says X.25.
pub(crate) static KERMIT: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_KERMIT);

/// The outcome of scanning a frame that began at buffer offset 0.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameStep {
    NeedMore,
    /// A complete frame of `len` bytes whose payload (unescaped, unpadded) is in the scanner.
    Complete {
        len: usize,
        notes: Vec<String>,
    },
    /// The frame is broken; `len` bytes are consumed and reported with the reason.
    Broken {
        len: usize,
        reason: crate::SkipReason,
        detail: String,
    },
}

/// Scans one frame incrementally, so that a frame arriving in many small chunks is read once.
#[derive(Debug, Default)]
pub(crate) struct FrameScanner {
    pos: usize,
    pub(crate) payload: Vec<u8>,
}

impl FrameScanner {
    /// `payload` is a buffer to reuse (the previous frame's), so frames do not each allocate.
    pub(crate) fn new(mut payload: Vec<u8>) -> Self {
        payload.clear();
        FrameScanner {
            pos: START.len(),
            payload,
        }
    }

    /// `buf` starts with the start sequence; `max_len` bounds memory on hostile input.
    pub(crate) fn advance(&mut self, buf: &[u8], max_len: usize) -> FrameStep {
        use crate::SkipReason::{Malformed, Oversized, Truncated};
        // The first group boundary past `max_len`: the fast path stops there, so an oversized
        // frame is cut at the same byte however the stream was chunked.
        let limit = (max_len / 4 + 1) * 4;
        loop {
            let rest = &buf[self.pos..];
            // Fast path: whole 4-byte groups up to the one holding the next 0x1b are payload.
            let plain = match memchr::memchr(0x1b, rest) {
                Some(i) => i & !3,
                None => rest.len() & !3,
            }
            .min(limit.saturating_sub(self.pos));
            self.payload.extend_from_slice(&rest[..plain]);
            self.pos += plain;
            if self.pos > max_len {
                return FrameStep::Broken {
                    len: self.pos,
                    reason: Oversized,
                    detail: format!("no end sequence within {max_len} bytes"),
                };
            }
            let Some(group) = buf.get(self.pos..self.pos + 4) else {
                return FrameStep::NeedMore;
            };
            if group == ESCAPE {
                let Some(next) = buf.get(self.pos + 4..self.pos + 8) else {
                    return FrameStep::NeedMore;
                };
                if next == ESCAPE {
                    self.payload.extend_from_slice(&ESCAPE);
                    self.pos += 8;
                } else if next == VERSION_1 {
                    return FrameStep::Broken {
                        len: self.pos,
                        reason: Truncated,
                        detail: "a new start sequence before the end sequence".into(),
                    };
                } else if next[0] == END_MARK {
                    let end = self.pos;
                    return self.finish(buf, end, self.pos + 8, Vec::new());
                } else {
                    return FrameStep::Broken {
                        len: self.pos + 4,
                        reason: Malformed,
                        detail: format!("invalid escape sequence 1b1b1b1b {}", crate::hex(next)),
                    };
                }
                continue;
            }
            if group[3] == 0x1b {
                // An escape may start off the 4-byte grid (offsets 1..3 of this group).
                for k in 1..4 {
                    if group[k..].iter().any(|&b| b != 0x1b) {
                        continue;
                    }
                    let Some(tail) = buf.get(self.pos + k..self.pos + k + 8) else {
                        return FrameStep::NeedMore;
                    };
                    if tail[..4] != ESCAPE {
                        continue;
                    }
                    if tail[4] == END_MARK {
                        self.payload.extend_from_slice(&group[..k]);
                        let end = self.pos + k;
                        let note = format!("end sequence off the 4-byte grid at frame byte {end}");
                        return self.finish(buf, end, end + 8, vec![note]);
                    }
                    if tail[4..] == VERSION_1 {
                        return FrameStep::Broken {
                            len: self.pos + k,
                            reason: Truncated,
                            detail: "a new start sequence (off the 4-byte grid) before the end"
                                .into(),
                        };
                    }
                }
            }
            self.payload.extend_from_slice(group);
            self.pos += 4;
        }
    }

    /// `end` is where the end escape begins, `len` the frame length including the CRC.
    fn finish(&mut self, buf: &[u8], end: usize, len: usize, mut notes: Vec<String>) -> FrameStep {
        let padding = buf[end + 5];
        let sent = u16::from_le_bytes([buf[end + 6], buf[end + 7]]);
        let covered = &buf[..end + 6];
        if X25.checksum(covered) != sent {
            // Kermit is X.25 without init and final XOR; which byte goes first is not documented
            // for the meters that use it, so both orders are accepted.
            let kermit = KERMIT.checksum(covered);
            if kermit == sent || kermit.swap_bytes() == sent {
                notes.push("transport CRC is CRC-16/KERMIT, not X.25".into());
            } else {
                return FrameStep::Broken {
                    len,
                    reason: crate::SkipReason::ChecksumMismatch,
                    detail: format!(
                        "transport CRC {sent:04x} matches neither X.25 {:04x} nor Kermit {kermit:04x}",
                        X25.checksum(covered),
                    ),
                };
            }
        }
        if padding > MAX_PADDING || usize::from(padding) > self.payload.len() {
            return FrameStep::Broken {
                len,
                reason: crate::SkipReason::Malformed,
                detail: format!("{padding} padding bytes announced"),
            };
        }
        self.payload
            .truncate(self.payload.len() - usize::from(padding));
        FrameStep::Complete { len, notes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SkipReason;

    /// Builds a frame the way a meter does: escape, pad to 4, end escape, X.25 CRC.
    pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = START.to_vec();
        for chunk in payload.chunks(4) {
            out.extend_from_slice(chunk);
            if chunk == ESCAPE {
                out.extend_from_slice(&ESCAPE);
            }
        }
        let padding = (4 - payload.len() % 4) % 4;
        out.extend(std::iter::repeat_n(0, padding));
        out.extend_from_slice(&ESCAPE);
        out.extend_from_slice(&[END_MARK, padding as u8]);
        let crc = X25.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn scan(buf: &[u8]) -> (FrameStep, Vec<u8>) {
        let mut s = FrameScanner::new(Vec::new());
        let step = s.advance(buf, 1 << 16);
        (step, s.payload)
    }

    #[test]
    fn escaped_payload_and_padding_roundtrip() {
        let payload = [0x76, 0x1b, 0x1b, 0x1b, 0x1b, 0x01, 0x02, 0x03, 0x1b];
        let bytes = frame(&payload);
        let (step, out) = scan(&bytes);
        assert_eq!(
            step,
            FrameStep::Complete {
                len: bytes.len(),
                notes: vec![]
            }
        );
        assert_eq!(out, payload);
    }

    #[test]
    fn incremental_scanning_gives_the_same_result() {
        let payload: Vec<u8> = (0..=255u8).chain([0x1b; 8]).collect();
        let bytes = frame(&payload);
        let mut s = FrameScanner::new(Vec::new());
        for end in 8..bytes.len() {
            assert_eq!(
                s.advance(&bytes[..end], 1 << 16),
                FrameStep::NeedMore,
                "at {end}"
            );
        }
        assert_eq!(
            s.advance(&bytes, 1 << 16),
            FrameStep::Complete {
                len: bytes.len(),
                notes: vec![]
            }
        );
        assert_eq!(s.payload, payload);
    }

    #[test]
    fn crc_mismatch_and_bad_escape_are_reported() {
        let mut bytes = frame(&[1, 2, 3, 4]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            scan(&bytes).0,
            FrameStep::Broken {
                reason: SkipReason::ChecksumMismatch,
                ..
            }
        ));
        let mut bad = START.to_vec();
        bad.extend_from_slice(&[0x1b, 0x1b, 0x1b, 0x1b, 0x02, 0, 0, 0]);
        assert!(matches!(
            scan(&bad).0,
            FrameStep::Broken {
                reason: SkipReason::Malformed,
                len: 12,
                ..
            }
        ));
        let mut restart = START.to_vec();
        restart.extend_from_slice(&[1, 2, 3, 4]);
        restart.extend_from_slice(&START);
        assert!(matches!(
            scan(&restart).0,
            FrameStep::Broken {
                reason: SkipReason::Truncated,
                len: 12,
                ..
            }
        ));
    }

    #[test]
    fn oversized_frames_are_bounded() {
        let mut bytes = START.to_vec();
        bytes.extend(std::iter::repeat_n(0x42, 4096));
        let mut s = FrameScanner::new(Vec::new());
        assert!(matches!(
            s.advance(&bytes, 1024),
            FrameStep::Broken {
                reason: SkipReason::Oversized,
                ..
            }
        ));
    }
}
