//! The Spin HTTP component: Spin's request, its `default` SQLite database, its variables and
//! the system clock, handed to [`crate::Broker`].

use spin_sdk::http_component;
use spin_sdk::sqlite::{Connection, Value as SqliteValue};

use crate::store::{Sql, SqlStore, StoreError, Value};
use crate::{Broker, Request, Response, Variables};

#[http_component]
fn handle(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
    let response = answer(&req);
    let mut builder = spin_sdk::http::Response::builder();
    builder.status(response.status);
    for (name, value) in response.headers {
        builder.header(name, value);
    }
    builder.body(response.body).build()
}

fn answer(req: &spin_sdk::http::Request) -> Response {
    let mut request = Request::new(&req.method().to_string(), req.path());
    for (name, value) in req.headers() {
        if let Some(value) = value.as_str() {
            request = request.with_header(name, value);
        }
    }
    let request = request.with_body(req.body().to_vec());
    let failed = |e: &dyn std::fmt::Display| {
        eprintln!("wattlet-key-broker: storage: {e}");
        Response::json(
            500,
            &serde_json::json!({"error": {"code": "internal", "message": "the broker's storage failed"}}),
        )
    };
    let database = match Connection::open_default() {
        Ok(connection) => SpinDatabase(connection),
        Err(e) => return failed(&e),
    };
    let store = match SqlStore::open(&database) {
        Ok(store) => store,
        Err(e) => return failed(&e),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Broker {
        store: &store,
        variables: &SpinVariables,
        now,
    }
    .handle(&request)
}

struct SpinDatabase(Connection);

impl Sql for SpinDatabase {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, StoreError> {
        let params: Vec<SqliteValue> = params
            .iter()
            .map(|v| match v {
                Value::Integer(i) => SqliteValue::Integer(*i),
                Value::Real(f) => SqliteValue::Real(*f),
                Value::Text(s) => SqliteValue::Text(s.clone()),
                Value::Blob(b) => SqliteValue::Blob(b.clone()),
                Value::Null => SqliteValue::Null,
            })
            .collect();
        let result = self
            .0
            .execute(sql, &params)
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(result
            .rows
            .into_iter()
            .map(|row| {
                row.values
                    .into_iter()
                    .map(|v| match v {
                        SqliteValue::Integer(i) => Value::Integer(i),
                        SqliteValue::Real(f) => Value::Real(f),
                        SqliteValue::Text(s) => Value::Text(s),
                        SqliteValue::Blob(b) => Value::Blob(b),
                        SqliteValue::Null => Value::Null,
                    })
                    .collect()
            })
            .collect())
    }
}

struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &str) -> Result<String, String> {
        spin_sdk::variables::get(name).map_err(|e| e.to_string())
    }
}
