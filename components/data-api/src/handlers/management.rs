//! Administrative endpoints: register households, list them with device health, revoke devices.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use wattlet_access_token::{Operation, Role, Scope};
use wattlet_survey::ConsentState;

use crate::auth;
use crate::db::{Db, Value as Sql, col_required, col_text, placeholders, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent::{consent_json, parse_state};
use crate::handlers::household::{DEVICE_COLUMNS, METER_COLUMNS, device_json, meter_json};
use crate::http::{Request, Response, json_response};
use crate::registration::{self, Details};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, METER_MODELS, METER_TYPES, bad, json_body};

/// At most this many meters per registration.
const MAX_METERS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewHousehold {
    name: String,
    email: String,
    device: String,
    meters: Vec<NewMeter>,
    location: registration::Location,
    #[serde(default)]
    address: Option<registration::Address>,
    #[serde(default)]
    metadata: Option<registration::Metadata>,
    #[serde(default)]
    pv_systems: Vec<registration::PvSystem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMeter {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    model: String,
    /// The PV systems it measures, as indices into the registration's `pv_systems`.
    #[serde(default)]
    pv_systems: Vec<usize>,
}

struct Meter {
    uuid: String,
    kind: String,
    model: String,
    /// The uuids of the PV systems it measures.
    pv_systems: Vec<String>,
}

/// `POST /api/management/household`: a participant, their household (consent `not_granted`),
/// its location (required), postal address, metadata and PV systems (optional), measurement
/// device and meters. 201 `{"household","device","meters":[{"uuid","type","model"}],
/// "pv_systems":[uuid]}`; 409 when the email, device id or a meter uuid is taken.
pub fn create_household(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    auth::management_for(
        req,
        env,
        &Operation {
            write: true,
            needs: Role::Researcher,
            scope: Scope::Global,
        },
    )?;
    let body: NewHousehold = json_body(req.body())?;
    let name = valid_name(&body.name)?;
    let email = normalized_email(&body.email)?;
    let device = validate::device_id("device", &body.device)?;
    if body.meters.is_empty() || body.meters.len() > MAX_METERS {
        return Err(bad(format!("meters: 1–{MAX_METERS} meters required")));
    }
    let details = Details::validate(body.location, body.address, body.metadata, body.pv_systems)?;
    let mut meters = Vec::with_capacity(body.meters.len());
    let mut seen = BTreeSet::new();
    for (i, meter) in body.meters.iter().enumerate() {
        let uuid = match &meter.uuid {
            Some(u) => validate::uuid(&format!("meters[{i}].uuid"), u)?,
            None => Uuid::new_v4().hyphenated().to_string(),
        };
        if !seen.insert(uuid.clone()) {
            return Err(bad(format!("meters[{i}].uuid: {uuid} appears twice")));
        }
        let pv_systems = meter
            .pv_systems
            .iter()
            .map(|&index| match details.pv_systems.get(index) {
                Some((uuid, _)) => Ok(uuid.clone()),
                None => Err(bad(format!(
                    "meters[{i}].pv_systems: no PV system {index} (pv_systems has {})",
                    details.pv_systems.len()
                ))),
            })
            .collect::<ApiResult<Vec<_>>>()?;
        meters.push(Meter {
            uuid,
            kind: validate::one_of(&format!("meters[{i}].type"), &meter.kind, METER_TYPES)?,
            model: validate::one_of(&format!("meters[{i}].model"), &meter.model, METER_MODELS)?,
            pv_systems,
        });
    }

    // Clear 409s first; the UNIQUE constraints below catch anything that races past these.
    if !db
        .query(r#"SELECT 1 FROM "user" WHERE email = ?"#, &[text(&email)])?
        .rows
        .is_empty()
    {
        return Err(ApiError::conflict(format!(
            "a participant with email {email} is already registered"
        )));
    }
    if !db
        .query(
            "SELECT 1 FROM measurement_device WHERE id = ?",
            &[text(&device)],
        )?
        .rows
        .is_empty()
    {
        return Err(ApiError::conflict(format!(
            "device {device} is already registered"
        )));
    }
    let uuids: Vec<Sql> = meters.iter().map(|m| text(&m.uuid)).collect();
    let taken = db.query(
        &format!(
            "SELECT uuid FROM meter WHERE uuid IN ({})",
            placeholders(uuids.len())
        ),
        &uuids,
    )?;
    if let Some(row) = taken.rows.first() {
        return Err(ApiError::conflict(format!(
            "meter {} is already registered",
            col_text(row, 0).unwrap_or_default()
        )));
    }

    // Inserted in dependency order; a failure undoes what was inserted before it.
    let user = match db.try_query(
        r#"INSERT INTO "user" (name, email) VALUES (?, ?) RETURNING id"#,
        &[text(&name), text(&email)],
    ) {
        Ok(result) => result
            .rows
            .first()
            .and_then(|r| r.get::<i64>(0))
            .ok_or_else(|| ApiError::Database("INSERT … RETURNING gave no id".into()))?,
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::conflict(format!(
                "a participant with email {email} is already registered"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let household = Uuid::new_v4().hyphenated().to_string();
    let result = insert_rest(db, user, &household, &device, &meters)
        .and_then(|()| details.insert(db, &household))
        .and_then(|()| wire(db, &meters));
    if let Err(e) = result {
        undo(db, user, &household);
        return Err(e);
    }
    let meters: Vec<Value> = meters
        .iter()
        .map(|m| json!({ "uuid": m.uuid, "type": m.kind, "model": m.model, "pv_systems": m.pv_systems }))
        .collect();
    let pv_systems: Vec<&str> = details
        .pv_systems
        .iter()
        .map(|(uuid, _)| uuid.as_str())
        .collect();
    Ok(json_response(
        201,
        &json!({ "household": household, "device": device, "meters": meters,
                 "pv_systems": pv_systems }),
    ))
}

/// Links each meter to the PV systems it measures.
fn wire(db: &Db, meters: &[Meter]) -> ApiResult<()> {
    for meter in meters {
        for pv_system in &meter.pv_systems {
            db.exec(
                "INSERT OR IGNORE INTO meter_pv_system (meter, pv_system) VALUES (?, ?)",
                &[text(&meter.uuid), text(pv_system)],
            )?;
        }
    }
    Ok(())
}

fn insert_rest(
    db: &Db,
    user: i64,
    household: &str,
    device: &str,
    meters: &[Meter],
) -> ApiResult<()> {
    let now = timestamp::to_db(timestamp::now());
    db.exec(
        "INSERT INTO household (id, user, created_at) VALUES (?, ?, ?)",
        &[text(household), Sql::Integer(user), text(&now)],
    )?;
    db.exec(
        "INSERT INTO consent (household, state) VALUES (?, ?)",
        &[text(household), text(ConsentState::NotGranted.as_str())],
    )?;
    match db.try_query(
        "INSERT INTO measurement_device (id, household, registered_at) VALUES (?, ?, ?)",
        &[text(device), text(household), text(&now)],
    ) {
        Ok(_) => {}
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::conflict(format!(
                "device {device} is already registered"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let mut params = Vec::with_capacity(meters.len() * 5);
    for m in meters {
        params.extend([
            text(&m.uuid),
            text(household),
            text(device),
            text(&m.kind),
            text(&m.model),
        ]);
    }
    let rows = vec!["(?, ?, ?, ?, ?)"; meters.len()].join(", ");
    match db.try_query(
        &format!("INSERT INTO meter (uuid, household, device, type, model) VALUES {rows}"),
        &params,
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.is_unique_violation() => {
            Err(ApiError::conflict("a meter uuid is already registered"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes a half-made registration (best effort; each statement is harmless if nothing matches).
fn undo(db: &Db, user: i64, household: &str) {
    let details = registration::DELETE_STATEMENTS.map(|sql| (sql, vec![text(household)]));
    let statements: [(&str, Vec<Sql>); 5] = [
        (
            "DELETE FROM meter WHERE household = ?",
            vec![text(household)],
        ),
        (
            "DELETE FROM measurement_device WHERE household = ?",
            vec![text(household)],
        ),
        (
            "DELETE FROM consent WHERE household = ?",
            vec![text(household)],
        ),
        ("DELETE FROM household WHERE id = ?", vec![text(household)]),
        (
            r#"DELETE FROM "user" WHERE id = ?"#,
            vec![Sql::Integer(user)],
        ),
    ];
    for (sql, params) in details.into_iter().chain(statements) {
        if let Err(e) = db.try_query(sql, &params) {
            eprintln!("wattlet-data-api: undoing a failed registration: {sql}: {e:?}");
        }
    }
}

/// A participant's name: trimmed, 1–200 characters.
pub fn valid_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(bad("name: 1–200 characters required"));
    }
    Ok(name.to_owned())
}

/// A participant's email, normalized (trimmed, lower case).
pub fn normalized_email(email: &str) -> ApiResult<String> {
    let normalized = auth::normalize_email(email);
    if !plausible_email(&normalized) {
        return Err(bad(format!("email: {email:?} is not an email address")));
    }
    Ok(normalized)
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `GET /api/management/household` \[10\]: every household with its participant (or `null` once
/// anonymized), consent, devices (component versions, last measurement, last activity,
/// revocation) and meters with their status. A token restricted to a household sees only it.
pub fn list_households(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::management_for(
        req,
        env,
        &Operation {
            write: false,
            needs: Role::Researcher,
            scope: Scope::Households,
        },
    )?;
    let only = grant.households();
    let mut devices: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let rows = db.query(
        &format!("SELECT household, {DEVICE_COLUMNS} FROM measurement_device ORDER BY id"),
        &[],
    )?;
    for row in &rows.rows {
        devices
            .entry(col_required(row, 0)?)
            .or_default()
            .push(device_json(row, 1)?);
    }
    let mut meters: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let rows = db.query(
        &format!("SELECT household, {METER_COLUMNS} FROM meter ORDER BY uuid"),
        &[],
    )?;
    for row in &rows.rows {
        meters
            .entry(col_required(row, 0)?)
            .or_default()
            .push(meter_json(row, 1)?);
    }
    let rows = db.query(
        r#"SELECT h.id, h.created_at, u.name, u.email, c.state, c.granted_at, c.revoked_at
           FROM household h
           LEFT JOIN "user" u ON u.id = h.user
           LEFT JOIN consent c ON c.household = h.id
           ORDER BY h.created_at, h.id"#,
        &[],
    )?;
    let mut households = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let id = col_required(row, 0)?;
        if !only.iter().all(|h| *h == id) {
            continue;
        }
        let user = match (col_text(row, 2), col_text(row, 3)) {
            (Some(name), Some(email)) => json!({ "name": name, "email": email }),
            _ => Value::Null,
        };
        households.push(json!({
            "household": id,
            "created_at": timestamp::db_to_api(col_text(row, 1)),
            "user": user,
            "consent": consent_json(
                parse_state(col_text(row, 4))?,
                col_text(row, 5),
                col_text(row, 6),
            ),
            "devices": devices.remove(&id).unwrap_or_default(),
            "meters": meters.remove(&id).unwrap_or_default(),
        }));
    }
    Ok(json_response(200, &json!({ "households": households })))
}

/// `POST /api/management/device/:id/revoke`: the device's requests get 403 from now on.
/// 200 `{"device","revoked_at"}` (again on a repeated call, with the first time); 404 when no
/// such device exists.
pub fn revoke_device(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::management(req, env)?;
    let not_found = || ApiError::not_found("no such device");
    let id = validate::device_id("device", id).map_err(|_| not_found())?;
    // An anonymized household's device is found by its id all the same (under its pseudonym).
    let id = auth::stored_device_id(env, &id)?.ok_or_else(not_found)?;
    auth::allow_household_of(
        &grant,
        db,
        (
            "SELECT household FROM measurement_device WHERE id = ?",
            &id,
            "no such device",
        ),
        true,
        Role::Administrator,
    )?;
    let revoked = db.query(
        "UPDATE measurement_device SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL
         RETURNING revoked_at",
        &[text(timestamp::to_db(timestamp::now())), text(&id)],
    )?;
    let revoked_at = match revoked.rows.first() {
        Some(row) => col_text(row, 0),
        None => {
            let existing = db.query(
                "SELECT revoked_at FROM measurement_device WHERE id = ?",
                &[text(&id)],
            )?;
            let row = existing.rows.first().ok_or_else(not_found)?;
            col_text(row, 0)
        }
    };
    Ok(json_response(
        200,
        &json!({ "device": id, "revoked_at": timestamp::db_to_api(revoked_at) }),
    ))
}
