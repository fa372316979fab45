//! Per-request host state of a Spin component and the Spin host interfaces it may call:
//! `fermyon:spin/{sqlite,key-value,variables}@2.0.0`, WASI and wasi:http with Spin's outbound
//! rules. Every grant comes from the manifest; anything not granted is `access-denied`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::OutboundPolicy;
use crate::storage::SharedConnection;

wasmtime::component::bindgen!({
    path: "../../wit/spin-host",
    world: "spin-imports",
    with: {
        "fermyon:spin/sqlite.connection": SqliteConnection,
        "fermyon:spin/key-value.store": KeyValueStore,
    },
});

use fermyon::spin::key_value;
use fermyon::spin::sqlite;
use fermyon::spin::variables;

pub struct SqliteConnection(SharedConnection);
pub struct KeyValueStore {
    label: String,
    connection: SharedConnection,
}

/// What one component may use, fixed at start-up from the manifest.
#[derive(Default)]
pub struct Grants {
    pub databases: BTreeMap<String, SharedConnection>,
    pub stores: BTreeMap<String, SharedConnection>,
    pub variables: BTreeMap<String, String>,
    pub outbound: OutboundPolicy,
    /// `[component.X] environment`: the component's environment variables.
    pub environment: Vec<(String, String)>,
}

pub struct SpinState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    grants: Arc<Grants>,
    outbound: OutboundPolicy,
    /// When the request must be answered: the guest traps at the first epoch tick after it
    /// (see [`crate::engine::limit_store`]); host calls that can wait should not wait past it.
    deadline: Option<Instant>,
    limiter: MemoryLimiter,
}

impl SpinState {
    /// The state of one request: no deadline and no memory limit until [`SpinState::limited`].
    pub fn new(grants: Arc<Grants>) -> Self {
        SpinState {
            wasi: WasiCtx::builder()
                .inherit_stdout()
                .inherit_stderr()
                .envs(&grants.environment)
                .build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: grants.outbound.clone(),
            grants,
            deadline: None,
            limiter: MemoryLimiter::new(usize::MAX),
        }
    }

    /// The same state with a deadline and a memory limit (bytes per linear memory).
    pub fn limited(mut self, deadline: Instant, max_memory: usize) -> Self {
        self.deadline = Some(deadline);
        self.limiter = MemoryLimiter::new(max_memory);
        self
    }

    /// When the request must be answered, if it has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The store's resource limiter.
    pub(crate) fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// The memory growth the limit refused, if any: `(bytes asked for, limit)`.
    pub(crate) fn refused_memory(&self) -> Option<(usize, usize)> {
        self.limiter.refused.map(|asked| (asked, self.limiter.max))
    }
}

/// Refuses memory growth past the limit, and remembers that it did: a guest may cope with a
/// failed `memory.grow`, and when it traps instead, the trap is reported as the limit's doing.
pub(crate) struct MemoryLimiter {
    max: usize,
    refused: Option<usize>,
}

impl MemoryLimiter {
    fn new(max: usize) -> Self {
        MemoryLimiter { max, refused: None }
    }
}

/// Table elements an instance may grow its tables to (the pool caps them as well).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl WasiView for SpinState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SpinState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<SpinState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    sqlite::add_to_linker::<_, HasSelf<SpinState>>(linker, |s| s)?;
    key_value::add_to_linker::<_, HasSelf<SpinState>>(linker, |s| s)?;
    variables::add_to_linker::<_, HasSelf<SpinState>>(linker, |s| s)?;
    Ok(())
}

impl sqlite::Host for SpinState {}

impl sqlite::HostConnection for SpinState {
    fn open(&mut self, database: String) -> Result<Resource<SqliteConnection>, sqlite::Error> {
        let Some(connection) = self.grants.databases.get(&database) else {
            return Err(sqlite::Error::AccessDenied);
        };
        let connection = SqliteConnection(connection.clone());
        self.table
            .push(connection)
            .map_err(|e| sqlite::Error::Io(e.to_string()))
    }

    fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> Result<sqlite::QueryResult, sqlite::Error> {
        let connection = self
            .table
            .get(&connection)
            .map_err(|_| sqlite::Error::InvalidConnection)?;
        connection.execute(&statement, parameters)
    }

    fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl SqliteConnection {
    fn execute(
        &self,
        statement: &str,
        parameters: Vec<sqlite::Value>,
    ) -> Result<sqlite::QueryResult, sqlite::Error> {
        let db = self
            .0
            .lock()
            .map_err(|_| sqlite::Error::Io("database lock poisoned".into()))?;
        let mut prepared = db.prepare_cached(statement)?;
        let columns: Vec<String> = prepared
            .column_names()
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let params = parameters.into_iter().map(rusqlite::types::Value::from);
        let mut rows = prepared.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns.len())
                .map(|i| row.get_ref(i).map(sqlite::Value::from))
                .collect::<rusqlite::Result<_>>()?;
            out.push(sqlite::RowResult { values });
        }
        Ok(sqlite::QueryResult { columns, rows: out })
    }
}

impl key_value::Host for SpinState {}

impl key_value::HostStore for SpinState {
    fn open(&mut self, label: String) -> Result<Resource<KeyValueStore>, key_value::Error> {
        let Some(connection) = self.grants.stores.get(&label) else {
            return Err(key_value::Error::AccessDenied);
        };
        let store = KeyValueStore {
            label,
            connection: connection.clone(),
        };
        self.table
            .push(store)
            .map_err(|e| key_value::Error::Other(e.to_string()))
    }

    fn get(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, key_value::Error> {
        self.kv(&store, |db, label| {
            db.query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                (label, &key),
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })
        })
    }

    fn set(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), key_value::Error> {
        self.kv(&store, |db, label| {
            db.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                (label, &key, &value),
            )
            .map(drop)
        })
    }

    fn delete(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<(), key_value::Error> {
        self.kv(&store, |db, label| {
            db.execute(
                "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                (label, &key),
            )
            .map(drop)
        })
    }

    fn exists(
        &mut self,
        store: Resource<KeyValueStore>,
        key: String,
    ) -> Result<bool, key_value::Error> {
        Ok(self.get(store, key)?.is_some())
    }

    fn get_keys(
        &mut self,
        store: Resource<KeyValueStore>,
    ) -> Result<Vec<String>, key_value::Error> {
        self.kv(&store, |db, label| {
            let mut statement =
                db.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
            let keys = statement.query_map([label], |row| row.get(0))?;
            keys.collect()
        })
    }

    fn drop(&mut self, store: Resource<KeyValueStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl SpinState {
    fn kv<T>(
        &mut self,
        store: &Resource<KeyValueStore>,
        op: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<T>,
    ) -> Result<T, key_value::Error> {
        let store = self
            .table
            .get(store)
            .map_err(|e| key_value::Error::Other(e.to_string()))?;
        let db = store
            .connection
            .lock()
            .map_err(|_| key_value::Error::Other("store lock poisoned".into()))?;
        Ok(op(&db, &store.label)?)
    }
}

impl variables::Host for SpinState {
    fn get(&mut self, name: String) -> Result<String, variables::Error> {
        if !crate::manifest::valid_variable_name(&name) {
            return Err(variables::Error::InvalidName(name));
        }
        self.grants
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(name))
    }
}
