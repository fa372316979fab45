//! `GET /api/health` and `GET /api/version`.

use serde_json::json;

use crate::db::{Db, Storage};
use crate::http::{Response, json_response};
use crate::services::Services;
use crate::{SERVICE, VERSION, auth, schema};

/// `GET /api/health`: 200 when the `default` database answers, the schema is current and the
/// secrets are strong enough; 503 otherwise (`database`, `secrets` say why).
pub fn health(services: &Services<'_>) -> Response {
    let database = check_database(services.storage);
    let secrets = auth::check_secrets(services.secrets).map_err(|e| {
        eprintln!("wattlet-data-api: {e}");
        e.to_string()
    });
    let (status, state) = match (&database, &secrets) {
        (Ok(()), Ok(())) => (200, "ok"),
        _ => (503, "unavailable"),
    };
    let describe = |check: Result<(), String>| check.err().unwrap_or_else(|| "ok".to_owned());
    let body = json!({
        "status": state,
        "service": SERVICE,
        "version": VERSION,
        "database": describe(database),
        "secrets": describe(secrets),
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
