//! NIALM results: the appliance power the queue workers (`wattlet worker nialm`) computed, per
//! meter, per appliance model and per one-hour window.

use serde_json::{Value, json};

use crate::auth;
use crate::db::{Db, Value as Sql, col_json, col_required, col_text, text};
use crate::error::ApiResult;
use crate::handlers::measurement::query_pairs;
use crate::http::{Request, Response, json_response};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad};

/// `GET /api/household/meter/:uuid/disaggregation` (participant): results of the caller's own
/// meter; 404 for any other meter, so other meters' existence does not leak.
pub fn read_own(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let db = &env.db;
    let meter = auth::own_meter(req, env, meter)?;
    list(req, db, &meter)
}

/// `GET /api/management/meter/:uuid/disaggregation` (researcher, administrator): results of any
/// meter (of the token's household only, when it is restricted to one).
pub fn read_any(req: &Request, env: &Env, meter: &str) -> ApiResult<Response> {
    let meter = auth::readable_meter(req, env, meter)?;
    list(req, &env.db, &meter)
}

/// Query: `appliance` (a model id), `from` ≤ window start < `to` (RFC 3339), `limit` windows
/// (default 1000, at most 10000). Ordered by window start, then appliance.
/// `{"meter","windows":[{"appliance","window_start","step_seconds","model_sha256","power_w":[W…]}]}`.
fn list(req: &Request, db: &Db, meter: &str) -> ApiResult<Response> {
    let mut sql = String::from(
        "SELECT model, window_start, step_seconds, model_sha256, power_w
         FROM disaggregation WHERE meter = ?",
    );
    let mut params = vec![text(meter)];
    let mut limit = validate::DEFAULT_LIMIT;
    for (key, value) in query_pairs(req.query())? {
        match key.as_str() {
            "appliance" => {
                sql.push_str(" AND model = ?");
                params.push(text(validate::model_id("appliance", &value)?));
            }
            "from" | "to" => {
                let at = timestamp::parse(&value).map_err(|e| e.at(&key))?;
                sql.push_str(if key == "from" {
                    " AND window_start >= ?"
                } else {
                    " AND window_start < ?"
                });
                params.push(text(timestamp::to_db(at)));
            }
            "limit" => limit = validate::limit(&value)?,
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (appliance, from, to, limit)"
                )));
            }
        }
    }
    // The token's time range of data (its `range` caveats) narrows what the query asked.
    if let Some((from, to)) = auth::token_data_range(req) {
        sql.push_str(" AND window_start >= ? AND window_start < ?");
        params.extend([text(timestamp::to_db(from)), text(timestamp::to_db(to))]);
    }
    sql.push_str(" ORDER BY window_start, model LIMIT ?");
    params.push(Sql::Integer(limit));
    let rows = db.query(&sql, &params)?;
    let mut windows = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        windows.push(json!({
            "appliance": col_required(row, 0)?,
            "window_start": timestamp::db_to_api(col_text(row, 1)),
            "step_seconds": row.get::<i64>(2).unwrap_or(60),
            "model_sha256": col_required(row, 3)?,
            "power_w": col_json(row, 4),
        }));
    }
    Ok(json_response(
        200,
        &json!({ "meter": meter, "windows": Value::Array(windows) }),
    ))
}
