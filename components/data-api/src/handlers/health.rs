//! Device health (the status report's health part, its history and the administrators' fleet
//! view) and remote diagnostics bundles.
//!
//! - Each status report's health is kept as the device's latest (`measurement_device.status`,
//!   `health`) and appended to `device_health`, bounded per device to the newest
//!   [`HISTORY_MAX_REPORTS`] reports and none older than [`HISTORY_DAYS`] days.
//! - A device is `silent` when it is not revoked and its last report (or, never having reported,
//!   its registration) is older than the window (`silent_after`, default [`SILENT_AFTER_S`]:
//!   two report cycles of the longest allowed 60 min).
//! - Diagnostics: an administrator requests a bundle; the device learns of it in the answer to
//!   its next status report and uploads it; it is readable until it expires, after which it is
//!   deleted. A new request replaces one not yet answered; at most [`MAX_BUNDLES`] answered
//!   ones are kept per device.
//!
//! Health and bundles carry no readings. Anonymization deletes both for the household's
//! devices ([`forget_household`]): they are keyed by the device id and bundles hold logs.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::db::{Db, Value as Sql, col_json, col_required, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::measurement::query_pairs;
use crate::http::{Request, Response, json_response, no_content};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad, json_body};

/// Reports kept per device at most.
pub const HISTORY_MAX_REPORTS: i64 = 500;
/// Reports older than this many days are deleted.
pub const HISTORY_DAYS: i64 = 14;
/// Default silence window: two report cycles of 60 min.
pub const SILENT_AFTER_S: i64 = 7200;
/// Default lifetime of a diagnostics request and its bundle: 7 days.
pub const DIAGNOSTICS_EXPIRE_S: i64 = 7 * 86_400;
/// Longest lifetime an administrator may ask for: 30 days.
const DIAGNOSTICS_MAX_EXPIRE_S: i64 = 30 * 86_400;
/// Answered bundles kept per device at most.
pub const MAX_BUNDLES: i64 = 5;
/// A diagnostics upload's body may not be larger.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
const MAX_LOG_LINES: usize = 1000;
const MAX_LOG_LINE: usize = 2048;
const MAX_ENTRIES: usize = 256;

/// The update agent's state as a device reports it (`update` in the status report).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateReport {
    pub state: String,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferReport {
    pub unsent: u64,
    pub set_aside: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeReport {
    #[serde(default)]
    pub telegrams: u64,
    #[serde(default)]
    pub parser_failures: u64,
    #[serde(default)]
    pub skipped_bytes: u64,
    #[serde(default)]
    pub skipped_frames: u64,
}

/// What a status report says about the device's health; every part optional (older devices
/// report none of it).
pub struct Health<'a> {
    pub components: &'a std::collections::BTreeMap<String, String>,
    pub uptime_s: Option<u64>,
    pub buffer: Option<&'a BufferReport>,
    pub free_disk_bytes: Option<u64>,
    pub clock_plausible: Option<bool>,
    pub device_time: Option<&'a str>,
    /// Per meter: uuid (checked), last reading, probe statistics.
    pub meters: Vec<(String, Option<&'a str>, Option<&'a ProbeReport>)>,
    pub update: Option<&'a UpdateReport>,
}

/// JSON numbers the database keeps exactly.
fn count(field: &str, n: u64) -> ApiResult<i64> {
    i64::try_from(n).map_err(|_| bad(format!("{field}: too large")))
}

/// `[a-z_]{1,32}`: an update state.
fn is_token(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Text for people, 1–`max` bytes without control characters.
fn short_text(field: &str, s: &str, max: usize) -> ApiResult<String> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(bad(format!(
            "{field}: 1–{max} bytes without control characters"
        )));
    }
    Ok(s.to_owned())
}

fn rfc3339(field: &str, s: Option<&str>) -> ApiResult<Option<time::OffsetDateTime>> {
    s.map(timestamp::parse).transpose().map_err(|e| e.at(field))
}

