//! The meter parser component under wasmtime yields exactly what the native library yields, on
//! every real capture, whole and in serial-port-sized chunks.

use std::path::PathBuf;

use wattlet_meter_parser::{DecoderOptions, Event, capture};
use wattlet_runtime::meter::{MeterDecoder, NativeDecoder, ParserComponent};
use wattlet_runtime::{engine as runtime, locate as components};

fn testdata() -> PathBuf {
    capture::testdata_dir()
}

fn captures() -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable test data") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("bin" | "hex" | "txt")
            ) {
                // .bin and .hex of libsml-testing hold the same bytes; one is enough.
                let twin_bin = path.with_extension("bin");
                if path.extension().is_some_and(|e| e == "hex") && twin_bin.is_file() {
                    continue;
                }
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&testdata(), &mut out);
    out.sort();
    assert!(
        out.len() > 40,
        "expected the full set of captures, found {}",
        out.len()
    );
    out
}

fn run(decoder: &mut dyn MeterDecoder, bytes: &[u8], chunk: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        events.extend(decoder.push(piece).expect("push"));
    }
    events.extend(decoder.finish().expect("finish"));
    events
}

fn parser_component() -> ParserComponent {
    let path = components::locate("wattlet-meter-parser", None)
        .expect("the component is built by the README's test command before the tests run");
    ParserComponent::load(&runtime::engine().expect("engine"), &path).expect("component loads")
}

#[test]
fn component_equals_native_on_every_capture() {
    let component = parser_component();
    let options = DecoderOptions::default();
    let mut telegrams = 0;
    for path in captures() {
        let bytes = capture::load(&path).expect("capture loads");
        let native = run(
            &mut NativeDecoder::new(options.clone()),
            &bytes,
            bytes.len(),
        );
        telegrams += native
            .iter()
            .filter(|e| matches!(e, Event::Telegram(_)))
            .count();
        for chunk in [bytes.len(), 64, 7] {
            let mut decoder = component.decoder(&options).expect("instance");
            let wasm = run(&mut decoder, &bytes, chunk);
            assert_eq!(wasm, native, "{} in chunks of {chunk}", path.display());
        }
    }
    assert!(
        telegrams >= 200,
        "only {telegrams} telegrams across all captures"
    );
}

#[test]
fn component_honours_options() {
    let component = parser_component();
    let path = testdata().join("sml/libsml-testing/DZG_DVS-7412.2_jmberg.bin");
    let bytes = capture::load(&path).expect("capture loads");
    let power = |options: DecoderOptions| {
        let mut decoder = component.decoder(&options).expect("instance");
        let events = run(&mut decoder, &bytes, bytes.len());
        events
            .iter()
            .find_map(|e| match e {
                Event::Telegram(t) => t.reading("1-0:16.7.0*255".parse().expect("obis")).cloned(),
                Event::Skipped(_) => None,
            })
            .map(|r| r.value)
    };
    let plain = power(DecoderOptions::default());
    let fixed = power(DecoderOptions {
        dzg_unsigned_power: true,
        ..DecoderOptions::default()
    });
    use wattlet_meter_parser::{Decimal, Value};
    assert_eq!(
        plain,
        Some(Value::Number(Decimal {
            mantissa: -29912,
            scaler: -2
        }))
    );
    assert_eq!(
        fixed,
        Some(Value::Number(Decimal {
            mantissa: 35624,
            scaler: -2
        }))
    );
}
