//! The upload component: the edge device's link to the cloud's Data API.
//!
//! The protocol (what is sent, how answers are read, which failures are worth retrying) is a
//! plain library, tested natively and used by the edge host as the native side of the WIT
//! interface; `component` is the thin `wattlet:edge/uplink` export that moves the bytes with
//! `wasi:http/outgoing-handler`. TLS and the device's key stay in the host.

mod protocol;

pub use protocol::{
    BufferDepth, Cloud, DeviceStatus, DiagnosticsBundle, Error, MAX_BUNDLE_BYTES, MAX_LOG_LINE,
    MAX_LOG_LINES, MAX_OUTCOME_REASON, MeasurementRefusal, MeterStatus, ProbeStats, Request,
    RolloutAdmission, SetAside, SkippedRange, UpdateOutcome, UpdateState, UploadOutcome,
    consent_request, diagnostics_request, parse_consent, parse_diagnostics_upload, parse_rollouts,
    parse_status_report, parse_update_outcome, parse_upload, rollouts_request, status_request,
    update_outcome_request, upload_request,
};

#[cfg(target_family = "wasm")]
mod component;
#[cfg(target_family = "wasm")]
mod conversions;