/// The health as it is stored and shown, checked. `None` for a report without any health part.
pub fn health_json(health: &Health<'_>) -> ApiResult<Option<Value>> {
    let has_meter_health = health
        .meters
        .iter()
        .any(|(_, last, probe)| last.is_some() || probe.is_some());
    if health.uptime_s.is_none()
        && health.buffer.is_none()
        && health.free_disk_bytes.is_none()
        && health.device_time.is_none()
        && health.update.is_none()
        && !has_meter_health
    {
        return Ok(None);
    }
    let now = timestamp::now();
    let uptime_s = health.uptime_s.map(|u| count("uptime_s", u)).transpose()?;
    let buffer = match health.buffer {
        Some(b) => json!({
            "unsent": count("buffer.unsent", b.unsent)?,
            "set_aside": count("buffer.set_aside", b.set_aside)?,
        }),
        None => Value::Null,
    };
    let free_disk_bytes = health
        .free_disk_bytes
        .map(|f| count("free_disk_bytes", f))
        .transpose()?;
    let device_time = rfc3339("device_time", health.device_time)?;
    // Positive: the device's clock is ahead of the cloud's.
    let skew_s = device_time.map(|t| (t - now).whole_seconds());
    let mut meters = Vec::with_capacity(health.meters.len());
    for (i, (uuid, last, probe)) in health.meters.iter().enumerate() {
        let last_reading = rfc3339(&format!("meters[{i}].last_reading"), *last)?;
        let probe = match probe {
            Some(p) => json!({
                "telegrams": count(&format!("meters[{i}].probe.telegrams"), p.telegrams)?,
                "parser_failures": count(&format!("meters[{i}].probe.parser_failures"), p.parser_failures)?,
                "skipped_bytes": count(&format!("meters[{i}].probe.skipped_bytes"), p.skipped_bytes)?,
                "skipped_frames": count(&format!("meters[{i}].probe.skipped_frames"), p.skipped_frames)?,
            }),
            None => Value::Null,
        };
        meters.push(json!({
            "uuid": uuid,
            "last_reading": last_reading.map(timestamp::to_api),
            "probe": probe,
        }));
    }
    let update = match health.update {
        Some(u) => {
            if !is_token(&u.state) {
                return Err(bad(format!(
                    "update.state: {:?} is not an update state ([a-z_], 1–32 characters)",
                    u.state
                )));
            }
            let component = u
                .component
                .as_deref()
                .map(|c| short_text("update.component", c, 64))
                .transpose()?;
            let from = u
                .from
                .as_deref()
                .map(|v| short_text("update.from", v, 64))
                .transpose()?;
            let to =
                u.to.as_deref()
                    .map(|v| short_text("update.to", v, 64))
                    .transpose()?;
            let reason = u
                .reason
                .as_deref()
                .map(|r| short_text("update.reason", r, 512))
                .transpose()?;
            // Only what was reported: absent stays absent.
            let mut update = json!({ "state": u.state });
            for (key, value) in [
                ("component", component),
                ("from", from),
                ("to", to),
                ("reason", reason),
            ] {
                if let Some(value) = value {
                    update[key] = json!(value);
                }
            }
            update
        }
        None => Value::Null,
    };
    Ok(Some(json!({
        "components": health.components,
        "uptime_s": uptime_s,
        "buffer": buffer,
        "free_disk_bytes": free_disk_bytes,
        "clock": {
            "plausible": health.clock_plausible,
            "device_time": device_time.map(timestamp::to_api),
            "skew_s": skew_s,
        },
        "meters": meters,
        "update": update,
    })))
}

/// Appends a report's health to the device's history and trims the history to its bounds.
pub fn record(db: &Db, device: &str, reported_at: &str, health: &Value) -> ApiResult<()> {
    let update_state = health["update"]["state"].as_str().map(text);
    db.exec(
        "INSERT OR REPLACE INTO device_health (device, reported_at, update_state, health)
         VALUES (?, ?, ?, ?)",
        &[
            text(device),
            text(reported_at),
            update_state.unwrap_or(Sql::Null),
            text(health.to_string()),
        ],
    )?;
    let oldest = timestamp::to_db(timestamp::now() - time::Duration::days(HISTORY_DAYS));
    db.exec(
        "DELETE FROM device_health WHERE device = ?1 AND (reported_at < ?2 OR reported_at <
            (SELECT reported_at FROM device_health WHERE device = ?1
             ORDER BY reported_at DESC LIMIT 1 OFFSET ?3))",
        &[
            text(device),
            text(oldest),
            Sql::Integer(HISTORY_MAX_REPORTS - 1),
        ],
    )?;
    Ok(())
}

