//! The storage the Data API runs on, as small types of its own: [`Storage`] executes one SQL
//! statement with parameters and gives the rows back. The component implements it with Spin's
//! `fermyon:spin/sqlite` (`default` database); native tests with rusqlite on a real SQLite file.
//! Values convert as Spin's do (`i64` from integers, `f64` from reals, `&str` from text).
//!
//! Both Spin and `wattlet serve` may hand every concurrent request the same SQLite connection,
//! so a `BEGIN` … `COMMIT` spread over several `execute` calls could interleave with another
//! request's statements. Every write that must be atomic is therefore a single statement (one
//! multi-row `INSERT`, a conditional `UPDATE … RETURNING`); multi-table writes are ordered so
//! that a failure part-way is undone by the caller (see `handlers::management`).

use crate::error::{ApiError, ApiResult};

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// One row of a result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub values: Vec<Value>,
}

/// The rows a statement returned (none for most writes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// Why a statement failed, as `fermyon:spin/sqlite@2.0.0` reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("no-such-database")]
    NoSuchDatabase,
    #[error("access-denied")]
    AccessDenied,
    #[error("invalid-connection")]
    InvalidConnection,
    #[error("database-full")]
    DatabaseFull,
    /// Anything SQLite says (a syntax error, a constraint, an I/O failure).
    #[error("io: {0}")]
    Io(String),
}

impl StorageError {
    /// Whether this is a UNIQUE / PRIMARY KEY violation (hosts report it as `io: …`).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StorageError::Io(message) if message.contains("UNIQUE constraint failed"))
    }
}

/// A SQLite database.
pub trait Storage {
    /// Makes the database ready (opens the connection); the Data API calls it before the first
    /// statement of a request.
    fn open(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Runs one statement with `?` parameters bound in order.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, StorageError>;
}

/// A value as a Rust type, as Spin's SDK converts them.
pub trait FromValue<'a>: Sized {
    fn from_value(value: &'a Value) -> Option<Self>;
}

impl FromValue<'_> for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue<'_> for f64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Real(f) => Some(*f),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a str {
    fn from_value(value: &'a Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s),
            Value::Blob(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

impl Row {
    /// Column `index` as `T` (`None` for NULL, another type or no such column).
    pub fn get<'a, T: FromValue<'a>>(&'a self, index: usize) -> Option<T> {
        self.values.get(index).and_then(T::from_value)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::Database(e.to_string())
    }
}

/// The Data API's handle on its database.
#[derive(Clone, Copy)]
pub struct Db<'a>(&'a dyn Storage);

impl<'a> Db<'a> {
    pub fn open(storage: &'a dyn Storage) -> ApiResult<Self> {
        storage.open()?;
        Ok(Db(storage))
    }

    /// Runs one statement; errors stay storage errors so callers can tell constraint failures.
    pub fn try_query(&self, sql: &str, params: &[Value]) -> Result<Rows, StorageError> {
        self.0.execute(sql, params)
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> ApiResult<Rows> {
        Ok(self.0.execute(sql, params)?)
    }

    pub fn exec(&self, sql: &str, params: &[Value]) -> ApiResult<()> {
        self.0.execute(sql, params)?;
        Ok(())
    }
}

pub fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// Column `i` of a row as an owned string (`None` for NULL or another type).
pub fn col_text(row: &Row, i: usize) -> Option<String> {
    row.get::<&str>(i).map(str::to_owned)
}

/// Column `i` as a string that the schema declares NOT NULL.
pub fn col_required(row: &Row, i: usize) -> ApiResult<String> {
    col_text(row, i).ok_or_else(|| ApiError::Database(format!("unexpected NULL in column {i}")))
}

/// A JSON text column parsed back into a value (`null` when NULL or not valid JSON).
pub fn col_json(row: &Row, i: usize) -> serde_json::Value {
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
