//! `fermyon:spin/key-value@2.0.0`: a store is the rows of one label in a SQLite table; each
//! opened store is a lease on the file's connections (see [`crate::storage::database`]).

use rusqlite::OptionalExtension;
use wasmtime::component::Resource;

use super::SpinState;
use super::key_value;
use crate::storage::Lease;

/// A guest's open store.
pub struct KeyValueStore {
    label: String,
    lease: Lease,
}

impl key_value::Host for SpinState {}

impl key_value::HostStore for SpinState {
    async fn open(&mut self, label: String) -> Result<Resource<KeyValueStore>, key_value::Error> {
        let Some(opened) = self.grants.stores.get(&label) else {
            return Err(key_value::Error::AccessDenied);
        };
        let lease = opened.lease(self.deadline);
        if !self.open_connection() {
            return Err(key_value::Error::StoreTableFull);
        }
        self.table
            .push(KeyValueStore { label, lease })
            .map_err(|e| key_value::Error::Other(e.to_string()))
    }

    async fn get(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, key_value::Error> {
        self.kv(&store, false, move |db, label| {
            db.query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                (label, &key),
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    async fn set(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), key_value::Error> {
        self.kv(&store, true, move |db, label| {
            db.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                (label, &key, &value),
            )
            .map(drop)
        })
        .await
    }

    async fn delete(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<(), key_value::Error> {
        self.kv(&store, true, move |db, label| {
            db.execute(
                "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                (label, &key),
            )
            .map(drop)
        })
        .await
    }

    async fn exists(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<bool, key_value::Error> {
        self.kv(&store, false, move |db, label| {
            db.query_row(
                "SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2",
                (label, &key),
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
        })
        .await
    }

    async fn get_keys(
        &mut self,
        store: Resource<KeyValueStore>,
    ) -> Result<Vec<String>, key_value::Error> {
        self.kv(&store, false, |db, label| {
            let mut statement =
                db.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
            let keys = statement.query_map([label], |row| row.get(0))?;
            keys.collect()
        })
        .await
    }

    async fn drop(&mut self, store: Resource<KeyValueStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.close_connection();
        Ok(())
    }
}

impl SpinState {
    /// Runs `op` with the store's connection and label on a blocking thread; a `write` takes
    /// the file's write turn.
    async fn kv<T: Send + 'static>(
        &mut self,
        store: &Resource<KeyValueStore>,
        write: bool,
        op: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, key_value::Error> {
        let store = self
            .table
            .get_mut(store)
            .map_err(|e| key_value::Error::Other(e.to_string()))?;
        let label = store.label.clone();
        Ok(store
            .lease
            .run(move |database, db| {
                let _turn = write.then(|| database.write_turn());
                Ok(op(db, &label)?)
            })
            .await?)
    }
}
