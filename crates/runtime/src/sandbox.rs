//! The host state of a sandboxed component instance, and what one call into it may use.
//!
//! Every store made from [`crate::engine::engine`] must be armed before each call ([`arm`]):
//! the engine interrupts guests by epoch, and a store whose deadline was never set traps at
//! once. [`store`] makes a store with a memory limit and arms it for its first call.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What one call into a component may use; past either limit the call traps, the instance is
/// not used again, and the host says so (see [`describe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one call may run (wall-clock, to within [`crate::engine::TICK`]).
    pub call: Duration,
    /// The most linear memory the instance may have, in bytes.
    pub memory: usize,
}

impl Limits {
    /// The meter parser: one push of a serial read takes microseconds.
    pub const PARSER: Limits = Limits {
        call: Duration::from_secs(1),
        memory: 64 << 20,
    };
    /// The upload component: one batch, consent or status round trip over a slow uplink.
    pub const UPLOAD: Limits = Limits {
        call: Duration::from_secs(120),
        memory: 64 << 20,
    };
    /// The NIALM component: one work item (the first use of a model also optimizes it).
    pub const NIALM: Limits = Limits {
        call: Duration::from_secs(60),
        memory: 1 << 30,
    };
    /// The stream operators: one call is a batch of events (10,000 take about 10–20 ms) or a
    /// snapshot or restore of the whole state, which grows with the history Q1 keeps (natively
    /// ~0.2 GB + 32 MB a day for 2,125 plugs, ~1.2 GB after 30 days; a snapshot is a second copy
    /// while it is made). So: seconds per call with a wide margin, and memory up to 3 GiB of
    /// wasm32's 4.
    pub const STREAM: Limits = Limits {
        call: Duration::from_secs(30),
        memory: 3 << 30,
    };

    /// wasmtime's limiter for a store with these limits.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.memory)
            .trap_on_grow_failure(true)
            .build()
    }
}

/// What a component instance may reach of the host. WASI gets no preopened directories, no
/// environment and no network: a parser needs none of them.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl HostState {
    pub fn sandboxed(limits: &Limits) -> Self {
        HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: limits.store_limits(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A sandboxed store on `engine` with `limits`, armed for its first call (instantiation).
pub fn store(engine: &Engine, limits: &Limits) -> Store<HostState> {
    let mut store = Store::new(engine, HostState::sandboxed(limits));
    store.limiter(|state| &mut state.limits);
    arm(&mut store, limits.call);
    store
}

/// Lets the next call into `store` run for `call`, and no longer. A few nanoseconds: arm
/// before every call.
pub fn arm<T>(store: &mut Store<T>, call: Duration) {
    store.set_epoch_deadline(crate::engine::ticks(call));
}

/// Why a call failed, in words for a log line: the deadline or the memory limit when one of
/// them stopped it, else the trap.
pub fn describe(error: &wasmtime::Error, limits: &Limits) -> String {
    if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        return format!("ran longer than its limit of {:?} per call", limits.call);
    }
    let text = format!("{error:#}");
    if text.contains("forcing a memory growth failure") {
        return format!(
            "wanted more than its limit of {} MiB of memory",
            limits.memory >> 20
        );
    }
    text
}
