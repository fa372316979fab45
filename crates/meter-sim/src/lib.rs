//! A simulated electricity meter: SML transport-v1 frames on a pseudo-terminal.
//!
//! The edge daemon reads meters from serial device paths; this module gives it one without
//! hardware. It opens a pty pair, sets the line raw at 9600 8N1 (what an optical probe on an SML
//! meter runs at), and writes either synthetic frames built by the [`encode`] module or a real
//! capture replayed at line speed. The reader sees the slave path, e.g. `/dev/pts/7`.
//!
//! Synthetic output is deterministic: frame `i` describes simulated time `i × interval`, whatever
//! the wall clock did, so two runs with the same options write the same bytes.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::io::Errno;
use rustix::pty::OpenptFlags;

/// SML's serial line speed (bits/s). 8N1 spends 10 bits per byte: 960 bytes/s.
pub const BAUD: u32 = 9600;

/// The hand-written SML encoder: the product's core test fixture, so every byte is explained.
///
/// SML 1.04 §6.3: every element starts with a type-length (TL) byte `x ttt llll`: `x` says
/// another TL byte follows (carrying four more length bits each), `ttt` is the type
/// (000 octet string, 100 boolean, 101 signed, 110 unsigned, 111 list) and `llll` the length.
/// For a list the length counts elements; for everything else it counts bytes *including* the
/// TL bytes. A lone 0x00 ends a message; 0x01 (an empty octet string) marks an absent optional.
pub mod encode {
    use crc::{CRC_16_IBM_SDLC, Crc, Table};

