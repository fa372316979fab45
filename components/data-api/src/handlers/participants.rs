//! Researchers' view of one participant: `GET` and `PATCH /api/management/household/:id`.

use serde_json::{Map, Value, json};
use uuid::Uuid;
use wattlet_access_token::Role;
use wattlet_survey::{ConsentState, RefusalCode};

use crate::anonymization;
use crate::auth;
use crate::db::{Db, Value as Sql, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent;
use crate::handlers::household;
use crate::handlers::management::{normalized_email, valid_name};
use crate::http::{Request, Response, json_response};
use crate::registration::{self, Address, Location, Metadata, PvSystem};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, METER_MODELS, METER_TYPES, bad, json_body};

/// Resolves `id` to an existing household the token may reach for `write`.
fn reachable(req: &Request, env: &Env, id: &str, write: bool) -> ApiResult<String> {
    let db = &env.db;
    let grant = auth::management(req, env)?;
    let id =
        validate::uuid("household", id).map_err(|_| ApiError::not_found("no such household"))?;
    auth::allow_household_of(
        &grant,
        db,
        (
            "SELECT id FROM household WHERE id = ?",
            &id,
            "no such household",
        ),
        write,
        Role::Researcher,
    )
}

/// `GET /api/management/household/:id`: the participant (or `null` once anonymized), consent,
/// registration details, PV systems, devices and meters.
pub fn get(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    let db = &env.db;
    let id = reachable(req, env, id, false)?;
    Ok(json_response(200, &details(db, &id)?))
}

/// The participant's [`household::view`] with its creation time, PV systems, devices and meters.
fn details(db: &Db, id: &str) -> ApiResult<Value> {
    let mut body = household::view(db, id)?;
    let created = db.query("SELECT created_at FROM household WHERE id = ?", &[text(id)])?;
    body["created_at"] = json!(timestamp::db_to_api(
        created.rows.first().and_then(|row| col_text(row, 0))
    ));
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
    "devices",
    "meters",
];

/// A meter to add (no `uuid`, or one not registered yet; `type`, `model`, `device` required) or
/// one of the household's meters to rewire (its `device`, its `pv_systems`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MeterChange {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    pv_systems: Option<Vec<String>>,
}

/// A checked [`MeterChange`], uuids normalized.
struct CheckedMeter {
    uuid: String,
    /// `Some((type, model))` for a new meter.
    new: Option<(String, String)>,
    device: Option<String>,
    pv_systems: Option<Vec<String>>,
}

/// Checks added devices (`devices`) and meter changes against the household: new ids are free,
/// named meters, devices and PV systems are the household's (or added by this request).
fn check_meters(
    db: &Db,
    household: &str,
    devices: &[String],
    changes: Vec<MeterChange>,
) -> ApiResult<Vec<CheckedMeter>> {
    let owner = |sql: &str, key: &str| -> ApiResult<Option<String>> {
        Ok(db
            .query(sql, &[text(key)])?
            .rows
            .first()
            .and_then(|row| col_text(row, 0)))
    };
    let ours = |owner: Option<String>| owner.as_deref() == Some(household);
    for device in devices {
        if owner(
            "SELECT household FROM measurement_device WHERE id = ?",
            device,
        )?
        .is_some()
        {
            return Err(ApiError::conflict(format!(
                "device {device} is already registered"
            )));
        }
    }
    let mut checked = Vec::with_capacity(changes.len());
    for (i, change) in changes.into_iter().enumerate() {
        let at = |field: &str| format!("meters[{i}].{field}");
        let uuid = match &change.uuid {
            Some(u) => validate::uuid(&at("uuid"), u)?,
            None => Uuid::new_v4().hyphenated().to_string(),
        };
        let existing = owner("SELECT household FROM meter WHERE uuid = ?", &uuid)?;
        if existing.is_some() && !ours(existing.clone()) {
            return Err(bad(format!(
                "{}: not a meter of this household",
                at("uuid")
            )));
        }
        let new = match (existing.is_some(), &change.kind, &change.model) {
            (true, None, None) => None,
            (true, _, _) => {
                return Err(bad(format!(
                    "{}: the type and model of a registered meter do not change",
                    at("type")
                )));
            }
            (false, Some(kind), Some(model)) => Some((
                validate::one_of(&at("type"), kind, METER_TYPES)?,
                validate::one_of(&at("model"), model, METER_MODELS)?,
            )),
            (false, _, _) => {
                return Err(bad(format!(
                    "{}: a new meter needs type, model and device",
                    at("uuid")
                )));
            }
        };
        let device = match &change.device {
            Some(d) => {
                let d = validate::device_id(&at("device"), d)?;
                let registered = ours(owner(
                    "SELECT household FROM measurement_device WHERE id = ?",
                    &d,
                )?);
                if !registered && !devices.contains(&d) {
                    return Err(bad(format!(
                        "{}: {d} is not a device of this household",
                        at("device")
                    )));
                }
                Some(d)
            }
            None if new.is_some() => {
                return Err(bad(format!(
                    "{}: a new meter needs its device",
                    at("device")
                )));
            }
            None => None,
        };
        let pv_systems = match change.pv_systems {
            Some(list) => {
                let mut normalized = Vec::with_capacity(list.len());
                for (j, pv) in list.iter().enumerate() {
                    let pv = validate::uuid(&at(&format!("pv_systems[{j}]")), pv)?;
                    if !ours(owner(
                        "SELECT household FROM pv_system WHERE uuid = ?",
                        &pv,
                    )?) {
                        return Err(bad(format!(
                            "{}: not a PV system of this household",
                            at(&format!("pv_systems[{j}]"))
                        )));
                    }
                    normalized.push(pv);
                }
                Some(normalized)
            }
            None => None,
        };
        checked.push(CheckedMeter {
            uuid,
            new,
            device,
            pv_systems,
        });
    }
    Ok(checked)
}

