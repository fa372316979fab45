//! Spin probe: a test component (spin-sdk 5) that exercises every host interface a Spin host must
//! provide, one route each, so end-to-end tests can run it on `spin up` and on `wattlet serve`
//! and compare. Routes are matched on the `spin-path-info` header (the part of the path after the
//! trigger route's `/...`), so the same component serves at any route:
//!
//! | method | path info | does |
//! |---|---|---|
//! | GET | `/hello` | 200 `hello` |
//! | POST | `/sqlite/<db>` | inserts the body into table `kv` of database `<db>`, 200 with the new row id |
//! | GET | `/sqlite/<db>` | 200, JSON array of every `v` of table `kv`, in insertion order |
//! | GET | `/sqlite-insert` | inserts a row into table `bench` of the `default` database, 200 with its id |
//! | PUT | `/kv/<store>/<key>` | stores the body, 200 `ok` |
//! | GET | `/kv/<store>/<key>` | 200 with the value, or 404 `not found` |
//! | DELETE | `/kv/<store>/<key>` | deletes the key, 200 `ok` |
//! | GET | `/variables/<name>` | 200 with the variable's value |
//! | GET | `/env/<name>` | 200 with the environment variable's value, 404 when unset |
//! | GET | `/outbound?url=<url-encoded URL>` | outgoing GET, 200 `{"status": <upstream status>, "body": "<upstream body>"}` |
//! | GET | `/headers[/...]`, `/` or empty (exact route) | 200 `{"method", "uri", "path", "query", "headers": {...}}` |
//! | any | `/echo` | 200 with the request body |
//! | GET | `/trap` | panics: the instance traps |
//! | GET | `/loop` | spins forever (the host's deadline stops it) |
//! | GET | `/hog/<MiB>` | allocates and touches that much memory, 200 with the byte count |
//! | GET | `/sleep/<ms>` | sleeps (a host wait), then 200 `slept` |
//! | GET | `/sqlite-abuse/...` | a hostile use of the `default` database (see [`sqlite_abuse`]) |
//!
//! Host errors come back as an HTTP status and a plain-text body naming the error both by its WIT
//! case and by its Rust `Debug` text, e.g. `access-denied (Error::AccessDenied)`: sqlite and
//! key-value `access-denied` → 403, `no-such-database` / `no-such-store` → 404, variables
//! `undefined` → 404, anything else → 500; an outbound error → 502 with the `SendError` debug text
//! (e.g. `Http(ErrorCode::HttpRequestDenied)`). Unknown routes → 404 `no route`.
//!
//! The crate is a WebAssembly component only: on native targets it is empty.
#![cfg(target_family = "wasm")]

mod runaway;
mod sqlite_abuse;

use serde_json::{Map, Value, json};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::{Error as KvError, Store};
use spin_sdk::sqlite::{Connection, Error as SqliteError, Value as SqlValue};
use spin_sdk::variables;

#[http_component]
async fn handle(req: Request) -> Response {
    let Some(path_info) = req.header("spin-path-info").map(|v| v.as_bytes().to_vec()) else {
        return text(500, "missing spin-path-info header");
    };
    let path_info = String::from_utf8_lossy(&path_info).into_owned();
    let segments: Vec<&str> = path_info.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let result = match (&method, segments.as_slice()) {
        (Method::Get, ["hello"]) => Ok(text(200, "hello")),
        (Method::Post, ["sqlite", db]) => sqlite_insert(db, req.body()),
        (Method::Get, ["sqlite", db]) => sqlite_list(db),
        (Method::Get, ["sqlite-insert"]) => sqlite_bench_insert(),
        (Method::Put, ["kv", store, key]) => kv_set(store, key, req.body()),
        (Method::Get, ["kv", store, key]) => kv_get(store, key),
        (Method::Delete, ["kv", store, key]) => kv_delete(store, key),
        (Method::Get, ["variables", name]) => variable(name),
        (Method::Get, ["env", name]) => Ok(match std::env::var(name) {
            Ok(value) => text(200, value),
            Err(e) => text(404, e.to_string()),
        }),
        (Method::Get, ["outbound"]) => outbound(&req).await,
        (Method::Get, [""] | ["headers", ..]) => Ok(headers(&req)),
        (_, ["echo"]) => Ok(Response::new(200, req.into_body())),
        (Method::Get, ["trap"]) => panic!("trap requested by the client"),
        (Method::Get, ["loop"]) => runaway::spin_forever(),
        (Method::Get, ["hog", mib]) => runaway::hog(mib),
        (Method::Get, ["sleep", ms]) => runaway::sleep(ms),
        (Method::Get, ["sqlite-abuse", "attach"]) => sqlite_abuse::attach(&req),
        (Method::Get, ["sqlite-abuse", "vacuum-into"]) => sqlite_abuse::vacuum_into(&req),
        (Method::Get, ["sqlite-abuse", "synchronous-off"]) => sqlite_abuse::synchronous_off(),
        (Method::Get, ["sqlite-abuse", "pragma"]) => sqlite_abuse::pragma(&req),
        (Method::Get, ["sqlite-abuse", "load-extension"]) => sqlite_abuse::load_extension(&req),
        (Method::Get, ["sqlite-abuse", "begin"]) => sqlite_abuse::begin(),
        (Method::Get, ["sqlite-abuse", "peek"]) => sqlite_abuse::peek(),
        (Method::Get, ["sqlite-abuse", "slow"]) => sqlite_abuse::slow(),
        _ => Ok(text(404, "no route")),
    };
    result.unwrap_or_else(|e| e)
}

