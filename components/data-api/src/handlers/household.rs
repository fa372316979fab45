//! The participant's own household (registration details, PV systems, measurement devices,
//! meters) and the device status report.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};
use wattlet_survey::RefusalCode;

use crate::auth;
use crate::db::{Db, Row, Value as Sql, col_json, col_required, col_text, placeholders, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::{consent, health};
use crate::http::{Request, Response, json_response, no_content};
use crate::registration;
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad, json_body};

/// The columns [`device_json`] reads, in order.
pub const DEVICE_COLUMNS: &str =
    "id, component_versions, last_measurement, last_activity, revoked_at, registered_at, status";
/// The columns [`meter_json`] reads, in order.
pub const METER_COLUMNS: &str = "uuid, type, model, device, status, \
     (SELECT json_group_array(w.pv_system) FROM meter_pv_system w WHERE w.meter = meter.uuid)";

/// A device from [`DEVICE_COLUMNS`] starting at column `at`.
pub fn device_json(row: &Row, at: usize) -> ApiResult<Value> {
    Ok(json!({
        "id": col_required(row, at)?,
        "component_versions": col_json(row, at + 1),
        "last_measurement": timestamp::db_to_api(col_text(row, at + 2)),
        "last_activity": timestamp::db_to_api(col_text(row, at + 3)),
        "revoked_at": timestamp::db_to_api(col_text(row, at + 4)),
        "registered_at": timestamp::db_to_api(col_text(row, at + 5)),
        "status": col_json(row, at + 6),
    }))
}

/// A meter from [`METER_COLUMNS`] starting at column `at`.
pub fn meter_json(row: &Row, at: usize) -> ApiResult<Value> {
    Ok(json!({
        "uuid": col_required(row, at)?,
        "type": col_required(row, at + 1)?,
        "model": col_required(row, at + 2)?,
        "device": col_text(row, at + 3),
        "status": col_json(row, at + 4),
        "pv_systems": col_json(row, at + 5),
    }))
}

/// `GET /api/account` \[1\]: `{"household","user":{"name","email"}|null}`: the participant's
/// account (`null` once the household is anonymized).
pub fn account(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    let user = user_json(db, &participant.household)?;
    Ok(json_response(
        200,
        &json!({ "household": participant.household, "user": user }),
    ))
}

/// The household's contact as `{"name","email"}`, `null` once anonymized.
fn user_json(db: &Db, household: &str) -> ApiResult<Value> {
    Ok(match registration::contact(db, household)? {
        Some((name, email)) => json!({ "name": name, "email": email }),
        None => Value::Null,
    })
}

/// A household as its participant sees it:
/// `{"household","user","consent","location","address","metadata"}`.
pub fn view(db: &Db, household: &str) -> ApiResult<Value> {
    let mut body = registration::details_json(db, household)?;
    body["household"] = json!(household);
    body["user"] = user_json(db, household)?;
    body["consent"] = consent::load(db, household)?.json();
    Ok(body)
}

/// `GET /api/household` \[2\]: the household's [`view`]; once anonymized, `user` and `address`
/// are `null` and the location is the displaced one with its `displacement`.
pub fn get(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    Ok(json_response(200, &view(db, &participant.household)?))
}

/// `GET /api/household/pv_system` \[9\]: `{"household","pv_systems":[…]}`.
pub fn list_pv_systems(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    let pv_systems = registration::pv_systems_json(db, &participant.household)?;
    Ok(json_response(
        200,
        &json!({ "household": participant.household, "pv_systems": pv_systems }),
    ))
}

/// The household's devices, as [`device_json`] shows them, by id.
pub fn devices_of(db: &Db, household: &str) -> ApiResult<Vec<Value>> {
    db.query(
        &format!("SELECT {DEVICE_COLUMNS} FROM measurement_device WHERE household = ? ORDER BY id"),
        &[text(household)],
    )?
    .rows
    .iter()
    .map(|row| device_json(row, 0))
    .collect()
}

/// The household's meters, as [`meter_json`] shows them, by uuid.
pub fn meters_of(db: &Db, household: &str) -> ApiResult<Vec<Value>> {
    db.query(
        &format!("SELECT {METER_COLUMNS} FROM meter WHERE household = ? ORDER BY uuid"),
        &[text(household)],
    )?
    .rows
    .iter()
    .map(|row| meter_json(row, 0))
    .collect()
}