    /// CRC-16/X.25 (= IBM SDLC), used for both the message and the transport checksum.
    pub static X25: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_SDLC);

    const OCTETS: u8 = 0x00;
    const SIGNED: u8 = 0x50;
    const UNSIGNED: u8 = 0x60;
    const LIST: u8 = 0x70;

    /// Message body tags (SML 1.04 §7.1).
    pub const OPEN_RESPONSE: u16 = 0x0101;
    pub const CLOSE_RESPONSE: u16 = 0x0201;
    pub const GET_LIST_RESPONSE: u16 = 0x0701;

    /// Transport v1 escape sequence, start (escape + version 1) and end mark.
    const ESCAPE: [u8; 4] = [0x1b; 4];
    const VERSION_1: [u8; 4] = [0x01; 4];
    const END_MARK: u8 = 0x1a;

    /// Appends SML elements to a byte buffer.
    #[derive(Debug, Default)]
    pub struct Writer {
        pub bytes: Vec<u8>,
    }

    impl Writer {
        /// TL byte(s) for `type_bits` and `len` (data length, or element count for a list).
        /// Non-list lengths include the TL bytes themselves, so the TL width is found first:
        /// the smallest `n` whose `4n` length bits hold `len` (+ `n` when the TL counts itself).
        fn tl(&mut self, type_bits: u8, len: usize) {
            let counts_itself = type_bits != LIST;
            let mut n = 1usize;
            let total = loop {
                let total = if counts_itself { len + n } else { len };
                if total < 1 << (4 * n) {
                    break total;
                }
                n += 1;
            };
            for i in (0..n).rev() {
                let nibble = ((total >> (4 * i)) & 0x0f) as u8;
                let more = if i > 0 { 0x80 } else { 0x00 };
                // Only the first TL byte carries the type; continuation bytes have type 000.
                let kind = if i == n - 1 { type_bits } else { 0x00 };
                self.bytes.push(more | kind | nibble);
            }
        }

        /// A list of `count` elements; the caller writes them next.
        pub fn list(&mut self, count: usize) {
            self.tl(LIST, count);
        }

        pub fn octets(&mut self, data: &[u8]) {
            self.tl(OCTETS, data.len());
            self.bytes.extend_from_slice(data);
        }

        /// An absent optional field (an empty octet string, TL 0x01).
        pub fn absent(&mut self) {
            self.octets(&[]);
        }

        /// Unsigned integer of minimal width (1–8 bytes, big-endian). Meters use odd widths
        /// too (5- and 7-byte values occur), and the parser must read any of them.
        pub fn unsigned(&mut self, value: u64) {
            let bytes = value.to_be_bytes();
            let skip = (value.leading_zeros() / 8).min(7) as usize;
            self.tl(UNSIGNED, 8 - skip);
            self.bytes.extend_from_slice(&bytes[skip..]);
        }

        /// Unsigned integer of a fixed width (e.g. Unsigned16 for tags and CRCs).
        pub fn unsigned_fixed(&mut self, value: u64, width: usize) {
            let bytes = value.to_be_bytes();
            self.tl(UNSIGNED, width);
            self.bytes.extend_from_slice(&bytes[8 - width..]);
        }

        /// Two's-complement signed integer of minimal width (1–8 bytes): leading bytes are
        /// dropped while they are pure sign extension of the next byte's top bit.
        pub fn signed(&mut self, value: i64) {
            let bytes = value.to_be_bytes();
            let mut skip = 0;
            while skip < 7 {
                let (b, next) = (bytes[skip], bytes[skip + 1]);
                let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
                if !redundant {
                    break;
                }
                skip += 1;
            }
            self.tl(SIGNED, 8 - skip);
            self.bytes.extend_from_slice(&bytes[skip..]);
        }

        /// One SML_Message: `list 6 { transactionId, groupNo, abortOnError, body, crc16,
        /// endOfSmlMsg }`, where the body is `list 2 { tag, content }` and `content` writes the
        /// tag's structure. The CRC is X.25 over the message's bytes from its list TL up to the
        /// CRC field, sent as Unsigned16 low byte first (what meters do, and what the parser
        /// checks: `X25.checksum(covered).swap_bytes()` equals the field read big-endian).
        pub fn message(
            &mut self,
            transaction_id: &[u8],
            group: u8,
            tag: u16,
            content: impl FnOnce(&mut Writer),
        ) {
            let start = self.bytes.len();
            self.list(6);
            self.octets(transaction_id);
            self.unsigned_fixed(u64::from(group), 1);
            self.unsigned_fixed(0, 1); // abortOnError: 0 = continue
            self.list(2);
            self.unsigned_fixed(u64::from(tag), 2);
            content(self);
            let crc = X25.checksum(&self.bytes[start..]);
            self.tl(UNSIGNED, 2);
            self.bytes.extend_from_slice(&crc.to_le_bytes());
            self.bytes.push(0x00); // endOfSmlMsg
        }
    }

    /// What one synthetic telegram reports.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Snapshot {
        /// 1-0:1.8.0*255, energy import in tenths of Wh (sent with scaler -1).
        pub import_dwh: u64,
        /// 1-0:2.8.0*255, energy export in tenths of Wh.
        pub export_dwh: u64,
        /// 1-0:16.7.0*255, power in W, negative when feeding in.
        pub power_w: i64,
        /// The meter's seconds index (actSensorTime).
        pub seconds: u32,
    }

    const UNIT_WH: u64 = 30;
    const UNIT_W: u64 = 27;

    /// An SML file: OpenResponse, GetListResponse with the three readings, CloseResponse.
    /// `seq` makes the transaction and file ids differ between files, as they do on meters.
    pub fn sml_file(server_id: &[u8], seq: u32, snapshot: &Snapshot) -> Vec<u8> {
        let mut w = Writer::default();
        let file_id = seq.to_be_bytes();
        let tx = |n: u8| [file_id[0], file_id[1], file_id[2], file_id[3], n];
        w.message(&tx(0), 0, OPEN_RESPONSE, |w| {
            // codepage, clientId, reqFileId, serverId, refTime, smlVersion
            w.list(6);
            w.absent();
            w.absent();
            w.octets(&file_id);
            w.octets(server_id);
            w.absent();
            w.absent();
        });
        w.message(&tx(1), 0, GET_LIST_RESPONSE, |w| {
            // clientId, serverId, listName, actSensorTime, valList, listSignature,
            // actGatewayTime
            w.list(7);
            w.absent();
            w.octets(server_id);
            w.octets(&[0x01, 0x00, 0x62, 0x0a, 0xff, 0xff]);
            w.list(2); // SML_Time choice 1: secIndex
            w.unsigned_fixed(1, 1);
            w.unsigned_fixed(u64::from(snapshot.seconds), 4);
            w.list(3);
            list_entry(w, [1, 0, 1, 8, 0, 255], UNIT_WH, -1, |w| {
                w.unsigned(snapshot.import_dwh)
            });
            list_entry(w, [1, 0, 2, 8, 0, 255], UNIT_WH, -1, |w| {
                w.unsigned(snapshot.export_dwh)
            });
            list_entry(w, [1, 0, 16, 7, 0, 255], UNIT_W, 0, |w| {
                w.signed(snapshot.power_w)
            });
            w.absent();
            w.absent();
        });
        w.message(&tx(2), 0, CLOSE_RESPONSE, |w| {
            w.list(1); // globalSignature
            w.absent();
        });
        w.bytes
    }

    /// SML_ListEntry: objName, status, valTime, unit, scaler, value, valueSignature.
    fn list_entry(
        w: &mut Writer,
        obis: [u8; 6],
        unit: u64,
        scaler: i64,
        value: impl FnOnce(&mut Writer),
    ) {
        w.list(7);
        w.octets(&obis);
        w.absent();
        w.absent();
        w.unsigned_fixed(unit, 1);
        w.signed(scaler);
        value(w);
        w.absent();
    }

    /// Transport v1: start sequence, the payload with every 4-byte-aligned `1b1b1b1b` doubled,
    /// 0x00 padding to a multiple of 4, `1b1b1b1b 1a <padding count>`, and X.25 over all of that
    /// sent low byte first.
    pub fn transport_frame(payload: &[u8]) -> Vec<u8> {
        let padding = (4 - payload.len() % 4) % 4;
        let mut out = Vec::with_capacity(payload.len() + 24);
        out.extend_from_slice(&ESCAPE);
        out.extend_from_slice(&VERSION_1);
        let mut padded = payload.to_vec();
        padded.resize(payload.len() + padding, 0x00);
        for group in padded.chunks(4) {
            out.extend_from_slice(group);
            if group == ESCAPE {
                out.extend_from_slice(&ESCAPE);
            }
        }
        out.extend_from_slice(&ESCAPE);
        out.extend_from_slice(&[END_MARK, padding as u8]);
        let crc = X25.checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// The simulated household: power follows the day, energy integrates it exactly.
#[derive(Debug, Clone)]
pub struct Model {
    start_dwh: u64,
    mean_power_w: i64,
    interval_ms: u64,
    index: u64,
    /// Energy since start in W·ms (1 Wh = 3 600 000 W·ms): integer, so runs are reproducible.
    import_wms: u64,
    export_wms: u64,
}

const WMS_PER_DWH: u64 = 360_000;
const DAY_MS: u64 = 86_400_000;

impl Model {
    pub fn new(start_wh: u64, mean_power_w: i64, interval_ms: u64) -> Self {
        Model {
            start_dwh: start_wh.saturating_mul(10),
            mean_power_w,
            interval_ms,
            index: 0,
            import_wms: 0,
            export_wms: 0,
        }
    }

    /// Power at simulated time `t_ms`: the mean scaled by `1 − ½·cos(2π·t/day)`, i.e. half the
    /// mean at midnight (t = 0) and 1.5× at noon. A negative mean models a feeding-in PV system.
    pub fn power_at(&self, t_ms: u64) -> i64 {
        let phase = (t_ms % DAY_MS) as f64 / DAY_MS as f64 * std::f64::consts::TAU;
        (self.mean_power_w as f64 * (1.0 - 0.5 * phase.cos())).round() as i64
    }

    /// The next telegram's readings; energy then advances by this power over one interval.
    pub fn next_snapshot(&mut self) -> encode::Snapshot {
        let t_ms = self.index.saturating_mul(self.interval_ms);
        let power_w = self.power_at(t_ms);
        let snapshot = encode::Snapshot {
            import_dwh: self.start_dwh + self.import_wms / WMS_PER_DWH,
            export_dwh: self.export_wms / WMS_PER_DWH,
            power_w,
            seconds: u32::try_from(t_ms / 1000).unwrap_or(u32::MAX),
        };
        let energy = power_w.unsigned_abs().saturating_mul(self.interval_ms);
        if power_w >= 0 {
            self.import_wms = self.import_wms.saturating_add(energy);
        } else {
            self.export_wms = self.export_wms.saturating_add(energy);
        }
        self.index += 1;
        snapshot
    }
}

/// A pseudo-terminal pair whose slave behaves as a raw 9600 8N1 serial line.
#[derive(Debug)]
pub struct Pty {
    master: OwnedFd,
    slave_path: PathBuf,
}

impl Pty {
    pub fn open() -> anyhow::Result<Pty> {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .context("cannot open a pseudo-terminal (/dev/ptmx)")?;
        rustix::pty::grantpt(&master).context("grantpt failed")?;
        rustix::pty::unlockpt(&master).context("unlockpt failed")?;
        let name = rustix::pty::ptsname(&master, Vec::new()).context("ptsname failed")?;
        let slave_path = PathBuf::from(OsString::from_vec(name.into_bytes()));
        // Termios set on the master applies to the slave (Linux redirects it to the pair): raw
        // so that no byte is translated, swallowed or echoed; 8 data bits, no parity, 1 stop
        // bit; 9600 baud, which a pty does not enforce but reports to whoever asks.
        wattlet_serial::configure(&master, BAUD, wattlet_serial::Framing::EightN1)
            .context("cannot make the pty raw at 9600 8N1")?;
        // Non-blocking: with nobody reading, the pty fills and a frame is dropped (as on a
        // serial line) instead of stalling the meter.
        rustix::io::ioctl_fionbio(&master, true).context("cannot make the pty non-blocking")?;
        Ok(Pty { master, slave_path })
    }

    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// Writes one frame. `Ok(false)`: dropped because nobody drains the line. A frame that has
    /// begun is finished (retrying while the reader catches up) so readers never see it torn,
    /// unless `stop` is raised or the line stays blocked for `patience` (then the rest is
    /// dropped: a torn frame, which the reader reports as truncated).
    pub fn write_frame(
        &self,
        frame: &[u8],
        patience: Duration,
        stop: &AtomicBool,
    ) -> anyhow::Result<bool> {
        let mut written = 0;
        let deadline = Instant::now() + patience;
        while written < frame.len() {
            match rustix::io::write(self.master.as_fd(), &frame[written..]) {
                Ok(n) => written += n,
                Err(Errno::INTR) => {}
                // EIO: the last reader closed the slave; the line is simply unheard.
                Err(Errno::AGAIN | Errno::IO) if written == 0 => return Ok(false),
                Err(Errno::AGAIN | Errno::IO) => {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        return Ok(false);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e).context("cannot write to the pty"),
            }
        }
        Ok(true)
    }
}

/// A symlink to the slave for stable configurations, removed when dropped.
#[derive(Debug)]
pub struct Link(PathBuf);

impl Link {
    /// Creates `link` → `target`, replacing an existing symlink (a leftover of a killed run) but
    /// never a regular file.
    pub fn create(link: &Path, target: &Path) -> anyhow::Result<Link> {
        if let Ok(meta) = std::fs::symlink_metadata(link) {
            anyhow::ensure!(
                meta.file_type().is_symlink(),
                "{} exists and is not a symlink; not replacing it",
                link.display()
            );
            std::fs::remove_file(link)
                .with_context(|| format!("cannot remove stale link {}", link.display()))?;
        }
        std::os::unix::fs::symlink(target, link)
            .with_context(|| format!("cannot create link {}", link.display()))?;
        Ok(Link(link.to_owned()))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!("cannot remove link {}: {e}", self.0.display());
        }
    }
}