/// Deletes the health history and diagnostics of a household's devices (anonymization).
pub fn forget_household(db: &Db, household: &str) -> ApiResult<()> {
    for table in ["device_health", "device_diagnostics"] {
        db.exec(
            &format!(
                "DELETE FROM {table} WHERE device IN
                 (SELECT id FROM measurement_device WHERE household = ?)"
            ),
            &[text(household)],
        )?;
    }
    Ok(())
}

/// Deletes expired diagnostics requests and bundles.
fn expire_diagnostics(db: &Db) -> ApiResult<()> {
    db.exec(
        "DELETE FROM device_diagnostics WHERE expires_at <= ?",
        &[text(timestamp::to_db(timestamp::now()))],
    )
}

/// The diagnostics request the device has not answered yet, as the status report's answer
/// carries it: `{"id","requested_at","expires_at"}`.
pub fn pending_request(db: &Db, device: &str) -> ApiResult<Option<Value>> {
    expire_diagnostics(db)?;
    let rows = db.query(
        "SELECT id, requested_at, expires_at FROM device_diagnostics
         WHERE device = ? AND uploaded_at IS NULL ORDER BY requested_at DESC LIMIT 1",
        &[text(device)],
    )?;
    rows.rows
        .first()
        .map(|row| {
            Ok(json!({
                "id": col_required(row, 0)?,
                "requested_at": timestamp::db_to_api(col_text(row, 1)),
                "expires_at": timestamp::db_to_api(col_text(row, 2)),
            }))
        })
        .transpose()
}

/// A device id from the path, as stored (its pseudonym once anonymized); 404 otherwise.
fn known_device(env: &Env, id: &str) -> ApiResult<String> {
    let not_found = || ApiError::not_found("no such device");
    let id = validate::device_id("device", id).map_err(|_| not_found())?;
    auth::stored_device_id(env, &id)?.ok_or_else(not_found)
}

fn seconds_param(name: &str, value: &str, min: i64, max: i64) -> ApiResult<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|s| (min..=max).contains(s))
        .ok_or_else(|| {
            bad(format!(
                "{name}: {value:?} is not a number of seconds in {min}–{max}"
            ))
        })
}

/// `GET /api/management/devices?silent_after=<s>` (administrators): every device with its
/// latest health and whether it is `silent`. 200 `{"silent_after_s","devices":[…]}`.
pub fn fleet(req: &Request, env: &Env) -> ApiResult<Response> {
    auth::administrator(req, env, false)?;
    let mut silent_after = SILENT_AFTER_S;
    for (key, value) in query_pairs(req.query())? {
        match key.as_str() {
            "silent_after" => {
                silent_after = seconds_param("silent_after", &value, 1, 90 * 86_400)?;
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (silent_after)"
                )));
            }
        }
    }
    let now = timestamp::now();
    let since = timestamp::to_db(now - time::Duration::seconds(silent_after));
    let rows = env.db.query(
        "SELECT id, household, component_versions, last_measurement, last_activity, revoked_at,
                registered_at, status
         FROM measurement_device ORDER BY household, id",
        &[],
    )?;
    let mut devices = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let status = col_json(row, 7);
        let reported_at = status["reported_at"]
            .as_str()
            .and_then(|s| timestamp::parse(s).ok())
            .map(timestamp::to_db);
        let revoked = col_text(row, 5).is_some();
        let last_sign = reported_at.clone().or_else(|| col_text(row, 6));
        let silent = !revoked && last_sign.is_none_or(|t| t < since);
        devices.push(json!({
            "device": col_required(row, 0)?,
            "household": col_required(row, 1)?,
            "component_versions": col_json(row, 2),
            "last_measurement": timestamp::db_to_api(col_text(row, 3)),
            "last_activity": timestamp::db_to_api(col_text(row, 4)),
            "revoked_at": timestamp::db_to_api(col_text(row, 5)),
            "registered_at": timestamp::db_to_api(col_text(row, 6)),
            "reported_at": timestamp::db_to_api(reported_at),
            "silent": silent,
            "clock_plausible": status["clock_plausible"],
            "set_aside": status.get("set_aside").cloned().unwrap_or(json!([])),
            "health": status.get("health").cloned().unwrap_or(Value::Null),
        }));
    }
    Ok(json_response(
        200,
        &json!({ "silent_after_s": silent_after, "devices": devices }),
    ))
}

