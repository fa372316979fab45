//! Per-request host state of a Spin component and the Spin host interfaces it may call:
//! `fermyon:spin/{sqlite,key-value,variables}@2.0.0`, WASI and wasi:http with Spin's outbound
//! rules. Every grant comes from the manifest; anything not granted is `access-denied`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::outbound::OutboundPolicy;
use crate::storage::Database;

mod kv;
mod sql;

pub use kv::KeyValueStore;
pub use sql::SqliteConnection;

wasmtime::component::bindgen!({
    path: "../../wit/spin-host",
    world: "spin-imports",
    // SQLite runs on blocking threads: the guest waits, the executor does not.
    imports: {
        "fermyon:spin/sqlite": async,
        "fermyon:spin/key-value": async,
    },
    with: {
        "fermyon:spin/sqlite.connection": SqliteConnection,
        "fermyon:spin/key-value.store": KeyValueStore,
    },
});

use fermyon::spin::key_value;
use fermyon::spin::sqlite;
use fermyon::spin::variables;

/// SQLite connections and key-value stores one request may hold open at once (each is a
/// SQLite connection with its file descriptors).
const MAX_CONNECTIONS: usize = 64;

/// What one component may use, fixed at start-up from the manifest.
#[derive(Default)]
pub struct Grants {
    pub databases: BTreeMap<String, Arc<Database>>,
    pub stores: BTreeMap<String, Arc<Database>>,
    pub variables: BTreeMap<String, String>,
    pub outbound: OutboundPolicy,
    /// `[component.X] environment`: the component's environment variables.
    pub environment: Vec<(String, String)>,
    /// `[component.X] files`: directories preopened read-only.
    pub mounts: Vec<crate::files::Mount>,
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
    /// SQLite connections and key-value stores open now (at most [`MAX_CONNECTIONS`]).
    connections: usize,
}

impl SpinState {
    /// The state of one request: no deadline and no memory limit until [`SpinState::limited`].
    pub fn new(grants: Arc<Grants>) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout()
            .inherit_stderr()
            .envs(&grants.environment);
        for mount in &grants.mounts {
            // Opened per request, as the directory may be replaced while serving; one that
            // vanished since start-up is missing for the guest, which answers for it.
            if let Err(error) = wasi.preopened_dir(&mount.host, &mount.guest, FsPerms::ReadOnly) {
                tracing::warn!(host = %mount.host.display(), guest = %mount.guest, %error, "cannot open a files mount");
            }
        }
        SpinState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: grants.outbound.clone(),
            grants,
            deadline: None,
            limiter: MemoryLimiter::new(usize::MAX),
            connections: 0,
        }
    }

    /// The same state with a deadline and a memory limit (bytes per linear memory).
    pub fn limited(mut self, deadline: Instant, max_memory: usize) -> Self {
        self.deadline = Some(deadline);
        self.limiter = MemoryLimiter::new(max_memory);
        self
    }

    /// When the request must be answered, if it has a deadline (SQLite statements still
    /// running then are interrupted).
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

impl SpinState {
    /// Counts a connection or store the guest opens; `false` when it holds too many.
    fn open_connection(&mut self) -> bool {
        if self.connections >= MAX_CONNECTIONS {
            return false;
        }
        self.connections += 1;
        true
    }

    fn close_connection(&mut self) {
        self.connections = self.connections.saturating_sub(1);
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