/// What the simulator writes.
#[derive(Debug, Clone)]
pub enum Source {
    Synthetic {
        server_id: Vec<u8>,
        start_wh: u64,
        mean_power_w: i64,
    },
    /// A capture's bytes, replayed in a loop at line speed.
    Replay(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    pub interval: Duration,
    /// Frames (synthetic) or passes over the capture (replay); `None` runs until `stop`.
    pub count: Option<u64>,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub frames_written: u64,
    pub frames_dropped: u64,
    pub bytes_written: u64,
}

/// Sleeps until `deadline` in short steps; false when `stop` was raised meanwhile.
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Writes to the pty until `count` is reached or `stop` is raised.
pub fn run(pty: &Pty, options: &Options, stop: &AtomicBool) -> anyhow::Result<Stats> {
    let mut stats = Stats::default();
    let began = Instant::now();
    match &options.source {
        Source::Synthetic {
            server_id,
            start_wh,
            mean_power_w,
        } => {
            let interval_ms = u64::try_from(options.interval.as_millis()).unwrap_or(u64::MAX);
            let mut model = Model::new(*start_wh, *mean_power_w, interval_ms);
            let mut index: u32 = 0;
            // Deadlines from the start, not from the last write, so the pace does not drift.
            while options.count.is_none_or(|n| u64::from(index) < n) {
                let due = began + options.interval * index;
                if !sleep_until(due, stop) {
                    break;
                }
                let snapshot = model.next_snapshot();
                let frame = encode::transport_frame(&encode::sml_file(server_id, index, &snapshot));
                if pty.write_frame(&frame, options.interval, stop)? {
                    stats.frames_written += 1;
                    stats.bytes_written += frame.len() as u64;
                } else {
                    stats.frames_dropped += 1;
                }
                index = index.wrapping_add(1);
            }
        }
        Source::Replay(bytes) => {
            anyhow::ensure!(!bytes.is_empty(), "the capture to replay is empty");
            // 96 bytes every 100 ms is 960 bytes/s: 9600 baud at 10 bits per byte.
            const CHUNK: usize = (BAUD / 10 / 10) as usize;
            let step = Duration::from_millis(100);
            let mut chunks_sent: u32 = 0;
            let mut pass = 0u64;
            'passes: while options.count.is_none_or(|n| pass < n) {
                for chunk in bytes.chunks(CHUNK) {
                    if !sleep_until(began + step * chunks_sent, stop) {
                        break 'passes;
                    }
                    if pty.write_frame(chunk, step, stop)? {
                        stats.bytes_written += chunk.len() as u64;
                    } else {
                        stats.frames_dropped += 1;
                    }
                    chunks_sent = chunks_sent.wrapping_add(1);
                }
                stats.frames_written += 1;
                pass += 1;
            }
        }
    }
    // Keep the line up one more interval so a reader drains the last frame before hangup.
    sleep_until(
        Instant::now() + options.interval.min(Duration::from_secs(1)),
        stop,
    );
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::encode::{Snapshot, Writer, sml_file, transport_frame};
    use super::*;
    use wattlet_meter_parser::{
        Decimal, Decoder, DecoderOptions, Event, Integrity, Obis, Telegram, Unit, Value,
    };

