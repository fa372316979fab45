//! Measurements: devices upload batches \[8\], participants read their meters' series \[7\].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wattlet_survey::measurement::MAX_BATCH;
use wattlet_survey::{RefusalCode, Use};

use crate::auth;
use crate::db::{Value as Sql, col_json, col_required, col_text, placeholders, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent;
use crate::http::{Request, Response, json_response};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad, json_body};

/// At most this many readings (`{"<obis>": value}` entries) per measurement.
const MAX_READINGS: usize = 256;

#[derive(Deserialize)]
struct Upload {
    measurements: Vec<Incoming>,
}

#[derive(Deserialize)]
struct Incoming {
    uuid: String,
    meter: String,
    measured_at: String,
    data: Value,
}

struct Checked {
    /// The uuid as the device sent it (acknowledged verbatim, so a device finds its own ids).
    sent: String,
    /// The uuid lower-case hyphenated: what is stored and compared.
    uuid: String,
    meter: String,
    measured_at: String,
    data: String,
}

/// `POST /api/household/meter/measurement` \[8\] (device).
///
/// Checks, in order, each failure storing nothing: the device (401/403); consent permitting
/// [`Use::Upload`] (403 `consent_not_granted` / `consent_revoked`); the body (400: at most [`MAX_BATCH`]
/// measurements, UUIDs, RFC 3339 times, `data` a non-empty array of objects with OBIS keys of 12
/// lower-case hex digits and numeric values); every meter belongs to the caller's household and
/// is wired to the calling device (403 `meter_not_wired`); no uuid is stored for another meter (409). Then the new
/// measurements are inserted in one statement (one transaction); uuids already stored for the
/// same meter are acknowledged again without a second row. 200 `{"acknowledged":[uuid…]}` in
/// request order, each as the device sent it (UUIDs are compared case-insensitively).
pub fn upload(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let caller = auth::device(req, env)?;
    consent::require(consent::load(db, &caller.household)?.state, Use::Upload)?;
    let upload: Upload = json_body(req.body())?;
    if upload.measurements.len() > MAX_BATCH {
        return Err(bad(format!(
            "measurements: at most {MAX_BATCH} per batch, got {}",
            upload.measurements.len()
        )));
    }
    let mut batch = Vec::with_capacity(upload.measurements.len());
    for (i, m) in upload.measurements.into_iter().enumerate() {
        batch.push(check(i, m)?);
    }
    if batch.is_empty() {
        return Ok(json_response(200, &json!({ "acknowledged": [] })));
    }

    // The batch itself: one meter per uuid.
    let mut first: HashMap<&str, &str> = HashMap::new();
    for m in &batch {
        if let Some(meter) = first.insert(&m.uuid, &m.meter)
            && meter != m.meter
        {
            return Err(bad(format!(
                "measurement {} appears twice with different meters",
                m.uuid
            )));
        }
    }

    // Every meter: the caller's household, wired to the calling device.
    let meters: BTreeSet<&str> = batch.iter().map(|m| m.meter.as_str()).collect();
    let params: Vec<Sql> = meters.iter().map(|m| text(*m)).collect();
    let rows = db.query(
        &format!(
            "SELECT uuid, household, device FROM meter WHERE uuid IN ({})",
            placeholders(params.len())
        ),
        &params,
    )?;
    let known: HashMap<String, (String, Option<String>)> = rows
        .rows
        .iter()
        .filter_map(|r| Some((col_text(r, 0)?, (col_text(r, 1)?, col_text(r, 2)))))
        .collect();
    for meter in &meters {
        let Some((_, device)) = known
            .get(*meter)
            .filter(|(household, _)| *household == caller.household)
        else {
            return Err(ApiError::refused(
                RefusalCode::MeterNotWired,
                format!("meter {meter} does not belong to this household"),
            ));
        };
        if device.as_deref() != Some(caller.device.as_str()) {
            return Err(ApiError::refused(
                RefusalCode::MeterNotWired,
                format!("meter {meter} is not wired to this device"),
            ));
        }
    }

    // Idempotency: uuids already stored.
    let uuids: Vec<Sql> = first.keys().map(|u| text(*u)).collect();
    let rows = db.query(
        &format!(
            "SELECT uuid, meter FROM measurement WHERE uuid IN ({})",
            placeholders(uuids.len())
        ),
        &uuids,
    )?;
    let mut stored = BTreeSet::new();
    for row in &rows.rows {
        let uuid = col_required(row, 0)?;
        let meter = col_required(row, 1)?;
        if first.get(uuid.as_str()).is_some_and(|m| *m != meter) {
            return Err(ApiError::conflict(format!(
                "measurement {uuid} is already stored for another meter"
            )));
        }
        stored.insert(uuid);
    }

    let received_at = timestamp::to_db(timestamp::now());
    let mut params = Vec::new();
    let mut rows = 0;
    let mut inserted = BTreeSet::new();
    for m in &batch {
        if stored.contains(&m.uuid) || !inserted.insert(m.uuid.as_str()) {
            continue;
        }
        params.extend([
            text(&m.uuid),
            text(&m.meter),
            text(&m.measured_at),
            text(&m.data),
            text(&received_at),
        ]);
        rows += 1;
    }
    if rows > 0 {
        let values = vec!["(?, ?, ?, ?, ?)"; rows].join(", ");
        let sql = format!(
            "INSERT INTO measurement (uuid, meter, measured_at, data, received_at) VALUES {values}"
        );
        match db.try_query(&sql, &params) {
            Ok(_) => {}
            // Another request stored one of these uuids meanwhile; nothing of this batch was
            // stored, and a retry acknowledges or refuses each uuid as above.
            Err(e) if e.is_unique_violation() => {
                return Err(ApiError::conflict(
                    "a measurement of this batch was stored concurrently; retry",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }

    if let Some(latest) = batch.iter().map(|m| m.measured_at.as_str()).max() {
        db.exec(
            "UPDATE measurement_device
             SET last_measurement = MAX(COALESCE(last_measurement, ''), ?1)
             WHERE id = ?2",
            &[text(latest), text(&caller.device)],
        )?;
    }
    let acknowledged: Vec<&str> = batch.iter().map(|m| m.sent.as_str()).collect();
    Ok(json_response(200, &json!({ "acknowledged": acknowledged })))
}

/// Validates one incoming measurement; `data` comes back as normalised JSON text.
fn check(i: usize, m: Incoming) -> ApiResult<Checked> {
    let at = |field: &str| format!("measurements[{i}].{field}");
    let uuid = validate::uuid(&at("uuid"), &m.uuid)?;
    let sent = m.uuid;
    let meter = validate::uuid(&at("meter"), &m.meter)?;
    let measured_at = timestamp::parse(&m.measured_at).map_err(|e| e.at(&at("measured_at")))?;
    let Value::Array(entries) = m.data else {
        return Err(bad(format!(
            "{}: must be an array of {{\"<obis>\": value}}",
            at("data")
        )));
    };
    if entries.is_empty() || entries.len() > MAX_READINGS {
        return Err(bad(format!(
            "{}: 1–{MAX_READINGS} readings required",
            at("data")
        )));
    }
    let mut data = Vec::with_capacity(entries.len());
    for (j, entry) in entries.into_iter().enumerate() {
        let Value::Object(map) = entry else {
            return Err(bad(format!("{}[{j}]: must be an object", at("data"))));
        };
        if map.is_empty() {
            return Err(bad(format!("{}[{j}]: must not be empty", at("data"))));
        }
        let mut checked = Map::new();
        for (key, value) in map {
            if !validate::is_obis(&key) {
                return Err(bad(format!(
                    "{}[{j}]: {key:?} is not an OBIS code (12 lower-case hex digits)",
                    at("data")
                )));
            }
            match value.as_f64() {
                Some(v) if v.is_finite() => {}
                _ => {
                    return Err(bad(format!(
                        "{}[{j}].{key}: {value} is not a finite number",
                        at("data")
                    )));
                }
            }
            checked.insert(key, value);
        }
        data.push(Value::Object(checked));
    }
    let data = serde_json::to_string(&data)
        .map_err(|e| ApiError::Internal(format!("serialising measurement data: {e}")))?;
    Ok(Checked {
        sent,
        uuid,
        meter,
        measured_at: timestamp::to_db(measured_at),
        data,
    })
}

/// `GET /api/household/meter/:uuid/measurement` \[7\] (participant): the meter's measurements
/// with `from` ≤ measured_at < `to` (both optional, RFC 3339, percent-encode a `+` offset),
/// at most `limit` (default 1000, at most 10000), ordered by measured_at then uuid.
/// `{"meter","measurements":[{"uuid","measured_at","data"}]}`; 404 for any meter that is not the
/// caller's own, so other meters' existence does not leak.
pub fn read(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let db = &env.db;
    let meter = auth::own_meter(req, env, meter)?;

    let mut from = None;
    let mut to = None;
    let mut limit = validate::DEFAULT_LIMIT;
    for (key, value) in query_pairs(req.query())? {
        match key.as_str() {
            "from" => from = Some(timestamp::parse(&value).map_err(|e| e.at("from"))?),
            "to" => to = Some(timestamp::parse(&value).map_err(|e| e.at("to"))?),
            "limit" => limit = validate::limit(&value)?,
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (from, to, limit)"
                )));
            }
        }
    }
    let mut sql = String::from("SELECT uuid, measured_at, data FROM measurement WHERE meter = ?");
    let mut params = vec![text(&meter)];
    if let Some(from) = from {
        sql.push_str(" AND measured_at >= ?");
        params.push(text(timestamp::to_db(from)));
    }
    if let Some(to) = to {
        sql.push_str(" AND measured_at < ?");
        params.push(text(timestamp::to_db(to)));
    }
    sql.push_str(" ORDER BY measured_at, uuid LIMIT ?");
    params.push(Sql::Integer(limit));
    let rows = db.query(&sql, &params)?;
    let mut measurements = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        measurements.push(json!({
            "uuid": col_required(row, 0)?,
            "measured_at": timestamp::db_to_api(col_text(row, 1)),
            "data": col_json(row, 2),
        }));
    }
    Ok(json_response(
        200,
        &json!({ "meter": meter, "measurements": measurements }),
    ))
}

/// `a=1&b=2` with percent-decoding (`+` stays `+`, so RFC 3339 offsets survive unencoded).
pub(crate) fn query_pairs(query: &str) -> ApiResult<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut seen = BTreeMap::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode(key)?;
        let value = percent_decode(value)?;
        if seen.insert(key.clone(), ()).is_some() {
            return Err(bad(format!("query parameter {key:?} given twice")));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn percent_decode(s: &str) -> ApiResult<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("malformed percent-encoding in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("query {s:?} is not UTF-8")))
}
