//! The endpoints of the NIALM work manager and workers (`/api/worker/...`): which meters may be
//! processed and their power series with the household's data key (role `manager`, the trusted
//! control plane), and the results (role `worker`, untrusted hosts: they never read readings).
//!
//! Results arrive sealed under the household's data key (`wattlet_sealing::Sealed`, purpose
//! `result`): the Data API opens them with the key their `key_id` names, so a result can only
//! come from a holder of the key (a confidential function the key broker released it to) and
//! only for that household's meters. A key that is gone (the household revoked its consent,
//! which shreds the key) refuses the result with `consent_revoked`: the item is done. Results
//! in the clear are accepted only where the Spin variable `plaintext_results` is `"allowed"`.
//!
//! Everything here is personal processing, which a household's consent must permit
//! (`Use::ProcessPersonal`): the reads select only rows of permitting households, and a
//! result's consent check is part of the very `INSERT` that stores it, so a revocation can
//! never slip between the check and the write (the anonymization that follows a revocation
//! deletes the results stored before it).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wattlet_access_token::{Grant, Operation, Role, Scope};
use wattlet_sealing::{Purpose, SealError, Sealed};
use wattlet_survey::{ConsentState, RefusalCode, Use};

use crate::auth;
use crate::db::{Db, Value as Sql, col_json, col_required, col_text, placeholders, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent;
use crate::handlers::measurement::query_pairs;
use crate::http::{Request, Response, json_response};
use crate::keys;
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad, json_body};

/// The longest span one power read may cover.
const MAX_SPAN_SECONDS: i64 = 7 * 24 * 3600;
/// How many measurements before `from` are searched for the one that carries into the span.
const LOOK_BACK: i64 = 8;
/// At most this many results per `POST /api/worker/disaggregation`.
pub(crate) const MAX_RESULTS: usize = 100;
/// At most this many values per result (a day of minutes).
const MAX_VALUES: usize = 1440;

/// `AND m.household = ?` for each household the token is restricted to (all must hold).
pub(crate) fn restricted_to(grant: &Grant, sql: &mut String, params: &mut Vec<Sql>) {
    for household in grant.households() {
        sql.push_str(" AND m.household = ?");
        params.push(text(household));
    }
}

/// `GET /api/worker/meters`: `{"meters":[{"meter","first","last"}]}`, the electricity meters
/// with measurements whose household permits personal processing, by uuid; first and last
/// are the times of the earliest and latest measurement.
pub fn meters(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::worker(req, env, Role::Manager, false, Scope::Households)?;
    let (permitting, mut params) = consent::permitting("c.state", Use::ProcessPersonal);
    let mut sql = format!(
        "SELECT x.meter, MIN(x.measured_at), MAX(x.measured_at)
         FROM measurement x
         JOIN meter m ON m.uuid = x.meter
         JOIN consent c ON c.household = m.household
         WHERE m.type = 'ELECTRICITY' AND {permitting}"
    );
    restricted_to(&grant, &mut sql, &mut params);
    sql.push_str(" GROUP BY x.meter ORDER BY x.meter");
    let rows = db.query(&sql, &params)?;
    let mut meters = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        meters.push(json!({
            "meter": col_required(row, 0)?,
            "first": timestamp::db_to_api(col_text(row, 1)),
            "last": timestamp::db_to_api(col_text(row, 2)),
        }));
    }
    Ok(json_response(200, &json!({ "meters": meters })))
}

/// The household of `meter` (a path segment) if the token may reach it: 404 `not_found` for
/// an unknown or malformed meter, 403 `token_restricted` outside the token's households.
fn meter_household(
    grant: &Grant,
    db: &Db,
    meter: &str,
    needs: Role,
    write: bool,
) -> ApiResult<(String, String)> {
    let not_found = || ApiError::not_found("no such meter");
    let meter = validate::uuid("meter", meter).map_err(|_| not_found())?;
    let rows = db.query(
        "SELECT m.household, c.state FROM meter m LEFT JOIN consent c ON c.household = m.household
         WHERE m.uuid = ?",
        &[text(&meter)],
    )?;
    let row = rows.rows.first().ok_or_else(not_found)?;
    let household = col_required(row, 0)?;
    auth::allow(
        grant,
        &Operation {
            write,
            needs,
            scope: Scope::Household(&household),
        },
    )?;
    consent::require(
        consent::parse_state(col_text(row, 1))?,
        Use::ProcessPersonal,
    )?;
    Ok((meter, household))
}

