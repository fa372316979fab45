//! Measurements: devices upload batches \[8\], participants read their meters' series \[7\].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use wattlet_survey::measurement::MAX_BATCH;
use wattlet_survey::{RefusalCode, Use};

use crate::access_log;
use crate::auth;
use crate::db::{Db, Value as Sql, col_json, col_required, col_text, placeholders, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent;
use crate::handlers::export_copy;
use crate::http::{Request, Response, json_response};
use crate::policy::{self, Role as PolicyRole};
use crate::services::Env;
use crate::timestamp::{self, SQL_NOW};
use crate::validate::{self, bad, json_body};

/// At most this many readings (`{"<obis>": value}` entries) per measurement.
const MAX_READINGS: usize = 256;

#[derive(Deserialize)]
struct Upload {
    /// Read one by one, so that one malformed measurement is refused on its own.
    measurements: Vec<Value>,
}

#[derive(Deserialize)]
struct Incoming {
    uuid: String,
    meter: String,
    measured_at: String,
    data: Value,
}

pub(crate) struct Checked {
    /// Its index in the batch.
    index: usize,
    /// The uuid as the device sent it (acknowledged verbatim, so a device finds its own ids).
    sent: String,
    /// The uuid lower-case hyphenated: what is stored and compared.
    pub(crate) uuid: String,
    pub(crate) meter: String,
    /// In the database's form.
    pub(crate) measured_at: String,
    data: String,
}

/// Why one measurement of a batch is refused.
struct Refused {
    code: RefusalCode,
    message: String,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

/// What the device and the time of the request allow.
struct Bounds {
    registered: Option<OffsetDateTime>,
    now: OffsetDateTime,
}

/// `POST /api/household/meter/measurement` \[8\] (device).
///
/// Checks the device (401/403), consent permitting [`Use::Upload`] (403 `consent_not_granted` /
/// `consent_revoked`) and the batch (400: a JSON object with at most [`MAX_BATCH`]
/// measurements). Then each measurement on its own: a UUID, an RFC 3339 `measured_at` that is
/// plausible (400 `time_out_of_range`: not before the device's registration less a day, not
/// more than five minutes ahead of the Data API's clock, see [`timestamp::plausible`]), `data` a
/// non-empty array of objects with OBIS keys of 12 lower-case hex digits and numeric values
/// (400 `invalid_request`), a meter of the caller's household wired to the calling device (403
/// `meter_not_wired`), a uuid not stored for another meter (409 `conflict`).
///
/// A batch is stored whole or not at all. When some measurements are refused, nothing is
/// stored and the answer is the first one's refusal with `refused`: every refused measurement
/// as `{"index","uuid","code","error"}`, so a device sets exactly those aside and sends the
/// others again. Otherwise the new measurements are inserted in one statement that also checks
/// the household's consent (a revocation answered before the insert leaves nothing stored,
/// [`consent::require`]'s refusal answers); uuids already stored for the same meter are
/// acknowledged again without a second row. 200 `{"acknowledged":[uuid…]}` in request order,
/// each as the device sent it (UUIDs are compared case-insensitively).
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
    if upload.measurements.is_empty() {
        return Ok(json_response(200, &json!({ "acknowledged": [] })));
    }
    let bounds = Bounds {
        registered: registered_at(db, &caller.device)?,
        now: timestamp::now(),
    };
    let mut sent = Vec::with_capacity(upload.measurements.len());
    let mut outcomes = Vec::with_capacity(upload.measurements.len());
    for (i, m) in upload.measurements.into_iter().enumerate() {
        sent.push(m.get("uuid").and_then(Value::as_str).map(str::to_owned));
        outcomes.push(check(i, m, &bounds).map_err(Refused::from));
    }

    // The batch itself: one meter per uuid.
    let mut first: HashMap<String, String> = HashMap::new();
    for (i, outcome) in outcomes.iter_mut().enumerate() {
        let Ok(m) = outcome else { continue };
        let meter = first
            .entry(m.uuid.clone())
            .or_insert_with(|| m.meter.clone());
        if *meter != m.meter {
            *outcome = Err(Refused {
                code: RefusalCode::InvalidRequest,
                message: format!(
                    "measurements[{i}]: measurement {} appears twice with different meters",
                    m.uuid
                ),
            });
        }
    }

    // Every meter: the caller's household, wired to the calling device.
    let meters: BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|m| m.meter.as_str()))
        .collect();
    let not_wired = unwired(db, &caller, &meters)?;
    // Idempotency: uuids already stored, and for which meter.
    let stored = stored_meters(db, first.keys())?;
    for outcome in &mut outcomes {
        let Ok(m) = outcome else { continue };
        let refusal = if let Some(why) = not_wired.get(&m.meter) {
            Some((RefusalCode::MeterNotWired, why.clone()))
        } else {
            stored
                .get(&m.uuid)
                .filter(|meter| **meter != m.meter)
                .map(|_| {
                    let message =
                        format!("measurement {} is already stored for another meter", m.uuid);
                    (RefusalCode::Conflict, message)
                })
        };
        if let Some((code, message)) = refusal {
            *outcome = Err(Refused { code, message });
        }
    }
    let refused: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let r = o.as_ref().err()?;
            Some(
                json!({ "index": i, "uuid": sent[i], "code": r.code.as_str(), "error": r.message }),
            )
        })
        .collect();
    if let Some(Err(first)) = outcomes.iter().find(|o| o.is_err()) {
        return Err(ApiError::RefusedItems {
            code: first.code,
            message: first.message.clone(),
            refused,
        });
    }
    let batch: Vec<Checked> = outcomes.into_iter().filter_map(Result::ok).collect();

    let fresh: Vec<&Checked> = {
        let mut seen = BTreeSet::new();
        batch
            .iter()
            .filter(|m| !stored.contains_key(&m.uuid) && seen.insert(m.uuid.as_str()))
            .collect()
    };
    let rewritten = written(req, env, &caller, &fresh, &sent)?;
    if !fresh.is_empty() {
        insert(db, &caller, &fresh, &rewritten)?;
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

/// Runs the household's chain of write hooks over the new measurements `fresh` (`sent`: the
/// batch's uuids as sent): the data of those whose readings the chain changed, by index in
/// `fresh` (the others are stored as sent). A deny refuses every one of them, a transform that
/// drops some refuses those (`policy_denied`, so the device sets them aside and sends the
/// others again); a chain that made rows of its own refuses all. A chain that changed anything
/// is logged in the household's access log.
fn written(
    req: &Request,
    env: &Env,
    caller: &auth::Device,
    fresh: &[&Checked],
    sent: &[Option<String>],
) -> ApiResult<HashMap<usize, String>> {
    let chain = policy::chain(
        &env.db,
        Some(&caller.household),
        policy::ObjectKind::Measurements,
    )?;
    if chain.is_empty() || fresh.is_empty() {
        return Ok(HashMap::new());
    }
    let mut selected = Vec::with_capacity(fresh.len());
    for m in fresh {
        let at = timestamp::from_db(Some(&m.measured_at))
            .ok_or_else(|| ApiError::Internal(format!("measurement {}: bad time", m.uuid)))?;
        let data = serde_json::from_str(&m.data)
            .map_err(|e| ApiError::Internal(format!("measurement {}: {e}", m.uuid)))?;
        selected.push(Selected {
            uuid: m.uuid.clone(),
            at: nanos(at),
            measured_at: None,
            data,
        });
    }
    let rows = policy_rows(&selected);
    let (first, last) = (rows.at.iter().min(), rows.at.iter().max());
    let context = policy::Context {
        role: PolicyRole::Participant,
        caveats: Vec::new(),
        purpose: None,
        range: policy::TimeRange {
            from: first.copied(),
            to: last.map(|t| t.saturating_add(1)),
        },
        now: nanos(timestamp::now()),
        peers: None,
    };
    let outcome = policy::run_rows(
        env.policies,
        &chain,
        policy::Hook::Write,
        policy::ObjectKind::Measurements,
        &context,
        rows.clone(),
    );
    let (kept, denied) = match kept_rows(&outcome.rows, fresh.len()) {
        Ok(kept) => (kept, None),
        Err(reason) => (vec![None; fresh.len()], Some(reason)),
    };
    if outcome.transformed || denied.is_some() {
        log_write(req, env, caller, fresh, (&outcome, &kept, &denied))?;
    }
    let reason =
        denied.unwrap_or_else(|| "not stored: the household's write policies drop it".to_owned());
    let refused: Vec<Value> = fresh
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| kept.is_none())
        .map(|(m, _)| {
            let code = RefusalCode::PolicyDenied.as_str();
            json!({ "index": m.index, "uuid": sent[m.index], "code": code, "error": reason })
        })
        .collect();
    if !refused.is_empty() {
        return Err(ApiError::RefusedItems {
            code: RefusalCode::PolicyDenied,
            message: reason,
            refused,
        });
    }
    let Ok(out) = &outcome.rows else {
        return Ok(HashMap::new());
    };
    // Copied first: a crash before the measurements are stored leaves a copy that the device's
    // retry finds there, where the other order would lose it (a stored uuid is not written
    // again).
    export_copy::store(&env.db, &caller.household, fresh, &kept, &outcome.copies)?;
    // Every one kept; a policy may have changed values (e.g. rounded them).
    let mut rewritten = HashMap::new();
    for (i, row) in kept
        .into_iter()
        .enumerate()
        .filter_map(|(i, k)| Some((i, k?)))
    {
        if !out.readings_of(row).eq(rows.readings_of(i)) {
            let data: Vec<Value> = out
                .readings_of(row)
                .map(|(obis, v)| json!({ obis: v }))
                .collect();
            rewritten.insert(i, Value::Array(data).to_string());
        }
    }
    Ok(rewritten)
}

