//! Retention: rows older than `months` calendar months (before `now` less that many months, the
//! day clamped to the month's last) are served to no one. An aggregate counts from its start.
//!
//! Written rows already that old are not stored (the write hook drops them as the read hook
//! does).
//!
//! Stricter: a shorter retention (`at_least_as_strict`: months ≤ the other's).

use serde::Deserialize;
use time::{Month, OffsetDateTime};
use wattlet_policy::{Context, Decision, ObjectKind, ParamError, Policy, Rows};

#[cfg(target_family = "wasm")]
mod component {
    wattlet_policy::export_policy!("retention-policy", retention, crate::Retention);
}

/// Fifty years.
pub const MAX_MONTHS: u32 = 600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    months: u32,
}

fn months(text: &str) -> Result<u32, ParamError> {
    let p: Parameters = wattlet_policy::parse_parameters(text)?;
    if !(1..=MAX_MONTHS).contains(&p.months) {
        return Err(ParamError(format!(
            "months: {} is not from 1 to {MAX_MONTHS}",
            p.months
        )));
    }
    Ok(p.months)
}

/// `now` (ns) less `months` calendar months, in ns; `None` when out of range.
pub fn cutoff(now: i64, months: u32) -> Option<i64> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now)).ok()?;
    let total = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 - i64::from(months);
    let year = i32::try_from(total.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(total.rem_euclid(12) + 1).ok()?).ok()?;
    let day = t.day().min(month.length(year));
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    i64::try_from(t.replace_date(date).unix_timestamp_nanos()).ok()
}

pub struct Retention;

impl Policy for Retention {
    const NAME: &'static str = "retention";

    fn validate(text: &str) -> Result<(), ParamError> {
        months(text).map(|_| ())
    }

    fn at_least_as_strict(text: &str, than: &str) -> Result<bool, ParamError> {
        Ok(months(text)? <= months(than)?)
    }

    /// Rows already past retention are not stored: they would be served to no one and purged.
    fn write(text: &str, object: ObjectKind, context: &Context, rows: Rows) -> Decision {
        Self::read(text, object, context, rows)
    }

    fn read(text: &str, _object: ObjectKind, context: &Context, rows: Rows) -> Decision {
        let Some(cutoff) = months(text).ok().and_then(|m| cutoff(context.now, m)) else {
            return Decision::Deny("invalid parameters or clock".into());
        };
        if rows.at.iter().all(|at| *at >= cutoff) {
            return Decision::Allow;
        }
        Decision::Transform(rows.filter(|i| rows.at[i] >= cutoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_policy::{Role, TimeRange};

    fn ns(rfc3339: &str) -> i64 {
        wattlet_policy::parse_rfc3339(rfc3339).expect("time")
    }

    #[test]
    fn calendar_months_back_with_the_day_clamped() {
        assert_eq!(
            cutoff(ns("2026-03-31T12:00:00Z"), 1),
            Some(ns("2026-02-28T12:00:00Z"))
        );
        assert_eq!(
            cutoff(ns("2026-01-15T00:00:00Z"), 13),
            Some(ns("2024-12-15T00:00:00Z"))
        );
        assert_eq!(
            cutoff(ns("2024-05-31T00:00:00Z"), 3),
            Some(ns("2024-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn parameters_and_strictness() {
        assert!(Retention::validate(r#"{"months":12}"#).is_ok());
        for bad in [
            r#"{"months":0}"#,
            r#"{"months":601}"#,
            r#"{"months":"12"}"#,
            r#"{"days":3}"#,
        ] {
            assert!(Retention::validate(bad).is_err(), "{bad}");
        }
        assert!(
            Retention::validate(r#"{"months":0}"#)
                .expect_err("0")
                .0
                .contains("months")
        );
        assert_eq!(
            Retention::at_least_as_strict(r#"{"months":6}"#, r#"{"months":12}"#),
            Ok(true)
        );
        assert_eq!(
            Retention::at_least_as_strict(r#"{"months":24}"#, r#"{"months":12}"#),
            Ok(false)
        );
    }

    #[test]
    fn old_rows_are_served_to_no_one() {
        let now = ns("2026-06-15T00:00:00Z");
        let mut rows = Rows::with_registers(vec!["0100010800ff".into()]);
        for (i, t) in [
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            "2026-06-01T00:00:00Z",
        ]
        .iter()
        .enumerate()
        {
            rows.push(Some(i as u32), ns(t), 0, 1, &[i as f64]);
        }
        let context = Context {
            role: Role::Participant,
            caveats: vec![],
            purpose: None,
            range: TimeRange::default(),
            now,
            peers: None,
        };
        let Decision::Transform(out) = Retention::read(
            r#"{"months":6}"#,
            ObjectKind::Measurements,
            &context,
            rows.clone(),
        ) else {
            panic!("filtered");
        };
        assert_eq!(out.origin, [Some(1), Some(2)]);
        assert_eq!(out.values, [1.0, 2.0]);
        // Written rows that old are not stored either.
        let six = r#"{"months":6}"#;
        let o = ObjectKind::Measurements;
        assert_eq!(
            Retention::write(six, o, &context, rows.clone()),
            Decision::Transform(out)
        );
        assert_eq!(
            Retention::read(r#"{"months":24}"#, ObjectKind::Measurements, &context, rows),
            Decision::Allow
        );
    }
}