/// Power in W of a stored measurement's `data` (`[{"<obis>": value}]`), as
/// `wattlet_survey::obis::import_power_watts` reads it; `None` without a power value.
fn power_watts(data: &str) -> Option<f64> {
    let entries: Vec<BTreeMap<String, f64>> = serde_json::from_str(data).ok()?;
    wattlet_survey::obis::import_power_watts(
        entries
            .iter()
            .flat_map(|e| e.iter().map(|(code, value)| (code.as_str(), *value))),
    )
}

/// `GET /api/worker/meter/:uuid/power?from=&to=`: `{"meter","before":{"at","power_w"}|null,
/// "readings":[{"at","power_w"}],"key":{"id","key"}}`: the household's data key (made now if it
/// has none, `keys`) and every measurement with a power value and
/// `from` ≤ measured_at < `to` (at most 7 days), by time then uuid, and the latest one before
/// `from` (among the 8 measurements before it). 403 `consent_not_granted` / `consent_revoked`
/// when the household does not permit personal processing.
pub fn power(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::worker(req, env, Role::Manager, false, Scope::Households)?;
    let (mut from, mut to) = (None, None);
    for (key, value) in query_pairs(req.query())? {
        let at = match key.as_str() {
            "from" => &mut from,
            "to" => &mut to,
            other => {
                return Err(bad(format!("unknown query parameter {other:?} (from, to)")));
            }
        };
        *at = Some(timestamp::parse(&value).map_err(|e| e.at(&key))?);
    }
    let from = from.ok_or_else(|| bad("from: required (RFC 3339)"))?;
    let to = to.ok_or_else(|| bad("to: required (RFC 3339)"))?;
    if to <= from {
        return Err(bad("to: must be after from"));
    }
    if (to - from).whole_seconds() > MAX_SPAN_SECONDS {
        return Err(bad("to: at most 7 days after from"));
    }
    let (meter, household) = meter_household(&grant, db, meter, Role::Manager, false)?;
    let key = keys::for_household(env, &household)?;

    // The consent condition again in each read: a revocation after the check above yields
    // nothing rather than data that may no longer be processed personally.
    let (permitting, states) = consent::permitting("c.state", Use::ProcessPersonal);
    let permitted = format!(
        "EXISTS (SELECT 1 FROM meter m JOIN consent c ON c.household = m.household
                 WHERE m.uuid = x.meter AND {permitting})"
    );
    let mut params = vec![text(&meter), text(timestamp::to_db(from))];
    params.extend(states.iter().cloned());
    params.push(Sql::Integer(LOOK_BACK));
    let earlier = db.query(
        &format!(
            "SELECT measured_at, data FROM measurement x
             WHERE x.meter = ? AND x.measured_at < ? AND {permitted}
             ORDER BY x.measured_at DESC, x.uuid DESC LIMIT ?"
        ),
        &params,
    )?;
    let reading = |row: &crate::db::Row| -> Option<Value> {
        let watts = power_watts(row.get::<&str>(1)?)?;
        Some(json!({ "at": timestamp::db_to_api(col_text(row, 0)), "power_w": watts }))
    };
    let before = earlier.rows.iter().find_map(reading);
    let mut params = vec![
        text(&meter),
        text(timestamp::to_db(from)),
        text(timestamp::to_db(to)),
    ];
    params.extend(states);
    let within = db.query(
        &format!(
            "SELECT measured_at, data FROM measurement x
             WHERE x.meter = ? AND x.measured_at >= ? AND x.measured_at < ? AND {permitted}
             ORDER BY x.measured_at, x.uuid"
        ),
        &params,
    )?;
    let readings: Vec<Value> = within.rows.iter().filter_map(reading).collect();
    Ok(json_response(
        200,
        &json!({ "meter": meter, "before": before, "readings": readings, "key": key.json() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Results {
    /// Each `{"sealed": <Sealed>}` or (where allowed) a plaintext [`Incoming`].
    pub(crate) results: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedResult {
    sealed: Sealed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    item: String,
    meter: String,
    model: String,
    model_sha256: String,
    window_start: String,
    step_seconds: i64,
    /// Read as f64 so that a value too large for an f32 is refused, not made infinite.
    power_w: Vec<f64>,
}

/// A checked result, as it is stored.
struct Checked {
    item: String,
    meter: String,
    model: String,
    model_sha256: String,
    /// Database form.
    window_start: String,
    step_seconds: i64,
    /// JSON text.
    power_w: String,
}

/// A work item's id: 1–128 characters of `A-Z a-z 0-9 . _ -`.
pub(crate) fn item_id(field: &str, s: &str) -> ApiResult<String> {
    let ok = (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(bad(format!(
            "{field}: {s:?} is not an item id (1–128 characters of A-Z a-z 0-9 . _ -)"
        )))
    }
}

fn check(i: usize, r: Incoming) -> ApiResult<Checked> {
    let at = |field: &str| format!("results[{i}].{field}");
    let sha_ok =
        r.model_sha256.len() == 64 && r.model_sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !sha_ok {
        return Err(bad(format!("{}: 64 hex digits", at("model_sha256"))));
    }
    if !(1..=3600).contains(&r.step_seconds) {
        return Err(bad(format!("{}: 1–3600 seconds", at("step_seconds"))));
    }
    if r.power_w.is_empty() || r.power_w.len() > MAX_VALUES {
        return Err(bad(format!("{}: 1–{MAX_VALUES} values", at("power_w"))));
    }
    let in_range = |w: &f64| (0.0..=f64::from(f32::MAX)).contains(w);
    if let Some(j) = r.power_w.iter().position(|w| !in_range(w)) {
        return Err(bad(format!(
            "{}[{j}]: a finite power of at least 0 W",
            at("power_w")
        )));
    }
    let window_start = timestamp::parse(&r.window_start).map_err(|e| e.at(&at("window_start")))?;
    // Stored as f32, as the workers compute it (the range was checked above).
    let power_w: Vec<f32> = r.power_w.iter().map(|w| *w as f32).collect();
    let power_w = serde_json::to_string(&power_w)
        .map_err(|e| ApiError::Internal(format!("serialising power_w: {e}")))?;
    Ok(Checked {
        item: item_id(&at("item"), &r.item)?,
        meter: validate::uuid(&at("meter"), &r.meter)?,
        model: validate::model_id(&at("model"), &r.model)?,
        model_sha256: r.model_sha256.to_ascii_lowercase(),
        window_start: timestamp::to_db(window_start),
        step_seconds: r.step_seconds,
        power_w,
    })
}

/// The stored items among `items`.
fn stored(db: &Db, items: &[&str]) -> ApiResult<BTreeSet<String>> {
    if items.is_empty() {
        return Ok(BTreeSet::new());
    }
    let params: Vec<Sql> = items.iter().map(|i| text(*i)).collect();
    let rows = db.query(
        &format!(
            "SELECT item FROM disaggregation WHERE item IN ({})",
            placeholders(params.len())
        ),
        &params,
    )?;
    rows.rows.iter().map(|r| col_required(r, 0)).collect()
}

/// Why the results of `meters` were not stored: the meter is unknown (`not_found`), outside
/// the token's households (`token_restricted`), or its household's consent does not permit
/// personal processing.
pub(crate) fn refusals(
    grant: &Grant,
    db: &Db,
    meters: &BTreeSet<&str>,
) -> ApiResult<BTreeMap<String, RefusalCode>> {
    let params: Vec<Sql> = meters.iter().map(|m| text(*m)).collect();
    let rows = db.query(
        &format!(
            "SELECT m.uuid, m.household, c.state FROM meter m
             LEFT JOIN consent c ON c.household = m.household WHERE m.uuid IN ({})",
            placeholders(params.len())
        ),
        &params,
    )?;
    let mut codes: BTreeMap<String, RefusalCode> = meters
        .iter()
        .map(|m| ((*m).to_owned(), RefusalCode::NotFound))
        .collect();
    for row in &rows.rows {
        let household = col_required(row, 1)?;
        let code = if grant.households().iter().any(|h| *h != household.as_str()) {
            RefusalCode::TokenRestricted
        } else {
            match consent::parse_state(col_text(row, 2))? {
                ConsentState::Revoked => RefusalCode::ConsentRevoked,
                // Not permitting when the INSERT ran: consent never returns to permitting
                // after a revocation, so this state was `not_granted` then.
                ConsentState::NotGranted | ConsentState::Granted => RefusalCode::ConsentNotGranted,
            }
        };
        codes.insert(col_required(row, 0)?, code);
    }
    Ok(codes)
}

impl Checked {
    /// The stand-in of a result whose key is gone: only its item is known.
    fn gone(item: String) -> Checked {
        Checked {
            item,
            meter: String::new(),
            model: String::new(),
            model_sha256: String::new(),
            window_start: String::new(),
            step_seconds: 0,
            power_w: String::new(),
        }
    }
}

/// One entry of a `POST /api/worker/...` results body, its envelope opened (not yet checked as
/// a result of any kind).
enum Envelope {
    /// A plaintext result (only where allowed).
    Plain(Value),
    /// A sealed result opened with its household's key.
    Opened {
        item: String,
        plaintext: Vec<u8>,
        key_id: String,
        household: String,
    },
    /// A sealed result whose key is gone (shredded on revocation, or never made).
    KeyGone(String),
}

/// Opens `entry` (`results[i]`): a `{"sealed": …}` with purpose `result` is opened with the key
/// its `key_id` names; a plaintext entry is passed on only where plaintext results are allowed.
fn open_envelope(
    env: &Env,
    i: usize,
    entry: Value,
    plaintext_allowed: bool,
) -> ApiResult<Envelope> {
    let at = |field: &str| format!("results[{i}].{field}");
    if entry.get("sealed").is_none() {
        if !plaintext_allowed {
            return Err(bad(format!(
                "results[{i}]: a plaintext result is refused here: seal it under the household's data key ({{\"sealed\": …}}); the Spin variable {} is not \"allowed\"",
                keys::PLAINTEXT_VARIABLE
            )));
        }
        return Ok(Envelope::Plain(entry));
    }
    let SealedResult { sealed } =
        serde_json::from_value(entry).map_err(|e| bad(format!("results[{i}]: {e}")))?;
    if sealed.purpose != Purpose::Result {
        return Err(bad(format!("{}: must be \"result\"", at("sealed.purpose"))));
    }
    let item = item_id(&at("sealed.item"), &sealed.item)?;
    let key_id = sealed
        .key_id()
        .map_err(|e| bad(format!("{}: {e}", at("sealed.key_id"))))?;
    let Some((household, key)) = keys::by_id(env, &key_id)? else {
        return Ok(Envelope::KeyGone(item));
    };
    let plaintext = sealed.open(&key, Purpose::Result).map_err(|e| match e {
        SealError::NotAuthentic => bad(format!(
            "{}: not authentic (not sealed under key {key_id} for this item, or changed)",
            at("sealed")
        )),
        other => bad(format!("{}: {other}", at("sealed"))),
    })?;
    Ok(Envelope::Opened {
        item,
        plaintext,
        key_id: key_id.to_string(),
        household,
    })
}

/// A key opens only its own household's results: each `(index, meter, key id, household of
/// the key)` must name a meter of that household (an unknown meter is refused per result,
/// `not_found`, as for any result).
fn check_owners(env: &Env, owners: &[(usize, String, String, String)]) -> ApiResult<()> {
    if owners.is_empty() {
        return Ok(());
    }
    let meters: BTreeSet<&str> = owners.iter().map(|o| o.1.as_str()).collect();
    let params: Vec<Sql> = meters.iter().map(|m| text(*m)).collect();
    let rows = env.db.query(
        &format!(
            "SELECT uuid, household FROM meter WHERE uuid IN ({})",
            placeholders(params.len())
        ),
        &params,
    )?;
    let mut household_of = BTreeMap::new();
    for row in &rows.rows {
        household_of.insert(col_required(row, 0)?, col_required(row, 1)?);
    }
    for (i, meter, key_id, household) in owners {
        if household_of.get(meter).is_some_and(|h| h != household) {
            return Err(bad(format!(
                "results[{i}].meter: {meter} is not a meter of the household of key {key_id}"
            )));
        }
    }
    Ok(())
}

/// A checked result as its envelope and its key must vouch for it.
pub(crate) trait Vouched {
    fn item(&self) -> &str;
    fn meter(&self) -> &str;
}

impl Vouched for Checked {
    fn item(&self) -> &str {
        &self.item
    }
    fn meter(&self) -> &str {
        &self.meter
    }
}

/// Opens every entry of a results body and checks it with `check` (`what` names the kind in
/// errors: "result", "forecast"); the first that fails refuses the request. A sealed entry's
/// plaintext must name its envelope's item and a meter of its key's household. `Err(item)`: a
/// sealed entry whose key is gone (shredded on revocation, or never made).
pub(crate) fn open_all<I: DeserializeOwned, C: Vouched>(
    env: &Env,
    entries: Vec<Value>,
    what: &str,
    check: impl Fn(usize, I) -> ApiResult<C>,
) -> ApiResult<Vec<Result<C, String>>> {
    let plaintext_allowed = keys::plaintext_allowed(env);
    let mut opened = Vec::with_capacity(entries.len());
    let mut owners: Vec<(usize, String, String, String)> = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        match open_envelope(env, i, entry, plaintext_allowed)? {
            Envelope::Plain(entry) => {
                let r: I =
                    serde_json::from_value(entry).map_err(|e| bad(format!("results[{i}]: {e}")))?;
                opened.push(Ok(check(i, r)?));
            }
            Envelope::KeyGone(item) => opened.push(Err(item)),
            Envelope::Opened {
                item,
                plaintext,
                key_id,
                household,
            } => {
                let r: I = serde_json::from_slice(&plaintext)
                    .map_err(|e| bad(format!("results[{i}].sealed: the opened {what}: {e}")))?;
                let checked = check(i, r)?;
                if checked.item() != item {
                    return Err(bad(format!(
                        "results[{i}].sealed: the sealed {what} is for item {:?}, its envelope for {item:?}",
                        checked.item()
                    )));
                }
                owners.push((i, checked.meter().to_owned(), key_id, household));
                opened.push(Ok(checked));
            }
        }
    }
    check_owners(env, &owners)?;
    Ok(opened)
}

/// `POST /api/worker/disaggregation`: body `{"results":[{"sealed":<Sealed, purpose "result">}]}`
/// (1–100), each sealed under the household's data key; its plaintext is the result
/// `{"item","meter","model","model_sha256","window_start","step_seconds","power_w"}`, whose
/// `item` must be the envelope's and whose meter must be the key's household's (400
/// `invalid_request` otherwise, as for an envelope that is not authentic: nothing of the request
/// is stored). The plaintext result object itself is accepted only with `plaintext_results =
/// "allowed"` (400 `invalid_request` otherwise). → 200 `{"results":[{"item","outcome","code"?}]}`
/// in request order; `outcome` is `stored`, `duplicate` (the item was stored before, or earlier
/// in the request: nothing changes) or `refused` with the `code` (`consent_revoked` when the
/// key is gone: the household revoked its consent).
///
/// The new results are one multi-row `INSERT OR IGNORE … SELECT … JOIN meter … JOIN consent …
/// WHERE state IN (<permitting personal processing>) RETURNING item`: the consent check and
/// the write are one statement.
pub fn store(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::worker(req, env, Role::Worker, true, Scope::Households)?;
    let body: Results = json_body(req.body())?;
    if body.results.is_empty() || body.results.len() > MAX_RESULTS {
        return Err(bad(format!("results: 1–{MAX_RESULTS} results")));
    }
    let opened = open_all(env, body.results, "result", check)?;
    let mut results = Vec::with_capacity(opened.len());
    // Items whose key is gone, refused with `consent_revoked` (nothing else is checked).
    let mut shredded = BTreeSet::new();
    for entry in opened {
        match entry {
            Ok(checked) => results.push(checked),
            Err(item) => {
                shredded.insert(item.clone());
                results.push(Checked::gone(item));
            }
        }
    }
    let items: Vec<&str> = results.iter().map(|r| r.item.as_str()).collect();
    let before = stored(db, &items)?;

    // Each item once, and only those not stored yet.
    let mut seen = BTreeSet::new();
    let fresh: Vec<&Checked> = results
        .iter()
        .filter(|r| {
            !shredded.contains(&r.item) && !before.contains(&r.item) && seen.insert(r.item.as_str())
        })
        .collect();
    let mut inserted = BTreeSet::new();
    if !fresh.is_empty() {
        let computed_at = text(timestamp::to_db(timestamp::now()));
        let mut params = vec![computed_at];
        for r in &fresh {
            params.extend([
                text(&r.item),
                text(&r.meter),
                text(&r.model),
                text(&r.model_sha256),
                text(&r.window_start),
                Sql::Integer(r.step_seconds),
                text(&r.power_w),
            ]);
        }
        let (permitting, states) = consent::permitting("c.state", Use::ProcessPersonal);
        params.extend(states);
        let values = vec![format!("({})", placeholders(7)); fresh.len()].join(", ");
        let mut sql = format!(
            "INSERT OR IGNORE INTO disaggregation
                 (item, meter, model, model_sha256, window_start, step_seconds, power_w, computed_at)
             SELECT r.column1, r.column2, r.column3, r.column4, r.column5, r.column6, r.column7, ?
             FROM (VALUES {values}) AS r
             JOIN meter m ON m.uuid = r.column2
             JOIN consent c ON c.household = m.household
             WHERE {permitting}"
        );
        restricted_to(&grant, &mut sql, &mut params);
        sql.push_str(" RETURNING item");
        let rows = db.query(&sql, &params)?;
        for row in &rows.rows {
            inserted.insert(col_required(row, 0)?);
        }
    }

    // Not inserted and not stored before: stored meanwhile by another request, or refused.
    let missing: Vec<&str> = fresh
        .iter()
        .map(|r| r.item.as_str())
        .filter(|i| !inserted.contains(*i))
        .collect();
    let meanwhile = stored(db, &missing)?;
    let refused_meters: BTreeSet<&str> = fresh
        .iter()
        .filter(|r| !inserted.contains(&r.item) && !meanwhile.contains(&r.item))
        .map(|r| r.meter.as_str())
        .collect();
    let codes = if refused_meters.is_empty() {
        BTreeMap::new()
    } else {
        refusals(&grant, db, &refused_meters)?
    };

    let mut answered = BTreeSet::new();
    let mut outcomes = Vec::with_capacity(results.len());
    for r in &results {
        let first = answered.insert(r.item.as_str());
        let outcome = if shredded.contains(&r.item) && !inserted.contains(&r.item) {
            let code = RefusalCode::ConsentRevoked;
            json!({ "item": r.item, "outcome": "refused", "code": code.as_str() })
        } else if inserted.contains(&r.item) {
            json!({ "item": r.item, "outcome": if first { "stored" } else { "duplicate" } })
        } else if before.contains(&r.item) || meanwhile.contains(&r.item) {
            json!({ "item": r.item, "outcome": "duplicate" })
        } else {
            // The first occurrence of the item decides; a repeat shares its refusal.
            let meter = fresh
                .iter()
                .find(|f| f.item == r.item)
                .map_or(r.meter.as_str(), |f| f.meter.as_str());
            let code = codes.get(meter).copied().unwrap_or(RefusalCode::NotFound);
            json!({ "item": r.item, "outcome": "refused", "code": code.as_str() })
        };
        outcomes.push(outcome);
    }
    Ok(json_response(200, &json!({ "results": outcomes })))
}

/// `GET /api/worker/disaggregation/:item`: the stored result, with the fields of the `POST`'s
/// results; 404 `not_found` when none is stored.
pub fn result(req: &Request, env: &Env, item: &str) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::worker(req, env, Role::Worker, false, Scope::Households)?;
    let not_found = || ApiError::not_found("no such result");
    let item = item_id("item", item).map_err(|_| not_found())?;
    let rows = db.query(
        "SELECT d.item, d.meter, d.model, d.model_sha256, d.window_start, d.step_seconds,
                d.power_w, m.household
         FROM disaggregation d JOIN meter m ON m.uuid = d.meter WHERE d.item = ?",
        &[text(&item)],
    )?;
    let row = rows.rows.first().ok_or_else(not_found)?;
    let household = col_required(row, 7)?;
    auth::allow(
        &grant,
        &Operation {
            write: false,
            needs: Role::Worker,
            scope: Scope::Household(&household),
        },
    )?;
    Ok(json_response(
        200,
        &json!({
            "item": col_required(row, 0)?,
            "meter": col_required(row, 1)?,
            "model": col_required(row, 2)?,
            "model_sha256": col_required(row, 3)?,
            "window_start": timestamp::db_to_api(col_text(row, 4)),
            "step_seconds": row.get::<i64>(5),
            "power_w": col_json(row, 6),
        }),
    ))
}
