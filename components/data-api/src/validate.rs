//! Input checks shared by the handlers. Messages name the offending field.

use uuid::Uuid;
use wattlet_survey::RefusalCode;

use crate::error::{ApiError, ApiResult};

pub const METER_TYPES: &[&str] = &["ELECTRICITY", "PV-GENERATION"];
pub const METER_MODELS: &[&str] = &["MT681", "MT175", "EHZ", "DD3", "EASY"];

pub fn bad(message: impl Into<String>) -> ApiError {
    ApiError::refused(RefusalCode::InvalidRequest, message)
}

/// Parses a JSON request body.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.is_empty() {
        return Err(bad("a JSON request body is required"));
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// A UUID in hyphenated form (any case), returned lower-case hyphenated.
pub fn uuid(field: &str, s: &str) -> ApiResult<String> {
    if s.len() != 36 {
        return Err(bad(format!(
            "{field}: {s:?} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        )));
    }
    Uuid::parse_str(s)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| bad(format!("{field}: {s:?} is not a UUID")))
}

/// An OBIS code as 12 lower-case hex digits (`0100010800ff` = 1-0:1.8.0*255).
pub use wattlet_survey::obis::is_obis_hex as is_obis;

/// A device id (the identity in the device's client certificate): 1–64 characters of
/// `A-Z a-z 0-9 . _ -`.
pub fn device_id(field: &str, s: &str) -> ApiResult<String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad(format!(
            "{field}: {s:?} is not a device id (1–64 characters of A-Z a-z 0-9 . _ -)"
        )))
    }
}

pub fn one_of(field: &str, s: &str, allowed: &[&str]) -> ApiResult<String> {
    if allowed.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(bad(format!(
            "{field}: {s:?} is not one of {}",
            allowed.join(", ")
        )))
    }
}

/// A NIALM model id (the appliance), e.g. `washing_machine`: 1–64 of `a-z 0-9 _`.
pub fn model_id(field: &str, s: &str) -> ApiResult<String> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad(format!(
            "{field}: a model id such as \"kettle\" (1–64 of a-z 0-9 _), got {s:?}"
        )))
    }
}

/// Rows a list endpoint returns unless the query's `limit` says otherwise, and the most it may ask.
pub const DEFAULT_LIMIT: i64 = 1000;
pub const MAX_LIMIT: i64 = 10_000;

/// A list endpoint's `limit` query parameter: 1 to [`MAX_LIMIT`].
pub fn limit(value: &str) -> ApiResult<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| bad(format!("limit: 1–{MAX_LIMIT}, got {value:?}")))
}
