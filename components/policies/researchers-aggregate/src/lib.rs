//! Researchers see only aggregates: every role but the participant gets the rows of a data
//! object aggregated into buckets of `step_minutes` (at least 15), aligned to the Unix epoch so
//! that a coarser step's buckets hold whole finer ones. Per OBIS register: cumulative registers
//! (value group D = 8, energy totals such as 1.8.0) keep their last value in the bucket, every
//! other register the mean weighted by the samples each row stands for (so aggregating an
//! aggregate again gives the aggregate of the measurements).
//!
//! Stricter: a larger step (`at_least_as_strict`: step ≥ the other's).

use serde::Deserialize;
use wattlet_policy::{Context, Decision, ObjectKind, ParamError, Policy, Role, Rows};

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

    fn read(text: &str, _object: ObjectKind, context: &Context, rows: Rows) -> Decision {
        // Invalid parameters never reach a policy through the Data API; still, fail closed.
        let Ok(p) = parameters(text) else {
            return Decision::Deny("invalid parameters".into());
        };
        if context.role == Role::Participant {
            return Decision::Allow;
        }
        Decision::Transform(aggregate(&rows, i64::from(p.step_minutes) * 60_000_000_000))
    }
}

/// Whether an OBIS code (12 hex digits, `AABBCCDDEEFF`) is a cumulative register (D = 8).
fn cumulative(obis: &str) -> bool {
    obis.get(6..8) == Some("08")
}

/// One register's sums in the bucket being filled.
#[derive(Clone, Copy, Default)]
struct Column {
    weighted: f64,
    weight: f64,
    /// The value of the latest row in the bucket that has one.
    last: Option<f64>,
}

/// Rows into epoch-aligned buckets of `step` ns, in time order, with the same registers (NaN
/// where no row of a bucket had a value).
pub fn aggregate(rows: &Rows, step: i64) -> Rows {
    let cumulative: Vec<bool> = rows.registers.iter().map(|r| cumulative(r)).collect();
    // Rows come in time order from the Data API; anything else is put in order first (stable,
    // so the later of two rows at the same time stays the later).
    let mut order: Vec<usize> = (0..rows.len()).collect();
    if !rows.at.is_sorted() {
        order.sort_by_key(|&i| rows.at[i]);
    }
    let mut out = Rows::with_registers(rows.registers.clone());
    let mut columns = vec![Column::default(); rows.registers.len()];
    let mut values = Vec::with_capacity(columns.len());
    let mut bucket: Option<(i64, u32)> = None;
    let mut flush = |out: &mut Rows, (start, samples): (i64, u32), columns: &mut [Column]| {
        values.clear();
        values.extend(
            columns
                .iter()
                .zip(&cumulative)
                .map(|(c, cumulative)| match c.last {
                    None => f64::NAN,
                    Some(last) if *cumulative => last,
                    Some(_) => c.weighted / c.weight,
                }),
        );
        out.push(None, start, step, samples, &values);
        columns.fill(Column::default());
    };
    for i in order {
        let start = rows.at[i].div_euclid(step) * step;
        let samples = match bucket {
            Some((current, samples)) if current == start => samples,
            Some(done) => {
                flush(&mut out, done, &mut columns);
                0
            }
            None => 0,
        };
        let weight = rows.samples[i].max(1);
        bucket = Some((start, samples.saturating_add(weight)));
        for (column, value) in columns.iter_mut().zip(rows.values_of(i)) {
            if value.is_nan() {
                continue;
            }
            column.weighted += value * f64::from(weight);
            column.weight += f64::from(weight);
            column.last = Some(*value);
        }
    }
    if let Some(done) = bucket {
        flush(&mut out, done, &mut columns);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_policy::TimeRange;

    const MIN: i64 = 60_000_000_000;
    const POWER: &str = "0100100700ff";
    const ENERGY: &str = "0100010800ff";

    /// Rows of power and energy, one a minute, from `(minute, power, energy)`.
    fn rows(of: impl IntoIterator<Item = (i64, f64, f64)>) -> Rows {
        let mut rows = Rows::with_registers(vec![POWER.into(), ENERGY.into()]);
        for (minute, power, energy) in of {
            rows.push(
                Some(rows.len() as u32),
                minute * MIN,
                0,
                1,
                &[power, energy],
            );
        }
        rows
    }

    fn value(rows: &Rows, i: usize, obis: &str) -> Option<f64> {
        rows.readings_of(i)
            .find(|(r, _)| *r == obis)
            .map(|(_, v)| v)
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
        let rows = rows((0..30).map(|m| (m, m as f64, 1000.0 + m as f64)));
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
        assert_eq!(out.at, [0, 15 * MIN]);
        assert_eq!(out.span, [15 * MIN, 15 * MIN]);
        assert_eq!(out.samples, [15, 15]);
        assert_eq!(out.origin, [None, None]);
        assert_eq!(value(&out, 0, POWER), Some(7.0));
        assert_eq!(value(&out, 0, ENERGY), Some(1014.0));
        assert_eq!(value(&out, 1, POWER), Some(22.0));
        // Aggregating the aggregates to an hour weighs them by their samples.
        let hour = aggregate(&out, 60 * MIN);
        assert_eq!((hour.len(), hour.samples[0]), (1, 30));
        assert_eq!(value(&hour, 0, POWER), Some(14.5));
        assert_eq!(value(&hour, 0, ENERGY), Some(1029.0));
    }

    #[test]
    fn rows_before_the_epoch_fall_into_their_own_bucket() {
        let out = aggregate(&rows([(-1, 1.0, 1.0), (0, 3.0, 2.0)]), 15 * MIN);
        assert_eq!(out.at, [-15 * MIN, 0]);
    }

    #[test]
    fn rows_out_of_order_and_missing_values_aggregate_as_in_order() {
        let mut shuffled = rows([(20, 4.0, 1020.0), (1, 2.0, 1001.0), (16, 6.0, 1016.0)]);
        // Minute 2 has power only; its energy is missing.
        shuffled.push(Some(3), 2 * MIN, 0, 1, &[f64::NAN, f64::NAN]);
        shuffled.push(Some(4), 3 * MIN, 0, 1, &[6.0, f64::NAN]);
        let out = aggregate(&shuffled, 15 * MIN);
        assert_eq!(out.at, [0, 15 * MIN]);
        assert_eq!(out.samples, [3, 2]);
        assert_eq!(value(&out, 0, POWER), Some(4.0));
        // The latest energy of the bucket that has one: minute 1's.
        assert_eq!(value(&out, 0, ENERGY), Some(1001.0));
        assert_eq!(value(&out, 1, POWER), Some(5.0));
        assert_eq!(value(&out, 1, ENERGY), Some(1020.0));
        // A register no row of a bucket has stays empty.
        let mut sparse = Rows::with_registers(vec![POWER.into(), ENERGY.into()]);
        sparse.push(Some(0), 0, 0, 1, &[1.0, f64::NAN]);
        let out = aggregate(&sparse, 15 * MIN);
        assert_eq!(out.readings_of(0).collect::<Vec<_>>(), [(POWER, 1.0)]);
    }
}
