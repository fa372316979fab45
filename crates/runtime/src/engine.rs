//! The wasmtime engine of the hosts that call components directly (edge, workers, tools), and
//! loading a component into a typed instance template.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine};

/// How often the engine's epoch advances: the resolution of every call's deadline.
pub const TICK: Duration = Duration::from_millis(10);

/// One engine per process: compiled code is shared by every instance made from it.
///
/// Guests are interrupted by epoch (a check at each function entry and loop back-edge, far
/// cheaper than fuel): one thread per engine advances the epoch every [`TICK`], and every store
/// must set its deadline before each call ([`crate::sandbox::arm`]), or it traps at once.
pub fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // No component here uses the component model's async ABI (only `wattlet serve` runs p3
    // handlers, on its own engine); without it every call skips the concurrency bookkeeping
    // (about 0.2 µs per call, measured on the meter parser bench).
    config.wasm_component_model(true).concurrency_support(false);
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
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("cannot create the wasmtime engine")?;
    start_ticker(&engine)?;
    Ok(engine)
}

/// Advances `engine`'s epoch every [`TICK`] until the engine is dropped.
fn start_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .context("cannot start the engine's epoch thread")?;
    Ok(())
}

/// Epoch ticks that last at least `call` (the deadline passes somewhere in the last tick).
pub fn ticks(call: Duration) -> u64 {
    // Capped: wasmtime adds it to the current epoch (a cap of years).
    let ticks = call.as_nanos().div_ceil(TICK.as_nanos()).min(1 << 40);
    u64::try_from(ticks).unwrap_or(1 << 40) + 1
}

/// Compiles (or takes from the cache) the component at `path`, links it with `linker` and makes
/// the typed instance template with `make` (a bindgen `…Pre::new`). `what` names the world it
/// must have, for the error when it has not.
pub fn link<T: 'static, P>(
    linker: &Linker<T>,
    path: &Path,
    what: &str,
    make: impl FnOnce(InstancePre<T>) -> wasmtime::Result<P>,
) -> anyhow::Result<P> {
    let component = Component::from_file(linker.engine(), path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot load component {}", path.display()))?;
    link_component(linker, &component, what, make)
        .with_context(|| format!("{} is not a {what} component", path.display()))
}

/// Links an already compiled (or deserialized) component with `linker`: fails if it imports
/// what the host does not provide or lacks the exports of `what`'s world.
pub fn link_component<T: 'static, P>(
    linker: &Linker<T>,
    component: &Component,
    what: &str,
    make: impl FnOnce(InstancePre<T>) -> wasmtime::Result<P>,
) -> anyhow::Result<P> {
    linker
        .instantiate_pre(component)
        .and_then(make)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("the component does not link as a {what} component"))
}
