//! The wasmtime engine and the per-instance host state shared by all components.

use anyhow::Context;
use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// One engine per process: compiled code is shared by every instance made from it.
pub fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // `WATTLET_PERFMAP=1` lets `perf` name the JIT-compiled component functions.
    if std::env::var_os("WATTLET_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    // Compiled code is cached on disk (wasmtime's default cache directory), so a restarted
    // edge daemon is back in milliseconds instead of recompiling every component.
    match wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(error) => {
            tracing::warn!(%error, "no compilation cache; components compile at every start")
        }
    }
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot create the wasmtime engine")
}

/// What a component instance may reach of the host. WASI gets no preopened directories, no
/// environment and no network: a parser needs none of them.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub fn sandboxed() -> Self {
        HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
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
