//! Load forecasts of wattlet's own households: the DEBS 2014 Q1 forecast of each consenting
//! household's meter, computed by the queue workers as a confidential function
//! (`wattlet worker nialm` also takes forecast items) and stored sealed like the NIALM results.
//!
//! Only the latest forecast of a meter is kept: one row per meter and slice length
//! (`forecasts`), replaced by a forecast for a later `at` and never by one for an earlier
//! `at`. The write and its consent check are one statement (as for the NIALM results), and the
//! anonymization that follows a revocation deletes the meter's forecasts.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use wattlet_access_token::{Role, Scope};
use wattlet_survey::{RefusalCode, Use};

use crate::auth;
use crate::db::{Db, Value as Sql, col_required, col_text, placeholders, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent;
use crate::handlers::worker::{
    MAX_RESULTS, Results, Vouched, item_id, open_all, refusals, restricted_to,
};
use crate::http::{Request, Response, json_response};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad, json_body};

/// The slice lengths of Q1 in seconds (1, 5, 15, 60 and 120 minutes): a forecast has one
/// value for each.
pub const SLICE_SECONDS: [i64; 5] = [60, 300, 900, 3600, 7200];

/// A forecast result as a worker sends it (the plaintext of the sealed envelope).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    item: String,
    meter: String,
    /// The end of the last minute of data the forecast was made from (RFC 3339).
    at: String,
    forecasts: Vec<IncomingSlice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingSlice {
    slice_seconds: i64,
    slice_start: String,
    load_w: f64,
}

/// A checked forecast, in database form.
struct Checked {
    item: String,
    meter: String,
    at: String,
    /// (slice length, slice start, load in W), one per [`SLICE_SECONDS`], in that order.
    slices: Vec<(i64, String, f64)>,
}

impl Vouched for Checked {
    fn item(&self) -> &str {
        &self.item
    }
    fn meter(&self) -> &str {
        &self.meter
    }
}

fn check(i: usize, r: Incoming) -> ApiResult<Checked> {
    let at = |field: &str| format!("results[{i}].{field}");
    let when = timestamp::parse(&r.at).map_err(|e| e.at(&at("at")))?;
    let mut slices = Vec::with_capacity(r.forecasts.len());
    for (j, s) in r.forecasts.into_iter().enumerate() {
        let field = |name: &str| at(&format!("forecasts[{j}].{name}"));
        if !SLICE_SECONDS.contains(&s.slice_seconds) {
            return Err(bad(format!(
                "{}: one of {SLICE_SECONDS:?}",
                field("slice_seconds")
            )));
        }
        if !s.load_w.is_finite() {
            return Err(bad(format!("{}: a finite power in W", field("load_w"))));
        }
        let start = timestamp::parse(&s.slice_start).map_err(|e| e.at(&field("slice_start")))?;
        slices.push((s.slice_seconds, timestamp::to_db(start), s.load_w));
    }
    slices.sort_by_key(|s| s.0);
    // Every slice length once: a forecast replaces all rows of its meter, never some.
    let lengths: Vec<i64> = slices.iter().map(|s| s.0).collect();
    if lengths != SLICE_SECONDS {
        return Err(bad(format!(
            "{}: one forecast per slice length {SLICE_SECONDS:?}, each once",
            at("forecasts")
        )));
    }
    Ok(Checked {
        item: item_id(&at("item"), &r.item)?,
        meter: validate::uuid(&at("meter"), &r.meter)?,
        at: timestamp::to_db(when),
        slices,
    })
}

/// `POST /api/worker/forecast` (worker): body `{"results":[{"sealed":<Sealed, purpose
/// "result">}]}` (1–100), each sealed under the household's data key, its plaintext
/// `{"item","meter","at","forecasts":[{"slice_seconds","slice_start","load_w"}]}` with one
/// forecast per slice length (60, 300, 900, 3600, 7200 s). Opened and checked as
/// `POST /api/worker/disaggregation`'s results (400 `invalid_request` for an envelope that is
/// not authentic or a result that is not its household's: nothing of the request is stored).
/// → 200 `{"results":[{"item","outcome","code"?}]}` in request order: `stored` (now the meter's
/// latest forecast), `duplicate` (this item is stored already), `superseded` (a forecast for a
/// later `at` is stored: nothing changes) or `refused` with the `code` (`consent_revoked` when
/// the key is gone or the household revoked its consent).
///
/// Each forecast is one `INSERT … SELECT … JOIN meter … JOIN consent … WHERE <permitting>
/// ON CONFLICT (meter, slice_len) DO UPDATE … WHERE excluded.at > forecasts.at RETURNING item`:
/// the consent check, the write and the "later replaces earlier" rule are one statement.
pub fn store(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::worker(req, env, Role::Worker, true, Scope::Households)?;
    let body: Results = json_body(req.body())?;
    if body.results.is_empty() || body.results.len() > MAX_RESULTS {
        return Err(bad(format!("results: 1–{MAX_RESULTS} results")));
    }
    // Each entry opened and checked; `Err(item)`: its key is gone.
    let entries = open_all(env, body.results, "forecast", check)?;

    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in &entries {
        let outcome = match entry {
            Err(item) => refused(item, RefusalCode::ConsentRevoked),
            Ok(checked) => write(&grant, db, checked)?,
        };
        outcomes.push(outcome);
    }
    Ok(json_response(200, &json!({ "results": outcomes })))
}

