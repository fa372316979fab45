//! The participant's export copy (policy `export-copy`): measurements the household's write
//! chain copied as they were stored, kept for the participant's own download whatever study
//! rules later purge, until the participant deletes them or the household is anonymized.
//!
//! `GET /api/household/export_copy` downloads it as CSV, one line per reading, oldest first;
//! `DELETE` empties it. Both are appended to the household's access log.

use serde_json::{Value, json};

use crate::access_log;
use crate::auth;
use crate::db::{Db, Value as Sql, col_required, placeholders, text};
use crate::error::ApiResult;
use crate::handlers::measurement::{Checked, query_pairs, stored_readings};
use crate::http::{Request, Response, json_response};
use crate::policy::Rows;
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad};

/// The CSV's header line.
pub const HEADER: &str = "uuid,meter,measured_at,obis,value\n";

/// Stores the rows of `copies` (a write chain's `copy` answers, their origins indices in
/// `fresh`) whose measurement is stored (`kept`), each measurement once: the first copy that
/// names it. Rows a policy made (no origin) and rows without a reading are not copied. One
/// statement; a uuid copied before is left as it is.
pub(crate) fn store(
    db: &Db,
    household: &str,
    fresh: &[&Checked],
    kept: &[Option<usize>],
    copies: &[Rows],
) -> ApiResult<()> {
    let mut copied = vec![false; fresh.len()];
    let mut params = Vec::new();
    for copy in copies {
        for i in 0..copy.len() {
            let Some(o) = copy.origin[i].map(|o| o as usize) else {
                continue;
            };
            if kept.get(o).copied().flatten().is_none() || copied[o] {
                continue;
            }
            let data: Vec<Value> = copy
                .readings_of(i)
                .map(|(obis, v)| json!({ obis: v }))
                .collect();
            if data.is_empty() {
                continue;
            }
            copied[o] = true;
            let m = fresh[o];
            params.extend([
                text(household),
                text(&m.uuid),
                text(&m.meter),
                text(&m.measured_at),
                text(Value::Array(data).to_string()),
            ]);
        }
    }
    if params.is_empty() {
        return Ok(());
    }
    let rows = vec![format!("({})", placeholders(5)); params.len() / 5].join(", ");
    db.exec(
        &format!(
            "INSERT OR IGNORE INTO export_copy (household, uuid, meter, measured_at, data)
             VALUES {rows}"
        ),
        &params,
    )
}

/// `GET /api/household/export_copy` (participant): the household's export copy as CSV
/// (`text/csv`, [`HEADER`], one line per reading), ordered by `measured_at` then uuid, at most
/// `limit` measurements (default 1000, at most 10000) after the measurement `after` (a uuid of
/// the copy; default: from the start). When `limit` were returned, the `x-wattlet-next` header
/// holds the query for the next page.
pub fn download(req: &Request, env: &Env) -> ApiResult<Response> {
    let participant = auth::participant(req, env)?;
    let (after, limit) = page(req)?;
    let household = participant.household.as_str();
    let mut sql =
        String::from("SELECT uuid, meter, measured_at, data FROM export_copy WHERE household = ?");
    let mut params = vec![text(household)];
    if let Some(after) = &after {
        sql.push_str(
            " AND (measured_at, uuid) >
                 (SELECT measured_at, uuid FROM export_copy WHERE household = ? AND uuid = ?)",
        );
        params.extend([text(household), text(after)]);
    }
    sql.push_str(" ORDER BY measured_at, uuid LIMIT ?");
    params.push(Sql::Integer(limit));
    let rows = env.db.query(&sql, &params)?;
    let mut csv = String::from(HEADER);
    let mut last = None;
    for row in &rows.rows {
        let (uuid, meter) = (col_required(row, 0)?, col_required(row, 1)?);
        let at = timestamp::db_to_api(Some(col_required(row, 2)?)).unwrap_or_default();
        let data: Value = serde_json::from_str(&col_required(row, 3)?).unwrap_or(Value::Null);
        for (obis, value) in stored_readings(&data) {
            csv.push_str(&format!("{uuid},{meter},{at},{obis},{value}\n"));
        }
        last = Some(uuid);
    }
    access_log::append(
        &env.db,
        household,
        json!({
            "actor": auth::actor(req, env)?,
            "role": "participant",
            "object": "export_copy",
            "operation": "read",
            "policies": [],
            "selected": rows.rows.len(),
            "served": rows.rows.len(),
            "decision": "allow",
        }),
    )?;
    let mut headers = vec![(
        "content-type".to_owned(),
        "text/csv; charset=utf-8".to_owned(),
    )];
    if let Some(last) = last.filter(|_| rows.rows.len() as i64 == limit) {
        headers.push((
            "x-wattlet-next".to_owned(),
            format!("after={last}&limit={limit}"),
        ));
    }
    Ok(Response {
        status: 200,
        headers,
        body: csv.into_bytes(),
    })
}

/// `after` (a uuid) and `limit` of a download.
fn page(req: &Request) -> ApiResult<(Option<String>, i64)> {
    let (mut after, mut limit) = (None, validate::DEFAULT_LIMIT);
    for (key, value) in query_pairs(req.query())? {
        match key.as_str() {
            "after" => after = Some(validate::uuid("after", &value)?),
            "limit" => limit = validate::limit(&value)?,
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (after, limit)"
                )));
            }
        }
    }
    Ok((after, limit))
}

/// `DELETE /api/household/export_copy` (participant): empties the household's export copy →
/// 200 `{"deleted": n}`.
pub fn delete(req: &Request, env: &Env) -> ApiResult<Response> {
    let participant = auth::participant(req, env)?;
    let deleted = forget(&env.db, &participant.household)?;
    access_log::append(
        &env.db,
        &participant.household,
        json!({
            "actor": auth::actor(req, env)?,
            "role": "participant",
            "object": "export_copy",
            "operation": "delete",
            "policies": [],
            "deleted": deleted,
            "decision": "allow",
        }),
    )?;
    Ok(json_response(200, &json!({ "deleted": deleted })))
}

/// Deletes `household`'s export copy (its participant asked, or it is anonymized): how many
/// measurements it held.
pub(crate) fn forget(db: &Db, household: &str) -> ApiResult<usize> {
    Ok(db
        .query(
            "DELETE FROM export_copy WHERE household = ? RETURNING uuid",
            &[text(household)],
        )?
        .rows
        .len())
}