/// Appends what a write chain that changed or refused something did to the household's log.
fn log_write(
    req: &Request,
    env: &Env,
    caller: &auth::Device,
    fresh: &[&Checked],
    (outcome, kept, denied): (&policy::Outcome, &[Option<usize>], &Option<String>),
) -> ApiResult<()> {
    let meters: BTreeSet<&str> = fresh.iter().map(|m| m.meter.as_str()).collect();
    let mut entry = json!({
        "actor": auth::actor(req, env)?,
        "role": PolicyRole::Participant.name(),
        "object": format!("measurements:{}", meters.into_iter().collect::<Vec<_>>().join(",")),
        "operation": "write",
        "policies": outcome.ran,
        "selected": fresh.len(),
        "stored": kept.iter().flatten().count(),
        "decision": if denied.is_some() { "deny" } else { "transform" },
    });
    if let Some(reason) = denied {
        entry["reason"] = json!(reason);
    }
    access_log::append(&env.db, &caller.household, entry)?;
    Ok(())
}

/// Which row of what a write chain returned keeps each of the `inputs` rows it was given
/// (`None`: dropped, also when the policies left it no reading); `Err(reason)` when the chain
/// denied or made rows of its own (only what a device measured is stored).
fn kept_rows(
    rows: &Result<policy::Rows, String>,
    inputs: usize,
) -> Result<Vec<Option<usize>>, String> {
    let out = rows.as_ref().map_err(Clone::clone)?;
    let mut kept = vec![None; inputs];
    for i in 0..out.len() {
        match out.origin[i] {
            Some(o) if out.span[i] == 0 && out.samples[i] == 1 => {
                if out.readings_of(i).next().is_some() {
                    kept[o as usize] = Some(i);
                }
            }
            _ => return Err("the write policies made rows of their own".to_owned()),
        }
    }
    Ok(kept)
}

