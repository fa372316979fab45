//! Probe readers: one thread per meter reads its serial line and runs the parser component.
//!
//! The line is opened raw with the meter's speed and framing. Whatever arrives is fed to the
//! parser component in the chunks the line delivers; every complete telegram replaces the
//! meter's latest reading. A device that disappears (probe unplugged, simulator restarted) is
//! reopened until the reader is stopped. A parser call that fails (a trap, or past its time or
//! memory limit: see [`wattlet_runtime::sandbox::Limits`]) loses that read's bytes only: it is
//! logged and counted, and a fresh parser instance takes the next read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use wattlet_meter_parser::{DecoderOptions, Event, SkipReason, Telegram, Unit, Value};
use wattlet_runtime::meter::{MeterDecoder, ParserComponent};
use wattlet_survey::reading::{Reduced, Register, RegisterUnit, reduce};

use crate::config::MeterConfig;

/// The newest telegram of one meter, reduced to what a measurement needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    /// Counts telegrams since the reader started; a measurement uses each telegram at most once.
    pub sequence: u64,
    pub received_at: SystemTime,
    /// Readings of interest, OBIS hex → value in kWh or kW.
    pub values: Vec<(String, f64)>,
    /// Expected OBIS codes the telegram lacked (a meter that needs its PIN).
    pub missing: Vec<String>,
}

/// Skipped byte ranges kept per meter for diagnostics.
pub const SKIPPED_KEPT: usize = 32;

/// Bytes the parser skipped: where in the meter's stream (since the reader started), when, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub at: SystemTime,
    pub offset: u64,
    pub length: u64,
    pub reason: &'static str,
}

/// What a reader shares with the daemon.
#[derive(Debug, Default)]
pub struct MeterFeed {
    latest: Mutex<Option<Latest>>,
    skipped: Mutex<VecDeque<Skip>>,
}

impl MeterFeed {
    pub fn latest(&self) -> Option<Latest> {
        self.latest
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The last [`SKIPPED_KEPT`] skipped ranges, oldest first.
    pub fn skipped(&self) -> Vec<Skip> {
        let skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.iter().cloned().collect()
    }

    fn note_skipped(&self, skip: Skip) {
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        if skipped.len() == SKIPPED_KEPT {
            skipped.pop_front();
        }
        skipped.push_back(skip);
    }

    fn publish(&self, latest: Latest) {
        match self.latest.lock() {
            Ok(mut slot) => *slot = Some(latest),
            Err(poisoned) => *poisoned.into_inner() = Some(latest),
        }
    }
}

/// A telegram's readings as the survey's reduction takes them (see [`wattlet_survey::reading`]).
pub fn registers(telegram: &Telegram) -> Vec<Register> {
    telegram
        .readings
        .iter()
        .map(|reading| Register {
            obis: reading.obis.0,
            value: match reading.value {
                Value::Number(number) => Some(number),
                _ => None,
            },
            unit: match reading.unit {
                Some(Unit::WATT_HOUR) => RegisterUnit::WattHour,
                Some(Unit::WATT) => RegisterUnit::Watt,
                _ => RegisterUnit::Other,
            },
        })
        .collect()
}

/// What a reader counts, per meter.
#[derive(Debug, Clone, Default)]
pub struct ReaderCounters {
    /// Telegrams decoded.
    pub telegrams: Counter,
    /// Parser calls that failed (their read's bytes are lost; a fresh instance goes on).
    pub parser_failures: Counter,
    /// Bytes the parser skipped, whatever the reason.
    pub skipped_bytes: Counter,
    /// Corrupt frames skipped (noise between frames is not counted).
    pub skipped_frames: Counter,
}

/// Starts the reader thread of one meter.
pub fn spawn(
    meter: MeterConfig,
    parser: Arc<ParserComponent>,
    feed: Arc<MeterFeed>,
    counters: ReaderCounters,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("probe {}", meter.device.display()))
        .spawn(move || read_until_stopped(&meter, &parser, &feed, &counters, &stop))
        .unwrap_or_else(|e| panic!("cannot start a reader thread: {e}"))
}

