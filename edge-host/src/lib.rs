//! The edge daemon, what a Raspberry Pi runs (`wattlet-edge`, or `wattlet edge`): probes →
//! parser component → measurement buffer → upload component → Data API, gated by the
//! household's consent.
//!
//! - [`reader`]: one thread per probe reads the serial line and runs the parser component.
//! - [`buffer`]: measurements in SQLite (WAL) until the cloud acknowledged them; those it
//!   refused one by one set aside.
//! - [`clock`]: whether the clock is plausibly set (a Pi has no battery-backed clock).
//! - [`uplink`]: the upload component, with the device's TLS identity held by the host.
//! - [`daemon`]: the measurement, report and consent cycles; health in the status report and
//!   diagnostics bundles on request.
//! - [`logring`]: the recent log lines diagnostics bundles carry.
//! - [`update`]: the update agent (signed components, A/B slots, trial, commit or roll back).
//! - [`enrol`]: the device's key and certificate signing request, its certificate installed.
//! - [`unlock`]: entering a locked meter's PIN through the probe.
//! - [`service`]: readiness, stopping and the watchdog for systemd.
//! - [`cli`]: the command line, shared by `wattlet-edge` and `wattlet`.
//!
//! The crate holds no queue client, no certificate authority and no HTTP server beyond the
//! metrics listener: a device only reads meters and talks to the Data API.

pub mod buffer;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod enrol;
pub mod logring;
pub mod metrics;
pub mod reader;
pub mod service;
pub mod unlock;
pub mod update;
pub mod uplink;
