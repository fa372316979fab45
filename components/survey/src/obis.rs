//! The OBIS codes the survey stores (DESIGN.md, "Data model"), in hex because short codes are
//! ambiguous: 12 lowercase hex digits, `0100010800ff` = 1-0:1.8.0*255.

/// 1.8.0: energy import, kWh.
pub const ENERGY_IMPORT: &str = "0100010800ff";
/// 2.8.0: energy export, kWh.
pub const ENERGY_EXPORT: &str = "0100020800ff";
/// 1.7.0: import power, kW.
pub const POWER_IMPORT: &str = "0100010700ff";
/// 2.7.0: export power, kW.
pub const POWER_EXPORT: &str = "0100020700ff";
/// 16.7.0: sum power (import − export), kW.
pub const POWER_SUM: &str = "0100100700ff";

/// What a code measures, and so its unit in the survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// kWh.
    Energy,
    /// kW.
    Power,
}

impl Quantity {
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::Energy => "kWh",
            Quantity::Power => "kW",
        }
    }
}

/// One code the survey stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurveyCode {
    pub hex: &'static str,
    /// The short form people read on the meter, e.g. `1.8.0`.
    pub short: &'static str,
    pub quantity: Quantity,
    /// What it is, for people.
    pub label: &'static str,
}

/// Every code the survey stores, in the order the survey lists them.
pub const SURVEY_CODES: [SurveyCode; 5] = [
    SurveyCode {
        hex: ENERGY_IMPORT,
        short: "1.8.0",
        quantity: Quantity::Energy,
        label: "energy import",
    },
    SurveyCode {
        hex: ENERGY_EXPORT,
        short: "2.8.0",
        quantity: Quantity::Energy,
        label: "energy export",
    },
    SurveyCode {
        hex: POWER_IMPORT,
        short: "1.7.0",
        quantity: Quantity::Power,
        label: "import power",
    },
    SurveyCode {
        hex: POWER_EXPORT,
        short: "2.7.0",
        quantity: Quantity::Power,
        label: "export power",
    },
    SurveyCode {
        hex: POWER_SUM,
        short: "16.7.0",
        quantity: Quantity::Power,
        label: "sum power",
    },
];

/// The survey's description of `hex`, if the survey stores that code.
pub fn survey_code(hex: &str) -> Option<&'static SurveyCode> {
    SURVEY_CODES.iter().find(|c| c.hex == hex)
}

/// Whether `code` is an OBIS code in the survey's form: 12 lowercase hex digits.
pub fn is_obis_hex(code: &str) -> bool {
    code.len() == 12
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The survey's form of a six-group OBIS code.
pub fn to_hex(groups: [u8; 6]) -> String {
    groups.iter().map(|g| format!("{g:02x}")).collect()
}

/// The codes an unlocked meter of each wire format delivers; a meter that lacks one is
/// factory-locked and needs its PIN. SML meters send the total and the power sum; DSMR meters
/// energy per tariff (summed to 1.8.0, see [`crate::reading`]) and import power; IEC 62056-21
/// readouts energy.
pub mod expected {
    use super::*;

    pub const SML: [&str; 2] = [ENERGY_IMPORT, POWER_SUM];
    pub const DSMR: [&str; 2] = [ENERGY_IMPORT, POWER_IMPORT];
    pub const IEC62056_21: [&str; 1] = [ENERGY_IMPORT];
}

/// Power in W of one stored measurement's values (kW): import power (1.7.0), else the signed
/// sum power (16.7.0) floored at zero; `None` without either or for a value that is not finite.
/// This is the aggregate series that NIALM disaggregates.
pub fn import_power_watts<'a>(values: impl IntoIterator<Item = (&'a str, f64)>) -> Option<f64> {
    let mut import = None;
    let mut sum = None;
    for (code, value) in values {
        match code {
            POWER_IMPORT if import.is_none() => import = Some(value),
            POWER_SUM if sum.is_none() => sum = Some(value),
            _ => {}
        }
    }
    let kilowatts = import.or_else(|| sum.map(|p: f64| p.max(0.0)))?;
    let watts = kilowatts * 1000.0;
    (watts.is_finite() && watts >= 0.0).then_some(watts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_survey_code_is_well_formed_and_unique() {
        for (i, code) in SURVEY_CODES.iter().enumerate() {
            assert!(is_obis_hex(code.hex), "{}", code.hex);
            assert!(SURVEY_CODES[..i].iter().all(|c| c.hex != code.hex));
            let groups: Vec<u8> = code.short.split('.').map(|g| g.parse().unwrap()).collect();
            assert_eq!(
                to_hex([1, 0, groups[0], groups[1], groups[2], 255]),
                code.hex
            );
            assert_eq!(survey_code(code.hex), Some(code));
        }
        assert!(!is_obis_hex("0100010800FF"));
        assert!(!is_obis_hex("1.8.0"));
        assert_eq!(survey_code("0100600100ff"), None);
    }

    #[test]
    fn power_prefers_import_and_floors_the_sum() {
        assert_eq!(
            import_power_watts([(ENERGY_IMPORT, 12.5), (POWER_IMPORT, 0.25)]),
            Some(250.0)
        );
        assert_eq!(import_power_watts([(POWER_SUM, -0.5)]), Some(0.0));
        assert_eq!(import_power_watts([(POWER_SUM, 0.5)]), Some(500.0));
        assert_eq!(import_power_watts([(ENERGY_IMPORT, 12.5)]), None);
        assert_eq!(import_power_watts([(POWER_IMPORT, f64::NAN)]), None);
        assert_eq!(import_power_watts([(POWER_IMPORT, -1.0)]), None);
    }
}
