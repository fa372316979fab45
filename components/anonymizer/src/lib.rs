//! The anonymizer component: a household's registration details → anonymized details, applied
//! when the household revokes its consent (DESIGN.md, "Anonymization on revocation").
//!
//! - (A) contact details and the postal address are dropped;
//! - (B) the location is replaced by a point at distance d and bearing θ from the true one, with
//!   `d_min = max(min(-1.321·ρ + 4264 m, 8000 m), 300 m)`,
//!   `d_max = max(min(-3.107·ρ + 10621 m, 20000 m), 1300 m)`, ρ the population density per km²
//!   of the household's NUTS-3 region (unknown → ρ = 0, the largest displacement, recorded),
//!   d uniform over the *area* of the annulus between d_min and d_max
//!   (`d = sqrt(u·(d_max² − d_min²) + d_min²)`) and θ uniform in [0, 2π);
//! - (C) PV nominal power is rounded to the nearest integer kWp and the installation date becomes
//!   1 January of its year; azimuth and tilt stay.
//!
//! The displaced point is computed on a sphere approximating WGS-84, of mean radius
//! [`EARTH_RADIUS_M`] = 6 371 008.8 m, with the great-circle destination formula; the longitude
//! is normalised to [-180, 180). On that sphere the great-circle distance between the true and
//! the displaced point is d (to floating-point precision). Trigonometry uses the pure-Rust `libm`
//! on every target, so a draw gives bit-identical points natively and in the component.
//!
//! **Randomness contract.** [`anonymize`] is a pure function of its input: the random draw is an
//! argument ([`Draw`], two uniforms in [0, 1)). The caller draws once from a cryptographically
//! secure source ([`Draw::from_random_bytes`] turns 16 random bytes into a draw) and stores the
//! draw or the result with the work item; a retry after a crash passes the same draw and yields
//! the same point. The component never decides to redraw: a second, independent draw for the
//! same household would let an observer average the published points back towards the truth.
//!
//! This crate is a plain library tested natively; `component` is the thin
//! `wattlet:anonymizer/anonymize` export built for wasm32-wasip2.

use std::fmt;

#[cfg(target_family = "wasm")]
mod component;

/// Mean radius of the WGS-84 ellipsoid (IUGG R1 = (2a + b) / 3), in metres: the radius of the
/// sphere on which displaced locations are computed.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The participant's contact details. Its `Debug` shows no field, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Contact { <redacted> }")
    }
}

/// A postal address. Its `Debug` shows no field, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    pub street: String,
    pub house_number: String,
    pub postal_code: String,
    pub city: String,
    pub country: String,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Address { <redacted> }")
    }
}

/// A point in WGS-84 degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PvSystem {
    /// Nominal (peak) power, kWp.
    pub nominal_power_kwp: f64,
    /// Degrees; passed through unchanged.
    pub azimuth: f64,
    /// Degrees; passed through unchanged.
    pub tilt: f64,
    /// `YYYY-MM-DD`.
    pub installation_date: String,
}

/// Registration details as stored before anonymization.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub contact: Contact,
    /// None when the location was given directly instead of geocoded from an address.
    pub address: Option<Address>,
    pub location: Location,
    pub pv_systems: Vec<PvSystem>,
    /// Population density of the household's NUTS-3 region per km²; None when unknown.
    pub population_density_per_km2: Option<f64>,
}

/// The random input of the displacement (see the crate documentation for why it is an input).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// In [0, 1); selects d so that d is uniform over the annulus area.
    pub distance_uniform: f64,
    /// In [0, 1); the bearing is 2π times this, clockwise from true north.
    pub bearing_uniform: f64,
}

