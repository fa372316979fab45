//! The DEBS stream operators component on wasmtime (`wattlet:stream/operators`), with the native
//! library's types (`wattlet_stream_analytics`) on the host side: events in batches in, Q1 and Q2
//! rows out, snapshots in the library's own format.

use std::path::Path;

use anyhow::{anyhow, bail};
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::{Engine, Store};
use wattlet_stream_analytics as native;

use crate::sandbox::{self, HostState, Limits};

/// The host side of the WIT world `wattlet:stream/stream-operators`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/stream",
        world: "stream-operators",
    });
}

use bindings::exports::wattlet::stream::operators as wit;
use bindings::{StreamOperators, StreamOperatorsPre};

/// The compiled operators component, ready to instantiate (compile once, instantiate per
/// stream).
#[derive(Clone)]
pub struct StreamComponent {
    engine: Engine,
    pre: StreamOperatorsPre<HostState>,
    limits: Limits,
}

impl StreamComponent {
    pub fn load(engine: &Engine, path: &Path) -> anyhow::Result<Self> {
        let mut linker = Linker::new(engine);
        // The guest's std imports WASI (clocks, random for its hash maps, stdio for a panic
        // message); HostState grants nothing beyond that.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let pre = crate::engine::link(&linker, path, "wattlet:stream", StreamOperatorsPre::new)?;
        Ok(StreamComponent {
            engine: engine.clone(),
            pre,
            limits: Limits::STREAM,
        })
    }

    /// The same component, its calls limited by `limits` instead of [`Limits::STREAM`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh instance, without a pipeline yet: start one with
    /// [`StreamInstance::new_pipeline`] or [`StreamInstance::restore`].
    pub fn instantiate(&self) -> anyhow::Result<StreamInstance> {
        let mut store = sandbox::store(&self.engine, &self.limits);
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(StreamInstance {
            store,
            bindings,
            pipeline: None,
            limits: self.limits,
        })
    }
}

/// One instance of the component and its store, holding one pipeline at a time. After a trap
/// (the call's time or memory limit among them) it must not be used again: make a new one and
/// restore the last snapshot into it.
pub struct StreamInstance {
    store: Store<HostState>,
    bindings: StreamOperators,
    pipeline: Option<ResourceAny>,
    limits: Limits,
}

impl StreamInstance {
    /// Starts an empty pipeline (dropping the one held before).
    pub fn new_pipeline(&mut self, config: native::Config) -> anyhow::Result<()> {
        sandbox::arm(&mut self.store, self.limits.call);
        let pipeline = self
            .bindings
            .wattlet_stream_operators()
            .pipeline()
            .call_constructor(&mut self.store, wit::Config::from(config))
            .map_err(|e| self.failed(&e))?;
        self.replace(pipeline)
    }

    /// Pushes a batch of events in arrival order; the rows they caused (see
    /// `wattlet_stream_analytics::Pipeline::push`).
    pub fn push(&mut self, events: &[native::Event]) -> anyhow::Result<native::Outputs> {
        let pipeline = self.pipeline()?;
        let events: Vec<wit::Event> = events.iter().map(|&e| e.into()).collect();
        sandbox::arm(&mut self.store, self.limits.call);
        let out = self
            .bindings
            .wattlet_stream_operators()
            .pipeline()
            .call_push(&mut self.store, pipeline, &events)
            .map_err(|e| self.failed(&e))?;
        Ok(out.into())
    }

    /// Ends the stream: the held events and the last points.
    pub fn finish(&mut self) -> anyhow::Result<native::Outputs> {
        let pipeline = self.pipeline()?;
        sandbox::arm(&mut self.store, self.limits.call);
        let out = self
            .bindings
            .wattlet_stream_operators()
            .pipeline()
            .call_finish(&mut self.store, pipeline)
            .map_err(|e| self.failed(&e))?;
        Ok(out.into())
    }

    pub fn stats(&mut self) -> anyhow::Result<native::Stats> {
        let pipeline = self.pipeline()?;
        sandbox::arm(&mut self.store, self.limits.call);
        let stats = self
            .bindings
            .wattlet_stream_operators()
            .pipeline()
            .call_stats(&mut self.store, pipeline)
            .map_err(|e| self.failed(&e))?;
        Ok(stats.into())
    }

    /// The pipeline's state in the library's snapshot format
    /// (`wattlet_stream_analytics::Pipeline::restore` reads it too).
    pub fn snapshot(&mut self) -> anyhow::Result<Vec<u8>> {
        let pipeline = self.pipeline()?;
        sandbox::arm(&mut self.store, self.limits.call);
        self.bindings
            .wattlet_stream_operators()
            .pipeline()
            .call_snapshot(&mut self.store, pipeline)
            .map_err(|e| self.failed(&e))
    }

    /// Replaces the pipeline with the one `bytes` is a snapshot of (a native
    /// `Pipeline::snapshot` too).
    ///
    /// Outer error: the component trapped; inner: the bytes are not a snapshot (the pipeline
    /// held before is kept).
    pub fn restore(&mut self, bytes: &[u8]) -> anyhow::Result<Result<(), String>> {
        sandbox::arm(&mut self.store, self.limits.call);
        let answer = self
            .bindings
            .wattlet_stream_operators()
            .pipeline()
            .call_restore(&mut self.store, bytes)
            .map_err(|e| self.failed(&e))?;
        match answer {
            Ok(pipeline) => self.replace(pipeline).map(Ok),
            Err(message) => Ok(Err(message)),
        }
    }

    fn pipeline(&self) -> anyhow::Result<ResourceAny> {
        match self.pipeline {
            Some(pipeline) => Ok(pipeline),
            None => bail!("no pipeline: call new_pipeline or restore first"),
        }
    }

    /// Holds `pipeline`, freeing the previous one's state in the guest.
    fn replace(&mut self, pipeline: ResourceAny) -> anyhow::Result<()> {
        if let Some(old) = self.pipeline.replace(pipeline) {
            sandbox::arm(&mut self.store, self.limits.call);
            old.resource_drop(&mut self.store)
                .map_err(|e| self.failed(&e))?;
        }
        Ok(())
    }

    fn failed(&self, error: &wasmtime::Error) -> anyhow::Error {
        anyhow!(
            "stream component failed: {}",
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
        send_sync::<StreamComponent>();
        send::<StreamInstance>();
    }
}