/// When the device was registered (its household's registration for devices registered
/// before that was recorded).
fn registered_at(db: &Db, device: &str) -> ApiResult<Option<OffsetDateTime>> {
    let rows = db.query(
        "SELECT COALESCE(d.registered_at, h.created_at)
         FROM measurement_device d JOIN household h ON h.id = d.household WHERE d.id = ?",
        &[text(device)],
    )?;
    Ok(rows
        .rows
        .first()
        .and_then(|row| timestamp::from_db(row.get::<&str>(0))))
}

/// The meters among `meters` that are not the caller's household's or not wired to the calling
/// device, each with the reason.
fn unwired(
    db: &Db,
    caller: &auth::Device,
    meters: &BTreeSet<&str>,
) -> ApiResult<HashMap<String, String>> {
    if meters.is_empty() {
        return Ok(HashMap::new());
    }
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
    let mut refused = HashMap::new();
    for meter in meters {
        match known.get(*meter) {
            Some((household, device)) if *household == caller.household => {
                if device.as_deref() != Some(caller.device.as_str()) {
                    refused.insert(
                        (*meter).to_owned(),
                        format!("meter {meter} is not wired to this device"),
                    );
                }
            }
            _ => {
                refused.insert(
                    (*meter).to_owned(),
                    format!("meter {meter} does not belong to this household"),
                );
            }
        }
    }
    Ok(refused)
}