/// Stores checked meter changes: new meters, then each meter's device and PV systems.
fn apply_meters(db: &Db, household: &str, meters: &[CheckedMeter]) -> ApiResult<()> {
    for meter in meters {
        if let Some((kind, model)) = &meter.new {
            db.exec(
                "INSERT INTO meter (uuid, household, device, type, model) VALUES (?, ?, ?, ?, ?)",
                &[
                    text(&meter.uuid),
                    text(household),
                    meter.device.clone().map_or(Sql::Null, text),
                    text(kind),
                    text(model),
                ],
            )?;
        } else if let Some(device) = &meter.device {
            db.exec(
                "UPDATE meter SET device = ? WHERE uuid = ?",
                &[text(device), text(&meter.uuid)],
            )?;
        }
        if let Some(pv_systems) = &meter.pv_systems {
            db.exec(
                "DELETE FROM meter_pv_system WHERE meter = ?",
                &[text(&meter.uuid)],
            )?;
            for pv_system in pv_systems {
                db.exec(
                    "INSERT OR IGNORE INTO meter_pv_system (meter, pv_system) VALUES (?, ?)",
                    &[text(&meter.uuid), text(pv_system)],
                )?;
            }
        }
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(field: &str, value: Value) -> ApiResult<T> {
    serde_json::from_value(value).map_err(|e| bad(format!("{field}: {e}")))
}

/// `PATCH /api/management/household/:id`: changes registration details; 200 with the household
/// as `GET` shows it. A household that revoked its consent is anonymized and stays so (409).
/// Everything is checked before anything is stored.
pub fn update(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    let db = &env.db;
    let id = reachable(req, env, id, true)?;
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
    if consent::load(db, &id)?.state == ConsentState::Revoked {
        return Err(ApiError::refused(
            RefusalCode::Anonymized,
            "the household revoked its consent and is anonymized; its registration no longer changes",
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
    let devices = take("devices")
        .map(|v| parse::<Vec<String>>("devices", v))
        .transpose()?
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, d)| validate::device_id(&format!("devices[{i}]"), d))
        .collect::<ApiResult<Vec<_>>>()?;
    let meters = match take("meters") {
        Some(_) if pv_systems.is_some() => {
            return Err(bad(
                "meters: wire meters in a request of their own after replacing the PV systems",
            ));
        }
        Some(v) => check_meters(db, &id, &devices, parse::<Vec<MeterChange>>("meters", v)?)?,
        None => check_meters(db, &id, &devices, Vec::new())?,
    };

    // The one change that can conflict goes first, so a conflict changes nothing.
    if name.is_some() || email.is_some() {
        let result = db.try_query(
            r#"UPDATE "user" SET name = COALESCE(?, name), email = COALESCE(?, email)
               WHERE id = (SELECT user FROM household WHERE id = ?)"#,
            &[
                name.map_or(Sql::Null, text),
                email.clone().map_or(Sql::Null, text),
                text(&id),
            ],
        );
        match result {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(ApiError::conflict(format!(
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
    let registered_at = timestamp::to_db(timestamp::now());
    for device in &devices {
        match db.try_query(
            "INSERT INTO measurement_device (id, household, registered_at) VALUES (?, ?, ?)",
            &[text(device), text(&id), text(&registered_at)],
        ) {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => {
                return Err(ApiError::conflict(format!(
                    "device {device} is already registered"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    apply_meters(db, &id, &meters)?;
    // A revocation that raced this request may have anonymized before the writes above: then
    // anonymize again (every step is idempotent; a displaced location is never overwritten).
    if consent::load(db, &id)?.state == ConsentState::Revoked {
        anonymization::anonymize_household(env, &id)?;
        return Err(ApiError::refused(
            RefusalCode::Anonymized,
            "the household revoked its consent meanwhile and is anonymized",
        ));
    }
    Ok(json_response(200, &details(db, &id)?))
}
