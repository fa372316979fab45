//! A household's registration details beyond the contact (DESIGN "Data model"): its location,
//! postal address, metadata and PV systems. Validated here so that anything stored is also
//! valid input for the anonymizer (finite numbers, coordinates in range, real dates).

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db::{Db, Value as Sql, col_required, col_text, text};
use crate::error::ApiResult;
use crate::validate::bad;

/// At most this many PV systems per household.
pub const MAX_PV_SYSTEMS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    /// The NUTS-3 region (e.g. `DE300`), for the population density used on anonymization.
    #[serde(default)]
    pub nuts3: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub street: String,
    pub house_number: String,
    pub postal_code: String,
    pub city: String,
    pub country: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub children: u32,
    pub adults: u32,
    pub employed_adults: u32,
    pub ev_charger: bool,
    pub heat_pump: bool,
    pub home_battery: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PvSystem {
    pub nominal_power_kwp: f64,
    pub azimuth: f64,
    pub tilt: f64,
    /// `YYYY-MM-DD`.
    pub installation_date: String,
}

/// The registration details of a new household, validated.
pub struct Details {
    pub location: Location,
    pub address: Option<Address>,
    pub metadata: Option<Metadata>,
    /// With the uuid each is stored under.
    pub pv_systems: Vec<(String, PvSystem)>,
}

impl Details {
    pub fn validate(
        location: Location,
        address: Option<Address>,
        metadata: Option<Metadata>,
        pv_systems: Vec<PvSystem>,
    ) -> ApiResult<Details> {
        Ok(Details {
            location: location.validate()?,
            address: address.map(Address::validate).transpose()?,
            metadata: metadata.map(Metadata::validate).transpose()?,
            pv_systems: validate_pv_systems(pv_systems)?,
        })
    }

    /// Stores the details of `household` (which must exist and have none yet).
    pub fn insert(&self, db: &Db, household: &str) -> ApiResult<()> {
        store_location(db, household, &self.location)?;
        if let Some(a) = &self.address {
            store_address(db, household, a)?;
        }
        if let Some(m) = &self.metadata {
            store_metadata(db, household, m)?;
        }
        insert_pv_systems(db, household, &self.pv_systems)
    }
}

impl Location {
    pub fn validate(self) -> ApiResult<Location> {
        if !(-90.0..=90.0).contains(&self.latitude) {
            return Err(bad("location.latitude: −90 to 90 degrees"));
        }
        if !(-180.0..=180.0).contains(&self.longitude) {
            return Err(bad("location.longitude: −180 to 180 degrees"));
        }
        Ok(Location {
            nuts3: self
                .nuts3
                .map(|code| nuts3_code("location.nuts3", &code))
                .transpose()?,
            ..self
        })
    }
}

impl Address {
    pub fn validate(self) -> ApiResult<Address> {
        Ok(Address {
            street: field("address.street", &self.street, 200)?,
            house_number: field("address.house_number", &self.house_number, 20)?,
            postal_code: field("address.postal_code", &self.postal_code, 20)?,
            city: field("address.city", &self.city, 200)?,
            country: field("address.country", &self.country, 100)?,
        })
    }
}

impl Metadata {
    pub fn validate(self) -> ApiResult<Metadata> {
        if self.children > 50 || self.adults > 50 {
            return Err(bad("metadata: at most 50 children and 50 adults"));
        }
        if self.employed_adults > self.adults {
            return Err(bad("metadata.employed_adults: at most metadata.adults"));
        }
        Ok(self)
    }
}

