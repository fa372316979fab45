//! Wall-clock times as the Data API writes them: seconds since 1970 and RFC 3339 in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since 1970 now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// `seconds` since 1970 as RFC 3339 in UTC, whole seconds (`2026-12-02T15:04:05Z`).
pub fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}
