//! The NIALM component on wasmtime: whole-house power → per-appliance power, with the native
//! library's types (`wattlet_nialm`) on the host side.

use std::path::Path;

use anyhow::anyhow;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};
use wattlet_nialm as native;

use crate::sandbox::{self, HostState, Limits};

/// The host side of the WIT world `wattlet:nialm/nialm`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/nialm",
        world: "nialm",
    });
}

use bindings::{Nialm, NialmPre};

/// The compiled NIALM component, ready to instantiate (compile once, instantiate per worker).
#[derive(Clone)]
pub struct NialmComponent {
    engine: Engine,
    pre: NialmPre<HostState>,
    limits: Limits,
}

impl NialmComponent {
    pub fn load(engine: &Engine, path: &Path) -> anyhow::Result<Self> {
        let mut linker = Linker::new(engine);
        // The guest's std imports WASI (clocks, stdio for a panic message); HostState grants
        // nothing beyond that.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let pre = crate::engine::link(&linker, path, "wattlet:nialm", NialmPre::new)?;
        Ok(NialmComponent {
            engine: engine.clone(),
            pre,
            limits: Limits::NIALM,
        })
    }

    /// The same component, its calls limited by `limits` instead of [`Limits::NIALM`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh instance. Keep it for many calls: each model is optimized inside the instance on
    /// its first use, and later calls reuse it.
    pub fn instantiate(&self) -> anyhow::Result<NialmInstance> {
        let mut store = sandbox::store(&self.engine, &self.limits);
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(NialmInstance {
            store,
            bindings,
            limits: self.limits,
        })
    }
}

/// One instance of the component and its store. After a trap (the call's time or memory limit
/// among them) it must not be used again: make a new one.
pub struct NialmInstance {
    store: Store<HostState>,
    bindings: Nialm,
    limits: Limits,
}

impl NialmInstance {
    /// The models embedded in the component.
    pub fn models(&mut self) -> anyhow::Result<Vec<native::ModelInfo>> {
        sandbox::arm(&mut self.store, self.limits.call);
        let models = self
            .bindings
            .wattlet_nialm_disaggregate()
            .call_models(&mut self.store)
            .map_err(|e| self.failed(&e))?;
        Ok(models.into_iter().map(native::ModelInfo::from).collect())
    }

    /// The appliance power for every sample of `aggregate` with a full window around it (see
    /// `wattlet_nialm::Disaggregator::run`).
    ///
    /// Outer error: the component trapped; inner: the component's answer.
    pub fn run(
        &mut self,
        model: &str,
        aggregate: &[f32],
    ) -> anyhow::Result<Result<Vec<f32>, native::Error>> {
        sandbox::arm(&mut self.store, self.limits.call);
        let answer = self
            .bindings
            .wattlet_nialm_disaggregate()
            .call_run(&mut self.store, model, aggregate)
            .map_err(|e| self.failed(&e))?;
        Ok(answer.map_err(native::Error::from))
    }

    fn failed(&self, error: &wasmtime::Error) -> anyhow::Error {
        anyhow!(
            "nialm component failed: {}",
            sandbox::describe(error, &self.limits)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_to_worker_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<NialmComponent>();
        send::<NialmInstance>();
    }
}
