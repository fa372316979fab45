//! `fermyon:spin/sqlite@2.0.0`: each guest connection is a lease on the database's SQLite
//! connections (see [`crate::storage::database`]); statements run on blocking threads.

use wasmtime::component::Resource;

use super::SpinState;
use super::sqlite;
use crate::storage::database::MAX_RESULT_BYTES;
use crate::storage::{Database, Lease, QueryError};

/// A guest's connection.
pub struct SqliteConnection(Lease);

impl sqlite::Host for SpinState {}

impl sqlite::HostConnection for SpinState {
    async fn open(
        &mut self,
        database: String,
    ) -> Result<Resource<SqliteConnection>, sqlite::Error> {
        let Some(opened) = self.grants.databases.get(&database) else {
            return Err(sqlite::Error::AccessDenied);
        };
        let lease = opened.lease(self.deadline);
        if !self.open_connection() {
            return Err(sqlite::Error::Io(format!(
                "too many open connections in one request (at most {})",
                super::MAX_CONNECTIONS
            )));
        }
        self.table
            .push(SqliteConnection(lease))
            .map_err(|e| sqlite::Error::Io(e.to_string()))
    }

    async fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> Result<sqlite::QueryResult, sqlite::Error> {
        let SqliteConnection(lease) = self
            .table
            .get_mut(&connection)
            .map_err(|_| sqlite::Error::InvalidConnection)?;
        Ok(lease
            .run(move |database, db| query(database, db, &statement, parameters))
            .await?)
    }

    async fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        self.close_connection();
        Ok(())
    }
}

/// Runs one statement and collects its rows (blocking).
fn query(
    database: &Database,
    db: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<sqlite::Value>,
) -> Result<sqlite::QueryResult, QueryError> {
    let mut prepared = db.prepare_cached(statement)?;
    let _turn = (!prepared.readonly() && db.is_autocommit()).then(|| database.write_turn());
    let columns: Vec<String> = prepared
        .column_names()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let params = parameters.into_iter().map(rusqlite::types::Value::from);
    let mut rows = prepared.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        let values: Vec<sqlite::Value> = (0..columns.len())
            .map(|i| row.get_ref(i).map(sqlite::Value::from))
            .collect::<rusqlite::Result<_>>()?;
        bytes += values.iter().map(size).sum::<usize>();
        if bytes > MAX_RESULT_BYTES {
            return Err(QueryError::TooLarge);
        }
        out.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult { columns, rows: out })
}

/// About what a value takes in the guest's memory.
fn size(value: &sqlite::Value) -> usize {
    16 + match value {
        sqlite::Value::Text(t) => t.len(),
        sqlite::Value::Blob(b) => b.len(),
        _ => 0,
    }
}