    const IMPORT: Obis = Obis::new(1, 0, 1, 8, 0, 255);
    const EXPORT: Obis = Obis::new(1, 0, 2, 8, 0, 255);
    const POWER: Obis = Obis::new(1, 0, 16, 7, 0, 255);

    fn decode(bytes: &[u8]) -> Vec<Telegram> {
        let mut decoder = Decoder::new(DecoderOptions::default());
        let mut events = decoder.push(bytes);
        events.extend(decoder.finish());
        events
            .into_iter()
            .map(|e| match e {
                Event::Telegram(t) => t,
                Event::Skipped(s) => panic!("skipped: {s:?}"),
            })
            .collect()
    }

    fn number(t: &Telegram, obis: Obis) -> (Decimal, Option<Unit>) {
        let r = t.reading(obis).expect("reading present");
        match r.value {
            Value::Number(d) => (d, r.unit),
            ref other => panic!("{obis}: {other:?}"),
        }
    }

    #[test]
    fn integers_have_minimal_width() {
        let enc = |f: &dyn Fn(&mut Writer)| {
            let mut w = Writer::default();
            f(&mut w);
            w.bytes
        };
        assert_eq!(enc(&|w| w.unsigned(0)), [0x62, 0x00]);
        assert_eq!(enc(&|w| w.unsigned(0x1234)), [0x63, 0x12, 0x34]);
        assert_eq!(enc(&|w| w.unsigned(0x01_0000)), [0x64, 0x01, 0x00, 0x00]);
        assert_eq!(enc(&|w| w.signed(-1)), [0x52, 0xff]);
        assert_eq!(enc(&|w| w.signed(127)), [0x52, 0x7f]);
        assert_eq!(enc(&|w| w.signed(128)), [0x53, 0x00, 0x80]);
        assert_eq!(enc(&|w| w.signed(-129)), [0x53, 0xff, 0x7f]);
        assert_eq!(enc(&|w| w.signed(i64::MIN)).len(), 9);
        // 15 data bytes need a second TL byte: total 17 = 0x11 → 0x81 0x01.
        let long = enc(&|w| w.octets(&[0xaa; 15]));
        assert_eq!(&long[..2], &[0x81, 0x01]);
        assert_eq!(long.len(), 17);
        let long_list = enc(&|w| w.list(20));
        assert_eq!(long_list, [0xf1, 0x04]);
    }

