//! The anonymizer as the Data API calls it: the records of the WIT interface
//! `wattlet:anonymizer/anonymize` (`wit/anonymizer`) as plain Rust, and [`Anonymizer`], which
//! the component implements with that import (the anonymizer component composed in) and native
//! tests with the `wattlet-anonymizer` library. The Data API cannot link that library itself:
//! its WIT export would travel into the Data API's component.

/// The participant's contact, read only to be dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// A postal address, read only to be dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    pub street: String,
    pub house_number: String,
    pub postal_code: String,
    pub city: String,
    pub country: String,
}

// Contact and address details never reach a log through `Debug`.
impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Contact { <redacted> }")
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Address { <redacted> }")
    }
}

/// WGS-84 degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PvSystem {
    pub nominal_power_kwp: f64,
    pub azimuth: f64,
    pub tilt: f64,
    /// `YYYY-MM-DD`.
    pub installation_date: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub contact: Contact,
    pub address: Option<Address>,
    pub location: Location,
    pub pv_systems: Vec<PvSystem>,
    /// Of the household's NUTS-3 region; `None` when unknown.
    pub population_density_per_km2: Option<f64>,
}

/// The random input of the displacement, drawn once by the Data API and stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub distance_uniform: f64,
    pub bearing_uniform: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnonymizedPvSystem {
    pub nominal_power_kwp: u32,
    pub azimuth: f64,
    pub tilt: f64,
    /// `YYYY-01-01`.
    pub installation_date: String,
}

/// What was done to the location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Displacement {
    pub population_density_per_km2: f64,
    pub density_unknown: bool,
    pub d_min_m: f64,
    pub d_max_m: f64,
    pub distance_m: f64,
    pub bearing_deg: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Anonymized {
    pub location: Location,
    pub pv_systems: Vec<AnonymizedPvSystem>,
    pub displacement: Displacement,
}

/// Registration details → anonymized details (DESIGN "Anonymization on revocation").
pub trait Anonymizer {
    /// `Err` with the anonymizer's refusal, for the log.
    fn anonymize(&self, registration: &Registration, draw: Draw) -> Result<Anonymized, String>;
}