/// Checks PV systems and gives each a new uuid.
pub fn validate_pv_systems(pv_systems: Vec<PvSystem>) -> ApiResult<Vec<(String, PvSystem)>> {
    if pv_systems.len() > MAX_PV_SYSTEMS {
        return Err(bad(format!(
            "pv_systems: at most {MAX_PV_SYSTEMS} PV systems"
        )));
    }
    let mut checked = Vec::with_capacity(pv_systems.len());
    for (i, pv) in pv_systems.into_iter().enumerate() {
        if !(0.0..=10_000.0).contains(&pv.nominal_power_kwp) {
            return Err(bad(format!(
                "pv_systems[{i}].nominal_power_kwp: 0 to 10000 kWp"
            )));
        }
        if !(0.0..360.0).contains(&pv.azimuth) {
            return Err(bad(format!(
                "pv_systems[{i}].azimuth: 0 to under 360 degrees"
            )));
        }
        if !(0.0..=90.0).contains(&pv.tilt) {
            return Err(bad(format!("pv_systems[{i}].tilt: 0 to 90 degrees")));
        }
        let date = iso_date(
            &format!("pv_systems[{i}].installation_date"),
            &pv.installation_date,
        )?;
        checked.push((
            Uuid::new_v4().hyphenated().to_string(),
            PvSystem {
                installation_date: date,
                ..pv
            },
        ));
    }
    Ok(checked)
}

/// Stores (or replaces) the household's true location. Once anonymization displaced it, the
/// location no longer changes: that would undo the displacement.
pub fn store_location(db: &Db, household: &str, location: &Location) -> ApiResult<()> {
    db.exec(
        "INSERT INTO location (household, latitude, longitude, nuts3) VALUES (?, ?, ?, ?)
         ON CONFLICT (household) DO UPDATE
         SET latitude = excluded.latitude, longitude = excluded.longitude, nuts3 = excluded.nuts3
         WHERE displacement IS NULL",
        &[
            text(household),
            Sql::Real(location.latitude),
            Sql::Real(location.longitude),
            location.nuts3.clone().map_or(Sql::Null, text),
        ],
    )
}

pub fn store_address(db: &Db, household: &str, a: &Address) -> ApiResult<()> {
    db.exec(
        "INSERT OR REPLACE INTO address (household, street, house_number, postal_code, city,
             country) VALUES (?, ?, ?, ?, ?, ?)",
        &[
            text(household),
            text(&a.street),
            text(&a.house_number),
            text(&a.postal_code),
            text(&a.city),
            text(&a.country),
        ],
    )
}

pub fn store_metadata(db: &Db, household: &str, m: &Metadata) -> ApiResult<()> {
    db.exec(
        "INSERT OR REPLACE INTO household_metadata (household, children, adults,
             employed_adults, ev_charger, heat_pump, home_battery) VALUES (?, ?, ?, ?, ?, ?, ?)",
        &[
            text(household),
            Sql::Integer(m.children.into()),
            Sql::Integer(m.adults.into()),
            Sql::Integer(m.employed_adults.into()),
            Sql::Integer(m.ev_charger.into()),
            Sql::Integer(m.heat_pump.into()),
            Sql::Integer(m.home_battery.into()),
        ],
    )
}

pub fn insert_pv_systems(
    db: &Db,
    household: &str,
    pv_systems: &[(String, PvSystem)],
) -> ApiResult<()> {
    for (uuid, pv) in pv_systems {
        db.exec(
            "INSERT INTO pv_system (uuid, household, nominal_power_kwp, azimuth, tilt,
                 installation_date) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                text(uuid),
                text(household),
                Sql::Real(pv.nominal_power_kwp),
                Sql::Real(pv.azimuth),
                Sql::Real(pv.tilt),
                text(&pv.installation_date),
            ],
        )?;
    }
    Ok(())
}

/// The statements that remove every detail of `household` (undoing a failed registration).
pub const DELETE_STATEMENTS: [&str; 5] = [
    "DELETE FROM meter_pv_system WHERE meter IN (SELECT uuid FROM meter WHERE household = ?)",
    "DELETE FROM pv_system WHERE household = ?",
    "DELETE FROM household_metadata WHERE household = ?",
    "DELETE FROM address WHERE household = ?",
    "DELETE FROM location WHERE household = ?",
];

/// The household's contact `(name, email)`; `None` once anonymized.
pub fn contact(db: &Db, household: &str) -> ApiResult<Option<(String, String)>> {
    let rows = db.query(
        r#"SELECT u.name, u.email FROM household h JOIN "user" u ON u.id = h.user WHERE h.id = ?"#,
        &[text(household)],
    )?;
    rows.rows
        .first()
        .map(|row| Ok((col_required(row, 0)?, col_required(row, 1)?)))
        .transpose()
}