    #[test]
    fn frames_decode_to_the_encoded_values_with_escaping_and_negative_power() {
        // Eight 0x1b bytes in the server id and seven in the energy: wherever they land, a
        // 4-byte-aligned 1b1b1b1b exists and must be escaped.
        let server_id = [0x0a, 0x01, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b];
        let snapshot = Snapshot {
            import_dwh: 0x001b_1b1b_1b1b_1b1b,
            export_dwh: 1234,
            power_w: -4321,
            seconds: 77,
        };
        let payload = sml_file(&server_id, 3, &snapshot);
        let frame = transport_frame(&payload);
        assert!(
            frame.len() >= payload.len() + 16 + 4,
            "an escape sequence was doubled"
        );
        assert_eq!(frame.len() % 4, 0);
        let telegrams = decode(&frame);
        assert_eq!(telegrams.len(), 1);
        let t = &telegrams[0];
        assert_eq!(t.integrity, Integrity::Verified, "notes: {:?}", t.notes);
        assert!(t.notes.is_empty(), "notes: {:?}", t.notes);
        assert_eq!(t.meter_id.as_deref(), Some("0a011b1b1b1b1b1b1b1b"));
        assert_eq!(
            number(t, IMPORT),
            (
                Decimal {
                    mantissa: 0x001b_1b1b_1b1b_1b1b,
                    scaler: -1
                },
                Some(Unit::WATT_HOUR)
            )
        );
        assert_eq!(
            number(t, EXPORT),
            (
                Decimal {
                    mantissa: 1234,
                    scaler: -1
                },
                Some(Unit::WATT_HOUR)
            )
        );
        assert_eq!(
            number(t, POWER),
            (
                Decimal {
                    mantissa: -4321,
                    scaler: 0
                },
                Some(Unit::WATT)
            )
        );
    }

