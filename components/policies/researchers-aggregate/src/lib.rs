//! Researchers see only aggregates: every role but the participant gets the rows of a data
//! object aggregated into buckets of `step_minutes` (at least 15), aligned to the Unix epoch so
//! that a coarser step's buckets hold whole finer ones. Per OBIS register: cumulative registers
//! (value group D = 8, energy totals such as 1.8.0) keep their last value in the bucket, every
//! other register the mean weighted by the samples each row stands for (so aggregating an
//! aggregate again gives the aggregate of the measurements).
//!
//! Stricter: a larger step (`at_least_as_strict`: step ≥ the other's).

use std::collections::BTreeMap;

use serde::Deserialize;
use wattlet_policy::{Context, Decision, ObjectKind, ParamError, Policy, Reading, Role, Row};

#[cfg(target_family = "wasm")]
mod component {
    wattlet_policy::export_policy!(
        "researchers-aggregate-policy",
        researchers_aggregate,
        crate::ResearchersAggregate
    );
}

/// The finest step allowed: DESIGN's 15 minutes.
pub const MIN_STEP_MINUTES: u32 = 15;
/// One day.
pub const MAX_STEP_MINUTES: u32 = 1440;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    step_minutes: u32,
}

fn parameters(text: &str) -> Result<Parameters, ParamError> {
    let p: Parameters = wattlet_policy::parse_parameters(text)?;
    if !(MIN_STEP_MINUTES..=MAX_STEP_MINUTES).contains(&p.step_minutes)
        || !MAX_STEP_MINUTES.is_multiple_of(p.step_minutes)
    {
        return Err(ParamError(format!(
            "step_minutes: {} is not a divisor of 1440 from {MIN_STEP_MINUTES} to {MAX_STEP_MINUTES}",
            p.step_minutes
        )));
    }
    Ok(p)
}

pub struct ResearchersAggregate;

impl Policy for ResearchersAggregate {
    const NAME: &'static str = "researchers-aggregate";

    fn validate(text: &str) -> Result<(), ParamError> {
        parameters(text).map(|_| ())
    }

    fn at_least_as_strict(text: &str, than: &str) -> Result<bool, ParamError> {
        Ok(parameters(text)?.step_minutes >= parameters(than)?.step_minutes)
    }

    fn read(text: &str, _object: ObjectKind, context: &Context, rows: Vec<Row>) -> Decision {
        // Invalid parameters never reach a policy through the Data API; still, fail closed.
        let Ok(p) = parameters(text) else {
            return Decision::Deny("invalid parameters".into());
        };
        if context.role == Role::Participant {
            return Decision::Allow;
        }
        Decision::Transform(aggregate(rows, i64::from(p.step_minutes) * 60_000_000_000))
    }
}

/// Whether an OBIS code (12 hex digits, `AABBCCDDEEFF`) is a cumulative register (D = 8).
fn cumulative(obis: &str) -> bool {
    obis.get(6..8) == Some("08")
}

#[derive(Default)]
struct Register {
    weighted: f64,
    weight: f64,
    last: Option<(i64, f64)>,
}

#[derive(Default)]
struct Bucket {
    samples: u32,
    registers: BTreeMap<String, Register>,
}

