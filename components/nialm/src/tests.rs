//! The library against onnxruntime's reference outputs, and every error case.

use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::*;
use crate::runtime::{EMBEDDED, MAX_BATCH};

const IDS: [&str; 5] = [
    "kettle",
    "fridge",
    "washing_machine",
    "dishwasher",
    "microwave",
];

/// `models/reference/<id>.json`, written by `models/reference/make_reference.py`.
#[derive(Deserialize)]
struct Reference {
    input: Vec<f64>,
    raw_output: Vec<f64>,
    watts: Vec<f64>,
}

fn reference(id: &str) -> Reference {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference")
        .join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn equals_onnxruntime_on_the_reference_input() {
    let nialm = Disaggregator::new();
    for (id, info) in IDS.into_iter().zip(nialm.models()) {
        let reference = reference(id);
        let scale = f64::from(scale_of(id));
        // The Rust formula and Python's give the same samples (libm's sin may differ in the
        // last bit of an f64, which rounding to f32 almost always hides).
        let generated = synthetic_aggregate(reference.input.len());
        let input_diff = generated
            .iter()
            .zip(&reference.input)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0.0, f64::max);
        assert!(input_diff <= 1e-3, "{id}: inputs differ by {input_diff}");

        // Exactly what onnxruntime saw.
        let input: Vec<f32> = reference.input.iter().map(|&x| x as f32).collect();
        let watts = nialm.run(id, &input).expect("runs");
        assert_eq!(watts.len(), reference.watts.len(), "{id}");
        // An estimate within 0.01 W of the on threshold may land on either side of it in tract
        // and onnxruntime (0 W on one side): compare those by the raw output instead.
        let threshold = f64::from(info.on_threshold_w);
        let max_diff = watts
            .iter()
            .zip(&reference.watts)
            .zip(&reference.raw_output)
            .map(|((&a, &b), &raw)| {
                if (raw * scale - threshold).abs() <= 1e-2 {
                    (f64::from(a.max(info.on_threshold_w)) - b.max(threshold)).abs()
                } else {
                    (f64::from(a) - b).abs()
                }
            })
            .fold(0.0, f64::max);
        assert!(
            reference.watts.iter().all(|&w| w == 0.0 || w >= threshold),
            "{id}: the reference applies the threshold"
        );
        let on = reference.watts.iter().filter(|&&w| w > 0.0).count();
        println!(
            "{id}: max |tract − onnxruntime| = {max_diff:.2e} W over {} outputs ({on} > 0 W)",
            watts.len()
        );
        assert!(max_diff <= 1e-2, "{id}: max |diff| {max_diff} W");
        // Not every model switches its appliance on for this synthetic input (the REFIT-trained
        // ones need real signatures), but every model must answer something other than 0.
        let raw_max = reference
            .raw_output
            .iter()
            .map(|y| (y * scale).abs())
            .fold(0.0, f64::max);
        assert!(raw_max > 1.0, "{id}: the model answers 0 to everything");
    }
}

/// The model's output scale, from its embedded JSON.
fn scale_of(id: &str) -> f32 {
    let embedded = EMBEDDED.iter().find(|e| e.id == id).expect("embedded");
    let json: serde_json::Value = serde_json::from_str(embedded.json).expect("json");
    json["output"]["scale"].as_f64().expect("output.scale") as f32
}

#[test]
fn every_estimate_is_off_or_at_least_the_threshold() {
    let nialm = Disaggregator::new();
    let aggregate = synthetic_aggregate(600);
    for model in nialm.models() {
        let watts = nialm.run(&model.id, &aggregate).expect("runs");
        let on = watts.iter().filter(|&&w| w > 0.0).count();
        assert!(
            watts.iter().all(|&w| w == 0.0 || w >= model.on_threshold_w),
            "{}: {watts:?}",
            model.id
        );
        println!("{}: {on} of {} estimates on", model.id, watts.len());
    }
}

