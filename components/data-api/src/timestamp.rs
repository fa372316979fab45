//! Timestamps: RFC 3339 at the API, one fixed-width UTC text form in the database.
//!
//! The database form `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` always has nine fractional digits, so
//! text comparison (`ORDER BY`, `<`, `MAX`) is time order. The API form is RFC 3339 in UTC with
//! as many fractional digits as needed (`2026-11-23T16:00:00Z`).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use wattlet_survey::RefusalCode;

use crate::error::ApiError;

/// A time the API does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{0:?} is not an RFC 3339 time ({1})")]
    Malformed(String, String),
    #[error("{0:?} is outside the years 0001–9999 in UTC")]
    OutOfRange(String),
}

impl TimeError {
    /// The refusal of the request field `field` holding this time: `invalid_request`, or
    /// `time_out_of_range` for a well-formed time the database cannot hold.
    pub fn at(self, field: &str) -> ApiError {
        let code = match self {
            TimeError::Malformed(..) => RefusalCode::InvalidRequest,
            TimeError::OutOfRange(_) => RefusalCode::TimeOutOfRange,
        };
        ApiError::refused(code, format!("{field}: {self}"))
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

/// The database form (fixed width, UTC).
pub fn to_db(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
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
    // Years are 1..=9999 and the offset is UTC, which RFC 3339 formatting always accepts.
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| to_db(t))
}

/// A database timestamp (or NULL) in API form; anything unparsable is passed through.
pub fn db_to_api(s: Option<String>) -> Option<String> {
    s.map(|s| match OffsetDateTime::parse(&s, &Rfc3339) {
        Ok(t) => to_api(t),
        Err(_) => s,
    })
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
        for s in ["0000-06-01T00:00:00Z", "9999-12-31T23:00:00-02:00"] {
            assert_eq!(parse(s), Err(TimeError::OutOfRange(s.to_owned())));
        }
        assert!(matches!(parse("2026-11-23"), Err(TimeError::Malformed(..))));
        assert!(parse("0001-01-01T00:00:00Z").is_ok());
    }
}
