//! `GET /api/health` and `GET /api/version`.

use serde_json::json;

use crate::db::{Db, Storage};
use crate::http::{Response, json_response};
use crate::{SERVICE, VERSION, schema};

/// `GET /api/health`: 200 when the `default` database answers and the schema is current, 503
/// otherwise.
pub fn health(storage: &dyn Storage) -> Response {
    let (status, state, database) = match check_database(storage) {
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

fn check_database(storage: &dyn Storage) -> Result<(), String> {
    let db = Db::open(storage).map_err(|e| e.to_string())?;
    let result = db.try_query("SELECT 1", &[]).map_err(|e| e.to_string())?;
    match result.rows.first().and_then(|row| row.get::<i64>(0)) {
        Some(1) => {}
        other => return Err(format!("SELECT 1 returned {other:?}")),
    }
    schema::migrate(&db).map_err(|e| e.to_string())
}