/// The meter each of `uuids` is stored for, for those stored.
fn stored_meters<'a>(
    db: &Db,
    uuids: impl Iterator<Item = &'a String>,
) -> ApiResult<HashMap<String, String>> {
    let params: Vec<Sql> = uuids.map(text).collect();
    if params.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = db.query(
        &format!(
            "SELECT uuid, meter FROM measurement WHERE uuid IN ({})",
            placeholders(params.len())
        ),
        &params,
    )?;
    rows.rows
        .iter()
        .map(|row| Ok((col_required(row, 0)?, col_required(row, 1)?)))
        .collect()
}

/// Inserts `fresh` in one statement that also checks the household's consent, so that a
/// revocation either comes after the insert or leaves nothing stored; `received_at` is the
/// database's clock, as the revocation's `revoked_at` is.
/// `rewritten`: the data a write policy changed, by index in `fresh`.
fn insert(
    db: &Db,
    caller: &auth::Device,
    fresh: &[&Checked],
    rewritten: &HashMap<usize, String>,
) -> ApiResult<()> {
    let mut params = Vec::with_capacity(fresh.len() * 4 + 3);
    for (i, m) in fresh.iter().enumerate() {
        params.extend([
            text(&m.uuid),
            text(&m.meter),
            text(&m.measured_at),
            text(rewritten.get(&i).unwrap_or(&m.data)),
        ]);
    }
    params.push(text(&caller.household));
    let (permitting, states) = consent::permitting("c.state", Use::Upload);
    params.extend(states);
    let values = vec!["(?, ?, ?, ?)"; fresh.len()].join(", ");
    let sql = format!(
        "INSERT INTO measurement (uuid, meter, measured_at, data, received_at)
         SELECT r.column1, r.column2, r.column3, r.column4, {SQL_NOW}
         FROM (VALUES {values}) AS r
         JOIN meter m ON m.uuid = r.column2
         JOIN consent c ON c.household = m.household
         WHERE m.household = ? AND {permitting}
         RETURNING uuid"
    );
    let inserted = match db.try_query(&sql, &params) {
        Ok(rows) => rows.rows.len(),
        // Another request stored one of these uuids meanwhile; nothing of this batch was
        // stored, and a retry acknowledges or refuses each uuid as above.
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::conflict(
                "a measurement of this batch was stored concurrently; retry",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if inserted == fresh.len() {
        return Ok(());
    }
    // The consent changed since it was checked above (every meter is the household's).
    consent::require(consent::load(db, &caller.household)?.state, Use::Upload)?;
    Err(ApiError::conflict(
        "the household's meters changed while the batch was stored; retry",
    ))
}

/// Validates one incoming measurement; `data` comes back as normalised JSON text.
fn check(i: usize, m: Value, bounds: &Bounds) -> ApiResult<Checked> {
    let at = |field: &str| format!("measurements[{i}].{field}");
    let m: Incoming =
        serde_json::from_value(m).map_err(|e| bad(format!("measurements[{i}]: {e}")))?;
    let uuid = validate::uuid(&at("uuid"), &m.uuid)?;
    let sent = m.uuid;
    let meter = validate::uuid(&at("meter"), &m.meter)?;
    let measured_at = timestamp::parse(&m.measured_at)
        .and_then(|t| {
            timestamp::plausible(&m.measured_at, t, bounds.registered, bounds.now).map(|()| t)
        })
        .map_err(|e| e.at(&at("measured_at")))?;
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
        index: i,
        sent,
        uuid,
        meter,
        measured_at: timestamp::to_db(measured_at),
        data,
    })
}