/// `GET /api/management/device/:id/health?from&to` (administrators): the device's kept reports,
/// oldest first, `from` ≤ reported_at < `to`. 200 `{"device","reports":[{"reported_at",…}]}`.
pub fn history(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    auth::administrator(req, env, false)?;
    let device = known_device(env, id)?;
    let mut sql = String::from("SELECT reported_at, health FROM device_health WHERE device = ?");
    let mut params = vec![text(&device)];
    for (key, value) in query_pairs(req.query())? {
        let op = match key.as_str() {
            "from" => ">=",
            "to" => "<",
            other => return Err(bad(format!("unknown query parameter {other:?} (from, to)"))),
        };
        let t = timestamp::parse(&value).map_err(|e| e.at(&key))?;
        sql.push_str(&format!(" AND reported_at {op} ?"));
        params.push(text(timestamp::to_db(t)));
    }
    sql.push_str(" ORDER BY reported_at");
    let rows = env.db.query(&sql, &params)?;
    let mut reports = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let mut health = col_json(row, 1);
        health["reported_at"] = json!(timestamp::db_to_api(col_text(row, 0)));
        reports.push(health);
    }
    Ok(json_response(
        200,
        &json!({ "device": device, "reports": reports }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DiagnosticsRequest {
    #[serde(default)]
    expires_in_s: Option<i64>,
}

/// `POST /api/management/device/:id/diagnostics` (administrators), body optional
/// `{"expires_in_s"}` (60 s – 30 days, default 7 days): asks the device for a bundle at its
/// next report. Replaces a request it has not answered yet. 201 `{"id","device",
/// "requested_at","expires_at"}`; 409 for a revoked device.
pub fn request_diagnostics(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    auth::administrator(req, env, true)?;
    let device = known_device(env, id)?;
    let body: DiagnosticsRequest = if req.body().is_empty() {
        DiagnosticsRequest::default()
    } else {
        json_body(req.body())?
    };
    let expires_in = body.expires_in_s.unwrap_or(DIAGNOSTICS_EXPIRE_S);
    if !(60..=DIAGNOSTICS_MAX_EXPIRE_S).contains(&expires_in) {
        return Err(bad(format!(
            "expires_in_s: {expires_in} is not in 60–{DIAGNOSTICS_MAX_EXPIRE_S}"
        )));
    }
    let revoked = env.db.query(
        "SELECT 1 FROM measurement_device WHERE id = ? AND revoked_at IS NOT NULL",
        &[text(&device)],
    )?;
    if !revoked.rows.is_empty() {
        return Err(ApiError::conflict(
            "the device is revoked: it reports no more",
        ));
    }
    expire_diagnostics(&env.db)?;
    env.db.exec(
        "DELETE FROM device_diagnostics WHERE device = ? AND uploaded_at IS NULL",
        &[text(&device)],
    )?;
    let now = timestamp::now();
    let request = uuid::Uuid::new_v4().to_string();
    let requested_at = timestamp::to_db(now);
    let expires_at = timestamp::to_db(now + time::Duration::seconds(expires_in));
    env.db.exec(
        "INSERT INTO device_diagnostics (id, device, requested_at, expires_at) VALUES (?, ?, ?, ?)",
        &[
            text(&request),
            text(&device),
            text(&requested_at),
            text(&expires_at),
        ],
    )?;
    Ok(json_response(
        201,
        &json!({
            "id": request,
            "device": device,
            "requested_at": timestamp::db_to_api(Some(requested_at)),
            "expires_at": timestamp::db_to_api(Some(expires_at)),
        }),
    ))
}

/// `GET /api/management/device/:id/diagnostics` (administrators): the device's unexpired
/// requests, newest first, each with its bundle once uploaded. 200 `{"device","diagnostics":
/// [{"id","requested_at","expires_at","uploaded_at","bundle"}]}`.
pub fn list_diagnostics(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    auth::administrator(req, env, false)?;
    let device = known_device(env, id)?;
    expire_diagnostics(&env.db)?;
    let rows = env.db.query(
        "SELECT id, requested_at, expires_at, uploaded_at, bundle FROM device_diagnostics
         WHERE device = ? ORDER BY requested_at DESC",
        &[text(&device)],
    )?;
    let mut diagnostics = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        diagnostics.push(json!({
            "id": col_required(row, 0)?,
            "requested_at": timestamp::db_to_api(col_text(row, 1)),
            "expires_at": timestamp::db_to_api(col_text(row, 2)),
            "uploaded_at": timestamp::db_to_api(col_text(row, 3)),
            "bundle": col_json(row, 4),
        }));
    }
    Ok(json_response(
        200,
        &json!({ "device": device, "diagnostics": diagnostics }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    request: String,
    bundle: Bundle,
}

/// What a bundle may hold, and nothing else: no readings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    #[serde(default)]
    logs: Vec<String>,
    #[serde(default)]
    config: serde_json::Map<String, Value>,
    #[serde(default)]
    probes: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    skipped: Vec<Skipped>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Skipped {
    meter: String,
    at: String,
    offset: u64,
    length: u64,
    reason: String,
}

/// `PUT /api/household/measurement_device/diagnostics` (device), body `{"request","bundle":
/// {"logs":[…],"config":{…},"probes":[{…}],"skipped":[{"meter","at","offset","length",
/// "reason"}]}}` of at most 256 KiB: the bundle an administrator asked for. 204; 404 when the
/// request is not this device's, has expired or was answered.
pub fn upload_diagnostics(req: &Request, env: &Env) -> ApiResult<Response> {
    let caller = auth::device(req, env)?;
    if req.body().len() > MAX_BUNDLE_BYTES {
        return Err(bad(format!(
            "a diagnostics bundle may be at most {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    let upload: Upload = json_body(req.body())?;
    let request = validate::uuid("request", &upload.request)?;
    let bundle = upload.bundle;
    if bundle.logs.len() > MAX_LOG_LINES {
        return Err(bad(format!("bundle.logs: at most {MAX_LOG_LINES} lines")));
    }
    if let Some(i) = bundle.logs.iter().position(|l| l.len() > MAX_LOG_LINE) {
        return Err(bad(format!(
            "bundle.logs[{i}]: at most {MAX_LOG_LINE} bytes"
        )));
    }
    if bundle.probes.len() > MAX_ENTRIES || bundle.skipped.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "bundle.probes, bundle.skipped: at most {MAX_ENTRIES} entries"
        )));
    }
    for (i, s) in bundle.skipped.iter().enumerate() {
        validate::uuid(&format!("bundle.skipped[{i}].meter"), &s.meter)?;
        timestamp::parse(&s.at).map_err(|e| e.at(&format!("bundle.skipped[{i}].at")))?;
        // The parser's reasons: `garbage`, `checksum-mismatch`, …
        let reason_ok = is_token(&s.reason.replace('-', "_"));
        if !reason_ok {
            return Err(bad(format!(
                "bundle.skipped[{i}].reason: {:?} is not a reason",
                s.reason
            )));
        }
    }
    expire_diagnostics(&env.db)?;
    let stored = json!({
        "logs": bundle.logs,
        "config": bundle.config,
        "probes": bundle.probes,
        "skipped": bundle.skipped,
    });
    let updated = env.db.query(
        "UPDATE device_diagnostics SET uploaded_at = ?, bundle = ?
         WHERE id = ? AND device = ? AND uploaded_at IS NULL RETURNING id",
        &[
            text(timestamp::to_db(timestamp::now())),
            text(stored.to_string()),
            text(&request),
            text(&caller.device),
        ],
    )?;
    if updated.rows.is_empty() {
        return Err(ApiError::not_found(
            "no open diagnostics request of this device has this id",
        ));
    }
    env.db.exec(
        "DELETE FROM device_diagnostics WHERE device = ?1 AND uploaded_at IS NOT NULL AND id NOT IN
            (SELECT id FROM device_diagnostics WHERE device = ?1 AND uploaded_at IS NOT NULL
             ORDER BY uploaded_at DESC LIMIT ?2)",
        &[text(&caller.device), Sql::Integer(MAX_BUNDLES)],
    )?;
    Ok(no_content())
}
