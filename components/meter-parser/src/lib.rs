//! The meter parser: bytes from an optical probe → telegrams → readings.
//!
//! Three wire formats share one streaming [`Decoder`]: SML 1.03/1.04 with transport v1, IEC 62056-21
//! ASCII readouts and DSMR P1 telegrams. The decoder is fed arbitrary chunks (as a serial port
//! delivers them), resynchronises on start sequences, and reports every byte it could not turn into
//! a telegram together with the reason. It never panics on any input.
//!
//! This library is the product's core and written by hand: the peers (sml-rs, libsml, SmlLib) each
//! reject some real captures (padding, Kermit CRC, absent values, time encodings), and the edge needs
//! exact diagnostics for every skipped byte.

pub mod capture;
mod decoder;
mod obis;
mod sml;
mod text;
mod units;

#[cfg(target_family = "wasm")]
mod component;

pub use decoder::{Decoder, DecoderOptions, Event};
pub use obis::{Obis, ObisParseError};
pub use units::Unit;

use serde::Serialize;

/// An exact decimal: `mantissa × 10^scaler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decimal {
    pub mantissa: i64,
    pub scaler: i8,
}

impl Decimal {
    /// The value as a float, for display and analysis (not for accounting).
    pub fn to_f64(self) -> f64 {
        // Dividing by an exact power of ten rounds once; multiplying by 0.1… would round twice.
        let power = 10f64.powi(i32::from(self.scaler.unsigned_abs()));
        if self.scaler < 0 {
            self.mantissa as f64 / power
        } else {
            self.mantissa as f64 * power
        }
    }
}

impl std::fmt::Display for Decimal {
    /// Exact decimal text, without float rounding: `12345` with scaler -2 is `123.45`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let negative = self.mantissa < 0;
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if negative { "-" } else { "" };
        if self.scaler >= 0 {
            let zeros = "0".repeat(self.scaler as usize);
            return write!(f, "{sign}{digits}{zeros}");
        }
        let frac = self.scaler.unsigned_abs() as usize;
        let padded = format!("{digits:0>width$}", width = frac + 1);
        let (int, dec) = padded.split_at(padded.len() - frac);
        let dec = dec.trim_end_matches('0');
        if dec.is_empty() {
            write!(f, "{sign}{int}")
        } else {
            write!(f, "{sign}{int}.{dec}")
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Value {
    Number(Decimal),
    Text(String),
    Octets(Vec<u8>),
    Boolean(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeterTime {
    SecondsIndex(u32),
    UnixSeconds(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub obis: Obis,
    pub value: Value,
    /// DLMS unit of the value (Wh, W, V, …); text telegrams' `kWh` arrive here as Wh.
    pub unit: Option<Unit>,
    pub status: Option<u64>,
    pub time: Option<MeterTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Sml,
    #[serde(rename = "iec62056-21")]
    Iec62056_21,
    Dsmr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integrity {
    Verified,
    VerifiedLineEndsRestored,
    Unchecked,
    InnerChecksumMismatch,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Telegram {
    pub protocol: Protocol,
    pub meter_id: Option<String>,
    pub header: Option<String>,
    pub readings: Vec<Reading>,
    pub integrity: Integrity,
    pub offset: u64,
    pub length: u64,
    pub notes: Vec<String>,
}

impl Telegram {
    /// The first reading with this OBIS code.
    pub fn reading(&self, obis: Obis) -> Option<&Reading> {
        self.readings.iter().find(|r| r.obis == obis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    Garbage,
    Truncated,
    ChecksumMismatch,
    Malformed,
    Oversized,
    RequestEcho,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Garbage => "garbage",
            SkipReason::Truncated => "truncated",
            SkipReason::ChecksumMismatch => "checksum-mismatch",
            SkipReason::Malformed => "malformed",
            SkipReason::Oversized => "oversized",
            SkipReason::RequestEcho => "request-echo",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub offset: u64,
    pub length: u64,
    pub reason: SkipReason,
    pub detail: String,
}

/// Lower-case hex of bytes, for identifiers and diagnostics.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
