//! Test component: exports `wattlet:policy/pause-window` and misbehaves in its read hook as its
//! parameters say: `{"misbehave":"trap"}` panics (a trap), `"loop"` never returns, `"grow"`
//! allocates until the host's memory limit stops it, `"allow"` allows. The HTTP tests attach it
//! to a household and check that the read fails closed (nothing served) and that the next
//! request is served.
//!
//! The crate is a WebAssembly component only: on native targets it is empty.
#![cfg(target_family = "wasm")]

use std::hint::black_box;

wit_bindgen::generate!({
    path: "../../../wit/policy",
    world: "pause-window-policy",
});

use exports::wattlet::policy::pause_window::Guest;
use wattlet::policy::types::{Context, Decision, ObjectKind, Rows};

struct Component;

export!(Component);

fn mode(parameters: &str) -> Option<&'static str> {
    ["trap", "loop", "grow", "allow"]
        .into_iter()
        .find(|m| parameters == format!("{{\"misbehave\":\"{m}\"}}"))
}

impl Guest for Component {
    fn validate(parameters: String) -> Result<(), String> {
        mode(&parameters)
            .map(|_| ())
            .ok_or_else(|| "misbehave: trap, loop, grow or allow".to_owned())
    }

    fn at_least_as_strict(_parameters: String, _than: String) -> Result<bool, String> {
        Ok(true)
    }

    fn read(parameters: String, _o: ObjectKind, _c: Context, _rows: Rows) -> Decision {
        match mode(&parameters) {
            Some("trap") => panic!("the trapping policy traps"),
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            Some("grow") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            _ => Decision::Allow,
        }
    }

    fn write(_p: String, _o: ObjectKind, _c: Context, _rows: Rows) -> Decision {
        Decision::Allow
    }

    fn delete(_p: String, _o: ObjectKind, _c: Context) -> Decision {
        Decision::Allow
    }
}