    #[test]
    fn strict_decoding_accepts_every_message_crc() {
        let mut model = Model::new(1_000, 500, 1000);
        let mut stream = Vec::new();
        for i in 0..50 {
            stream.extend(transport_frame(&sml_file(
                &[1, 2, 3],
                i,
                &model.next_snapshot(),
            )));
        }
        let options = DecoderOptions {
            strict_inner_checksums: true,
            ..DecoderOptions::default()
        };
        let mut decoder = Decoder::new(options);
        // A serial port's worth at a time, as the daemon will read.
        let mut events = Vec::new();
        for chunk in stream.chunks(17) {
            events.extend(decoder.push(chunk));
        }
        events.extend(decoder.finish());
        assert_eq!(events.len(), 50);
        assert!(events.iter().all(|e| matches!(e, Event::Telegram(_))));
    }

    #[test]
    fn the_model_is_monotonic_and_exact() {
        let mut model = Model::new(100, 3600, 1000);
        let first = model.next_snapshot();
        assert_eq!(first.import_dwh, 1000);
        assert_eq!(first.power_w, 1800); // half the mean at midnight
        let second = model.next_snapshot();
        // 1800 W for 1 s = 0.5 Wh = 5 tenths.
        assert_eq!(second.import_dwh, 1005);
        let mut last = second.import_dwh;
        for _ in 0..10_000 {
            let s = model.next_snapshot();
            assert!(s.import_dwh >= last);
            assert_eq!(s.export_dwh, 0);
            last = s.import_dwh;
        }
        let mut pv = Model::new(0, -2000, 60_000);
        pv.next_snapshot();
        let s = pv.next_snapshot();
        assert!(s.power_w < 0);
        assert_eq!(s.import_dwh, 0);
        assert!(s.export_dwh > 0);
    }
}