/// `GET /api/household/meter/:uuid/measurement` \[7\] (participant): the meter's measurements
/// with `from` ≤ measured_at < `to` (both optional, RFC 3339, percent-encode a `+` offset),
/// at most `limit` (default 1000, at most 10000) selected, ordered by measured_at then uuid,
/// then the household's policy chain ([`crate::policy`]); `purpose` (optional) is logged and
/// given to the policies. `{"meter","measurements":[{"uuid","measured_at","data"}],"policies"}`
/// (an aggregate: `uuid` null, with `step_seconds` and `samples`); 403 `policy_denied` when a
/// policy denies; 404 for any meter that is not the caller's own, so other meters' existence
/// does not leak. Every read is appended to the household's access log.
pub fn read(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let (meter, participant) = auth::own_meter_of(req, env, meter)?;
    let query = Query::parse(req)?.within(auth::token_data_range(req));
    let caller = Caller {
        role: PolicyRole::Participant,
        caveats: auth::participant_caveats(req, env),
        actor: auth::actor(req, env)?,
    };
    serve(env, &meter, &participant.household, &caller, &query)
}

/// `GET /api/management/meter/:uuid/measurement` (researcher, administrator): as [`read`], for
/// any meter (of the token's household only, when it is restricted to one); the policies see
/// the caller's role, so researchers get what the chain allows them (e.g. aggregates).
pub fn read_any(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let grant = auth::management(req, env)?;
    let query = Query::parse(req)?.within(auth::token_data_range(req));
    let meter = validate::uuid("meter", meter).map_err(|_| ApiError::not_found("no such meter"))?;
    let household = auth::allow_household_of(
        &grant,
        &env.db,
        (
            "SELECT household FROM meter WHERE uuid = ?",
            &meter,
            "no such meter",
        ),
        false,
        wattlet_access_token::Role::Researcher,
    )?;
    let caller = Caller {
        role: auth::policy_role(&grant),
        caveats: auth::encoded_caveats(&grant),
        actor: auth::actor(req, env)?,
    };
    serve(env, &meter, &household, &caller, &query)
}

pub(crate) struct Query {
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    limit: i64,
    purpose: Option<String>,
}

impl Query {
    fn parse(req: &Request) -> ApiResult<Query> {
        Query::from_pairs(query_pairs(req.query())?, "")
    }