fn read_until_stopped(
    meter: &MeterConfig,
    parser: &ParserComponent,
    feed: &MeterFeed,
    counters: &ReaderCounters,
    stop: &AtomicBool,
) {
    let mut sequence = 0;
    let mut reported_failure = false;
    while !stop.load(Ordering::Relaxed) {
        match read_line(meter, parser, feed, counters, stop, &mut sequence) {
            Ok(()) => return,
            Err(error) => {
                // Logged once per outage, not every retry.
                if !reported_failure {
                    tracing::warn!(meter = %meter.uuid, device = %meter.device.display(), error = format!("{error:#}"), "probe unavailable; retrying");
                    reported_failure = true;
                }
            }
        }
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads one open session of the line until it fails (error) or `stop` is raised (`Ok`).
fn read_line(
    meter: &MeterConfig,
    parser: &ParserComponent,
    feed: &MeterFeed,
    counters: &ReaderCounters,
    stop: &AtomicBool,
    sequence: &mut u64,
) -> anyhow::Result<()> {
    let line = wattlet_serial::open(&meter.device, meter.baud, meter.framing)?;
    let options = DecoderOptions {
        protocol: Some(meter.protocol),
        ..DecoderOptions::default()
    };
    let mut decoder = parser.decoder(&options)?;
    tracing::info!(meter = %meter.uuid, device = %meter.device.display(), baud = meter.baud, "reading probe");
    let mut buffer = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(&line, PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("poll on the probe failed"),
        }
        let n = match rustix::io::read(&line, &mut buffer) {
            Ok(0) => anyhow::bail!("the probe's line closed"),
            Ok(n) => n,
            Err(Errno::AGAIN | Errno::INTR) => continue,
            Err(e) => return Err(e).context("reading the probe failed"),
        };
        let events = match decoder.push(&buffer[..n]) {
            Ok(events) => events,
            Err(error) => {
                counters.parser_failures.inc();
                tracing::error!(meter = %meter.uuid, bytes = n, error = format!("{error:#}"), "the parser component failed; these bytes are lost, a fresh instance reads on");
                decoder = parser.decoder(&options)?;
                continue;
            }
        };
        for event in events {
            match event {
                Event::Telegram(telegram) => {
                    *sequence += 1;
                    counters.telegrams.inc();
                    let Reduced { values, missing } =
                        reduce(&registers(&telegram), &meter.expected);
                    feed.publish(Latest {
                        sequence: *sequence,
                        received_at: SystemTime::now(),
                        values,
                        missing,
                    });
                }
                Event::Skipped(skipped) => {
                    counters.skipped_bytes.inc_by(skipped.length);
                    feed.note_skipped(Skip {
                        at: SystemTime::now(),
                        offset: skipped.offset,
                        length: skipped.length,
                        reason: skipped.reason.as_str(),
                    });
                    // Noise before the first frame is normal on a serial line; corrupt frames
                    // are not.
                    if skipped.reason != SkipReason::Garbage {
                        counters.skipped_frames.inc();
                        tracing::info!(meter = %meter.uuid, reason = skipped.reason.as_str(), bytes = skipped.length, detail = %skipped.detail, "skipped bytes from the probe")
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_meter_parser::{Decimal, Integrity, Obis, Protocol, Reading};
    use wattlet_survey::obis::{ENERGY_IMPORT, POWER_SUM};

    fn reading(obis: [u8; 6], value: Value, unit: Option<Unit>) -> Reading {
        Reading {
            obis: Obis(obis),
            value,
            unit,
            status: None,
            time: None,
        }
    }

    /// The parser's readings reach the survey's reduction unchanged: numbers stay decimal,
    /// only Wh and W count as energy and power.
    #[test]
    fn parser_readings_become_survey_registers() {
        let number = |mantissa, scaler| Value::Number(Decimal { mantissa, scaler });
        let telegram = Telegram {
            protocol: Protocol::Sml,
            meter_id: None,
            header: None,
            readings: vec![
                reading(
                    [1, 0, 1, 8, 0, 255],
                    number(123_456_789, -1),
                    Some(Unit::WATT_HOUR),
                ),
                reading([1, 0, 16, 7, 0, 255], number(-250, 0), Some(Unit::WATT)),
                reading([1, 0, 2, 8, 0, 255], number(5, 0), Some(Unit(33))),
                reading([1, 0, 0, 0, 9, 255], Value::Text("id".into()), None),
            ],
            integrity: Integrity::Verified,
            offset: 0,
            length: 0,
            notes: vec![],
        };
        let registers = registers(&telegram);
        assert_eq!(
            registers.iter().map(|r| r.unit).collect::<Vec<_>>(),
            [
                RegisterUnit::WattHour,
                RegisterUnit::Watt,
                RegisterUnit::Other,
                RegisterUnit::Other
            ]
        );
        assert_eq!(registers[3].value, None);
        let reduced = reduce(&registers, &[ENERGY_IMPORT.to_owned()]);
        assert_eq!(
            reduced.values,
            [
                (ENERGY_IMPORT.to_owned(), 12_345.678_9),
                (POWER_SUM.to_owned(), -0.25)
            ]
        );
        assert!(reduced.missing.is_empty());
    }
}
