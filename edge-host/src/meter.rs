//! The meter parser component on wasmtime, and the same decoder run natively, behind one trait.

use std::path::Path;

use anyhow::anyhow;
use wasmtime::component::{Linker, ResourceAny};
use wasmtime::{Engine, Store};
use wattlet_meter_parser as native;

use crate::runtime::HostState;

wasmtime::component::bindgen!({
    path: "../wit/meter",
    world: "meter-parser",
});

use wattlet::meter::types as wit;

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
        let pre = crate::runtime::link(&linker, path, "wattlet:meter parser", MeterParserPre::new)?;
        Ok(ParserComponent {
            engine: engine.clone(),
            pre,
        })
    }

    /// A fresh instance holding one decoder.
    pub fn decoder(&self, options: &native::DecoderOptions) -> anyhow::Result<ComponentDecoder> {
        let mut store = Store::new(&self.engine, HostState::sandboxed());
        let bindings = self.pre.instantiate(&mut store)?;
        let options = wit::DecoderOptions {
            protocol: options.protocol.map(protocol_to_wit),
            strict_inner_checksums: options.strict_inner_checksums,
            dzg_unsigned_power: options.dzg_unsigned_power,
        };
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
        Ok(events.into_iter().map(event_from_wit).collect())
    }

    fn finish(&mut self) -> anyhow::Result<Vec<native::Event>> {
        let events = self
            .bindings
            .wattlet_meter_parser()
            .decoder()
            .call_finish(&mut self.store, self.decoder)
            .map_err(|e| anyhow!("parser component failed: {e:#}"))?;
        Ok(events.into_iter().map(event_from_wit).collect())
    }
}

fn protocol_to_wit(p: native::Protocol) -> wit::Protocol {
    match p {
        native::Protocol::Sml => wit::Protocol::Sml,
        native::Protocol::Iec62056_21 => wit::Protocol::Iec6205621,
        native::Protocol::Dsmr => wit::Protocol::Dsmr,
    }
}

fn event_from_wit(event: wit::Event) -> native::Event {
    match event {
        wit::Event::Telegram(t) => native::Event::Telegram(native::Telegram {
            protocol: match t.protocol {
                wit::Protocol::Sml => native::Protocol::Sml,
                wit::Protocol::Iec6205621 => native::Protocol::Iec62056_21,
                wit::Protocol::Dsmr => native::Protocol::Dsmr,
            },
            meter_id: t.meter_id,
            header: t.header,
            readings: t.readings.into_iter().map(reading_from_wit).collect(),
            integrity: match t.integrity {
                wit::Integrity::Verified => native::Integrity::Verified,
                wit::Integrity::VerifiedLineEndsRestored => {
                    native::Integrity::VerifiedLineEndsRestored
                }
                wit::Integrity::Unchecked => native::Integrity::Unchecked,
                wit::Integrity::InnerChecksumMismatch => native::Integrity::InnerChecksumMismatch,
            },
            offset: t.offset,
            length: t.length,
            notes: t.notes,
        }),
        wit::Event::Skipped(s) => native::Event::Skipped(native::Skipped {
            offset: s.offset,
            length: s.length,
            reason: match s.reason {
                wit::SkipReason::Garbage => native::SkipReason::Garbage,
                wit::SkipReason::Truncated => native::SkipReason::Truncated,
                wit::SkipReason::ChecksumMismatch => native::SkipReason::ChecksumMismatch,
                wit::SkipReason::Malformed => native::SkipReason::Malformed,
                wit::SkipReason::Oversized => native::SkipReason::Oversized,
                wit::SkipReason::RequestEcho => native::SkipReason::RequestEcho,
            },
            detail: s.detail,
        }),
    }
}

fn reading_from_wit(r: wit::Reading) -> native::Reading {
    let wit::Obis { a, b, c, d, e, f } = r.obis;
    native::Reading {
        obis: native::Obis([a, b, c, d, e, f]),
        value: match r.value {
            wit::Value::Number(n) => native::Value::Number(native::Decimal {
                mantissa: n.mantissa,
                scaler: n.scaler,
            }),
            wit::Value::Text(t) => native::Value::Text(t),
            wit::Value::Octets(o) => native::Value::Octets(o),
            wit::Value::Boolean(b) => native::Value::Boolean(b),
        },
        unit: r.unit.map(native::Unit),
        status: r.status,
        time: r.time.map(|t| match t {
            wit::MeterTime::SecondsIndex(s) => native::MeterTime::SecondsIndex(s),
            wit::MeterTime::UnixSeconds(s) => native::MeterTime::UnixSeconds(s),
        }),
    }
}
