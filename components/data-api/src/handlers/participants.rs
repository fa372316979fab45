//! Researchers' view of one participant: `GET` and `PATCH /api/management/household/:id`.

use serde_json::{Map, Value, json};
use spin_sdk::http::{Request, Response};
use wattlet_access_token::{Grant, Role};

use crate::anonymization;
use crate::auth;
use crate::db::{Db, col_text, is_unique_violation, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent::{self, State};
use crate::handlers::household;
use crate::handlers::management::{normalized_email, valid_name};
use crate::json_response;
use crate::registration::{self, Address, Location, Metadata, PvSystem};
use crate::timestamp;
use crate::validate::{self, bad, json_body};

/// Resolves `id` to an existing household the token may reach for `write`.
fn household(req: &Request, db: &Db, id: &str, write: bool) -> ApiResult<(Grant, String)> {
    let grant = auth::management(req)?;
    let id = validate::uuid("household", id)
        .map_err(|_| ApiError::NotFound("no such household".into()))?;
    let id = auth::allow_household_of(
        &grant,
        db,
        (
            "SELECT id FROM household WHERE id = ?",
            &id,
            "no such household",
        ),
        write,
        Role::Researcher,
    )?;
    Ok((grant, id))
}

/// `GET /api/management/household/:id`: the participant (or `null` once anonymized), consent,
/// registration details, PV systems, devices and meters.
pub fn get(req: &Request, db: &Db, id: &str) -> ApiResult<Response> {
    let (_, id) = household(req, db, id, false)?;
    Ok(json_response(200, &details(db, &id)?))
}

fn details(db: &Db, id: &str) -> ApiResult<Value> {
    let mut body = registration::details_json(db, id)?;
    let row = db.query(
        r#"SELECT h.created_at, u.name, u.email FROM household h
           LEFT JOIN "user" u ON u.id = h.user WHERE h.id = ?"#,
        &[text(id)],
    )?;
    let row = row
        .rows
        .first()
        .ok_or_else(|| ApiError::NotFound("no such household".into()))?;
    body["household"] = json!(id);
    body["created_at"] = json!(timestamp::db_to_api(col_text(row, 0)));
    body["user"] = match (col_text(row, 1), col_text(row, 2)) {
        (Some(name), Some(email)) => json!({ "name": name, "email": email }),
        _ => Value::Null,
    };
    body["consent"] = consent::load(db, id)?.json();
    body["pv_systems"] = json!(registration::pv_systems_json(db, id)?);
    body["devices"] = json!(household::devices_of(db, id)?);
    body["meters"] = json!(household::meters_of(db, id)?);
    Ok(body)
}

/// The fields a `PATCH` may carry, each optional; `address` and `metadata` may be `null`
/// (deleted), `pv_systems` replaces the list.
const FIELDS: &[&str] = &[
    "name",
    "email",
    "location",
    "address",
    "metadata",
    "pv_systems",
    "meters",
];

/// A meter's new wiring: the household's PV systems it measures (replacing its links).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wiring {
    uuid: String,
    pv_systems: Vec<String>,
}

/// Checks that every meter and PV system named is the household's; returns them normalized.
fn check_wiring(
    db: &Db,
    household: &str,
    wiring: Vec<Wiring>,
) -> ApiResult<Vec<(String, Vec<String>)>> {
    let owned = |table: &str, uuid: &str| -> ApiResult<bool> {
        Ok(!db
            .query(
                &format!("SELECT 1 FROM {table} WHERE uuid = ? AND household = ?"),
                &[text(uuid), text(household)],
            )?
            .rows
            .is_empty())
    };
    let mut checked = Vec::with_capacity(wiring.len());
    for (i, meter) in wiring.into_iter().enumerate() {
        let uuid = validate::uuid(&format!("meters[{i}].uuid"), &meter.uuid)?;
        if !owned("meter", &uuid)? {
            return Err(bad(format!(
                "meters[{i}].uuid: not a meter of this household"
            )));
        }
        let mut pv_systems = Vec::with_capacity(meter.pv_systems.len());
        for (j, pv) in meter.pv_systems.iter().enumerate() {
            let pv = validate::uuid(&format!("meters[{i}].pv_systems[{j}]"), pv)?;
            if !owned("pv_system", &pv)? {
                return Err(bad(format!(
                    "meters[{i}].pv_systems[{j}]: not a PV system of this household"
                )));
            }
            pv_systems.push(pv);
        }
        checked.push((uuid, pv_systems));
    }
    Ok(checked)
}

fn parse<T: serde::de::DeserializeOwned>(field: &str, value: Value) -> ApiResult<T> {
    serde_json::from_value(value).map_err(|e| bad(format!("{field}: {e}")))
}

