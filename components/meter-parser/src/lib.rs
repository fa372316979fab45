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

/// An exact decimal: `mantissa × 10^scaler` (defined with the survey's other value types).
pub use wattlet_survey::reading::Decimal;

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
