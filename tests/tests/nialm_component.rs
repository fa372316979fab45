//! The NIALM component under wasmtime gives the native library's estimates for every model, on
//! several input lengths, and the same answers to bad input.

use std::sync::OnceLock;

use wattlet_nialm::{Disaggregator, Error, synthetic_aggregate};
use wattlet_runtime::nialm::NialmComponent;
use wattlet_runtime::{engine as runtime, locate as components};

/// Compiled once for all tests of this binary: the component is large and Cranelift is slow on
/// it in a debug build.
fn nialm_component() -> &'static NialmComponent {
    static COMPONENT: OnceLock<NialmComponent> = OnceLock::new();
    COMPONENT.get_or_init(|| {
        let path = components::locate("wattlet-nialm", None)
            .expect("the component is built by the README's test command before the tests run");
        NialmComponent::load(&runtime::engine().expect("engine"), &path).expect("component loads")
    })
}

#[test]
fn component_equals_native_for_every_model() {
    let native = Disaggregator::new();
    let mut instance = nialm_component().instantiate().expect("instance");
    assert_eq!(instance.models().expect("models"), native.models());
    for model in native.models() {
        let mut worst = 0.0f32;
        // Exactly one window, the bench's work item, and lengths around them.
        for len in [99, 100, 130, 158, 159, 400] {
            let aggregate = synthetic_aggregate(len);
            let expected = native.run(&model.id, &aggregate).expect("native run");
            let got = instance
                .run(&model.id, &aggregate)
                .expect("component did not trap")
                .expect("component run");
            assert_eq!(got.len(), len - 98, "{} on {len} samples", model.id);
            assert_eq!(got.len(), expected.len());
            let diff = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                diff <= 1e-3,
                "{} on {len} samples: max |diff| {diff} W",
                model.id
            );
            worst = worst.max(diff);
        }
        println!("{}: max |component − native| = {worst:.2e} W", model.id);
    }
}

#[test]
fn component_gives_the_native_errors() {
    let native = Disaggregator::new();
    let mut instance = nialm_component().instantiate().expect("instance");
    let mut nan = synthetic_aggregate(120);
    nan[7] = f32::NAN;
    let mut negative = synthetic_aggregate(120);
    negative[0] = -3000.0;
    let mut huge = synthetic_aggregate(120);
    huge[119] = f32::INFINITY;
    let cases: [(&str, Vec<f32>); 6] = [
        ("toaster", synthetic_aggregate(120)),
        ("kettle", Vec::new()),
        ("kettle", synthetic_aggregate(98)),
        ("fridge", nan),
        ("microwave", negative),
        ("washing_machine", huge),
    ];
    for (model, aggregate) in cases {
        let got = instance
            .run(model, &aggregate)
            .expect("component did not trap");
        let expected = native.run(model, &aggregate);
        assert!(got.is_err(), "{model}: {got:?}");
        assert_eq!(got, expected, "{model}");
    }
    let got = instance.run("toaster", &[]).expect("no trap");
    assert_eq!(got, Err(Error::UnknownModel("toaster".into())));
    let got = instance.run("kettle", &[0.0; 50]).expect("no trap");
    assert_eq!(got, Err(Error::TooShort(99)));
    // The instance still works after errors.
    let ok = instance
        .run("kettle", &synthetic_aggregate(99))
        .expect("no trap");
    assert_eq!(ok.map(|v| v.len()), Ok(1));
}
