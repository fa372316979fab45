//! Timestamps: RFC 3339 at the API, one fixed-width UTC text form in the database.
//!
//! The database form `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` always has nine fractional digits, so
//! text comparison (`ORDER BY`, `<`, `MAX`) is time order. The API form is RFC 3339 in UTC with
//! as many fractional digits as needed (`2026-11-23T16:00:00Z`).
//!
//! Nothing here panics, whatever the input: a time `time` cannot hold is an error.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};
use wattlet_survey::RefusalCode;

use crate::error::ApiError;

/// The database form of the time a statement runs, as an SQL expression (SQLite's clock,
/// milliseconds). Two statements that stamp with it are ordered as they ran, whatever the
/// Rust code around them did in between: a write and the revocation it races compare right.
pub const SQL_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%f000000Z', 'now')";

/// How long before its device's registration a measurement may have been taken (clock skew;
/// a device measures only after its household granted consent, which follows registration).
pub const BEFORE_REGISTRATION: Duration = Duration::DAY;
/// How far ahead of the Data API's clock a measurement may be (clock skew, not more).
pub const AHEAD_OF_NOW: Duration = Duration::minutes(5);

/// A time the API does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{0:?} is not an RFC 3339 time ({1})")]
    Malformed(String, String),
    #[error("{0:?} is outside the years 0001–9999 in UTC")]
    OutOfRange(String),
    #[error("{time:?} is before the device was registered ({registered}, less a day)")]
    BeforeRegistration { time: String, registered: String },
    #[error("{time:?} is in the future (the Data API's clock says {now})")]
    InTheFuture { time: String, now: String },
}

impl TimeError {
    /// The refusal code of this time: `invalid_request` for a malformed one,
    /// `time_out_of_range` for a well-formed time the Data API does not accept.
    pub fn code(&self) -> RefusalCode {
        match self {
            TimeError::Malformed(..) => RefusalCode::InvalidRequest,
            TimeError::OutOfRange(_)
            | TimeError::BeforeRegistration { .. }
            | TimeError::InTheFuture { .. } => RefusalCode::TimeOutOfRange,
        }
    }

    /// The refusal of the request field `field` holding this time.
    pub fn at(self, field: &str) -> ApiError {
        ApiError::refused(self.code(), format!("{field}: {self}"))
    }
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::from(std::time::SystemTime::now())
}

/// Parses an RFC 3339 time with any offset and converts it to UTC.
pub fn parse(s: &str) -> Result<OffsetDateTime, TimeError> {
    // In UTC a time late on 9999-12-31 with a negative offset is in the year 10000, which
    // `time` cannot hold (`to_offset` would panic).
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| TimeError::Malformed(s.to_owned(), e.to_string()))?
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| TimeError::OutOfRange(s.to_owned()))?;
    if !(1..=9999).contains(&t.year()) {
        return Err(TimeError::OutOfRange(s.to_owned()));
    }
    Ok(t)
}

/// Whether a measurement taken at `t` (as sent: `s`) is plausible for a device registered at
/// `registered`, with the Data API's clock at `now`: not before the registration less
/// [`BEFORE_REGISTRATION`], not more than [`AHEAD_OF_NOW`] after `now`.
pub fn plausible(
    s: &str,
    t: OffsetDateTime,
    registered: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), TimeError> {
    if let Some(registered) = registered
        && registered
            .checked_sub(BEFORE_REGISTRATION)
            .is_some_and(|earliest| t < earliest)
    {
        return Err(TimeError::BeforeRegistration {
            time: s.to_owned(),
            registered: to_api(registered),
        });
    }
    if now
        .checked_add(AHEAD_OF_NOW)
        .is_some_and(|latest| t > latest)
    {
        return Err(TimeError::InTheFuture {
            time: s.to_owned(),
            now: to_api(now),
        });
    }
    Ok(())
}

/// `t` in UTC; a time whose UTC form `time` cannot hold stays as it is (never the case for
/// times from [`parse`] or [`now`]).
fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.checked_to_offset(UtcOffset::UTC).unwrap_or(t)
}