/// `GET /api/household/measurement_device` \[5\]: `{"household","devices":[…]}`.
pub fn list_devices(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    let devices = devices_of(db, &participant.household)?;
    Ok(json_response(
        200,
        &json!({ "household": participant.household, "devices": devices }),
    ))
}

/// `GET /api/household/meter` \[6\]: `{"household","meters":[…]}`.
pub fn list_meters(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    let meters = meters_of(db, &participant.household)?;
    Ok(json_response(
        200,
        &json!({ "household": participant.household, "meters": meters }),
    ))
}

#[derive(Deserialize)]
struct StatusReport {
    #[serde(default)]
    components: BTreeMap<String, String>,
    #[serde(default)]
    last_measurement: Option<String>,
    #[serde(default)]
    meters: Vec<MeterStatus>,
    /// Measurements the device set aside because the Data API refused them, by meter and code.
    #[serde(default)]
    set_aside: Vec<SetAside>,
    /// Whether the device's clock is plausibly set (it measures nothing while it is not).
    #[serde(default)]
    clock_plausible: Option<bool>,
    // Health (`handlers::health`); older devices send none of it.
    #[serde(default)]
    uptime_s: Option<u64>,
    #[serde(default)]
    buffer: Option<health::BufferReport>,
    #[serde(default)]
    free_disk_bytes: Option<u64>,
    /// The device's clock when it sent the report (the cloud derives the skew).
    #[serde(default)]
    device_time: Option<String>,
    #[serde(default)]
    update: Option<health::UpdateReport>,
}

#[derive(Deserialize)]
struct SetAside {
    meter: String,
    code: String,
    count: u64,
}

#[derive(Deserialize)]
struct MeterStatus {
    uuid: String,
    locked: bool,
    #[serde(default)]
    missing: Vec<String>,
    /// When the meter's newest telegram arrived.
    #[serde(default)]
    last_reading: Option<String>,
    #[serde(default)]
    probe: Option<health::ProbeReport>,
}

const MAX_COMPONENTS: usize = 64;
const MAX_METERS: usize = 64;
const MAX_SET_ASIDE: usize = 256;