    /// The query from its pairs; `more` names further parameters the caller took out, for the
    /// error about an unknown one.
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>, more: &str) -> ApiResult<Query> {
        let mut q = Query {
            from: None,
            to: None,
            limit: validate::DEFAULT_LIMIT,
            purpose: None,
        };
        for (key, value) in pairs {
            match key.as_str() {
                "from" => q.from = Some(timestamp::parse(&value).map_err(|e| e.at("from"))?),
                "to" => q.to = Some(timestamp::parse(&value).map_err(|e| e.at("to"))?),
                "limit" => q.limit = validate::limit(&value)?,
                "purpose" => {
                    if value.is_empty() || value.len() > 200 {
                        return Err(bad("purpose: 1 to 200 bytes"));
                    }
                    q.purpose = Some(value);
                }
                other => {
                    return Err(bad(format!(
                        "unknown query parameter {other:?} (from, to, limit, purpose{more})"
                    )));
                }
            }
        }
        Ok(q)
    }

    /// The oldest `limit` measurements, read for `purpose`.
    pub(crate) fn oldest(limit: i64, purpose: &str) -> Query {
        Query {
            from: None,
            to: None,
            limit,
            purpose: Some(purpose.to_owned()),
        }
    }

    /// Narrowed to the time range of data the token allows (its `range` caveats): rows outside
    /// are never selected, and the policies see the narrowed range.
    pub(crate) fn within(mut self, range: Option<(OffsetDateTime, OffsetDateTime)>) -> Query {
        if let Some((from, to)) = range {
            self.from = Some(self.from.map_or(from, |f| f.max(from)));
            self.to = Some(self.to.map_or(to, |t| t.min(to)));
        }
        self
    }
}

pub(crate) struct Caller {
    pub(crate) role: PolicyRole,
    pub(crate) caveats: Vec<String>,
    pub(crate) actor: String,
}

pub(crate) fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// One stored measurement as selected: what serving it verbatim needs.
pub(crate) struct Selected {
    pub(crate) uuid: String,
    /// `measured_at` in ns since the epoch.
    pub(crate) at: i64,
    measured_at: Option<String>,
    data: Value,
}

impl Selected {
    /// The readings as stored: `(obis, value)` in the order of `data`.
    fn readings(&self) -> impl Iterator<Item = (&str, f64)> {
        stored_readings(&self.data).filter_map(|(obis, v)| Some((obis.as_str(), v.as_f64()?)))
    }
}

/// A measurement's stored `data` (`[{"<obis>": value}, …]`) as `(obis, value)` in its order.
pub(crate) fn stored_readings(data: &Value) -> impl Iterator<Item = (&String, &Value)> {
    data.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flatten()
}

/// A meter's stored measurements in the query's range (at most its limit), in order.
pub(crate) fn select(db: &Db, meter: &str, q: &Query) -> ApiResult<Vec<Selected>> {
    let mut sql = String::from("SELECT uuid, measured_at, data FROM measurement WHERE meter = ?");
    let mut params = vec![text(meter)];
    if let Some(from) = q.from {
        sql.push_str(" AND measured_at >= ?");
        params.push(text(timestamp::to_db(from)));
    }
    if let Some(to) = q.to {
        sql.push_str(" AND measured_at < ?");
        params.push(text(timestamp::to_db(to)));
    }
    sql.push_str(" ORDER BY measured_at, uuid LIMIT ?");
    params.push(Sql::Integer(q.limit));
    let rows = db.query(&sql, &params)?;
    let mut selected = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let uuid = col_required(row, 0)?;
        let at = timestamp::from_db(row.get::<&str>(1))
            .ok_or_else(|| ApiError::Database(format!("measurement {uuid}: bad measured_at")))?;
        selected.push(Selected {
            uuid,
            at: nanos(at),
            measured_at: col_text(row, 1),
            data: col_json(row, 2),
        });
    }
    Ok(selected)
}

/// `selected` as the rows a policy chain reads: row `i` (origin `i`) is `selected[i]`, one
/// column per register in the order first seen (a register a measurement reports twice gets a
/// second column, so nothing stored is lost on the way).
pub(crate) fn policy_rows(selected: &[Selected]) -> policy::Rows {
    let mut columns: HashMap<(&str, usize), usize> = HashMap::new();
    let mut registers = Vec::new();
    let mut cells = Vec::with_capacity(selected.len());
    for s in selected {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut row = Vec::new();
        for (obis, value) in s.readings() {
            let nth = seen.entry(obis).or_default();
            let column = *columns.entry((obis, *nth)).or_insert_with(|| {
                registers.push(obis.to_owned());
                registers.len() - 1
            });
            *nth += 1;
            row.push((column, value));
        }
        cells.push(row);
    }
    let mut rows = policy::Rows::with_registers(registers);
    let mut values = vec![f64::NAN; rows.registers.len()];
    for (i, (s, row)) in selected.iter().zip(cells).enumerate() {
        values.fill(f64::NAN);
        for (column, value) in row {
            values[column] = value;
        }
        let origin = u32::try_from(i).ok();
        rows.push(origin, s.at, 0, 1, &values);
    }
    rows
}

