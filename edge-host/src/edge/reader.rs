//! Probe readers: one thread per meter reads its serial line and runs the parser component.
//!
//! The line is opened raw with the meter's speed and framing. Whatever arrives is fed to the
//! parser component in the chunks the line delivers; every complete telegram replaces the
//! meter's latest reading. A device that disappears (probe unplugged, simulator restarted) is
//! reopened until the reader is stopped.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use prometheus_client::metrics::counter::Counter;
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use wattlet_meter_parser::{Decimal, DecoderOptions, Event, SkipReason, Telegram, Unit, Value};

use crate::edge::config::{
    ENERGY_EXPORT, ENERGY_IMPORT, Framing, MeterConfig, READINGS_OF_INTEREST,
};
use crate::meter::{MeterDecoder, ParserComponent};

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

/// What a reader shares with the daemon.
#[derive(Debug, Default)]
pub struct MeterFeed {
    latest: Mutex<Option<Latest>>,
}

impl MeterFeed {
    pub fn latest(&self) -> Option<Latest> {
        self.latest
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn publish(&self, latest: Latest) {
        match self.latest.lock() {
            Ok(mut slot) => *slot = Some(latest),
            Err(poisoned) => *poisoned.into_inner() = Some(latest),
        }
    }
}

/// The readings of interest in a telegram, in the Data API's units (energy in kWh, power in
/// kW), and the expected codes it lacks. Values in other units are left out: the parser gives
/// base units (Wh, W), so anything else is a meter we do not understand.
pub fn reduce(telegram: &Telegram, expected: &[String]) -> (Vec<(String, f64)>, Vec<String>) {
    let mut values = Vec::new();
    let mut present = Vec::new();
    for reading in &telegram.readings {
        let code = reading.obis.to_hex();
        present.push(code.clone());
        if !READINGS_OF_INTEREST.contains(&code.as_str()) {
            continue;
        }
        let Value::Number(mut number) = reading.value else {
            continue;
        };
        match reading.unit {
            Some(Unit::WATT_HOUR) | Some(Unit::WATT) => {
                // kilo: three more decimal places, exact until the float conversion.
                number.scaler = number.scaler.saturating_sub(3);
                if number.to_f64().is_finite() && !values.iter().any(|(c, _)| *c == code) {
                    values.push((code, number.to_f64()));
                }
            }
            other => {
                tracing::debug!(obis = %code, unit = ?other, "reading left out: not in Wh or W")
            }
        }
    }
    for (total, quantity) in [(ENERGY_IMPORT, 1), (ENERGY_EXPORT, 2)] {
        if present.iter().any(|c| c == total) {
            continue;
        }
        if let Some(mut sum) = tariff_sum(telegram, quantity) {
            sum.scaler = sum.scaler.saturating_sub(3);
            values.push((total.to_owned(), sum.to_f64()));
            present.push(total.to_owned());
        }
    }
    let missing = expected
        .iter()
        .filter(|code| !present.contains(code))
        .cloned()
        .collect();
    (values, missing)
}

/// DSMR meters count energy per tariff (1-0:1.8.1, 1-0:1.8.2, …) and send no total; the survey
/// stores the total (1.8.0, 2.8.0), which is the exact sum of the tariff registers in Wh.
/// `quantity` is the OBIS C group: 1 import, 2 export. `None` without tariff registers or if
/// the sum does not fit.
fn tariff_sum(telegram: &Telegram, quantity: u8) -> Option<Decimal> {
    let tariffs: Vec<Decimal> = telegram
        .readings
        .iter()
        .filter(|r| {
            matches!(r.obis.0, [1, 0, c, 8, 1..=9, 255] if c == quantity)
                && r.unit == Some(Unit::WATT_HOUR)
        })
        .filter_map(|r| match r.value {
            Value::Number(d) => Some(d),
            _ => None,
        })
        .collect();
    let scaler = tariffs.iter().map(|d| d.scaler).min()?;
    let mut mantissa: i64 = 0;
    for d in &tariffs {
        let shift = u32::try_from(d.scaler - scaler).ok()?;
        let aligned = d.mantissa.checked_mul(10i64.checked_pow(shift)?)?;
        mantissa = mantissa.checked_add(aligned)?;
    }
    Some(Decimal { mantissa, scaler })
}

/// Starts the reader thread of one meter.
/// `telegrams` counts every telegram decoded.
pub fn spawn(
    meter: MeterConfig,
    parser: Arc<ParserComponent>,
    feed: Arc<MeterFeed>,
    telegrams: Counter,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("probe {}", meter.device.display()))
        .spawn(move || read_until_stopped(&meter, &parser, &feed, &telegrams, &stop))
        .unwrap_or_else(|e| panic!("cannot start a reader thread: {e}"))
}

