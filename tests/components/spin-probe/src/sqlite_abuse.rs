//! What a hostile component might try with the `default` database it is granted (the hostile
//! tests run these on `wattlet serve` and on Spin). Each answers 200 when the host let it
//! through, or the host's error as the other sqlite routes do (`io (…not authorized…)` → 500).
//!
//! | path info | tries |
//! |---|---|
//! | `/sqlite-abuse/attach?path=P` | `ATTACH` the file `P` and create a table in it |
//! | `/sqlite-abuse/vacuum-into?path=P` | `VACUUM INTO` the new file `P` |
//! | `/sqlite-abuse/synchronous-off` | `PRAGMA synchronous = OFF` |
//! | `/sqlite-abuse/pragma?name=N` | reads `PRAGMA N`: 200 with its value |
//! | `/sqlite-abuse/load-extension?path=P` | `SELECT load_extension(P)` |
//! | `/sqlite-abuse/begin` | `BEGIN`, inserts a row into `abuse` and returns without `COMMIT`, and without dropping the connection |
//! | `/sqlite-abuse/peek` | counts `abuse`'s rows and tries `COMMIT`: 200 `{"rows": n, "commit": "ok" or the error}` |
//! | `/sqlite-abuse/slow` | a recursive query that never ends |

use serde_json::json;
use spin_sdk::http::{Request, Response};
use spin_sdk::sqlite::{Connection, Value as SqlValue};

use crate::{Handled, json_response, sqlite_error, text};

fn query_param(req: &Request, name: &str) -> Result<String, Response> {
    form_urlencoded::parse(req.query().as_bytes())
        .find_map(|(k, v)| (k == name).then(|| v.into_owned()))
        .ok_or_else(|| text(400, format!("missing query parameter: {name}")))
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn run(sql: &str, params: &[SqlValue]) -> Handled {
    let conn = Connection::open_default().map_err(sqlite_error)?;
    conn.execute(sql, params).map_err(sqlite_error)?;
    Ok(text(200, "done"))
}

pub fn attach(req: &Request) -> Handled {
    let path = query_param(req, "path")?;
    let conn = Connection::open_default().map_err(sqlite_error)?;
    conn.execute(&format!("ATTACH DATABASE {} AS other", quoted(&path)), &[])
        .map_err(sqlite_error)?;
    conn.execute("CREATE TABLE other.stolen (x)", &[])
        .map_err(sqlite_error)?;
    Ok(text(200, "attached"))
}

pub fn vacuum_into(req: &Request) -> Handled {
    run(
        &format!("VACUUM INTO {}", quoted(&query_param(req, "path")?)),
        &[],
    )
}

pub fn synchronous_off() -> Handled {
    run("PRAGMA synchronous = OFF", &[])
}

pub fn pragma(req: &Request) -> Handled {
    let name = query_param(req, "name")?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(text(400, "not a pragma name"));
    }
    let conn = Connection::open_default().map_err(sqlite_error)?;
    let result = conn
        .execute(&format!("PRAGMA {name}"), &[])
        .map_err(sqlite_error)?;
    let value = result.rows.first().and_then(|row| {
        row.get::<i64>(0)
            .map(|i| i.to_string())
            .or_else(|| row.get::<&str>(0).map(str::to_owned))
    });
    Ok(text(200, value.unwrap_or_default()))
}

pub fn load_extension(req: &Request) -> Handled {
    run(
        "SELECT load_extension(?)",
        &[SqlValue::Text(query_param(req, "path")?)],
    )
}

fn abuse_table() -> Result<Connection, Response> {
    let conn = Connection::open_default().map_err(sqlite_error)?;
    conn.execute("CREATE TABLE IF NOT EXISTS abuse (x INTEGER)", &[])
        .map_err(sqlite_error)?;
    Ok(conn)
}

pub fn begin() -> Handled {
    let conn = abuse_table()?;
    conn.execute("BEGIN", &[]).map_err(sqlite_error)?;
    conn.execute("INSERT INTO abuse VALUES (1)", &[])
        .map_err(sqlite_error)?;
    // Neither committed nor closed: the host must end it with the request.
    std::mem::forget(conn);
    Ok(text(200, "begun"))
}

pub fn peek() -> Handled {
    let conn = abuse_table()?;
    let result = conn
        .execute("SELECT count(*) FROM abuse", &[])
        .map_err(sqlite_error)?;
    let rows = result.rows.first().and_then(|row| row.get::<i64>(0));
    let commit = match conn.execute("COMMIT", &[]) {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    Ok(json_response(&json!({ "rows": rows, "commit": commit })))
}

pub fn slow() -> Handled {
    run(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
        &[],
    )
}