/// How many households share `household`'s NUTS-3 region, itself included; `None` when its
/// region is unknown.
pub(crate) fn region_peers(db: &Db, household: &str) -> ApiResult<Option<u32>> {
    let rows = db.query(
        "SELECT COUNT(*) FROM location
         WHERE nuts3 = (SELECT nuts3 FROM location WHERE household = ?)",
        &[text(household)],
    )?;
    let count = rows.rows.first().and_then(|r| r.get::<i64>(0)).unwrap_or(0);
    Ok(u32::try_from(count).ok().filter(|n| *n > 0))
}

/// Runs a household's policy `chain` over `series` (read by `caller`; `peers` for the
/// context).
pub(crate) fn run_chain(
    env: &Env,
    chain: &[policy::Attachment],
    caller: &Caller,
    q: &Query,
    series: policy::Rows,
    peers: Option<u32>,
) -> policy::Outcome {
    let context = policy::Context {
        role: caller.role,
        caveats: caller.caveats.clone(),
        purpose: q.purpose.clone(),
        range: policy::TimeRange {
            from: q.from.map(nanos),
            to: q.to.map(nanos),
        },
        now: nanos(timestamp::now()),
        peers,
    };
    policy::run_rows(
        env.policies,
        chain,
        policy::Hook::Read,
        policy::ObjectKind::Measurements,
        &context,
        series,
    )
}

/// Appends a read of `selected` rows and what the chain decided to `household`'s access log;
/// `object` names what was read, `extra` adds fields to the entry.
pub(crate) fn log_read(
    env: &Env,
    household: &str,
    (object, extra): (String, Value),
    caller: &Caller,
    q: &Query,
    (selected, outcome): (usize, &policy::Outcome),
) -> ApiResult<()> {
    let decision = match (&outcome.rows, outcome.transformed) {
        (Err(_), _) => "deny",
        (Ok(_), true) => "transform",
        (Ok(_), false) => "allow",
    };
    let mut entry = json!({
        "actor": caller.actor,
        "role": caller.role.name(),
        "object": object,
        "operation": "read",
        "policies": outcome.ran,
        "selected": selected,
        "served": outcome.rows.as_ref().map_or(0, policy::Rows::len),
        "decision": decision,
    });
    if let (Value::Object(entry), Value::Object(extra)) = (&mut entry, extra) {
        entry.extend(extra);
    }
    if let Some(purpose) = &q.purpose {
        entry["purpose"] = json!(purpose);
    }
    if let Err(reason) = &outcome.rows {
        entry["reason"] = json!(reason);
    }
    access_log::append(&env.db, household, entry)?;
    Ok(())
}

/// Selects the rows, runs the chain, logs the access and answers.
fn serve(
    env: &Env,
    meter: &str,
    household: &str,
    caller: &Caller,
    q: &Query,
) -> ApiResult<Response> {
    let selected = select(&env.db, meter, q)?;
    let series = policy_rows(&selected);
    let chain = policy::chain(&env.db, Some(household), policy::ObjectKind::Measurements)?;
    // The participant reads their own data; only a chain with a policy that reads peers needs
    // the region counted.
    let peers = match caller.role {
        PolicyRole::Participant => None,
        _ if !policy::reads_peers(&chain) => None,
        _ => region_peers(&env.db, household)?,
    };
    let outcome = run_chain(env, &chain, caller, q, series.clone(), peers);
    let object = (format!("measurements:{meter}"), json!({}));
    log_read(
        env,
        household,
        object,
        caller,
        q,
        (selected.len(), &outcome),
    )?;
    let ran = outcome.ran;
    let rows = outcome
        .rows
        .map_err(|reason| ApiError::refused(RefusalCode::PolicyDenied, reason))?;
    let mut measurements = Vec::with_capacity(rows.len());
    for i in 0..rows.len() {
        let origin = rows.origin[i].and_then(|o| selected.get(o as usize));
        // A measurement a policy let through unchanged is served as stored.
        let unchanged = rows.span[i] == 0
            && rows.samples[i] == 1
            && rows.origin[i]
                .is_some_and(|o| rows.readings_of(i).eq(series.readings_of(o as usize)));
        measurements.push(match origin {
            Some(s) if unchanged => json!({
                "uuid": s.uuid,
                "measured_at": timestamp::db_to_api(s.measured_at.clone()),
                "data": s.data,
            }),
            _ => transformed_json(&rows, i, origin.map(|s| s.uuid.as_str())),
        });
    }
    Ok(json_response(
        200,
        &json!({ "meter": meter, "measurements": measurements, "policies": ran }),
    ))
}

