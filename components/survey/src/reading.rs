//! A telegram's register values reduced to the survey's values: the codes of
//! [`crate::obis::SURVEY_CODES`] in kWh and kW, the energy totals of meters that count per
//! tariff, and the expected codes a telegram lacks (a factory-locked meter).
//!
//! The input is a plain register list, not the meter parser's types, so that any host or
//! component can use this without linking the parser component (whose WIT export would travel
//! with it). Values stay decimal (mantissa × 10^scaler) until the last step, so tariff sums are
//! exact.

use serde::Serialize;

use crate::obis::{ENERGY_EXPORT, ENERGY_IMPORT, survey_code, to_hex};

/// An exact decimal: `mantissa × 10^scaler`, as meters send numbers (an integer with a
/// power-of-ten scaler); kept exact so energy counters and tariff sums do not round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decimal {
    pub mantissa: i64,
    pub scaler: i8,
}

impl Decimal {
    /// The value as a float, for display and analysis (not for accounting).
    pub fn to_f64(self) -> f64 {
        // Dividing by an exact power of ten rounds once; multiplying by 0.1… would round twice.
        let power = 10f64.powi(i32::from(self.scaler.unsigned_abs()));
        if self.scaler < 0 {
            self.mantissa as f64 / power
        } else {
            self.mantissa as f64 * power
        }
    }
}

impl std::fmt::Display for Decimal {
    /// Exact decimal text, without float rounding: `12345` with scaler -2 is `123.45`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let negative = self.mantissa < 0;
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if negative { "-" } else { "" };
        if self.scaler >= 0 {
            let zeros = "0".repeat(self.scaler as usize);
            return write!(f, "{sign}{digits}{zeros}");
        }
        let frac = self.scaler.unsigned_abs() as usize;
        let padded = format!("{digits:0>width$}", width = frac + 1);
        let (int, dec) = padded.split_at(padded.len() - frac);
        let dec = dec.trim_end_matches('0');
        if dec.is_empty() {
            write!(f, "{sign}{int}")
        } else {
            write!(f, "{sign}{int}.{dec}")
        }
    }
}

/// The unit of a register, as far as the survey cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterUnit {
    WattHour,
    Watt,
    /// Any other unit, or none: the register is left out.
    Other,
}

/// One register of a telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    /// The six OBIS groups A–F.
    pub obis: [u8; 6],
    /// `None` for a register that holds no number (text, octets).
    pub value: Option<Decimal>,
    pub unit: RegisterUnit,
}

/// What a telegram contributes to a measurement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reduced {
    /// OBIS hex → value in kWh or kW, each code at most once.
    pub values: Vec<(String, f64)>,
    /// Expected codes the telegram lacked.
    pub missing: Vec<String>,
}

/// Reduces a telegram's registers. Values in units other than Wh and W are left out: meter
/// parsers give base units, so anything else is a register the survey does not understand.
/// DSMR meters count energy per tariff (1-0:1.8.1, 1-0:1.8.2, …) and send no total; the total
/// (1.8.0, 2.8.0) is then the exact sum of the tariff registers and counts as delivered.
pub fn reduce(registers: &[Register], expected: &[String]) -> Reduced {
    let mut values: Vec<(String, f64)> = Vec::new();
    let mut present: Vec<String> = Vec::new();
    for register in registers {
        let code = to_hex(register.obis);
        let survey = survey_code(&code).is_some();
        present.push(code.clone());
        let (Some(mut number), true) = (register.value, survey) else {
            continue;
        };
        if matches!(register.unit, RegisterUnit::WattHour | RegisterUnit::Watt) {
            // kilo: three more decimal places, exact until the float conversion.
            number.scaler = number.scaler.saturating_sub(3);
            let value = number.to_f64();
            if value.is_finite() && !values.iter().any(|(c, _)| *c == code) {
                values.push((code, value));
            }
        }
    }
    for (total, quantity) in [(ENERGY_IMPORT, 1), (ENERGY_EXPORT, 2)] {
        if present.iter().any(|c| c == total) {
            continue;
        }
        if let Some(mut sum) = tariff_sum(registers, quantity) {
            sum.scaler = sum.scaler.saturating_sub(3);
            values.push((total.to_owned(), sum.to_f64()));
            present.push(total.to_owned());
        }
    }
    let missing = expected
        .iter()
        .filter(|code| !present.contains(code))
        .cloned()
        .collect();
    Reduced { values, missing }
}

