//! The meter parser component on wasmtime, and the same decoder run natively, behind one trait.

use std::path::Path;

use anyhow::anyhow;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::{Engine, Store};
use wattlet_meter_parser as native;

use crate::sandbox::HostState;

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

/// The compiled parser component, ready to instantiate (compile once, instantiate per stream).
pub struct ParserComponent {
    engine: Engine,
    pre: MeterParserPre<HostState>,
}

impl ParserComponent {
    pub fn load(engine: &Engine, path: &Path) -> anyhow::Result<Self> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let pre = crate::engine::link(&linker, path, "wattlet:meter parser", MeterParserPre::new)?;
        Ok(ParserComponent {
            engine: engine.clone(),
            pre,
        })
    }

    /// A fresh instance holding one decoder.
    pub fn decoder(&self, options: &native::DecoderOptions) -> anyhow::Result<ComponentDecoder> {
        let mut store = Store::new(&self.engine, HostState::sandboxed());
        let bindings = self.pre.instantiate(&mut store)?;
        let options = wit::DecoderOptions::from(options);
        let decoder = bindings
            .wattlet_meter_parser()
            .decoder()
            .call_constructor(&mut store, options)?;
        Ok(ComponentDecoder {
            store,
            bindings,
            decoder,
        })
    }
}

pub struct ComponentDecoder {
    store: Store<HostState>,
    bindings: MeterParser,
    decoder: ResourceAny,
}

impl MeterDecoder for ComponentDecoder {
    fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<native::Event>> {
        let events = self
            .bindings
            .wattlet_meter_parser()
            .decoder()
            .call_push(&mut self.store, self.decoder, chunk)
            .map_err(|e| anyhow!("parser component failed: {e:#}"))?;
        Ok(events.into_iter().map(native::Event::from).collect())
    }

    fn finish(&mut self) -> anyhow::Result<Vec<native::Event>> {
        let events = self
            .bindings
            .wattlet_meter_parser()
            .decoder()
            .call_finish(&mut self.store, self.decoder)
            .map_err(|e| anyhow!("parser component failed: {e:#}"))?;
        Ok(events.into_iter().map(native::Event::from).collect())
    }
}
