//! The edge daemon (`wattlet edge`): probes → parser component → measurement buffer → upload
//! component → Data API, gated by the household's consent.
//!
//! - [`reader`]: one thread per probe reads the serial line and runs the parser component.
//! - [`buffer`]: measurements in SQLite (WAL) until the cloud acknowledged them.
//! - [`uplink`]: the upload component, with the device's TLS identity held by the host.
//! - [`daemon`]: the measurement, report and consent cycles.

pub mod buffer;
pub mod config;
pub mod daemon;
pub mod metrics;
pub mod reader;
pub mod unlock;
pub mod uplink;

use serde::{Deserialize, Serialize};

/// The household's consent as the device knows it (DESIGN.md, "Consent"): one way only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    NotGranted,
    Granted,
    Revoked,
}

impl Consent {
    pub fn name(self) -> &'static str {
        match self {
            Consent::NotGranted => "not_granted",
            Consent::Granted => "granted",
            Consent::Revoked => "revoked",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "not_granted" => Some(Consent::NotGranted),
            "granted" => Some(Consent::Granted),
            "revoked" => Some(Consent::Revoked),
            _ => None,
        }
    }

    /// The state after learning `reported` from the cloud. Consent never moves backwards: once
    /// revoked the device stays stopped whatever a later answer says.
    pub fn advance(self, reported: Consent) -> Consent {
        match (self, reported) {
            (Consent::Revoked, _) | (_, Consent::Revoked) => Consent::Revoked,
            (Consent::Granted, Consent::NotGranted) => Consent::Granted,
            (_, reported) => reported,
        }
    }
}

/// One measurement of one meter: the readings of interest in the Data API's units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub uuid: String,
    pub meter: String,
    /// RFC 3339, UTC, milliseconds.
    pub measured_at: String,
    /// OBIS hex → value (kWh for energy, kW for power).
    pub values: Vec<(String, f64)>,
}

#[cfg(test)]
mod tests {
    use super::Consent::{self, *};

    #[test]
    fn consent_only_moves_forward() {
        let all = [NotGranted, Granted, Revoked];
        for from in all {
            for reported in all {
                let to = from.advance(reported);
                let rank = |c: Consent| all.iter().position(|x| *x == c);
                assert!(rank(to) >= rank(from), "{from:?} + {reported:?} → {to:?}");
            }
            assert_eq!(Consent::from_name(from.name()), Some(from));
        }
        assert_eq!(NotGranted.advance(Granted), Granted);
        assert_eq!(Revoked.advance(Granted), Revoked);
        assert_eq!(Consent::from_name("maybe"), None);
    }
}