/// `PATCH /api/management/household/:id`: changes registration details; 200 with the household
/// as `GET` shows it. A household that revoked its consent is anonymized and stays so (409).
/// Everything is checked before anything is stored.
pub fn update(req: &Request, db: &Db, id: &str) -> ApiResult<Response> {
    let (_, id) = household(req, db, id, true)?;
    let body: Map<String, Value> = json_body(req.body())?;
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field {unknown:?}: expected {}",
            FIELDS.join(", ")
        )));
    }
    if body.is_empty() {
        return Err(bad(format!(
            "nothing to change: give {}",
            FIELDS.join(", ")
        )));
    }
    if consent::load(db, &id)?.state == State::Revoked {
        return Err(ApiError::Conflict(
            "the household revoked its consent and is anonymized; its registration no longer changes"
                .into(),
        ));
    }
    let mut body = body;
    let mut take = |field: &str| body.remove(field);
    let name = take("name")
        .map(|v| parse::<String>("name", v).and_then(|n| valid_name(&n)))
        .transpose()?;
    let email = take("email")
        .map(|v| parse::<String>("email", v).and_then(|e| normalized_email(&e)))
        .transpose()?;
    let location = take("location")
        .map(|v| parse::<Location>("location", v).and_then(Location::validate))
        .transpose()?;
    let address = take("address")
        .map(|v| {
            parse::<Option<Address>>("address", v)?
                .map(Address::validate)
                .transpose()
        })
        .transpose()?;
    let metadata = take("metadata")
        .map(|v| {
            parse::<Option<Metadata>>("metadata", v)?
                .map(Metadata::validate)
                .transpose()
        })
        .transpose()?;
    let pv_systems = take("pv_systems")
        .map(|v| {
            parse::<Vec<PvSystem>>("pv_systems", v).and_then(registration::validate_pv_systems)
        })
        .transpose()?;
    let wiring = match take("meters") {
        Some(_) if pv_systems.is_some() => {
            return Err(bad(
                "meters: wire meters in a request of their own after replacing the PV systems",
            ));
        }
        Some(v) => check_wiring(db, &id, parse::<Vec<Wiring>>("meters", v)?)?,
        None => Vec::new(),
    };

    // The one change that can conflict goes first, so a conflict changes nothing.
    if name.is_some() || email.is_some() {
        let result = db.try_query(
            r#"UPDATE "user" SET name = COALESCE(?, name), email = COALESCE(?, email)
               WHERE id = (SELECT user FROM household WHERE id = ?)"#,
            &[
                name.map_or(spin_sdk::sqlite::Value::Null, text),
                email.clone().map_or(spin_sdk::sqlite::Value::Null, text),
                text(&id),
            ],
        );
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(ApiError::Conflict(format!(
                    "a participant with email {} is already registered",
                    email.unwrap_or_default()
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(location) = &location {
        registration::store_location(db, &id, location)?;
    }
    match address {
        Some(Some(a)) => registration::store_address(db, &id, &a)?,
        Some(None) => db.exec("DELETE FROM address WHERE household = ?", &[text(&id)])?,
        None => {}
    }
    match metadata {
        Some(Some(m)) => registration::store_metadata(db, &id, &m)?,
        Some(None) => db.exec(
            "DELETE FROM household_metadata WHERE household = ?",
            &[text(&id)],
        )?,
        None => {}
    }
    if let Some(pv_systems) = &pv_systems {
        db.exec(
            "DELETE FROM meter_pv_system
             WHERE pv_system IN (SELECT uuid FROM pv_system WHERE household = ?)",
            &[text(&id)],
        )?;
        db.exec("DELETE FROM pv_system WHERE household = ?", &[text(&id)])?;
        registration::insert_pv_systems(db, &id, pv_systems)?;
    }
    for (meter, pv_systems) in &wiring {
        db.exec(
            "DELETE FROM meter_pv_system WHERE meter = ?",
            &[text(meter)],
        )?;
        for pv_system in pv_systems {
            db.exec(
                "INSERT OR IGNORE INTO meter_pv_system (meter, pv_system) VALUES (?, ?)",
                &[text(meter), text(pv_system)],
            )?;
        }
    }
    // A revocation that raced this request may have anonymized before the writes above: then
    // anonymize again (every step is idempotent; a displaced location is never overwritten).
    if consent::load(db, &id)?.state == State::Revoked {
        anonymization::anonymize_household(db, &id)?;
        return Err(ApiError::Conflict(
            "the household revoked its consent meanwhile and is anonymized".into(),
        ));
    }
    Ok(json_response(200, &details(db, &id)?))
}
