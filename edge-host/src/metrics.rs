//! Prometheus metrics of the edge daemon: what was measured and sent, what waits in the buffer
//! and what was set aside, the consent the device acts on, whether its clock is set, and per
//! meter whether it delivers and is locked.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use wattlet_survey::ConsentState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeterLabels {
    pub meter: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `acknowledged`, `set_aside` (the cloud refused some measurements, which were set aside),
    /// `refused` (the cloud refused the batch) or `failed` (not reached, server error).
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetAsideLabels {
    pub meter: String,
    /// The refusal code, `unknown` for one this build does not know.
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsentLabels {
    pub state: &'static str,
}

pub struct EdgeMetrics {
    registry: Registry,
    pub telegrams: Family<MeterLabels, Counter>,
    pub parser_failures: Family<MeterLabels, Counter>,
    pub skipped_bytes: Family<MeterLabels, Counter>,
    pub skipped_frames: Family<MeterLabels, Counter>,
    pub measurements: Family<MeterLabels, Counter>,
    pub locked: Family<MeterLabels, Gauge>,
    pub uploads: Family<OutcomeLabels, Counter>,
    pub uploaded: Counter,
    pub upload_duration: Histogram,
    pub buffered: Gauge,
    pub set_aside: Family<SetAsideLabels, Gauge>,
    pub clock_plausible: Gauge,
    pub consent: Family<ConsentLabels, Gauge>,
    pub last_measurement: Gauge,
    pub last_upload: Gauge,
}

impl EdgeMetrics {
    pub fn new() -> Self {
        let mut metrics = EdgeMetrics {
            registry: Registry::with_prefix("wattlet_edge"),
            telegrams: Family::default(),
            parser_failures: Family::default(),
            skipped_bytes: Family::default(),
            skipped_frames: Family::default(),
            measurements: Family::default(),
            locked: Family::default(),
            uploads: Family::default(),
            uploaded: Counter::default(),
            // 5 ms … ~40 s: one batch over mutual TLS, from a LAN to a slow uplink.
            upload_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            buffered: Gauge::default(),
            set_aside: Family::default(),
            clock_plausible: Gauge::default(),
            consent: Family::default(),
            last_measurement: Gauge::default(),
            last_upload: Gauge::default(),
        };
        // Every outcome from 0, so the family is scraped before the first upload and an alert's
        // `increase` sees the first failure.
        for outcome in ["acknowledged", "set_aside", "refused", "failed"] {
            let _ = metrics.uploads.get_or_create(&OutcomeLabels { outcome });
        }
        metrics.registry.register(
            "telegrams",
            "Telegrams decoded from each meter's probe",
            metrics.telegrams.clone(),
        );
        metrics.registry.register(
            "parser_failures",
            "Parser component calls that failed (a trap, or past their time or memory limit); a fresh instance reads on",
            metrics.parser_failures.clone(),
        );
        metrics.registry.register(
            "skipped_bytes",
            "Bytes from each meter's probe the parser skipped (noise, corrupt frames)",
            metrics.skipped_bytes.clone(),
        );
        metrics.registry.register(
            "skipped_frames",
            "Corrupt frames from each meter's probe the parser skipped",
            metrics.skipped_frames.clone(),
        );
        metrics.registry.register(
            "measurements",
            "Measurements taken, by meter",
            metrics.measurements.clone(),
        );
        metrics.registry.register(
            "meter_locked",
            "1 while the meter lacks expected OBIS codes (it needs its PIN)",
            metrics.locked.clone(),
        );
        metrics.registry.register(
            "uploads",
            "Upload batches by outcome",
            metrics.uploads.clone(),
        );
        metrics.registry.register(
            "uploaded_measurements",
            "Measurements the cloud acknowledged",
            metrics.uploaded.clone(),
        );
        metrics.registry.register(
            "upload_duration_seconds",
            "Time to send one batch and read the answer",
            metrics.upload_duration.clone(),
        );
        metrics.registry.register(
            "buffered_measurements",
            "Measurements waiting in the buffer for the cloud",
            metrics.buffered.clone(),
        );
        metrics.registry.register(
            "set_aside_measurements",
            "Measurements the cloud refused one by one, kept aside on the device and no longer sent, by meter and refusal code",
            metrics.set_aside.clone(),
        );
        metrics.registry.register(
            "clock_plausible",
            "1 while the clock is plausibly set; 0: it is not (before the build, or before the newest measurement) and nothing is measured",
            metrics.clock_plausible.clone(),
        );
        metrics.registry.register(
            "consent",
            "1 for the consent state the device acts on",
            metrics.consent.clone(),
        );
        metrics.registry.register(
            "last_measurement_timestamp_seconds",
            "Unix time of the newest measurement taken",
            metrics.last_measurement.clone(),
        );
        metrics.registry.register(
            "last_upload_timestamp_seconds",
            "Unix time of the last upload the cloud acknowledged (the device's heartbeat)",
            metrics.last_upload.clone(),
        );
        metrics
    }

    /// Sets the set-aside gauges to the buffer's counts (meters no longer in it drop out).
    pub fn set_set_aside(&self, counts: &[wattlet_upload::SetAside]) {
        self.set_aside.clear();
        for entry in counts {
            self.set_aside
                .get_or_create(&SetAsideLabels {
                    meter: entry.meter.clone(),
                    code: entry.code.map_or("unknown", |c| c.as_str()).to_owned(),
                })
                .set(i64::try_from(entry.count).unwrap_or(i64::MAX));
        }
    }

    /// Sets the consent gauge: 1 for `consent`, 0 for the others.
    pub fn set_consent(&self, consent: ConsentState) {
        for state in ConsentState::ALL {
            self.consent
                .get_or_create(&ConsentLabels {
                    state: state.as_str(),
                })
                .set(i64::from(state == consent));
        }
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl wattlet_runtime::metrics::MetricsSource for EdgeMetrics {
    fn encode(&self) -> String {
        wattlet_runtime::metrics::encode_registry(&self.registry)
    }
}

/// Seconds since the Unix epoch, for timestamp gauges.
pub fn unix_seconds(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
