//! The anonymizer component under wasmtime gives exactly what the native library gives, for the
//! same registrations and the same draws: results bit for bit, and the same errors.

use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wattlet_anonymizer as native;
use wattlet_runtime::sandbox::{self, HostState, Limits};
use wattlet_runtime::{engine as runtime, locate as components};
use wattlet_testkit::Rng;

wasmtime::component::bindgen!({
    path: "../wit/anonymizer",
    world: "anonymizer",
});

use exports::wattlet::anonymizer::anonymize as wit;

struct Loaded {
    engine: wasmtime::Engine,
    pre: AnonymizerPre<HostState>,
}

impl Loaded {
    fn new() -> Loaded {
        let path = components::locate("wattlet-anonymizer", None).expect(
            "the component is built before the tests run: \
             cargo build --profile component --target wasm32-wasip2 -p wattlet-anonymizer",
        );
        let engine = runtime::engine().expect("engine");
        let component = Component::from_file(&engine, &path).expect("component loads");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
        let pre = linker
            .instantiate_pre(&component)
            .and_then(AnonymizerPre::new)
            .expect("a wattlet:anonymizer component");
        Loaded { engine, pre }
    }

    /// One fresh, sandboxed instance per call, as a confidential worker would run it.
    fn anonymize(
        &self,
        registration: &native::Registration,
        draw: native::Draw,
    ) -> Result<native::Anonymized, native::Error> {
        let limits = Limits {
            call: Duration::from_secs(10),
            memory: 64 << 20,
        };
        let mut store = sandbox::store(&self.engine, &limits);
        let bindings = self.pre.instantiate(&mut store).expect("instance");
        bindings
            .wattlet_anonymizer_anonymize()
            .call_anonymize(
                &mut store,
                &registration_to_wit(registration),
                draw_to_wit(draw),
            )
            .expect("no trap")
            .map(from_wit)
            .map_err(error_from_wit)
    }
}

fn registration_to_wit(r: &native::Registration) -> wit::Registration {
    wit::Registration {
        contact: wit::Contact {
            name: r.contact.name.clone(),
            email: r.contact.email.clone(),
        },
        address: r.address.as_ref().map(|a| wit::Address {
            street: a.street.clone(),
            house_number: a.house_number.clone(),
            postal_code: a.postal_code.clone(),
            city: a.city.clone(),
            country: a.country.clone(),
        }),
        location: wit::Location {
            latitude: r.location.latitude,
            longitude: r.location.longitude,
        },
        pv_systems: r
            .pv_systems
            .iter()
            .map(|p| wit::PvSystem {
                nominal_power_kwp: p.nominal_power_kwp,
                azimuth: p.azimuth,
                tilt: p.tilt,
                installation_date: p.installation_date.clone(),
            })
            .collect(),
        population_density_per_km2: r.population_density_per_km2,
    }
}

fn draw_to_wit(d: native::Draw) -> wit::Draw {
    wit::Draw {
        distance_uniform: d.distance_uniform,
        bearing_uniform: d.bearing_uniform,
    }
}

fn from_wit(a: wit::Anonymized) -> native::Anonymized {
    let d = a.displacement;
    native::Anonymized {
        location: native::Location {
            latitude: a.location.latitude,
            longitude: a.location.longitude,
        },
        pv_systems: a
            .pv_systems
            .into_iter()
            .map(|p| native::AnonymizedPvSystem {
                nominal_power_kwp: p.nominal_power_kwp,
                azimuth: p.azimuth,
                tilt: p.tilt,
                installation_date: p.installation_date,
            })
            .collect(),
        displacement: native::Displacement {
            population_density_per_km2: d.population_density_per_km2,
            density_unknown: d.density_unknown,
            d_min_m: d.d_min_m,
            d_max_m: d.d_max_m,
            distance_m: d.distance_m,
            bearing_deg: d.bearing_deg,
        },
    }
}

fn error_from_wit(e: wit::Error) -> native::Error {
    match e {
        wit::Error::NotFinite(field) => native::Error::NotFinite(field),
        wit::Error::LatitudeOutOfRange(v) => native::Error::LatitudeOutOfRange(v),
        wit::Error::LongitudeOutOfRange(v) => native::Error::LongitudeOutOfRange(v),
        wit::Error::NegativeNominalPower((index, kwp)) => {
            native::Error::NegativeNominalPower { index, kwp }
        }
        wit::Error::NominalPowerTooLarge((index, kwp)) => {
            native::Error::NominalPowerTooLarge { index, kwp }
        }
        wit::Error::MalformedDate((index, date)) => native::Error::MalformedDate { index, date },
        wit::Error::NegativePopulationDensity(v) => native::Error::NegativePopulationDensity(v),
        wit::Error::DrawOutOfRange((field, value)) => native::Error::DrawOutOfRange {
            field: match field.as_str() {
                "distance-uniform" => "distance-uniform",
                "bearing-uniform" => "bearing-uniform",
                other => panic!("unknown draw field {other:?}"),
            },
            value,
        },
    }
}

