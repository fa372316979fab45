//! The wasmtime engine every component of an application is compiled for, the epoch ticker
//! that bounds how long a request may run, and the linker that gives components the host
//! interfaces.
//!
//! Deadlines: the engine compiles components with epoch interruption, and one thread per engine
//! advances the epoch every [`EPOCH_TICK`]. Each request's store (see [`limit_store`]) has its
//! guest yield to the async executor at every tick (a `loop {}` then shares its worker thread
//! instead of holding it) and trap once the request's deadline has passed. No timer and no
//! thread per request: the cost is a check at loop heads and function entries.

use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    UpdateDeadline,
};

use crate::host::{self, SpinState};

/// How often the epoch advances: the granularity of deadlines, and the longest a guest runs
/// before it lets other tasks on its worker thread run.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What a request's guest trapped with when its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request deadline passed")]
pub struct DeadlineExceeded;

/// The largest memory any instance may have and how many instances may live at once: what the
/// pool reserves slots for.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub max_memory: usize,
    pub instances: u32,
}

/// An engine with epoch interruption and the pooling allocator (instances made from
/// pre-allocated slots with copy-on-write memory: cheap per-request instances), its epoch
/// ticking until the engine is dropped. The pool reserves address space for every slot up
/// front; kernels with 39-bit user address space (some aarch64 builds, e.g. Raspberry Pi OS)
/// cannot give it, so this falls back to on-demand allocation with a log line.
pub fn new(size: PoolSize) -> anyhow::Result<Engine> {
    let mut pooled = base_config();
    pooled
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool(size)))
        .memory_init_cow(true);
    let engine = match Engine::new(&pooled) {
        Ok(engine) => engine,
        Err(error) => {
            tracing::warn!(%error, "pooling allocator unavailable, falling back to on-demand instances");
            Engine::new(&base_config())?
        }
    };
    start_ticker(&engine)?;
    Ok(engine)
}

/// One thread advancing the engine's epoch; it ends when the engine is gone.
fn start_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wattlet-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })?;
    Ok(())
}

/// Sets up a request's store: its memory limit (the limiter in [`SpinState`]) and its deadline
/// (a yield at every epoch tick, a [`DeadlineExceeded`] trap once [`SpinState::deadline`] has
/// passed).
pub fn limit_store(store: &mut Store<SpinState>) {
    store.limiter(|state| state.limiter() as &mut dyn wasmtime::ResourceLimiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|context| match context.data().deadline() {
        Some(deadline) if Instant::now() >= deadline => Err(DeadlineExceeded.into()),
        _ => Ok(UpdateDeadline::Yield(1)),
    });
}

fn base_config() -> Config {
    let mut config = Config::new();
    // The async component model runs wasi:http@0.3 (p3) handlers.
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true);
    config
}

fn pool(size: PoolSize) -> PoolingAllocationConfig {
    // A component (composed ones too) is a few core instances, memories and tables.
    let instances = size.instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances.saturating_mul(2))
        .max_memory_size(size.max_memory);
    // After each request, copy back only the pages the instance dirtied (found with Linux's
    // PAGEMAP_SCAN, kernel ≥ 6.7) instead of madvise-ing the whole memory away: no TLB-shootdown
    // IPIs and no page faults on the next request (3× requests/s for a trivial handler: see
    // BENCHMARKS.md, "Spin host").
    // Without PAGEMAP_SCAN, keep-resident would memset a fixed prefix on every request, so keep
    // wasmtime's default there.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
    }
    pool
}

/// A linker with WASI and wasi:http (0.2 and 0.3) and the Spin host interfaces.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<SpinState>> {
    let mut linker = Linker::<SpinState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    host::add_to_linker(&mut linker)?;
    Ok(linker)
}
