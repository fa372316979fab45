//! Test component: a `wattlet:nialm/disaggregate` that hands every call to the real NIALM
//! component (an import, plugged with `wattlet_nialm.wasm` by `wac plug`), except a `run`
//! whose aggregate starts with [`LOOP_W`] (never returns) or [`GROW_W`] (allocates until the
//! host's memory limit stops it). The workers' tests queue such an item among real ones: the
//! host must stop the call, retry the item and dead-letter it, and compute the others.
//!
//! The crate is a WebAssembly component only: on native targets it is empty.
#![cfg(target_family = "wasm")]

use std::hint::black_box;

wit_bindgen::generate!({
    inline: "
        package wattlet-test:runaway-nialm;
        world runaway-nialm {
            import wattlet:nialm/disaggregate@0.1.0;
            export wattlet:nialm/disaggregate@0.1.0;
        }
    ",
    path: "../../../wit/nialm",
    world: "runaway-nialm",
    generate_all,
});

use exports::wattlet::nialm::disaggregate::{self as ours, Guest};
use wattlet::nialm::disaggregate as real;

/// An aggregate starting with this sample (W) makes `run` loop for ever.
pub const LOOP_W: f32 = -1.0;
/// An aggregate starting with this sample (W) makes `run` allocate without end.
pub const GROW_W: f32 = -2.0;

struct Component;

export!(Component);

impl Guest for Component {
    fn models() -> Vec<ours::ModelInfo> {
        real::models()
            .into_iter()
            .map(|m| ours::ModelInfo {
                id: m.id,
                appliance: m.appliance,
                window: m.window,
                step_seconds: m.step_seconds,
                on_threshold_w: m.on_threshold_w,
                sha256: m.sha256,
            })
            .collect()
    }

    fn run(model: String, aggregate: Vec<f32>) -> Result<Vec<f32>, ours::Error> {
        match aggregate.first() {
            Some(&first) if first == LOOP_W => run_for_ever(),
            Some(&first) if first == GROW_W => grow_for_ever(),
            _ => real::run(&model, &aggregate).map_err(|e| match e {
                real::Error::UnknownModel(m) => ours::Error::UnknownModel(m),
                real::Error::TooShort(n) => ours::Error::TooShort(n),
                real::Error::InvalidInput(m) => ours::Error::InvalidInput(m),
            }),
        }
    }
}

fn run_for_ever() -> ! {
    let mut spins = 0u64;
    loop {
        spins = black_box(spins.wrapping_add(1));
    }
}

fn grow_for_ever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1; 1 << 20]);
        black_box(&hoard);
    }
}
