//! Test component: a `wattlet:meter/parser` that hands every chunk to the real parser (an
//! import, plugged with `wattlet_meter_parser.wasm` by `wac plug`), except that a decoder that
//! has seen [`LOOP`] in its stream never returns from that push, and one that has seen [`GROW`]
//! allocates until the host's memory limit stops it. The edge's tests feed it a real capture
//! with a marker in it: the host must stop the call, say so, and go on reading.
//!
//! The crate is a WebAssembly component only: on native targets it is empty.
#![cfg(target_family = "wasm")]

use std::cell::RefCell;
use std::hint::black_box;

wit_bindgen::generate!({
    inline: "
        package wattlet-test:runaway-parser;
        world runaway-parser {
            import wattlet:meter/parser@0.1.0;
            export wattlet:meter/parser@0.1.0;
        }
    ",
    path: "../../../wit/meter",
    world: "runaway-parser",
    generate_all,
});

use exports::wattlet::meter::parser::{Guest, GuestDecoder};
use wattlet::meter::parser::Decoder as RealDecoder;
use wattlet::meter::types::{DecoderOptions, Event};

/// In the byte stream: the push that completes it runs for ever.
pub const LOOP: &[u8] = b"RUNAWAY:LOOP";
/// In the byte stream: the push that completes it allocates without end.
pub const GROW: &[u8] = b"RUNAWAY:GROW";

struct Component;

export!(Component);

impl Guest for Component {
    type Decoder = Runaway;
}

struct Runaway {
    real: RealDecoder,
    /// The last bytes seen, so a marker split across two chunks is found.
    tail: RefCell<Vec<u8>>,
}

impl GuestDecoder for Runaway {
    fn new(options: DecoderOptions) -> Self {
        Runaway {
            real: RealDecoder::new(options),
            tail: RefCell::new(Vec::new()),
        }
    }

    fn push(&self, chunk: Vec<u8>) -> Vec<Event> {
        {
            let mut seen = self.tail.borrow_mut();
            seen.extend_from_slice(&chunk);
            if contains(&seen, LOOP) {
                run_for_ever();
            }
            if contains(&seen, GROW) {
                grow_for_ever();
            }
            let keep_from = seen.len().saturating_sub(LOOP.len().max(GROW.len()));
            seen.drain(..keep_from);
        }
        self.real.push(&chunk)
    }

    fn finish(&self) -> Vec<Event> {
        self.real.finish()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
