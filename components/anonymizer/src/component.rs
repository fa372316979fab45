//! The WIT export `wattlet:anonymizer/anonymize` over the native library, built for wasm32-wasip2.

use crate::{
    Address, Anonymized, Contact, Draw, Error, Location, PvSystem, Registration, anonymize,
};

wit_bindgen::generate!({
    path: "../../wit/anonymizer",
    world: "anonymizer",
});

use exports::wattlet::anonymizer::anonymize as wit;

struct Component;

export!(Component);

impl wit::Guest for Component {
    fn anonymize(
        registration: wit::Registration,
        draw: wit::Draw,
    ) -> Result<wit::Anonymized, wit::Error> {
        let registration = Registration {
            contact: Contact {
                name: registration.contact.name,
                email: registration.contact.email,
            },
            address: registration.address.map(|a| Address {
                street: a.street,
                house_number: a.house_number,
                postal_code: a.postal_code,
                city: a.city,
                country: a.country,
            }),
            location: Location {
                latitude: registration.location.latitude,
                longitude: registration.location.longitude,
            },
            pv_systems: registration
                .pv_systems
                .into_iter()
                .map(|pv| PvSystem {
                    nominal_power_kwp: pv.nominal_power_kwp,
                    azimuth: pv.azimuth,
                    tilt: pv.tilt,
                    installation_date: pv.installation_date,
                })
                .collect(),
            population_density_per_km2: registration.population_density_per_km2,
        };
        let draw = Draw {
            distance_uniform: draw.distance_uniform,
            bearing_uniform: draw.bearing_uniform,
        };
        anonymize(&registration, draw)
            .map(to_wit)
            .map_err(error_to_wit)
    }
}

fn to_wit(anonymized: Anonymized) -> wit::Anonymized {
    let d = anonymized.displacement;
    wit::Anonymized {
        location: wit::Location {
            latitude: anonymized.location.latitude,
            longitude: anonymized.location.longitude,
        },
        pv_systems: anonymized
            .pv_systems
            .into_iter()
            .map(|pv| wit::AnonymizedPvSystem {
                nominal_power_kwp: pv.nominal_power_kwp,
                azimuth: pv.azimuth,
                tilt: pv.tilt,
                installation_date: pv.installation_date,
            })
            .collect(),
        displacement: wit::Displacement {
            population_density_per_km2: d.population_density_per_km2,
            density_unknown: d.density_unknown,
            d_min_m: d.d_min_m,
            d_max_m: d.d_max_m,
            distance_m: d.distance_m,
            bearing_deg: d.bearing_deg,
        },
    }
}

fn error_to_wit(error: Error) -> wit::Error {
    match error {
        Error::NotFinite(field) => wit::Error::NotFinite(field),
        Error::LatitudeOutOfRange(v) => wit::Error::LatitudeOutOfRange(v),
        Error::LongitudeOutOfRange(v) => wit::Error::LongitudeOutOfRange(v),
        Error::NegativeNominalPower { index, kwp } => {
            wit::Error::NegativeNominalPower((index, kwp))
        }
        Error::NominalPowerTooLarge { index, kwp } => {
            wit::Error::NominalPowerTooLarge((index, kwp))
        }
        Error::MalformedDate { index, date } => wit::Error::MalformedDate((index, date)),
        Error::NegativePopulationDensity(v) => wit::Error::NegativePopulationDensity(v),
        Error::DrawOutOfRange { field, value } => {
            wit::Error::DrawOutOfRange((field.to_owned(), value))
        }
    }
}