impl Draw {
    /// A draw from 16 uniformly random bytes (e.g. from the operating system's CSPRNG): the top
    /// 53 bits of each little-endian half, scaled to [0, 1), so every value is exactly
    /// representable and 1 is never reached.
    pub fn from_random_bytes(bytes: [u8; 16]) -> Draw {
        let unit = |half: &[u8]| {
            let word = u64::from_le_bytes(half.try_into().expect("8 bytes"));
            (word >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        };
        Draw {
            distance_uniform: unit(&bytes[..8]),
            bearing_uniform: unit(&bytes[8..]),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AnonymizedPvSystem {
    /// Rounded to the nearest integer, halves away from zero.
    pub nominal_power_kwp: u32,
    pub azimuth: f64,
    pub tilt: f64,
    /// `YYYY-01-01`.
    pub installation_date: String,
}

/// The record of what was done to the location.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Displacement {
    /// ρ used (0 when unknown).
    pub population_density_per_km2: f64,
    pub density_unknown: bool,
    pub d_min_m: f64,
    pub d_max_m: f64,
    /// The drawn distance, d_min ≤ d ≤ d_max.
    pub distance_m: f64,
    /// The drawn bearing, degrees clockwise from true north in [0, 360).
    pub bearing_deg: f64,
}

/// Anonymized details: no contact, no address.
#[derive(Clone, Debug, PartialEq)]
pub struct Anonymized {
    pub location: Location,
    pub pv_systems: Vec<AnonymizedPvSystem>,
    pub displacement: Displacement,
}

/// Invalid input; nothing is anonymized when any field is invalid. Messages never contain
/// contact or address details.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{0} is not a finite number")]
    NotFinite(String),
    #[error("latitude {0} is outside [-90, 90] degrees")]
    LatitudeOutOfRange(f64),
    #[error("longitude {0} is outside [-180, 180] degrees")]
    LongitudeOutOfRange(f64),
    #[error("pv-systems[{index}]: nominal power {kwp} kWp is negative")]
    NegativeNominalPower { index: u32, kwp: f64 },
    #[error("pv-systems[{index}]: nominal power {kwp} kWp is too large")]
    NominalPowerTooLarge { index: u32, kwp: f64 },
    #[error("pv-systems[{index}]: installation date {date:?} is not a valid YYYY-MM-DD date")]
    MalformedDate { index: u32, date: String },
    #[error("population density {0} per km² is negative")]
    NegativePopulationDensity(f64),
    #[error("draw.{field} = {value} is outside [0, 1)")]
    DrawOutOfRange { field: &'static str, value: f64 },
}

/// d_min = max(min(−1.321·ρ + 4264 m, 8000 m), 300 m) (a clamp, as 300 < 8000).
pub fn d_min_m(density_per_km2: f64) -> f64 {
    (-1.321 * density_per_km2 + 4264.0).clamp(300.0, 8000.0)
}

/// d_max = max(min(−3.107·ρ + 10621 m, 20000 m), 1300 m) (a clamp, as 1300 < 20000).
pub fn d_max_m(density_per_km2: f64) -> f64 {
    (-3.107 * density_per_km2 + 10621.0).clamp(1300.0, 20000.0)
}

/// The distance selected by `u` ∈ [0, 1) so that d is uniform over the annulus area:
/// P(d ≤ r) = (r² − d_min²) / (d_max² − d_min²).
pub fn annulus_distance_m(d_min: f64, d_max: f64, u: f64) -> f64 {
    let (lo, hi) = (d_min * d_min, d_max * d_max);
    (u * (hi - lo) + lo).sqrt().clamp(d_min, d_max)
}

/// The point at great-circle distance `distance_m` and initial bearing `bearing_rad` (clockwise
/// from true north) from `from`, on the sphere of radius [`EARTH_RADIUS_M`]; longitude in
/// [-180, 180).
pub fn destination(from: Location, distance_m: f64, bearing_rad: f64) -> Location {
    let (phi1, lambda1) = (from.latitude.to_radians(), from.longitude.to_radians());
    let delta = distance_m / EARTH_RADIUS_M;
    let (sin_phi1, cos_phi1) = (libm::sin(phi1), libm::cos(phi1));
    let (sin_delta, cos_delta) = (libm::sin(delta), libm::cos(delta));
    let (sin_theta, cos_theta) = (libm::sin(bearing_rad), libm::cos(bearing_rad));
    let sin_phi2 = (sin_phi1 * cos_delta + cos_phi1 * sin_delta * cos_theta).clamp(-1.0, 1.0);
    let phi2 = libm::asin(sin_phi2);
    let lambda2 = lambda1
        + libm::atan2(
            sin_theta * sin_delta * cos_phi1,
            cos_delta - sin_phi1 * sin_phi2,
        );
    Location {
        latitude: phi2.to_degrees().clamp(-90.0, 90.0),
        longitude: normalize_longitude(lambda2.to_degrees()),
    }
}

/// Longitude in degrees wrapped to [-180, 180).
pub fn normalize_longitude(degrees: f64) -> f64 {
    let wrapped = (degrees + 180.0).rem_euclid(360.0) - 180.0;
    // rem_euclid may round a tiny negative remainder up to 360.
    if wrapped >= 180.0 { -180.0 } else { wrapped }
}

/// Great-circle distance in metres on the sphere of radius [`EARTH_RADIUS_M`] (haversine).
pub fn haversine_m(a: Location, b: Location) -> f64 {
    let (phi1, phi2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dphi = phi2 - phi1;
    let dlambda = (b.longitude - a.longitude).to_radians();
    let h = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Anonymizes `registration` with the caller's `draw` (see the crate documentation).
pub fn anonymize(registration: &Registration, draw: Draw) -> Result<Anonymized, Error> {
    let Location {
        latitude,
        longitude,
    } = registration.location;
    finite("location.latitude", latitude)?;
    finite("location.longitude", longitude)?;
    if !(-90.0..=90.0).contains(&latitude) {
        return Err(Error::LatitudeOutOfRange(latitude));
    }
    if !(-180.0..=180.0).contains(&longitude) {
        return Err(Error::LongitudeOutOfRange(longitude));
    }
    let density = match registration.population_density_per_km2 {
        Some(rho) => {
            finite("population-density-per-km2", rho)?;
            if rho < 0.0 {
                return Err(Error::NegativePopulationDensity(rho));
            }
            Some(rho)
        }
        None => None,
    };
    unit_interval("distance-uniform", draw.distance_uniform)?;
    unit_interval("bearing-uniform", draw.bearing_uniform)?;
    let pv_systems = registration
        .pv_systems
        .iter()
        .enumerate()
        .map(|(index, pv)| anonymize_pv(u32::try_from(index).unwrap_or(u32::MAX), pv))
        .collect::<Result<Vec<_>, _>>()?;

    let rho = density.unwrap_or(0.0);
    let (d_min, d_max) = (d_min_m(rho), d_max_m(rho));
    let distance = annulus_distance_m(d_min, d_max, draw.distance_uniform);
    let mut bearing_deg = 360.0 * draw.bearing_uniform;
    if bearing_deg >= 360.0 {
        // 360·u rounds up to 360 for u within 2⁻⁵³ of 1; that is bearing 0.
        bearing_deg = 0.0;
    }
    let location = destination(registration.location, distance, bearing_deg.to_radians());
    Ok(Anonymized {
        location,
        pv_systems,
        displacement: Displacement {
            // +0.0 turns a given −0 into 0.
            population_density_per_km2: rho + 0.0,
            density_unknown: density.is_none(),
            d_min_m: d_min,
            d_max_m: d_max,
            distance_m: distance,
            bearing_deg,
        },
    })
}

fn anonymize_pv(index: u32, pv: &PvSystem) -> Result<AnonymizedPvSystem, Error> {
    let field = |name: &str| format!("pv-systems[{index}].{name}");
    finite(&field("nominal-power-kwp"), pv.nominal_power_kwp)?;
    finite(&field("azimuth"), pv.azimuth)?;
    finite(&field("tilt"), pv.tilt)?;
    let kwp = pv.nominal_power_kwp;
    if kwp < 0.0 {
        return Err(Error::NegativeNominalPower { index, kwp });
    }
    // Halves round away from zero: 2.5 → 3.
    let rounded = kwp.round();
    if rounded > f64::from(u32::MAX) {
        return Err(Error::NominalPowerTooLarge { index, kwp });
    }
    let year = parse_year(&pv.installation_date).ok_or_else(|| Error::MalformedDate {
        index,
        date: pv.installation_date.clone(),
    })?;
    Ok(AnonymizedPvSystem {
        nominal_power_kwp: rounded as u32,
        azimuth: pv.azimuth,
        tilt: pv.tilt,
        installation_date: format!("{year:04}-01-01"),
    })
}

/// The year of a valid Gregorian `YYYY-MM-DD` date (year 0000–9999, day within its month).
fn parse_year(date: &str) -> Option<u32> {
    let bytes = date.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range].iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&day).then_some(year)
}

fn finite(field: &str, value: f64) -> Result<(), Error> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::NotFinite(field.to_owned()))
    }
}

