//! The wasmtime engine every component of an application is compiled for, and the linker that
//! gives them the host interfaces.

use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::host::{self, SpinState};

/// An engine with the pooling allocator (instances made from pre-allocated slots with
/// copy-on-write memory: cheap per-request instances). The pool reserves address space for every
/// slot up front; kernels with 39-bit user address space (some aarch64 builds, e.g. Raspberry
/// Pi OS) cannot give it, so this falls back to on-demand allocation with a log line.
pub fn new() -> anyhow::Result<Engine> {
    let mut pooled = base_config();
    pooled
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool()))
        .memory_init_cow(true);
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(error) => {
            tracing::warn!(%error, "pooling allocator unavailable, falling back to on-demand instances");
            Engine::new(&base_config()).map_err(anyhow::Error::from)
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    // The async component model runs wasi:http@0.3 (p3) handlers.
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true);
    config
}

fn pool() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(512)
        .total_memories(256)
        .max_memory_size(256 << 20);
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