/// Rows into epoch-aligned buckets of `step` ns, in time order.
pub fn aggregate(rows: Vec<Row>, step: i64) -> Vec<Row> {
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for row in rows {
        let start = row.at.div_euclid(step) * step;
        let bucket = buckets.entry(start).or_default();
        let samples = row.samples.max(1);
        bucket.samples = bucket.samples.saturating_add(samples);
        for Reading { obis, value } in row.readings {
            let register = bucket.registers.entry(obis).or_default();
            register.weighted += value * f64::from(samples);
            register.weight += f64::from(samples);
            if register.last.is_none_or(|(at, _)| row.at >= at) {
                register.last = Some((row.at, value));
            }
        }
    }
    buckets
        .into_iter()
        .map(|(at, bucket)| Row {
            id: String::new(),
            at,
            span: step,
            samples: bucket.samples,
            readings: bucket
                .registers
                .into_iter()
                .map(|(obis, r)| {
                    let value = match r.last {
                        Some((_, last)) if cumulative(&obis) => last,
                        _ => r.weighted / r.weight,
                    };
                    Reading { obis, value }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_policy::TimeRange;

    const MIN: i64 = 60_000_000_000;
    const POWER: &str = "0100100700ff";
    const ENERGY: &str = "0100010800ff";

    fn row(minute: i64, power: f64, energy: f64) -> Row {
        Row {
            id: format!("m{minute}"),
            at: minute * MIN,
            span: 0,
            samples: 1,
            readings: vec![
                Reading {
                    obis: POWER.into(),
                    value: power,
                },
                Reading {
                    obis: ENERGY.into(),
                    value: energy,
                },
            ],
        }
    }

    fn context(role: Role) -> Context {
        Context {
            role,
            caveats: vec![],
            purpose: None,
            range: TimeRange::default(),
            now: 0,
            peers: None,
        }
    }

    #[test]
    fn parameters_are_checked_with_a_clear_message() {
        assert!(ResearchersAggregate::validate(r#"{"step_minutes":15}"#).is_ok());
        assert!(ResearchersAggregate::validate(r#"{"step_minutes":60}"#).is_ok());
        for bad in [
            r#"{"step_minutes":5}"#,
            r#"{"step_minutes":7}"#,
            r#"{"step_minutes":2880}"#,
        ] {
            let e = ResearchersAggregate::validate(bad).expect_err(bad);
            assert!(e.0.contains("step_minutes"), "{e}");
        }
        for bad in [
            "",
            "[]",
            r#"{"step_minutes":-15}"#,
            r#"{"step_minutes":15,"x":1}"#,
        ] {
            assert!(ResearchersAggregate::validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_larger_step_is_stricter() {
        let s = |a, b| ResearchersAggregate::at_least_as_strict(a, b);
        assert_eq!(
            s(r#"{"step_minutes":60}"#, r#"{"step_minutes":15}"#),
            Ok(true)
        );
        assert_eq!(
            s(r#"{"step_minutes":15}"#, r#"{"step_minutes":15}"#),
            Ok(true)
        );
        assert_eq!(
            s(r#"{"step_minutes":15}"#, r#"{"step_minutes":60}"#),
            Ok(false)
        );
    }

    #[test]
    fn researchers_get_means_of_power_and_last_energy_participants_the_rows() {
        let rows: Vec<Row> = (0..30)
            .map(|m| row(m, m as f64, 1000.0 + m as f64))
            .collect();
        let p = r#"{"step_minutes":15}"#;
        let o = ObjectKind::Measurements;
        assert_eq!(
            ResearchersAggregate::read(p, o, &context(Role::Participant), rows.clone()),
            Decision::Allow
        );
        let Decision::Transform(out) =
            ResearchersAggregate::read(p, o, &context(Role::Researcher), rows)
        else {
            panic!("researchers get aggregates");
        };
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].at, out[0].span, out[0].samples, out[0].id.as_str()),
            (0, 15 * MIN, 15, "")
        );
        assert_eq!(out[1].at, 15 * MIN);
        let value =
            |r: &Row, obis: &str| r.readings.iter().find(|x| x.obis == obis).map(|x| x.value);
        assert_eq!(value(&out[0], POWER), Some(7.0));
        assert_eq!(value(&out[0], ENERGY), Some(1014.0));
        assert_eq!(value(&out[1], POWER), Some(22.0));
        // Aggregating the aggregates to an hour weighs them by their samples.
        let hour = aggregate(out, 60 * MIN);
        assert_eq!((hour.len(), hour[0].samples), (1, 30));
        assert_eq!(value(&hour[0], POWER), Some(14.5));
        assert_eq!(value(&hour[0], ENERGY), Some(1029.0));
    }

    #[test]
    fn rows_before_the_epoch_fall_into_their_own_bucket() {
        let out = aggregate(vec![row(-1, 1.0, 1.0), row(0, 3.0, 2.0)], 15 * MIN);
        assert_eq!(
            out.iter().map(|r| r.at).collect::<Vec<_>>(),
            vec![-15 * MIN, 0]
        );
    }
}
