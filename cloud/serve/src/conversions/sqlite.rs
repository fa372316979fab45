//! `fermyon:spin/sqlite@2.0.0` ↔ rusqlite.

use rusqlite::ErrorCode;
use rusqlite::types::{Value, ValueRef};

use crate::host::fermyon::spin::sqlite;
use crate::storage::QueryError;

impl From<sqlite::Value> for Value {
    fn from(value: sqlite::Value) -> Self {
        match value {
            sqlite::Value::Integer(i) => Value::Integer(i),
            sqlite::Value::Real(r) => Value::Real(r),
            sqlite::Value::Text(t) => Value::Text(t),
            sqlite::Value::Blob(b) => Value::Blob(b),
            sqlite::Value::Null => Value::Null,
        }
    }
}

impl From<ValueRef<'_>> for sqlite::Value {
    fn from(value: ValueRef<'_>) -> Self {
        match value {
            ValueRef::Integer(i) => sqlite::Value::Integer(i),
            ValueRef::Real(r) => sqlite::Value::Real(r),
            // SQLite does not enforce UTF-8 in TEXT; the interface's `text` is a string.
            ValueRef::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => sqlite::Value::Blob(b.to_vec()),
            ValueRef::Null => sqlite::Value::Null,
        }
    }
}

impl From<rusqlite::Error> for sqlite::Error {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull => {
                sqlite::Error::DatabaseFull
            }
            other => sqlite::Error::Io(other.to_string()),
        }
    }
}

impl From<QueryError> for sqlite::Error {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Sqlite(error) => error.into(),
            other => sqlite::Error::Io(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let values = [
            sqlite::Value::Integer(-7),
            sqlite::Value::Real(0.5),
            sqlite::Value::Text("zweite ✓".into()),
            sqlite::Value::Blob(vec![0, 255]),
            sqlite::Value::Null,
        ];
        let db = rusqlite::Connection::open_in_memory().expect("db");
        for value in values {
            let sql = Value::from(value.clone());
            let back: sqlite::Value = db
                .query_row("SELECT ?1", [sql], |row| row.get_ref(0).map(Into::into))
                .expect("select");
            assert_eq!(format!("{back:?}"), format!("{value:?}"));
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_replaced_not_refused() {
        let value = sqlite::Value::from(ValueRef::Text(b"a\xffb"));
        assert!(matches!(value, sqlite::Value::Text(t) if t == "a\u{fffd}b"));
    }

    #[test]
    fn a_full_disk_is_database_full() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(matches!(
            sqlite::Error::from(full),
            sqlite::Error::DatabaseFull
        ));
        let other = rusqlite::Error::QueryReturnedNoRows;
        assert!(matches!(sqlite::Error::from(other), sqlite::Error::Io(_)));
    }
}