/// A draw from `rng`.
fn draw(rng: &mut Rng) -> native::Draw {
    native::Draw::from_random_bytes(rng.bytes16())
}

fn registration(rng: &mut Rng, i: usize) -> native::Registration {
    let location = match i % 4 {
        0 => native::Location {
            latitude: rng.uniform(89.9, 90.0),
            longitude: rng.uniform(-180.0, 180.0),
        },
        1 => native::Location {
            latitude: rng.uniform(-60.0, 60.0),
            longitude: 180.0 - rng.uniform(0.0, 0.1),
        },
        _ => native::Location {
            latitude: rng.uniform(-90.0, 90.0),
            longitude: rng.uniform(-180.0, 180.0),
        },
    };
    native::Registration {
        contact: native::Contact {
            name: format!("Participant {i}"),
            email: format!("p{i}@example.org"),
        },
        address: (!i.is_multiple_of(3)).then(|| native::Address {
            street: "Hauptstraße".into(),
            house_number: format!("{}", i + 1),
            postal_code: "10115".into(),
            city: "Berlin".into(),
            country: "DE".into(),
        }),
        location,
        pv_systems: (0..i % 3)
            .map(|k| native::PvSystem {
                nominal_power_kwp: rng.uniform(0.0, 30.0),
                azimuth: rng.uniform(0.0, 360.0),
                tilt: rng.uniform(0.0, 90.0),
                installation_date: format!("20{:02}-0{}-1{}", 10 + i % 15, 1 + k, i % 10),
            })
            .collect(),
        population_density_per_km2: match i % 5 {
            0 => None,
            1 => Some(0.0),
            2 => Some(rng.uniform(0.0, 3000.0)),
            3 => Some(rng.uniform(3000.0, 30_000.0)),
            _ => Some(rng.uniform(0.0, 500.0)),
        },
    }
}

#[test]
fn component_equals_native_on_random_registrations() {
    let component = Loaded::new();
    let mut rng = Rng::new(0xa404_0001);
    for i in 0..300 {
        let reg = registration(&mut rng, i);
        let draw = draw(&mut rng);
        let native = native::anonymize(&reg, draw);
        let wasm = component.anonymize(&reg, draw);
        let ok = native.as_ref().expect("valid input");
        assert_eq!(wasm, native, "registration {i}");
        // Bit for bit, not merely ==: the stored point must not depend on the host.
        let w = wasm.unwrap();
        assert_eq!(
            (
                w.location.latitude.to_bits(),
                w.location.longitude.to_bits()
            ),
            (
                ok.location.latitude.to_bits(),
                ok.location.longitude.to_bits()
            ),
            "registration {i}"
        );
    }
}

#[test]
fn component_refuses_what_native_refuses() {
    let component = Loaded::new();
    let mut rng = Rng::new(0xa404_0002);
    let valid = registration(&mut rng, 2);
    let mut cases: Vec<(native::Registration, native::Draw)> = Vec::new();
    let draw = draw(&mut rng);
    for (lat, lon) in [
        (90.5, 0.0),
        (-90.1, 0.0),
        (0.0, 180.5),
        (0.0, -181.0),
        (f64::NAN, 0.0),
        (0.0, f64::INFINITY),
    ] {
        let mut r = valid.clone();
        r.location = native::Location {
            latitude: lat,
            longitude: lon,
        };
        cases.push((r, draw));
    }
    for rho in [-1.0, f64::NAN] {
        let mut r = valid.clone();
        r.population_density_per_km2 = Some(rho);
        cases.push((r, draw));
    }
    for (kwp, date) in [
        (-0.01, "2020-01-01"),
        (1e10, "2020-01-01"),
        (f64::NEG_INFINITY, "2020-01-01"),
        (5.0, "2021-02-29"),
        (5.0, "2021-2-1"),
    ] {
        let mut r = valid.clone();
        r.pv_systems.push(native::PvSystem {
            nominal_power_kwp: kwp,
            azimuth: 180.0,
            tilt: 30.0,
            installation_date: date.into(),
        });
        cases.push((r, draw));
    }
    for (d, b) in [(1.0, 0.0), (0.0, -0.5), (f64::NAN, 0.0)] {
        cases.push((
            valid.clone(),
            native::Draw {
                distance_uniform: d,
                bearing_uniform: b,
            },
        ));
    }
    for (i, (reg, draw)) in cases.iter().enumerate() {
        let native = native::anonymize(reg, *draw).expect_err("invalid input");
        let wasm = component.anonymize(reg, *draw).expect_err("invalid input");
        assert_eq!(wasm, native, "case {i}: {native}");
    }
}