#[test]
fn lists_the_embedded_models_with_their_digests() {
    let models = Disaggregator::new().models();
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, IDS);
    for (model, embedded) in models.iter().zip(&EMBEDDED) {
        assert_eq!(model.appliance, model.id);
        assert_eq!((model.window, model.step_seconds), (99, 60));
        assert!(model.on_threshold_w > 0.0);
        assert_eq!(
            model.sha256,
            hex::encode(Sha256::digest(embedded.onnx)),
            "{}: the JSON's digest is not the embedded model's",
            model.id
        );
    }
}

#[test]
fn output_i_is_the_estimate_for_sample_i_plus_half_a_window() {
    let nialm = Disaggregator::new();
    let aggregate = synthetic_aggregate(158);
    let all = nialm.run("kettle", &aggregate).expect("runs");
    assert_eq!(all.len(), 60);
    for i in [0, 1, 23, 59] {
        let single = nialm.run("kettle", &aggregate[i..i + 99]).expect("runs");
        assert_eq!(single.len(), 1);
        assert!(
            (single[0] - all[i]).abs() <= 1e-3,
            "{i}: {single:?} vs {}",
            all[i]
        );
    }
}

#[test]
fn long_inputs_run_in_several_batches_with_the_same_result() {
    let nialm = Disaggregator::new();
    let aggregate = synthetic_aggregate(MAX_BATCH + 98 + 10);
    let all = nialm.run("fridge", &aggregate).expect("runs");
    assert_eq!(all.len(), MAX_BATCH + 10);
    let tail = nialm
        .run("fridge", &aggregate[MAX_BATCH - 5..])
        .expect("runs");
    for (a, b) in all[MAX_BATCH - 5..].iter().zip(&tail) {
        assert!((a - b).abs() <= 1e-3, "{a} vs {b}");
    }
}

#[test]
fn unknown_model() {
    let nialm = Disaggregator::new();
    let aggregate = synthetic_aggregate(120);
    for id in ["toaster", "", "Kettle"] {
        assert_eq!(
            nialm.run(id, &aggregate),
            Err(Error::UnknownModel(id.to_owned()))
        );
    }
}

#[test]
fn too_short() {
    let nialm = Disaggregator::new();
    for len in [0, 1, 98] {
        assert_eq!(
            nialm.run("kettle", &synthetic_aggregate(len)),
            Err(Error::TooShort(99))
        );
    }
    assert_eq!(
        nialm
            .run("kettle", &synthetic_aggregate(99))
            .map(|v| v.len()),
        Ok(1)
    );
}

#[test]
fn invalid_samples_are_named() {
    let nialm = Disaggregator::new();
    for (bad, expected) in [
        (f32::NAN, "aggregate[17] is NaN"),
        (f32::INFINITY, "aggregate[17] is inf"),
        (f32::NEG_INFINITY, "aggregate[17] is -inf"),
        (-812.5, "aggregate[17] = -812.5 W is below -50 W"),
        (250_000.0, "aggregate[17] = 250000 W is above 100000 W"),
    ] {
        let mut aggregate = synthetic_aggregate(120);
        aggregate[17] = bad;
        match nialm.run("dishwasher", &aggregate) {
            Err(Error::InvalidInput(message)) => {
                assert!(message.starts_with(expected), "{message:?}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Small negatives (meter offsets) and the limits themselves are accepted.
    let mut aggregate = synthetic_aggregate(120);
    aggregate[3] = MIN_AGGREGATE_W;
    aggregate[4] = -0.5;
    aggregate[5] = MAX_AGGREGATE_W;
    assert_eq!(nialm.run("dishwasher", &aggregate).map(|v| v.len()), Ok(22));
}

#[test]
fn shared_instance_is_reused() {
    assert!(std::ptr::eq(
        Disaggregator::shared(),
        Disaggregator::shared()
    ));
}
