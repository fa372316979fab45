//! Test component: a `wattlet:meter/parser` that hands every chunk to the real parser (an
//! import, plugged with `wattlet_meter_parser.wasm` by `wac plug`) and drops the last reading
//! of every telegram it returns. It links as a parser and runs, but reads meters wrongly: the
//! edge's update agent must roll it back after its health check (golden telegrams).
//!
//! The crate is a WebAssembly component only: on native targets it is empty.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    inline: "
        package wattlet-test:skewed-parser;
        world skewed-parser {
            import wattlet:meter/parser@0.1.0;
            export wattlet:meter/parser@0.1.0;
        }
    ",
    path: "../../../wit/meter",
    world: "skewed-parser",
    generate_all,
});

use exports::wattlet::meter::parser::{Guest, GuestDecoder};
use wattlet::meter::parser::Decoder as RealDecoder;
use wattlet::meter::types::{DecoderOptions, Event};

struct Component;

export!(Component);

impl Guest for Component {
    type Decoder = Skewed;
}

struct Skewed {
    real: RealDecoder,
}

impl GuestDecoder for Skewed {
    fn new(options: DecoderOptions) -> Self {
        Skewed {
            real: RealDecoder::new(options),
        }
    }

    fn push(&self, chunk: Vec<u8>) -> Vec<Event> {
        skew(self.real.push(&chunk))
    }

    fn finish(&self) -> Vec<Event> {
        skew(self.real.finish())
    }
}

fn skew(mut events: Vec<Event>) -> Vec<Event> {
    for event in &mut events {
        if let Event::Telegram(telegram) = event {
            telegram.readings.pop();
        }
    }
    events
}