/// `{"location","address","metadata"}` of a household as stored (after anonymization: the
/// displaced location with its displacement, no address).
pub fn details_json(db: &Db, household: &str) -> ApiResult<Value> {
    let location = db
        .query(
            "SELECT latitude, longitude, nuts3, displacement FROM location WHERE household = ?",
            &[text(household)],
        )?
        .rows
        .first()
        .map(|row| {
            json!({
                "latitude": row.get::<f64>(0),
                "longitude": row.get::<f64>(1),
                "nuts3": col_text(row, 2),
                "displacement": crate::db::col_json(row, 3),
            })
        })
        .unwrap_or(Value::Null);
    let address = db
        .query(
            "SELECT street, house_number, postal_code, city, country FROM address
             WHERE household = ?",
            &[text(household)],
        )?
        .rows
        .first()
        .map(|row| -> ApiResult<Value> {
            Ok(json!({
                "street": col_required(row, 0)?,
                "house_number": col_required(row, 1)?,
                "postal_code": col_required(row, 2)?,
                "city": col_required(row, 3)?,
                "country": col_required(row, 4)?,
            }))
        })
        .transpose()?
        .unwrap_or(Value::Null);
    let metadata = db
        .query(
            "SELECT children, adults, employed_adults, ev_charger, heat_pump, home_battery
             FROM household_metadata WHERE household = ?",
            &[text(household)],
        )?
        .rows
        .first()
        .map(|row| {
            let flag = |i| row.get::<i64>(i).map(|v| v != 0);
            json!({
                "children": row.get::<i64>(0),
                "adults": row.get::<i64>(1),
                "employed_adults": row.get::<i64>(2),
                "ev_charger": flag(3),
                "heat_pump": flag(4),
                "home_battery": flag(5),
            })
        })
        .unwrap_or(Value::Null);
    Ok(json!({ "location": location, "address": address, "metadata": metadata }))
}

/// The household's PV systems as stored: `[{"uuid","nominal_power_kwp","azimuth","tilt",
/// "installation_date"}]`.
pub fn pv_systems_json(db: &Db, household: &str) -> ApiResult<Vec<Value>> {
    db.query(
        "SELECT uuid, nominal_power_kwp, azimuth, tilt, installation_date FROM pv_system
         WHERE household = ? ORDER BY installation_date, uuid",
        &[text(household)],
    )?
    .rows
    .iter()
    .map(|row| {
        Ok(json!({
            "uuid": col_required(row, 0)?,
            "nominal_power_kwp": row.get::<f64>(1),
            "azimuth": row.get::<f64>(2),
            "tilt": row.get::<f64>(3),
            "installation_date": col_required(row, 4)?,
        }))
    })
    .collect()
}

/// A trimmed, non-empty text of at most `max` characters without control characters.
fn field(name: &str, value: &str, max: usize) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(bad(format!(
            "{name}: 1–{max} characters without control characters"
        )));
    }
    Ok(value.to_owned())
}

/// A NUTS-3 code: the two-letter country code and three letters or digits (`DE300`, `DEA1C`).
pub fn nuts3_code(name: &str, code: &str) -> ApiResult<String> {
    let code = code.trim().to_ascii_uppercase();
    let ok = code.len() == 5
        && code.bytes().take(2).all(|b| b.is_ascii_uppercase())
        && code.bytes().skip(2).all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(code)
    } else {
        Err(bad(format!(
            "{name}: {code:?} is not a NUTS-3 code such as DE300"
        )))
    }
}

/// A real calendar date as `YYYY-MM-DD`, years 1900–2999.
fn iso_date(name: &str, value: &str) -> ApiResult<String> {
    let parts: Vec<&str> = value.split('-').collect();
    let valid = match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            match (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()) {
                (Ok(y), Ok(m), Ok(d)) => {
                    (1900..3000).contains(&y)
                        && time::Month::try_from(m)
                            .is_ok_and(|m| time::Date::from_calendar_date(y, m, d).is_ok())
                }
                _ => false,
            }
        }
        _ => false,
    };
    if valid {
        Ok(value.to_owned())
    } else {
        Err(bad(format!(
            "{name}: {value:?} is not a date YYYY-MM-DD between 1900 and 2999"
        )))
    }
}