fn read_until_stopped(
    meter: &MeterConfig,
    parser: &ParserComponent,
    feed: &MeterFeed,
    telegrams: &Counter,
    stop: &AtomicBool,
) {
    let mut sequence = 0;
    let mut reported_failure = false;
    while !stop.load(Ordering::Relaxed) {
        match read_line(meter, parser, feed, telegrams, stop, &mut sequence) {
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
    telegrams: &Counter,
    stop: &AtomicBool,
    sequence: &mut u64,
) -> anyhow::Result<()> {
    let line = open_line(&meter.device, meter.baud, meter.framing)?;
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
        for event in decoder.push(&buffer[..n])? {
            match event {
                Event::Telegram(telegram) => {
                    *sequence += 1;
                    telegrams.inc();
                    let (values, missing) = reduce(&telegram, &meter.expected);
                    feed.publish(Latest {
                        sequence: *sequence,
                        received_at: SystemTime::now(),
                        values,
                        missing,
                    });
                }
                // Noise before the first frame is normal on a serial line; corrupt frames are not.
                Event::Skipped(skipped) if skipped.reason == SkipReason::Garbage => {}
                Event::Skipped(skipped) => {
                    tracing::info!(meter = %meter.uuid, reason = skipped.reason.as_str(), bytes = skipped.length, detail = %skipped.detail, "skipped bytes from the probe")
                }
            }
        }
    }
    Ok(())
}

/// Opens a serial device raw with the given speed and framing.
pub fn open_line(path: &Path, baud: u32, framing: Framing) -> anyhow::Result<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    crate::serial::configure(&fd, baud, framing).with_context(|| {
        format!(
            "cannot set {} raw at {baud} baud (is it a serial device?)",
            path.display()
        )
    })?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::config::{ENERGY_IMPORT, POWER_SUM};
    use wattlet_meter_parser::{Integrity, Obis, Protocol, Reading};

    fn reading(obis: [u8; 6], mantissa: i64, scaler: i8, unit: Option<Unit>) -> Reading {
        Reading {
            obis: Obis(obis),
            value: Value::Number(Decimal { mantissa, scaler }),
            unit,
            status: None,
            time: None,
        }
    }

    #[test]
    fn readings_of_interest_in_kilo_units() {
        let telegram = Telegram {
            protocol: Protocol::Sml,
            meter_id: None,
            header: None,
            readings: vec![
                reading([1, 0, 1, 8, 0, 255], 123_456_789, -1, Some(Unit::WATT_HOUR)),
                reading([1, 0, 16, 7, 0, 255], -250, 0, Some(Unit::WATT)),
                reading([1, 0, 96, 50, 1, 1], 7, 0, None),
                reading([1, 0, 2, 8, 0, 255], 5, 0, Some(Unit(33))),
            ],
            integrity: Integrity::Verified,
            offset: 0,
            length: 0,
            notes: vec![],
        };
        let expected = [
            ENERGY_IMPORT.to_owned(),
            POWER_SUM.to_owned(),
            "0100020700ff".to_owned(),
        ];
        let (values, missing) = reduce(&telegram, &expected);
        assert_eq!(
            values,
            [
                (ENERGY_IMPORT.to_owned(), 12_345.678_9),
                (POWER_SUM.to_owned(), -0.25)
            ]
        );
        assert_eq!(missing, ["0100020700ff"]);
    }

    #[test]
    fn dsmr_tariffs_add_up_to_the_totals() {
        let telegram = Telegram {
            protocol: Protocol::Dsmr,
            meter_id: None,
            header: None,
            readings: vec![
                reading([1, 0, 1, 8, 1, 255], 1_114_057, 0, Some(Unit::WATT_HOUR)),
                reading([1, 0, 1, 8, 2, 255], 99_728, 1, Some(Unit::WATT_HOUR)),
                reading([1, 0, 2, 8, 1, 255], 407, 0, Some(Unit::WATT_HOUR)),
                reading([1, 0, 1, 7, 0, 255], 31, 0, Some(Unit::WATT)),
            ],
            integrity: Integrity::Verified,
            offset: 0,
            length: 0,
            notes: vec![],
        };
        let (values, missing) = reduce(&telegram, &[ENERGY_IMPORT.to_owned()]);
        assert_eq!(
            values,
            [
                ("0100010700ff".to_owned(), 0.031),
                (ENERGY_IMPORT.to_owned(), 2_111.337),
                ("0100020800ff".to_owned(), 0.407),
            ]
        );
        assert!(missing.is_empty(), "a summed total counts as delivered");
    }
}
