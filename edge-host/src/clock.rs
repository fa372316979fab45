//! Whether the device's clock can stamp measurements.
//!
//! A Raspberry Pi has no battery-backed clock: until NTP has set it after a boot, it counts
//! from 1970, or from the instant `fake-hwclock` saved at the last shutdown. A measurement
//! stamped then would carry a wrong time for good (and the Data API refuses it). So the daemon
//! measures only while the clock is plausible: not before this program was built, not before
//! the newest measurement it already took (a clock that stepped back), and not absurdly far
//! ahead. It says so in its log, its metrics and its status report, and measures again as soon
//! as the clock is set.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far after the build a clock reading is still believed: a device runs for years, not
/// for centuries (and RFC 3339 ends at 9999).
const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// When this program was built (see `build.rs`).
pub fn built_at() -> SystemTime {
    let seconds = env!("WATTLET_EDGE_BUILT_AT").parse().unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Why the clock is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error("the clock says {now}, before this program was built ({built}): it is not set yet")]
    BeforeBuild { now: String, built: String },
    #[error(
        "the clock says {now}, before the newest measurement ({last}): it stepped back or is not set yet"
    )]
    BeforeLastMeasurement { now: String, last: String },
    #[error("the clock says {now}, more than a century after this program was built")]
    TooFarAhead { now: String },
}

/// Checks the time `now` the device would stamp a measurement with, given when the program was
/// built and the newest measurement taken so far.
pub fn check(
    now: SystemTime,
    built: SystemTime,
    last_measurement: Option<SystemTime>,
) -> Result<(), ClockError> {
    if now < built {
        return Err(ClockError::BeforeBuild {
            now: show(now),
            built: show(built),
        });
    }
    if built
        .checked_add(HORIZON)
        .is_none_or(|horizon| now > horizon)
    {
        return Err(ClockError::TooFarAhead { now: show(now) });
    }
    if let Some(last) = last_measurement
        && now < last
    {
        return Err(ClockError::BeforeLastMeasurement {
            now: show(now),
            last: show(last),
        });
    }
    Ok(())
}

/// RFC 3339 with milliseconds, or Unix seconds for a time RFC 3339 cannot write (never panics).
pub fn show(time: SystemTime) -> String {
    // 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
    const LAST: u64 = 253_402_300_799;
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() <= LAST => humantime::format_rfc3339_millis(time).to_string(),
        Ok(since) => format!("{} s after 1970", since.as_secs()),
        Err(before) => format!("{} s before 1970", before.duration().as_secs()),
    }
}

/// A time written by [`show`] (or any RFC 3339 time); `None` when unreadable.
pub fn parse(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_rfc3339(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        parse(text).unwrap()
    }

    #[test]
    fn a_clock_before_the_build_or_the_last_measurement_is_not_set() {
        let built = at("2026-12-01T00:00:00Z");
        let last = Some(at("2026-12-02T10:00:00.250Z"));
        assert_eq!(check(at("2026-12-02T10:00:01Z"), built, last), Ok(()));
        assert_eq!(check(at("2026-12-01T00:00:00Z"), built, None), Ok(()));
        // A Pi just booted without NTP: 1970, or what fake-hwclock saved.
        for now in ["1970-01-01T00:00:05Z", "2026-11-30T23:59:59Z"] {
            let refused = check(at(now), built, last).unwrap_err();
            assert!(matches!(refused, ClockError::BeforeBuild { .. }), "{now}");
            assert!(refused.to_string().contains("not set yet"), "{refused}");
        }
        // After the build, but before a measurement already taken: it stepped back.
        let refused = check(at("2026-12-02T09:59:00Z"), built, last).unwrap_err();
        assert!(matches!(refused, ClockError::BeforeLastMeasurement { .. }));
        assert!(refused.to_string().contains("2026-12-02T10:00:00.250Z"));
        // Absurdly far ahead.
        let refused = check(at("2200-01-01T00:00:00Z"), built, None).unwrap_err();
        assert!(matches!(refused, ClockError::TooFarAhead { .. }));
    }

    #[test]
    fn the_build_time_is_recorded() {
        let built = built_at();
        assert!(built > at("2025-01-01T00:00:00Z"), "{}", show(built));
        assert!(built <= SystemTime::now());
    }

    #[test]
    fn times_are_shown_whatever_they_are() {
        assert_eq!(show(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let far = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(show(far), "300000000000 s after 1970");
        assert_eq!(parse("garbage"), None);
    }
}