/// Row `i` of `rows`, which a policy made or changed: an aggregate has no uuid, its step and
/// sample count.
fn transformed_json(rows: &policy::Rows, i: usize, uuid: Option<&str>) -> Value {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(rows.at[i]))
        .map(timestamp::to_api)
        .ok();
    let data: Vec<Value> = rows
        .readings_of(i)
        .map(|(obis, value)| json!({ obis: value }))
        .collect();
    let mut out = json!({
        "uuid": uuid,
        "measured_at": at,
        "data": data,
    });
    if rows.span[i] > 0 {
        out["step_seconds"] = json!(rows.span[i] / 1_000_000_000);
        out["samples"] = json!(rows.samples[i]);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(uuid: &str, at: i64, data: Value) -> Selected {
        Selected {
            uuid: uuid.into(),
            at,
            measured_at: None,
            data,
        }
    }

    #[test]
    fn a_write_chain_keeps_rows_by_origin_and_never_stores_rows_of_its_own() {
        let mut out = policy::Rows::with_registers(vec!["0100100700ff".into()]);
        out.push(Some(2), 30, 0, 1, &[3.0]);
        // Left without a reading: dropped.
        out.push(Some(0), 10, 0, 1, &[f64::NAN]);
        assert_eq!(
            kept_rows(&Ok(out.clone()), 3),
            Ok(vec![None, None, Some(0)])
        );
        let mut made = out.clone();
        made.push(None, 0, 900, 4, &[1.0]);
        assert!(kept_rows(&Ok(made), 3).is_err());
        let mut aggregate = out;
        aggregate.span[0] = 900;
        assert!(kept_rows(&Ok(aggregate), 3).is_err());
        assert_eq!(kept_rows(&Err("no".into()), 3), Err("no".to_owned()));
    }

    #[test]
    fn policy_rows_keep_every_stored_reading_in_columns() {
        let power = "0100100700ff";
        let energy = "0100010800ff";
        let stored = [
            selected("a", 10, json!([{ power: 1.0 }, { energy: 5.0 }])),
            // A register reported twice gets a second column; one missing is NaN.
            selected("b", 20, json!([{ energy: 6.0 }, { energy: 7.0 }])),
            selected("c", 30, json!([{ power: 3.0, "not-a-number": "x" }])),
        ];
        let rows = policy_rows(&stored);
        assert_eq!(rows.registers, [power, energy, energy]);
        assert_eq!(rows.origin, [Some(0), Some(1), Some(2)]);
        assert_eq!(rows.at, [10, 20, 30]);
        assert_eq!(
            rows.readings_of(0).collect::<Vec<_>>(),
            [(power, 1.0), (energy, 5.0)]
        );
        assert_eq!(
            rows.readings_of(1).collect::<Vec<_>>(),
            [(energy, 6.0), (energy, 7.0)]
        );
        assert_eq!(rows.readings_of(2).collect::<Vec<_>>(), [(power, 3.0)]);
        assert_eq!(rows.check(3), Ok(()));
    }
}
