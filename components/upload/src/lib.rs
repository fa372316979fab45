//! The upload component: the edge device's link to the cloud's Data API.
//!
//! The protocol (what is sent, how answers are read, which failures are worth retrying) is a
//! plain library, tested natively; `component` is the thin `wattlet:edge/uplink` export that
//! moves the bytes with `wasi:http/outgoing-handler`. TLS and the device's key stay in the host.

mod protocol;

pub use protocol::{
    Cloud, ConsentState, DeviceStatus, Error, Measurement, MeterStatus, Request, consent_request,
    parse_consent, parse_status_report, parse_upload, status_request, upload_request,
};

/// Largest batch one upload request carries (the Data API's limit for endpoint 8).
pub const MAX_BATCH: usize = 1000;

#[cfg(target_family = "wasm")]
mod component;