/// The database form (fixed width, UTC).
pub fn to_db(t: OffsetDateTime) -> String {
    let t = utc(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

/// The API form (RFC 3339, UTC).
pub fn to_api(t: OffsetDateTime) -> String {
    // RFC 3339 formatting refuses years outside 0–9999; the database form then stands in.
    utc(t).format(&Rfc3339).unwrap_or_else(|_| to_db(t))
}

/// A database timestamp (or NULL) in API form; anything unparsable is passed through.
pub fn db_to_api(s: Option<String>) -> Option<String> {
    s.map(|s| match parse(&s) {
        Ok(t) => to_api(t),
        Err(_) => s,
    })
}

/// A database timestamp as a time (`None` for NULL or anything unparsable).
pub fn from_db(s: Option<&str>) -> Option<OffsetDateTime> {
    s.and_then(|s| parse(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_kept_in_utc_with_nine_digits() {
        let t = parse("2026-11-23T17:00:00.5+01:00").unwrap();
        assert_eq!(to_db(t), "2026-11-23T16:00:00.500000000Z");
        assert_eq!(to_api(t), "2026-11-23T16:00:00.5Z");
        assert_eq!(
            db_to_api(Some(to_db(t))).as_deref(),
            Some("2026-11-23T16:00:00.5Z")
        );
    }

    #[test]
    fn times_outside_the_years_1_to_9999_in_utc_are_refused() {
        for s in [
            "0000-06-01T00:00:00Z",
            "9999-12-31T23:00:00-02:00",
            "9999-12-31T23:30:00-01:00",
            "0001-01-01T00:30:00+01:00",
        ] {
            let refused = parse(s).unwrap_err();
            assert_eq!(refused, TimeError::OutOfRange(s.to_owned()));
            assert_eq!(refused.code(), RefusalCode::TimeOutOfRange);
        }
        for s in [
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "",
            "9999-12-31T24:00:00Z",
        ] {
            assert!(matches!(parse(s), Err(TimeError::Malformed(..))), "{s}");
        }
        assert!(parse("0001-01-01T00:00:00Z").is_ok());
        assert!(parse("9999-12-31T23:59:59.999999999Z").is_ok());
    }

    #[test]
    fn formatting_never_panics() {
        // Any offset `time` can hold, at both ends of its range.
        for s in ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"] {
            let t = OffsetDateTime::parse(s, &Rfc3339).unwrap();
            assert!(!to_db(t).is_empty());
            assert!(!to_api(t).is_empty());
        }
        assert_eq!(
            db_to_api(Some("garbage".into())).as_deref(),
            Some("garbage")
        );
        assert_eq!(from_db(Some("garbage")), None);
    }

    #[test]
    fn measurements_are_plausible_from_the_registration_to_a_few_minutes_ahead() {
        let registered = parse("2026-11-20T12:00:00Z").unwrap();
        let now = parse("2026-11-23T16:00:00Z").unwrap();
        let check = |s: &str| plausible(s, parse(s).unwrap(), Some(registered), now);
        for s in [
            "2026-11-19T12:00:00Z",
            "2026-11-22T00:00:00+01:00",
            "2026-11-23T16:05:00Z",
        ] {
            assert_eq!(check(s), Ok(()), "{s}");
        }
        for s in [
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2026-11-19T11:59:59.999Z",
        ] {
            let refused = check(s).unwrap_err();
            assert!(
                matches!(refused, TimeError::BeforeRegistration { .. }),
                "{s}"
            );
            assert_eq!(refused.code(), RefusalCode::TimeOutOfRange);
        }
        for s in [
            "2026-11-23T16:05:00.001Z",
            "9999-12-31T23:59:59Z",
            "9999-12-31T22:30:00-01:00",
        ] {
            let refused = check(s).unwrap_err();
            assert!(matches!(refused, TimeError::InTheFuture { .. }), "{s}");
            assert!(refused.to_string().contains("in the future"), "{refused}");
        }
        // A device without a registration time (none is stored): only the future is refused.
        let old = parse("1970-01-01T00:00:00Z").unwrap();
        assert_eq!(plausible("1970", old, None, now), Ok(()));
    }
}
