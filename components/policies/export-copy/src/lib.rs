//! The participant's export copy: while attached, every measurement stored for the household is
//! also copied into the household's export copy (only the registers named, when named), which
//! the participant downloads (`GET /api/household/export_copy`) and no study rule purges. The
//! write hook answers `copy`; reads and deletes are allowed as they are.
//!
//! Stricter: copying a subset of the other's registers.

use std::collections::BTreeSet;

use serde::Deserialize;
use wattlet_policy::{Context, Decision, ObjectKind, ParamError, Policy, Rows};

#[cfg(target_family = "wasm")]
mod component {
    wattlet_policy::export_policy!("export-copy-policy", export_copy, crate::ExportCopy);
}

/// The most registers an attachment may name.
pub const MAX_REGISTERS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    registers: Option<Vec<String>>,
}

/// The registers to copy; `None`: all of them.
fn registers(text: &str) -> Result<Option<BTreeSet<String>>, ParamError> {
    let p: Parameters = wattlet_policy::parse_parameters(text)?;
    let Some(registers) = p.registers else {
        return Ok(None);
    };
    if registers.is_empty() || registers.len() > MAX_REGISTERS {
        return Err(ParamError(format!(
            "registers: 1 to {MAX_REGISTERS} OBIS codes, got {}",
            registers.len()
        )));
    }
    for (i, r) in registers.iter().enumerate() {
        if !wattlet_survey::obis::is_obis_hex(r) {
            return Err(ParamError(format!(
                "registers[{i}]: {r:?} is not an OBIS code (12 lower-case hex digits)"
            )));
        }
    }
    Ok(Some(registers.into_iter().collect()))
}

pub struct ExportCopy;

impl Policy for ExportCopy {
    const NAME: &'static str = "export-copy";

    fn validate(text: &str) -> Result<(), ParamError> {
        registers(text).map(|_| ())
    }

    fn at_least_as_strict(text: &str, than: &str) -> Result<bool, ParamError> {
        Ok(match (registers(text)?, registers(than)?) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(ours), Some(theirs)) => ours.is_subset(&theirs),
        })
    }

    fn read(_text: &str, _object: ObjectKind, _context: &Context, _rows: Rows) -> Decision {
        Decision::Allow
    }

    fn write(text: &str, object: ObjectKind, _context: &Context, rows: Rows) -> Decision {
        let Ok(registers) = registers(text) else {
            // Invalid parameters never reach a policy through the Data API; a copy is not worth
            // refusing a device's data for.
            return Decision::Allow;
        };
        if object != ObjectKind::Measurements {
            return Decision::Allow;
        }
        let Some(registers) = registers else {
            return Decision::Copy(rows);
        };
        let copy = rows.only_registers(|r| registers.contains(r));
        // Rows without a value of the named registers are not copied.
        Decision::Copy(copy.filter(|i| copy.values_of(i).iter().any(|v| !v.is_nan())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_policy::{Role, TimeRange};

    const POWER: &str = "0100100700ff";
    const ENERGY: &str = "0100010800ff";

    fn context() -> Context {
        Context {
            role: Role::Participant,
            caveats: vec![],
            purpose: None,
            range: TimeRange::default(),
            now: 0,
            peers: None,
        }
    }

    fn rows() -> Rows {
        let mut rows = Rows::with_registers(vec![POWER.into(), ENERGY.into()]);
        rows.push(Some(0), 10, 0, 1, &[1.0, 100.0]);
        rows.push(Some(1), 20, 0, 1, &[2.0, f64::NAN]);
        rows
    }

    #[test]
    fn parameters_name_registers_or_none() {
        assert!(ExportCopy::validate("{}").is_ok());
        assert!(ExportCopy::validate(&format!(r#"{{"registers":["{ENERGY}"]}}"#)).is_ok());
        let e = ExportCopy::validate(r#"{"registers":["1.8.0"]}"#).expect_err("not hex");
        assert!(e.0.contains("registers[0]"), "{e}");
        for bad in [r#"{"registers":[]}"#, r#"{"format":"csv"}"#, "[]", ""] {
            assert!(ExportCopy::validate(bad).is_err(), "{bad}");
        }
        let energy = format!(r#"{{"registers":["{ENERGY}"]}}"#);
        assert_eq!(ExportCopy::at_least_as_strict(&energy, "{}"), Ok(true));
        assert_eq!(ExportCopy::at_least_as_strict("{}", &energy), Ok(false));
    }

    #[test]
    fn writes_are_copied_reads_and_deletes_allowed() {
        let o = ObjectKind::Measurements;
        // Every row with every register (NaN, absent, compares unequal: look at the parts).
        let Decision::Copy(all) = ExportCopy::write("{}", o, &context(), rows()) else {
            panic!("a copy");
        };
        assert_eq!(
            (all.origin, all.registers),
            (rows().origin, rows().registers)
        );
        assert_eq!(all.values[..3], [1.0, 100.0, 2.0]);
        let energy = format!(r#"{{"registers":["{ENERGY}"]}}"#);
        let Decision::Copy(copy) = ExportCopy::write(&energy, o, &context(), rows()) else {
            panic!("a copy");
        };
        // Only the energy register, and only the row that has it.
        assert_eq!(copy.registers, [ENERGY]);
        assert_eq!(
            (copy.origin.as_slice(), copy.values.as_slice()),
            (&[Some(0)][..], &[100.0][..])
        );
        assert_eq!(
            ExportCopy::read("{}", o, &context(), rows()),
            Decision::Allow
        );
        assert_eq!(ExportCopy::delete("{}", o, &context()), Decision::Allow);
        assert_eq!(
            ExportCopy::write("{}", ObjectKind::Forecast, &context(), rows()),
            Decision::Allow
        );
    }
}