/// A handler's result: the error arm is an already-built error response.
type Handled = Result<Response, Response>;

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.into())
        .build()
}

fn json_response(body: &Value) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

// --- sqlite (fermyon:spin/sqlite@2.0.0) ---

fn sqlite_error(e: SqliteError) -> Response {
    let (status, name) = match &e {
        SqliteError::AccessDenied => (403, "access-denied"),
        SqliteError::NoSuchDatabase => (404, "no-such-database"),
        SqliteError::InvalidConnection => (500, "invalid-connection"),
        SqliteError::DatabaseFull => (500, "database-full"),
        SqliteError::Io(_) => (500, "io"),
    };
    text(status, format!("{name} ({e:?})"))
}

fn open_kv_table(db: &str) -> Result<Connection, Response> {
    let conn = Connection::open(db).map_err(sqlite_error)?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)",
        &[],
    )
    .map_err(sqlite_error)?;
    Ok(conn)
}

/// Runs an `INSERT ... RETURNING <id>` and answers with the id.
fn insert_returning_id(conn: &Connection, sql: &str, params: &[SqlValue]) -> Handled {
    let result = conn.execute(sql, params).map_err(sqlite_error)?;
    match result.rows.first().and_then(|row| row.get::<i64>(0)) {
        Some(id) => Ok(text(200, id.to_string())),
        None => Err(text(500, format!("INSERT returned no id: {result:?}"))),
    }
}

fn sqlite_insert(db: &str, body: &[u8]) -> Handled {
    let conn = open_kv_table(db)?;
    let value = String::from_utf8_lossy(body).into_owned();
    insert_returning_id(
        &conn,
        "INSERT INTO kv (v) VALUES (?) RETURNING k",
        &[SqlValue::Text(value)],
    )
}

fn sqlite_list(db: &str) -> Handled {
    let conn = open_kv_table(db)?;
    let result = conn
        .execute("SELECT v FROM kv ORDER BY k", &[])
        .map_err(sqlite_error)?;
    let values: Vec<Value> = result
        .rows
        .iter()
        .map(|row| row.get::<&str>(0).map_or(Value::Null, Value::from))
        .collect();
    Ok(json_response(&Value::Array(values)))
}

fn sqlite_bench_insert() -> Handled {
    let conn = Connection::open_default().map_err(sqlite_error)?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench \
         (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER, payload TEXT)",
        &[],
    )
    .map_err(sqlite_error)?;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    insert_returning_id(
        &conn,
        "INSERT INTO bench (at, payload) VALUES (?, ?) RETURNING id",
        &[
            SqlValue::Integer(at),
            SqlValue::Text("wattlet bench".to_owned()),
        ],
    )
}

// --- key-value (fermyon:spin/key-value@2.0.0) ---

fn kv_error(e: KvError) -> Response {
    let (status, name) = match &e {
        KvError::AccessDenied => (403, "access-denied"),
        KvError::NoSuchStore => (404, "no-such-store"),
        KvError::StoreTableFull => (500, "store-table-full"),
        KvError::Other(_) => (500, "other"),
    };
    text(status, format!("{name} ({e:?})"))
}

fn kv_set(store: &str, key: &str, value: &[u8]) -> Handled {
    let store = Store::open(store).map_err(kv_error)?;
    store.set(key, value).map_err(kv_error)?;
    Ok(text(200, "ok"))
}

fn kv_get(store: &str, key: &str) -> Handled {
    let store = Store::open(store).map_err(kv_error)?;
    match store.get(key).map_err(kv_error)? {
        Some(value) => Ok(Response::new(200, value)),
        None => Ok(text(404, "not found")),
    }
}

fn kv_delete(store: &str, key: &str) -> Handled {
    let store = Store::open(store).map_err(kv_error)?;
    store.delete(key).map_err(kv_error)?;
    Ok(text(200, "ok"))
}

// --- variables (fermyon:spin/variables@2.0.0) ---

fn variable(name: &str) -> Handled {
    variables::get(name)
        .map(|value| text(200, value))
        .map_err(|e| {
            let (status, case) = match &e {
                variables::Error::Undefined(_) => (404, "undefined"),
                variables::Error::InvalidName(_) => (500, "invalid-name"),
                variables::Error::Provider(_) => (500, "provider"),
                variables::Error::Other(_) => (500, "other"),
            };
            text(status, format!("{case} ({e:?})"))
        })
}

// --- outgoing HTTP (wasi:http/outgoing-handler) ---

async fn outbound(req: &Request) -> Handled {
    let url = form_urlencoded::parse(req.query().as_bytes())
        .find_map(|(k, v)| (k == "url").then(|| v.into_owned()))
        .ok_or_else(|| text(400, "missing query parameter: url"))?;
    let response: Response = spin_sdk::http::send(Request::get(url).build())
        .await
        .map_err(|e| text(502, format!("{e:?}")))?;
    Ok(json_response(&json!({
        "status": response.status(),
        "body": String::from_utf8_lossy(response.body()),
    })))
}

// --- the incoming request as the component sees it ---

fn headers(req: &Request) -> Response {
    let headers: Map<String, Value> = req
        .headers()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.to_owned(), Value::String(value))
        })
        .collect();
    json_response(&json!({
        "method": req.method().to_string(),
        "uri": req.uri(),
        "path": req.path(),
        "query": req.query(),
        "headers": headers,
    }))
}