fn unit_interval(field: &'static str, value: f64) -> Result<(), Error> {
    finite(&format!("draw.{field}"), value)?;
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::DrawOutOfRange { field, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_of_valid_and_invalid_dates() {
        assert_eq!(parse_year("2021-06-15"), Some(2021));
        assert_eq!(parse_year("2024-02-29"), Some(2024));
        assert_eq!(parse_year("2000-02-29"), Some(2000));
        for bad in [
            "1900-02-29",
            "2023-02-29",
            "2023-04-31",
            "2023-13-01",
            "2023-00-10",
            "2023-01-00",
            "2023-1-01",
            "23-01-01",
            "2023/01/01",
            "2023-01-01T00:00",
            "２０２３-01-01",
            "+202-01-01",
            "",
        ] {
            assert_eq!(parse_year(bad), None, "{bad}");
        }
    }

    #[test]
    fn longitudes_wrap_into_half_open_interval() {
        assert_eq!(normalize_longitude(180.0), -180.0);
        assert_eq!(normalize_longitude(-180.0), -180.0);
        assert_eq!(normalize_longitude(181.0), -179.0);
        assert_eq!(normalize_longitude(-181.0), 179.0);
        assert_eq!(normalize_longitude(-1e-300), 0.0);
        assert!(normalize_longitude(-180.0 - 1e-14) < 180.0);
    }

    #[test]
    fn draws_from_bytes_stay_below_one() {
        let zero = Draw::from_random_bytes([0; 16]);
        assert_eq!((zero.distance_uniform, zero.bearing_uniform), (0.0, 0.0));
        let max = Draw::from_random_bytes([0xff; 16]);
        assert!(max.distance_uniform < 1.0 && max.distance_uniform > 0.999_999);
        assert!(max.bearing_uniform < 1.0);
    }
}
