//! The wattlet Data API: the REST API of the cloud, a Spin HTTP component (spin-sdk 5, exports
//! `wasi:http/incoming-handler@0.2.0`). It runs unchanged on `spin up` and on `wattlet serve`.
//!
//! Routes (the component is mounted at `/api/...` in the repository's `spin.toml`):
//! - `GET /api/health`: service, version and whether the `default` sqlite database answers.
//! - `GET /api/version`: the component's version.
//!
//! Anything else under `/api` is a JSON 404; a known path with the wrong method is a JSON 405.
//!
//! The crate is a WebAssembly component only: on native targets it is empty.
#![cfg(target_family = "wasm")]

use serde_json::{Value, json};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::sqlite::{Connection, Error as SqliteError};

const SERVICE: &str = "wattlet-data-api";
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[http_component]
fn handle(req: Request) -> Response {
    let handler: fn() -> Response = match req.path() {
        "/api/health" => health,
        "/api/version" => version,
        _ => return json_response(404, &json!({ "error": "not found" })),
    };
    if *req.method() != Method::Get {
        let mut response = json_response(405, &json!({ "error": "method not allowed" }));
        response.set_header("allow", "GET");
        return response;
    }
    handler()
}

/// `GET /api/health`: 200 when the `default` database answers `SELECT 1`, 503 otherwise.
fn health() -> Response {
    let (status, state, database) = match check_database() {
        Ok(()) => (200, "ok", "ok".to_owned()),
        Err(e) => (503, "unavailable", sqlite_error_text(&e)),
    };
    let body = json!({
        "status": state,
        "service": SERVICE,
        "version": VERSION,
        "database": database,
    });
    json_response(status, &body)
}

/// `GET /api/version`.
fn version() -> Response {
    json_response(200, &json!({ "version": VERSION }))
}

fn check_database() -> Result<(), SqliteError> {
    let db = Connection::open_default()?;
    let result = db.execute("SELECT 1", &[])?;
    match result.rows.first().and_then(|row| row.get::<i64>(0)) {
        Some(1) => Ok(()),
        other => Err(SqliteError::Io(format!("SELECT 1 returned {other:?}"))),
    }
}

/// The WIT name of a `fermyon:spin/sqlite@2.0.0` error (`access-denied`, `io: <message>`, ...).
fn sqlite_error_text(e: &SqliteError) -> String {
    match e {
        SqliteError::NoSuchDatabase => "no-such-database".to_owned(),
        SqliteError::AccessDenied => "access-denied".to_owned(),
        SqliteError::InvalidConnection => "invalid-connection".to_owned(),
        SqliteError::DatabaseFull => "database-full".to_owned(),
        SqliteError::Io(message) => format!("io: {message}"),
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}
