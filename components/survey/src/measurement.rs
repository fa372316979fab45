//! One measurement of one meter, as a device uploads it and the Data API stores it.

use serde::{Deserialize, Serialize};

/// The most measurements one upload (Data API endpoint 8) may carry.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Random (v4) uuid: the idempotency key of the upload.
    pub uuid: String,
    /// The meter's uuid in the Data API.
    pub meter: String,
    /// RFC 3339, UTC.
    pub measured_at: String,
    /// OBIS code (12 lowercase hex digits) → value in the survey's units (kWh, kW).
    pub values: Vec<(String, f64)>,
}