fn refused(item: &str, code: RefusalCode) -> Value {
    json!({ "item": item, "outcome": "refused", "code": code.as_str() })
}

/// Writes one forecast (module documentation) and says what became of it.
fn write(grant: &wattlet_access_token::Grant, db: &Db, r: &Checked) -> ApiResult<Value> {
    let mut params = vec![text(timestamp::to_db(timestamp::now()))];
    for (length, start, load) in &r.slices {
        params.extend([
            text(&r.meter),
            Sql::Integer(*length),
            text(&r.at),
            text(start),
            Sql::Real(*load),
            text(&r.item),
        ]);
    }
    let (permitting, states) = consent::permitting("c.state", Use::ProcessPersonal);
    params.extend(states);
    let values = vec![format!("({})", placeholders(6)); r.slices.len()].join(", ");
    let mut sql = format!(
        "INSERT INTO forecasts (meter, slice_len, at, ts, load_w, item, computed_at)
         SELECT r.column1, r.column2, r.column3, r.column4, r.column5, r.column6, ?
         FROM (VALUES {values}) AS r
         JOIN meter m ON m.uuid = r.column1
         JOIN consent c ON c.household = m.household
         WHERE {permitting}"
    );
    restricted_to(grant, &mut sql, &mut params);
    sql.push_str(
        " ON CONFLICT (meter, slice_len) DO UPDATE SET
             at = excluded.at, ts = excluded.ts, load_w = excluded.load_w,
             item = excluded.item, computed_at = excluded.computed_at
         WHERE excluded.at > forecasts.at
         RETURNING item",
    );
    if !db.query(&sql, &params)?.rows.is_empty() {
        return Ok(json!({ "item": r.item, "outcome": "stored" }));
    }
    // Not written: the same forecast or a later one is stored, or consent refused it.
    let rows = db.query(
        "SELECT item, at FROM forecasts WHERE meter = ? ORDER BY at DESC LIMIT 1",
        &[text(&r.meter)],
    )?;
    if let Some(row) = rows.rows.first() {
        let outcome = if col_required(row, 0)? == r.item {
            "duplicate"
        } else if col_text(row, 1).is_some_and(|at| at > r.at) {
            "superseded"
        } else {
            ""
        };
        if !outcome.is_empty() {
            return Ok(json!({ "item": r.item, "outcome": outcome }));
        }
    }
    let meters = BTreeSet::from([r.meter.as_str()]);
    let code = refusals(grant, db, &meters)?
        .get(&r.meter)
        .copied()
        .unwrap_or(RefusalCode::NotFound);
    Ok(refused(&r.item, code))
}

/// `GET /api/household/meter/:uuid/forecast` (participant): the latest forecast of the caller's
/// own meter; 404 for any other meter, so other meters' existence does not leak.
pub fn read_own(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let meter = auth::own_meter(req, env, meter)?;
    latest(&env.db, &meter, auth::token_data_range(req))
}

/// `GET /api/management/meter/:uuid/forecast` (researcher, administrator): the latest forecast
/// of any meter (of the token's household only, when it is restricted to one).
pub fn read_any(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let meter = auth::readable_meter(req, env, meter)?;
    latest(&env.db, &meter, auth::token_data_range(req))
}

/// `{"meter","at","forecasts":[{"slice_seconds","slice_start","load_w"}]}` ordered by slice
/// length, only slices starting within `range` (the token's time range of data) when given;
/// 404 `not_found` ("no forecast") while the meter has none.
fn latest(
    db: &Db,
    meter: &str,
    range: Option<(OffsetDateTime, OffsetDateTime)>,
) -> ApiResult<Response> {
    let mut sql = String::from("SELECT slice_len, at, ts, load_w FROM forecasts WHERE meter = ?");
    let mut params = vec![text(meter)];
    if let Some((from, to)) = range {
        sql.push_str(" AND ts >= ? AND ts < ?");
        params.extend([text(timestamp::to_db(from)), text(timestamp::to_db(to))]);
    }
    sql.push_str(" ORDER BY slice_len");
    let rows = db.query(&sql, &params)?;
    let Some(first) = rows.rows.first() else {
        return Err(ApiError::not_found(match range {
            Some(_) => format!("no forecast for meter {meter} within the token's time range"),
            None => format!(
                "no forecast for meter {meter} (none computed yet, or its household revoked consent)"
            ),
        }));
    };
    let mut forecasts = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        forecasts.push(json!({
            "slice_seconds": row.get::<i64>(0),
            "slice_start": timestamp::db_to_api(col_text(row, 2)),
            "load_w": row.get::<f64>(3),
        }));
    }
    Ok(json_response(
        200,
        &json!({
            "meter": meter,
            "at": timestamp::db_to_api(col_text(first, 1)),
            "forecasts": forecasts,
        }),
    ))
}
