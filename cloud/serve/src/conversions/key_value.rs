//! `fermyon:spin/key-value@2.0.0` ↔ rusqlite (stores are tables of SQLite files).

use crate::host::fermyon::spin::key_value;
use crate::storage::QueryError;

impl From<rusqlite::Error> for key_value::Error {
    fn from(error: rusqlite::Error) -> Self {
        key_value::Error::Other(error.to_string())
    }
}

impl From<QueryError> for key_value::Error {
    fn from(error: QueryError) -> Self {
        key_value::Error::Other(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_are_other() {
        let error = key_value::Error::from(rusqlite::Error::InvalidQuery);
        assert!(
            matches!(error, key_value::Error::Other(m) if m.contains("Query is not read-only"))
        );
    }
}
