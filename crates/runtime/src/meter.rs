//! The meter parser component on wasmtime, and the same decoder run natively, behind one trait.

use std::path::Path;

use anyhow::anyhow;
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, Store};
use wattlet_meter_parser as native;

use crate::sandbox::{self, HostState, Limits};

/// The host side of the WIT world `wattlet:meter/meter-parser`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/meter",
        world: "meter-parser",
    });
}

use bindings::wattlet::meter::types as wit;
use bindings::{MeterParser, MeterParserPre};

/// A streaming decoder, whether it runs as a component or natively.
pub trait MeterDecoder {
    fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<native::Event>>;
    fn finish(&mut self) -> anyhow::Result<Vec<native::Event>>;
}

/// The native library, for comparison (`--native`) and as the baseline of the benchmarks.
pub struct NativeDecoder(native::Decoder);

impl NativeDecoder {
    pub fn new(options: native::DecoderOptions) -> Self {
        NativeDecoder(native::Decoder::new(options))
    }
}

impl MeterDecoder for NativeDecoder {
    fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<native::Event>> {
        Ok(self.0.push(chunk))
    }

    fn finish(&mut self) -> anyhow::Result<Vec<native::Event>> {
        Ok(self.0.finish())
    }
}

const WHAT: &str = "wattlet:meter parser";

/// What the host provides a parser: WASI preview 2 (no files, no network; see `sandbox`).
fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

/// The compiled parser component, ready to instantiate (compile once, instantiate per stream).
pub struct ParserComponent {
    engine: Engine,
    pre: MeterParserPre<HostState>,
    limits: Limits,
}

impl ParserComponent {
    pub fn load(engine: &Engine, path: &Path) -> anyhow::Result<Self> {
        let pre = crate::engine::link(&linker(engine)?, path, WHAT, MeterParserPre::new)?;
        Ok(ParserComponent {
            engine: engine.clone(),
            pre,
            limits: Limits::PARSER,
        })
    }

    /// The parser from a component already compiled for `engine` (an update's precompiled
    /// file); fails if it does not link against this host.
    pub fn from_component(engine: &Engine, component: &Component) -> anyhow::Result<Self> {
        let pre =
            crate::engine::link_component(&linker(engine)?, component, WHAT, MeterParserPre::new)?;
        Ok(ParserComponent {
            engine: engine.clone(),
            pre,
            limits: Limits::PARSER,
        })
    }

    /// The same component, its calls limited by `limits` instead of [`Limits::PARSER`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh instance holding one decoder.
    pub fn decoder(&self, options: &native::DecoderOptions) -> anyhow::Result<ComponentDecoder> {
        let mut store = sandbox::store(&self.engine, &self.limits);
        let bindings = self.pre.instantiate(&mut store)?;
        let options = wit::DecoderOptions::from(options);
        sandbox::arm(&mut store, self.limits.call);
        let decoder = bindings
            .wattlet_meter_parser()
            .decoder()
            .call_constructor(&mut store, options)?;
        Ok(ComponentDecoder {
            store,
            bindings,
            decoder,
            limits: self.limits,
        })
    }
}

/// One instance of the parser holding one decoder. After an error (a trap, the call's time or
/// memory limit) it must not be used again: make a new one.
pub struct ComponentDecoder {
    store: Store<HostState>,
    bindings: MeterParser,
    decoder: ResourceAny,
    limits: Limits,
}

impl ComponentDecoder {
    fn failed(&self, error: &wasmtime::Error) -> anyhow::Error {
        anyhow!(
            "parser component failed: {}",
            sandbox::describe(error, &self.limits)
        )
    }
}

impl MeterDecoder for ComponentDecoder {
    fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<native::Event>> {
        sandbox::arm(&mut self.store, self.limits.call);
        let events = self
            .bindings
            .wattlet_meter_parser()
            .decoder()
            .call_push(&mut self.store, self.decoder, chunk)
            .map_err(|e| self.failed(&e))?;
        Ok(events.into_iter().map(native::Event::from).collect())
    }

    fn finish(&mut self) -> anyhow::Result<Vec<native::Event>> {
        sandbox::arm(&mut self.store, self.limits.call);
        let events = self
            .bindings
            .wattlet_meter_parser()
            .decoder()
            .call_finish(&mut self.store, self.decoder)
            .map_err(|e| self.failed(&e))?;
        Ok(events.into_iter().map(native::Event::from).collect())
    }
}
