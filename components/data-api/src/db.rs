//! A thin layer over `spin_sdk::sqlite` for the `default` database.
//!
//! Both Spin and `wattlet serve` may hand every concurrent request the same SQLite connection,
//! so a `BEGIN` … `COMMIT` spread over several `execute` calls could interleave with another
//! request's statements. Every write that must be atomic is therefore a single statement (one
//! multi-row `INSERT`, a conditional `UPDATE … RETURNING`); multi-table writes are ordered so
//! that a failure part-way is undone by the caller (see `handlers::management`).

use spin_sdk::sqlite::{Connection, Error as SqliteError, QueryResult, RowResult, Value};

use crate::error::{ApiError, ApiResult};

pub struct Db(Connection);

impl Db {
    pub fn open() -> ApiResult<Self> {
        Ok(Db(Connection::open_default()?))
    }

    /// Runs one statement; errors stay sqlite errors so callers can tell constraint failures.
    pub fn try_query(&self, sql: &str, params: &[Value]) -> Result<QueryResult, SqliteError> {
        self.0.execute(sql, params)
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> ApiResult<QueryResult> {
        Ok(self.0.execute(sql, params)?)
    }

    pub fn exec(&self, sql: &str, params: &[Value]) -> ApiResult<()> {
        self.0.execute(sql, params)?;
        Ok(())
    }
}

/// Whether a sqlite error is a UNIQUE / PRIMARY KEY violation (hosts report it as `io: …`).
pub fn is_unique_violation(e: &SqliteError) -> bool {
    matches!(e, SqliteError::Io(message) if message.contains("UNIQUE constraint failed"))
}

pub fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// Column `i` of a row as an owned string (`None` for NULL or another type).
pub fn col_text(row: &RowResult, i: usize) -> Option<String> {
    row.get::<&str>(i).map(str::to_owned)
}

/// Column `i` as a string that the schema declares NOT NULL.
pub fn col_required(row: &RowResult, i: usize) -> ApiResult<String> {
    col_text(row, i).ok_or_else(|| ApiError::Database(format!("unexpected NULL in column {i}")))
}

/// A JSON text column parsed back into a value (`null` when NULL or not valid JSON).
pub fn col_json(row: &RowResult, i: usize) -> serde_json::Value {
    row.get::<&str>(i)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// `?, ?, …` with `n` placeholders.
pub fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}
