//! `GET /api/health` and `GET /api/version`.

use serde_json::json;
use spin_sdk::http::Response;

use crate::db::Db;
use crate::error::sqlite_error_text;
use crate::{SERVICE, VERSION, json_response, schema};

/// `GET /api/health`: 200 when the `default` database answers and the schema is current, 503
/// otherwise.
pub fn health() -> Response {
    let (status, state, database) = match check_database() {
        Ok(()) => (200, "ok", "ok".to_owned()),
        Err(message) => (503, "unavailable", message),
    };
    let body = json!({
        "status": state,
        "service": SERVICE,
        "version": VERSION,
        "database": database,
        "schema_version": schema::current_version(),
    });
    json_response(status, &body)
}

/// `GET /api/version`.
pub fn version() -> Response {
    json_response(200, &json!({ "version": VERSION }))
}

fn check_database() -> Result<(), String> {
    let db = Db::open().map_err(|e| e.to_string())?;
    let result = db
        .try_query("SELECT 1", &[])
        .map_err(|e| sqlite_error_text(&e))?;
    match result.rows.first().and_then(|row| row.get::<i64>(0)) {
        Some(1) => {}
        other => return Err(format!("SELECT 1 returned {other:?}")),
    }
    schema::migrate(&db).map_err(|e| e.to_string())
}
