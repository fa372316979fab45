//! The anonymization rules of DESIGN.md, checked on the native library: the displacement formula,
//! the geometry of the displaced point, the distribution of the distance, PV rounding, the
//! refusal of invalid input, and that nothing identifying leaves the function.

use wattlet_anonymizer::{
    Address, Contact, Draw, Error, Location, PvSystem, Registration, anonymize, d_max_m, d_min_m,
    haversine_m,
};

/// SplitMix64: a small, seeded, deterministic generator, so every statistical figure below is
/// reproducible. (Production draws come from the host's CSPRNG.)
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn draw(&mut self) -> Draw {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        Draw::from_random_bytes(bytes)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

const NAME: &str = "Anna Beispielhaft";
const EMAIL: &str = "anna.beispielhaft@example.org";
const STREET: &str = "Sonnenallee";
const HOUSE_NUMBER: &str = "221b";
const POSTAL_CODE: &str = "12059";
const CITY: &str = "Neukölln-Nord";
const COUNTRY: &str = "Germany";

fn registration(location: Location, density: Option<f64>) -> Registration {
    Registration {
        contact: Contact {
            name: NAME.into(),
            email: EMAIL.into(),
        },
        address: Some(Address {
            street: STREET.into(),
            house_number: HOUSE_NUMBER.into(),
            postal_code: POSTAL_CODE.into(),
            city: CITY.into(),
            country: COUNTRY.into(),
        }),
        location,
        pv_systems: vec![pv(9.87, "2021-06-15")],
        population_density_per_km2: density,
    }
}

fn pv(kwp: f64, date: &str) -> PvSystem {
    PvSystem {
        nominal_power_kwp: kwp,
        azimuth: 187.5,
        tilt: 32.0,
        installation_date: date.into(),
    }
}

const BERLIN: Location = Location {
    latitude: 52.4811,
    longitude: 13.4353,
};

const MIDDLE: Draw = Draw {
    distance_uniform: 0.5,
    bearing_uniform: 0.25,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn formula_at_zero_density() {
    assert!(close(d_min_m(0.0), 4264.0));
    assert!(close(d_max_m(0.0), 10621.0));
    let out = anonymize(&registration(BERLIN, Some(0.0)), MIDDLE).unwrap();
    let d = out.displacement;
    assert_eq!(d.population_density_per_km2, 0.0);
    assert!(!d.density_unknown);
    assert!(close(d.d_min_m, 4264.0) && close(d.d_max_m, 10621.0));
}

#[test]
fn formula_at_mid_density() {
    // ρ = 1000 /km² (e.g. a mid-sized town): neither bound clamps.
    assert!(close(d_min_m(1000.0), 4264.0 - 1321.0));
    assert!(close(d_max_m(1000.0), 10621.0 - 3107.0));
    assert!(close(d_min_m(250.5), -1.321 * 250.5 + 4264.0));
    assert!(close(d_max_m(250.5), -3.107 * 250.5 + 10621.0));
    let d = anonymize(&registration(BERLIN, Some(1000.0)), MIDDLE)
        .unwrap()
        .displacement;
    assert_eq!(d.population_density_per_km2, 1000.0);
    assert!(close(d.d_min_m, 2943.0) && close(d.d_max_m, 7514.0));
    // u = 0.5 selects the radius that halves the annulus area.
    let mid = ((2943.0f64.powi(2) + 7514.0f64.powi(2)) / 2.0).sqrt();
    assert!(close(d.distance_m, mid));
    assert!(close(d.bearing_deg, 90.0));
}

#[test]
fn formula_clamps_at_high_density() {
    // d_max reaches its floor at ρ = 3000, d_min at ρ ≈ 3000.76.
    assert!(close(d_max_m(3000.0), 1300.0));
    assert!(close(d_min_m(3000.0), 301.0));
    for rho in [
        3001.0, 4200.0,   /* Berlin */
        20_000.0, /* Paris */
        1e9,
    ] {
        assert_eq!(d_min_m(rho), 300.0, "ρ = {rho}");
        assert_eq!(d_max_m(rho), 1300.0, "ρ = {rho}");
    }
    // The upper caps bind only for negative densities, which are refused as input.
    assert_eq!(d_min_m(-5000.0), 8000.0);
    assert_eq!(d_max_m(-5000.0), 20000.0);
    let d = anonymize(&registration(BERLIN, Some(4200.0)), MIDDLE)
        .unwrap()
        .displacement;
    assert_eq!((d.d_min_m, d.d_max_m), (300.0, 1300.0));
}

#[test]
fn unknown_density_counts_as_zero_and_is_recorded() {
    let unknown = anonymize(&registration(BERLIN, None), MIDDLE).unwrap();
    let zero = anonymize(&registration(BERLIN, Some(0.0)), MIDDLE).unwrap();
    assert!(unknown.displacement.density_unknown);
    assert!(!zero.displacement.density_unknown);
    assert_eq!(unknown.displacement.population_density_per_km2, 0.0);
    assert_eq!(unknown.location, zero.location);
    assert_eq!(
        (unknown.displacement.d_min_m, unknown.displacement.d_max_m),
        (4264.0, 10621.0)
    );
}

#[test]
fn extreme_draws_reach_the_annulus_edges() {
    let at = |u: f64| {
        anonymize(
            &registration(BERLIN, Some(0.0)),
            Draw {
                distance_uniform: u,
                bearing_uniform: 0.0,
            },
        )
        .unwrap()
    };
    assert_eq!(at(0.0).displacement.distance_m, 4264.0);
    let top = at(1.0 - f64::EPSILON / 2.0).displacement.distance_m;
    assert!(top <= 10621.0 && top > 10620.999, "{top}");
    // Bearing 0 is due north: same longitude, latitude up by d / R radians.
    let north = at(0.0);
    assert!(close(north.location.longitude, BERLIN.longitude));
    let expected = BERLIN.latitude + (4264.0 / wattlet_anonymizer::EARTH_RADIUS_M).to_degrees();
    assert!(close(north.location.latitude, expected));
}

#[test]
fn same_draw_same_point() {
    let reg = registration(BERLIN, Some(321.0));
    let draw = SplitMix64(7).draw();
    assert_eq!(anonymize(&reg, draw), anonymize(&reg, draw));
}

#[test]
fn displaced_point_is_at_distance_d_everywhere() {
    let mut rng = SplitMix64(0x5eed_0001);
    let mut starts: Vec<Location> = Vec::new();
    for _ in 0..20_000 {
        starts.push(Location {
            latitude: rng.uniform(-90.0, 90.0),
            longitude: rng.uniform(-180.0, 180.0),
        });
    }
    for _ in 0..5_000 {
        // Within ~22 km of a pole: the displacement may cross it.
        let lat = rng.uniform(89.8, 90.0);
        starts.push(Location {
            latitude: if rng.next_u64() & 1 == 0 { lat } else { -lat },
            longitude: rng.uniform(-180.0, 180.0),
        });
        // Within ~22 km of the antimeridian: the displacement may cross it.
        let lon = rng.uniform(179.8, 180.0);
        starts.push(Location {
            latitude: rng.uniform(-80.0, 80.0),
            longitude: if rng.next_u64() & 1 == 0 { lon } else { -lon },
        });
    }
    starts.extend([
        Location {
            latitude: 90.0,
            longitude: 0.0,
        },
        Location {
            latitude: -90.0,
            longitude: 180.0,
        },
        Location {
            latitude: 0.0,
            longitude: -180.0,
        },
        Location {
            latitude: 0.0,
            longitude: 180.0,
        },
    ]);
    let mut worst: f64 = 0.0;
    let mut crossed_antimeridian = 0;
    for (i, &start) in starts.iter().enumerate() {
        let density = [None, Some(0.0), Some(1234.5), Some(8000.0)][i % 4];
        let out = anonymize(&registration(start, density), rng.draw()).unwrap();
        let (lat, lon) = (out.location.latitude, out.location.longitude);
        assert!((-90.0..=90.0).contains(&lat), "{start:?} → {lat}");
        assert!((-180.0..180.0).contains(&lon), "{start:?} → {lon}");
        let d = out.displacement;
        assert!(d.d_min_m <= d.distance_m && d.distance_m <= d.d_max_m);
        assert!((0.0..360.0).contains(&d.bearing_deg));
        let error = (haversine_m(start, out.location) - d.distance_m).abs();
        assert!(
            error < 1.0,
            "{start:?} → {:?}: off by {error} m",
            out.location
        );
        worst = worst.max(error);
        if (start.longitude - lon).abs() > 180.0 {
            crossed_antimeridian += 1;
        }
    }
    println!(
        "{} points: worst |haversine − d| = {worst:.3e} m; {crossed_antimeridian} crossed the antimeridian",
        starts.len()
    );
    assert!(crossed_antimeridian > 100);
}

/// The Kolmogorov–Smirnov statistic of `samples` (values in [0, 1]) against U(0, 1).
fn ks_uniform(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    samples
        .iter()
        .enumerate()
        .map(|(i, &x)| ((i as f64 + 1.0) / n - x).max(x - i as f64 / n))
        .fold(0.0, f64::max)
}

/// The asymptotic 1 % critical value of the one-sample KS statistic.
fn ks_critical_1pct(n: usize) -> f64 {
    1.6276 / (n as f64).sqrt()
}

#[test]
fn distance_is_uniform_over_the_annulus_area() {
    const N: usize = 20_000;
    let mut rng = SplitMix64(0x5eed_0002);
    for density in [None, Some(1000.0), Some(5000.0)] {
        let reg = registration(BERLIN, density);
        let mut area_fractions = Vec::with_capacity(N);
        let mut bearings = Vec::with_capacity(N);
        let mut inside_middle = 0;
        let (mut d_min, mut d_max) = (0.0, 0.0);
        for _ in 0..N {
            let out = anonymize(&reg, rng.draw()).unwrap();
            let d = out.displacement;
            (d_min, d_max) = (d.d_min_m, d.d_max_m);
            // Measured on the output point, not taken from the record.
            let r = haversine_m(BERLIN, out.location);
            let middle = ((d_min * d_min + d_max * d_max) / 2.0).sqrt();
            if r <= middle {
                inside_middle += 1;
            }
            let fraction = (r * r - d_min * d_min) / (d_max * d_max - d_min * d_min);
            area_fractions.push(fraction.clamp(0.0, 1.0));
            bearings.push(d.bearing_deg / 360.0);
        }
        let fraction_inside = inside_middle as f64 / N as f64;
        let ks_area = ks_uniform(area_fractions);
        let ks_bearing = ks_uniform(bearings);
        let critical = ks_critical_1pct(N);
        println!(
            "ρ = {density:?}: d ∈ [{d_min}, {d_max}] m, within the middle-area radius {fraction_inside:.4}, \
             KS(d²) = {ks_area:.5}, KS(bearing) = {ks_bearing:.5}, 1% critical {critical:.5}"
        );
        assert!((fraction_inside - 0.5).abs() <= 0.02, "{fraction_inside}");
        assert!(ks_area < critical, "KS(d²) = {ks_area}");
        assert!(ks_bearing < critical, "KS(bearing) = {ks_bearing}");
    }
}

#[test]
fn the_statistical_test_rejects_uniform_radius() {
    // The same statistic on d drawn uniform in *radius* (the mistake DESIGN.md warns about)
    // must fail, or the test above proves nothing.
    const N: usize = 20_000;
    let mut rng = SplitMix64(0x5eed_0003);
    let (d_min, d_max) = (d_min_m(0.0), d_max_m(0.0));
    let mut inside_middle = 0;
    let fractions: Vec<f64> = (0..N)
        .map(|_| {
            let r = rng.uniform(d_min, d_max);
            if r <= ((d_min * d_min + d_max * d_max) / 2.0).sqrt() {
                inside_middle += 1;
            }
            (r * r - d_min * d_min) / (d_max * d_max - d_min * d_min)
        })
        .collect();
    let ks = ks_uniform(fractions);
    let fraction_inside = inside_middle as f64 / N as f64;
    println!(
        "uniform in radius: within the middle-area radius {fraction_inside:.4}, KS(d²) = {ks:.5}"
    );
    assert!(ks > ks_critical_1pct(N));
    assert!((fraction_inside - 0.5).abs() > 0.02);
}

#[test]
fn pv_power_rounds_to_integer_kwp_and_dates_to_january_first() {
    let mut reg = registration(BERLIN, Some(100.0));
    reg.pv_systems = vec![
        pv(2.49, "2019-07-31"),
        pv(2.5, "2020-02-29"),
        pv(0.4, "2000-12-31"),
        pv(0.0, "2024-01-01"),
        pv(29.99, "1999-03-15"),
        PvSystem {
            nominal_power_kwp: 7.5,
            azimuth: -45.25,
            tilt: 90.0,
            installation_date: "2023-10-05".into(),
        },
    ];
    let out = anonymize(&reg, MIDDLE).unwrap();
    let got: Vec<(u32, &str)> = out
        .pv_systems
        .iter()
        .map(|p| (p.nominal_power_kwp, p.installation_date.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "2019-01-01"),
            (3, "2020-01-01"),
            (0, "2000-01-01"),
            (0, "2024-01-01"),
            (30, "1999-01-01"),
            (8, "2023-01-01"),
        ]
    );
    for (before, after) in reg.pv_systems.iter().zip(&out.pv_systems) {
        assert_eq!(after.azimuth, before.azimuth);
        assert_eq!(after.tilt, before.tilt);
    }
}

#[test]
fn invalid_input_is_rejected_with_a_clear_error() {
    let ok = || registration(BERLIN, Some(100.0));
    let check = |reg: Registration, draw: Draw, expected: Error, message: &str| {
        let error = anonymize(&reg, draw).unwrap_err();
        assert_eq!(error, expected);
        assert_eq!(error.to_string(), message);
    };
    let at = |latitude, longitude| {
        let mut reg = ok();
        reg.location = Location {
            latitude,
            longitude,
        };
        reg
    };
    check(
        at(90.5, 0.0),
        MIDDLE,
        Error::LatitudeOutOfRange(90.5),
        "latitude 90.5 is outside [-90, 90] degrees",
    );
    check(
        at(-91.0, 0.0),
        MIDDLE,
        Error::LatitudeOutOfRange(-91.0),
        "latitude -91 is outside [-90, 90] degrees",
    );
    check(
        at(0.0, 180.01),
        MIDDLE,
        Error::LongitudeOutOfRange(180.01),
        "longitude 180.01 is outside [-180, 180] degrees",
    );
    check(
        at(0.0, -200.0),
        MIDDLE,
        Error::LongitudeOutOfRange(-200.0),
        "longitude -200 is outside [-180, 180] degrees",
    );
    check(
        at(f64::NAN, 0.0),
        MIDDLE,
        Error::NotFinite("location.latitude".into()),
        "location.latitude is not a finite number",
    );
    check(
        at(0.0, f64::INFINITY),
        MIDDLE,
        Error::NotFinite("location.longitude".into()),
        "location.longitude is not a finite number",
    );
    let with_pv = |p: PvSystem| {
        let mut reg = ok();
        reg.pv_systems.push(p);
        reg
    };
    check(
        with_pv(pv(-0.5, "2020-01-01")),
        MIDDLE,
        Error::NegativeNominalPower {
            index: 1,
            kwp: -0.5,
        },
        "pv-systems[1]: nominal power -0.5 kWp is negative",
    );
    check(
        with_pv(pv(1e12, "2020-01-01")),
        MIDDLE,
        Error::NominalPowerTooLarge {
            index: 1,
            kwp: 1e12,
        },
        "pv-systems[1]: nominal power 1000000000000 kWp is too large",
    );
    check(
        with_pv(pv(f64::NAN, "2020-01-01")),
        MIDDLE,
        Error::NotFinite("pv-systems[1].nominal-power-kwp".into()),
        "pv-systems[1].nominal-power-kwp is not a finite number",
    );
    check(
        with_pv(PvSystem {
            azimuth: f64::NEG_INFINITY,
            ..pv(1.0, "2020-01-01")
        }),
        MIDDLE,
        Error::NotFinite("pv-systems[1].azimuth".into()),
        "pv-systems[1].azimuth is not a finite number",
    );
    check(
        with_pv(PvSystem {
            tilt: f64::NAN,
            ..pv(1.0, "2020-01-01")
        }),
        MIDDLE,
        Error::NotFinite("pv-systems[1].tilt".into()),
        "pv-systems[1].tilt is not a finite number",
    );
    for date in [
        "2020-02-30",
        "2021-02-29",
        "2020-13-01",
        "2020-1-1",
        "01.06.2020",
        "",
    ] {
        check(
            with_pv(pv(1.0, date)),
            MIDDLE,
            Error::MalformedDate {
                index: 1,
                date: date.into(),
            },
            &format!("pv-systems[1]: installation date {date:?} is not a valid YYYY-MM-DD date"),
        );
    }
    let with_density = |rho| registration(BERLIN, Some(rho));
    check(
        with_density(-0.1),
        MIDDLE,
        Error::NegativePopulationDensity(-0.1),
        "population density -0.1 per km² is negative",
    );
    check(
        with_density(f64::INFINITY),
        MIDDLE,
        Error::NotFinite("population-density-per-km2".into()),
        "population-density-per-km2 is not a finite number",
    );
    check(
        ok(),
        Draw {
            distance_uniform: 1.0,
            bearing_uniform: 0.0,
        },
        Error::DrawOutOfRange {
            field: "distance-uniform",
            value: 1.0,
        },
        "draw.distance-uniform = 1 is outside [0, 1)",
    );
    check(
        ok(),
        Draw {
            distance_uniform: 0.0,
            bearing_uniform: -0.25,
        },
        Error::DrawOutOfRange {
            field: "bearing-uniform",
            value: -0.25,
        },
        "draw.bearing-uniform = -0.25 is outside [0, 1)",
    );
    check(
        ok(),
        Draw {
            distance_uniform: f64::NAN,
            bearing_uniform: 0.0,
        },
        Error::NotFinite("draw.distance-uniform".into()),
        "draw.distance-uniform is not a finite number",
    );
    // The edges of the valid ranges are accepted.
    for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0)] {
        anonymize(&at(lat, lon), MIDDLE).unwrap();
    }
}

#[test]
fn output_contains_nothing_identifying() {
    let mut rng = SplitMix64(0x5eed_0004);
    let reg = registration(BERLIN, None);
    let out = anonymize(&reg, rng.draw()).unwrap();
    let text = format!("{out:?}");
    for secret in [
        NAME,
        EMAIL,
        STREET,
        HOUSE_NUMBER,
        POSTAL_CODE,
        CITY,
        COUNTRY,
    ] {
        assert!(!text.contains(secret), "{secret:?} in {text}");
    }
    // Nor do the input's own Debug form or any error message (they may reach logs).
    let input = format!("{reg:?}");
    let mut bad = reg.clone();
    bad.population_density_per_km2 = Some(-1.0);
    let error = anonymize(&bad, rng.draw()).unwrap_err().to_string();
    for secret in [
        NAME,
        EMAIL,
        STREET,
        HOUSE_NUMBER,
        POSTAL_CODE,
        CITY,
        COUNTRY,
    ] {
        assert!(!input.contains(secret), "{secret:?} in {input}");
        assert!(!error.contains(secret), "{secret:?} in {error}");
    }
    // The true location is gone: at least d_min away.
    assert!(haversine_m(BERLIN, out.location) >= out.displacement.d_min_m - 1.0);
}