/// `PUT /api/household/measurement_device/status` (device): the device's component versions,
/// last measurement and each of its meters' state (factory-locked, expected OBIS codes missing);
/// the measurements it set aside because the Data API refused them (`set_aside`: by meter, any
/// meter, and refusal code) and whether its clock is plausibly set, kept as the device's
/// `status`; its health (uptime, buffer, free disk, clock, per meter the last reading and probe
/// statistics, the update agent's state: `handlers::health`) as the latest and in the history.
/// 204, or 200 `{"diagnostics":{"id","requested_at","expires_at"}}` when an administrator asked
/// for a diagnostics bundle; 403 for a meter status of a meter not wired to the calling device.
pub fn put_status(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let caller = auth::device(req, env)?;
    let report: StatusReport = json_body(req.body())?;
    if report.components.len() > MAX_COMPONENTS {
        return Err(bad(format!("components: at most {MAX_COMPONENTS} entries")));
    }
    for (name, version) in &report.components {
        let name_ok = (1..=64).contains(&name.len())
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/')
            });
        if !name_ok {
            return Err(bad(format!("components: {name:?} is not a component name")));
        }
        if !(1..=64).contains(&version.len()) || version.chars().any(char::is_control) {
            return Err(bad(format!(
                "components.{name}: {version:?} is not a version"
            )));
        }
    }
    let last_measurement = report
        .last_measurement
        .as_deref()
        .map(timestamp::parse)
        .transpose()
        .map_err(|e| e.at("last_measurement"))?
        .map(timestamp::to_db);
    if report.meters.len() > MAX_METERS {
        return Err(bad(format!("meters: at most {MAX_METERS} entries")));
    }
    let mut device_status = device_status(&report)?;
    let mut statuses = Vec::with_capacity(report.meters.len());
    let mut seen = BTreeSet::new();
    for (i, meter) in report.meters.iter().enumerate() {
        let uuid = validate::uuid(&format!("meters[{i}].uuid"), &meter.uuid)?;
        if !seen.insert(uuid.clone()) {
            return Err(bad(format!("meters[{i}].uuid: {uuid} appears twice")));
        }
        if meter.missing.len() > 256 {
            return Err(bad(format!("meters[{i}].missing: at most 256 OBIS codes")));
        }
        if let Some(code) = meter.missing.iter().find(|c| !validate::is_obis(c)) {
            return Err(bad(format!(
                "meters[{i}].missing: {code:?} is not an OBIS code (12 lower-case hex digits)"
            )));
        }
        statuses.push((uuid, meter.locked, meter.missing.clone()));
    }
    let health = health::health_json(&health::Health {
        components: &report.components,
        uptime_s: report.uptime_s,
        buffer: report.buffer.as_ref(),
        free_disk_bytes: report.free_disk_bytes,
        clock_plausible: report.clock_plausible,
        device_time: report.device_time.as_deref(),
        meters: statuses
            .iter()
            .zip(&report.meters)
            .map(|((uuid, ..), m)| (uuid.clone(), m.last_reading.as_deref(), m.probe.as_ref()))
            .collect(),
        update: report.update.as_ref(),
    })?;
    let reported_at = timestamp::to_db(timestamp::now());
    if let Some(health) = &health {
        device_status["health"] = health.clone();
    }

    // Only the caller's own meters, wired to the calling device.
    if !statuses.is_empty() {
        let mut params = vec![text(&caller.household), text(&caller.device)];
        params.extend(statuses.iter().map(|(uuid, ..)| text(uuid)));
        let own = db.query(
            &format!(
                "SELECT uuid FROM meter WHERE household = ? AND device = ? AND uuid IN ({})",
                placeholders(statuses.len())
            ),
            &params,
        )?;
        let own: BTreeSet<String> = own.rows.iter().filter_map(|r| col_text(r, 0)).collect();
        if let Some((uuid, ..)) = statuses.iter().find(|(uuid, ..)| !own.contains(uuid)) {
            return Err(ApiError::refused(
                RefusalCode::MeterNotWired,
                format!("meter {uuid} is not wired to this device"),
            ));
        }
    }

    let components = serde_json::to_string(&report.components)
        .map_err(|e| ApiError::Internal(format!("serialising components: {e}")))?;
    db.exec(
        "UPDATE measurement_device
         SET component_versions = ?1,
             last_measurement = NULLIF(MAX(COALESCE(last_measurement, ''), COALESCE(?2, '')), ''),
             status = ?3
         WHERE id = ?4",
        &[
            text(components),
            last_measurement.map_or(Sql::Null, text),
            text(device_status.to_string()),
            text(&caller.device),
        ],
    )?;
    if let Some(health) = &health {
        health::record(db, &caller.device, &reported_at, health)?;
    }
    let reported_at = timestamp::db_to_api(Some(reported_at));
    for (uuid, locked, missing) in statuses {
        let status = json!({ "locked": locked, "missing": missing, "reported_at": reported_at });
        db.exec(
            "UPDATE meter SET status = ? WHERE uuid = ? AND device = ?",
            &[text(status.to_string()), text(uuid), text(&caller.device)],
        )?;
    }
    match health::pending_request(db, &caller.device)? {
        Some(request) => Ok(json_response(200, &json!({ "diagnostics": request }))),
        None => Ok(no_content()),
    }
}

/// The device-wide part of a status report, checked, as it is stored.
fn device_status(report: &StatusReport) -> ApiResult<Value> {
    if report.set_aside.len() > MAX_SET_ASIDE {
        return Err(bad(format!("set_aside: at most {MAX_SET_ASIDE} entries")));
    }
    let mut set_aside = Vec::with_capacity(report.set_aside.len());
    for (i, entry) in report.set_aside.iter().enumerate() {
        // Any meter: the Data API may refuse a meter precisely because it does not know it.
        let meter = validate::uuid(&format!("set_aside[{i}].meter"), &entry.meter)?;
        let code_ok = (1..=64).contains(&entry.code.len())
            && entry
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_');
        if !code_ok {
            return Err(bad(format!(
                "set_aside[{i}].code: {:?} is not a refusal code",
                entry.code
            )));
        }
        let count = i64::try_from(entry.count)
            .map_err(|_| bad(format!("set_aside[{i}].count: too large")))?;
        set_aside.push(json!({ "meter": meter, "code": entry.code, "count": count }));
    }
    Ok(json!({
        "set_aside": set_aside,
        "clock_plausible": report.clock_plausible,
        "reported_at": timestamp::to_api(timestamp::now()),
    }))
}