/// The exact sum in Wh of the tariff registers 1-0:`quantity`.8.1–9 (`quantity` 1: import,
/// 2: export); `None` without tariff registers or if the sum does not fit.
fn tariff_sum(registers: &[Register], quantity: u8) -> Option<Decimal> {
    let tariffs: Vec<Decimal> = registers
        .iter()
        .filter(|r| {
            matches!(r.obis, [1, 0, c, 8, 1..=9, 255] if c == quantity)
                && r.unit == RegisterUnit::WattHour
        })
        .filter_map(|r| r.value)
        .collect();
    let scaler = tariffs.iter().map(|d| d.scaler).min()?;
    let mut mantissa: i64 = 0;
    for d in &tariffs {
        let shift = u32::try_from(d.scaler - scaler).ok()?;
        let aligned = d.mantissa.checked_mul(10i64.checked_pow(shift)?)?;
        mantissa = mantissa.checked_add(aligned)?;
    }
    Some(Decimal { mantissa, scaler })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obis::{POWER_IMPORT, POWER_SUM};

    fn register(obis: [u8; 6], mantissa: i64, scaler: i8, unit: RegisterUnit) -> Register {
        Register {
            obis,
            value: Some(Decimal { mantissa, scaler }),
            unit,
        }
    }

    #[test]
    fn survey_codes_in_kilo_units() {
        let registers = [
            register(
                [1, 0, 1, 8, 0, 255],
                123_456_789,
                -1,
                RegisterUnit::WattHour,
            ),
            register([1, 0, 16, 7, 0, 255], -250, 0, RegisterUnit::Watt),
            register([1, 0, 96, 50, 1, 1], 7, 0, RegisterUnit::Other),
            register([1, 0, 2, 8, 0, 255], 5, 0, RegisterUnit::Other),
            // A second 1.8.0 in the same telegram does not replace the first.
            register([1, 0, 1, 8, 0, 255], 1, 0, RegisterUnit::WattHour),
        ];
        let expected = [
            ENERGY_IMPORT.to_owned(),
            POWER_SUM.to_owned(),
            "0100020700ff".to_owned(),
        ];
        let reduced = reduce(&registers, &expected);
        assert_eq!(
            reduced.values,
            [
                (ENERGY_IMPORT.to_owned(), 12_345.678_9),
                (POWER_SUM.to_owned(), -0.25)
            ]
        );
        assert_eq!(reduced.missing, ["0100020700ff"]);
    }

    #[test]
    fn dsmr_tariffs_add_up_to_the_totals() {
        let registers = [
            register([1, 0, 1, 8, 1, 255], 1_114_057, 0, RegisterUnit::WattHour),
            register([1, 0, 1, 8, 2, 255], 99_728, 1, RegisterUnit::WattHour),
            register([1, 0, 2, 8, 1, 255], 407, 0, RegisterUnit::WattHour),
            register([1, 0, 1, 7, 0, 255], 31, 0, RegisterUnit::Watt),
        ];
        let reduced = reduce(&registers, &[ENERGY_IMPORT.to_owned()]);
        assert_eq!(
            reduced.values,
            [
                (POWER_IMPORT.to_owned(), 0.031),
                (ENERGY_IMPORT.to_owned(), 2_111.337),
                (ENERGY_EXPORT.to_owned(), 0.407),
            ]
        );
        assert!(
            reduced.missing.is_empty(),
            "a summed total counts as delivered"
        );
    }

    #[test]
    fn a_sum_that_does_not_fit_is_left_out() {
        let registers = [
            register([1, 0, 1, 8, 1, 255], i64::MAX, 0, RegisterUnit::WattHour),
            register([1, 0, 1, 8, 2, 255], 1, 0, RegisterUnit::WattHour),
        ];
        let reduced = reduce(&registers, &[ENERGY_IMPORT.to_owned()]);
        assert!(reduced.values.is_empty());
        assert_eq!(reduced.missing, [ENERGY_IMPORT]);
    }
}
