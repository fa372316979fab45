//! The NIALM component: a household's whole-house power → the power of single appliances.
//!
//! One seq2point CNN per appliance (`models/README.md`; trained on synthetic households only),
//! embedded in the binary together with its metadata and run with tract. A model looks at
//! [`ModelInfo::window`] = 99 consecutive 60 s mean-power samples and estimates the appliance's
//! power at the window's midpoint. [`Disaggregator::run`] slides the window over the whole input
//! and runs every window of a call as one batch:
//!
//! - input `x` in W is normalised to `(x − mean) / std` (the constants of the model's JSON);
//! - the model's output `y` becomes `max(0, y · scale)` W;
//! - output `i` is the estimate for input sample `i + window / 2`, so `n` samples give
//!   `n − window + 1` estimates.
//!
//! Each model is parsed and optimized by tract on first use and cached in the [`Disaggregator`];
//! later calls only run the optimized plan.
//!
//! This crate is a plain library tested natively; `component` is the thin
//! `wattlet:nialm/disaggregate` export built for wasm32-wasip2.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use tract_onnx::prelude::*;

#[cfg(target_family = "wasm")]
mod component;

/// The lowest aggregate sample accepted, in W. A consumption meter reads ≥ 0; small negatives
/// come from meter offsets and rounding. Anything lower is export (PV) that the models never saw
/// in training, or a sign error, and would give meaningless estimates.
pub const MIN_AGGREGATE_W: f32 = -50.0;

/// The highest aggregate sample accepted, in W: above any household connection (a German
/// 3 × 63 A connection is about 43 kW), so a larger value is a unit or decoding error.
pub const MAX_AGGREGATE_W: f32 = 100_000.0;

/// Windows per tract run. Longer inputs run in several batches so that memory stays bounded
/// (the activations take about 6 KB per window; a month at 60 s is 40,000 windows).
const MAX_BATCH: usize = 4096;

/// A model as embedded at build time: the ONNX file and the JSON describing it.
struct Embedded {
    id: &'static str,
    onnx: &'static [u8],
    json: &'static str,
}

macro_rules! embed {
    ($id:literal) => {
        Embedded {
            id: $id,
            onnx: include_bytes!(concat!("../../../models/", $id, ".onnx")),
            json: include_str!(concat!("../../../models/", $id, ".json")),
        }
    };
}

const EMBEDDED: [Embedded; 5] = [
    embed!("kettle"),
    embed!("fridge"),
    embed!("washing_machine"),
    embed!("dishwasher"),
    embed!("microwave"),
];

/// One embedded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// What [`Disaggregator::run`] takes as `model`; the appliance's name, e.g. `kettle`.
    pub id: String,
    /// The appliance the model estimates, e.g. `washing_machine`.
    pub appliance: String,
    /// Samples one estimate looks at (99: the sample itself and 49 either side).
    pub window: u32,
    /// Seconds between samples; each sample is the mean power over that step (60).
    pub step_seconds: u32,
    /// The appliance counts as "on" in a minute whose estimated power is at least this, in W.
    pub on_threshold_w: f32,
    /// SHA-256 of the ONNX model file, lowercase hex.
    pub sha256: String,
}

/// Why nothing was estimated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// No model has this id.
    #[error(
        "unknown model {0:?}; the models are kettle, fridge, washing_machine, dishwasher and microwave"
    )]
    UnknownModel(String),
    /// The aggregate is shorter than one window; the number of samples needed.
    #[error("the aggregate is too short: the model needs at least {0} samples")]
    TooShort(u32),
    /// A sample no household meter can report; the message names it.
    #[error("invalid aggregate: {0}")]
    InvalidInput(String),
    /// The embedded model failed in tract: a defect of this build, not of the input. The
    /// component traps on it rather than answer, so the WIT interface has no such case.
    #[error("model {model} failed: {message}")]
    Model { model: String, message: String },
}

/// The part of a model's JSON the runtime needs (see `models/README.md`).
#[derive(Deserialize)]
struct Metadata {
    appliance: String,
    sha256: String,
    on_threshold_w: f32,
    input: InputMetadata,
    output: OutputMetadata,
}

#[derive(Deserialize)]
struct InputMetadata {
    window: u32,
    step_seconds: u32,
    mean: f32,
    std: f32,
}

#[derive(Deserialize)]
struct OutputMetadata {
    scale: f32,
}

type Plan = Arc<TypedRunnableModel>;

struct Model {
    info: ModelInfo,
    mean: f32,
    std: f32,
    scale: f32,
    onnx: &'static [u8],
    /// Optimized on first use; an error is kept too, so a broken model fails fast every time.
    plan: OnceLock<Result<Plan, String>>,
}

impl Model {
    fn plan(&self) -> Result<&Plan, Error> {
        self.plan
            .get_or_init(|| optimize(self.onnx, self.info.window).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|message| self.failed(message.clone()))
    }

    fn failed(&self, message: String) -> Error {
        Error::Model {
            model: self.info.id.clone(),
            message,
        }
    }
}

/// Parses an ONNX model and optimizes it for `[N, window]` inputs, N symbolic so that one plan
/// runs batches of any size.
fn optimize(onnx: &[u8], window: u32) -> TractResult<Plan> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &*onnx)?;
    let batch = model.symbols.sym("N");
    let shape = [batch.to_dim(), (window as usize).to_dim()];
    model.set_input_fact(0, f32::fact(shape).into())?;
    model.into_optimized()?.into_runnable()
}

/// The embedded models, each optimized on first use and then reused.
pub struct Disaggregator {
    models: Vec<Model>,
}

impl Default for Disaggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl Disaggregator {
    /// Reads the embedded models' metadata; no model is parsed or optimized yet.
    pub fn new() -> Self {
        let models = EMBEDDED
            .iter()
            .map(|embedded| {
                // Embedded at build time and parsed by this crate's tests: a failure here is a
                // broken build, not bad input.
                let meta: Metadata = serde_json::from_str(embedded.json)
                    .unwrap_or_else(|e| panic!("models/{}.json: {e}", embedded.id));
                Model {
                    info: ModelInfo {
                        id: embedded.id.to_owned(),
                        appliance: meta.appliance,
                        window: meta.input.window,
                        step_seconds: meta.input.step_seconds,
                        on_threshold_w: meta.on_threshold_w,
                        sha256: meta.sha256,
                    },
                    mean: meta.input.mean,
                    std: meta.input.std,
                    scale: meta.output.scale,
                    onnx: embedded.onnx,
                    plan: OnceLock::new(),
                }
            })
            .collect();
        Disaggregator { models }
    }

    /// One process-wide instance, so that every caller shares the optimized models.
    pub fn shared() -> &'static Disaggregator {
        static SHARED: OnceLock<Disaggregator> = OnceLock::new();
        SHARED.get_or_init(Disaggregator::new)
    }

    /// The embedded models, in a fixed order (kettle, fridge, washing machine, dishwasher,
    /// microwave).
    pub fn models(&self) -> Vec<ModelInfo> {
        self.models.iter().map(|m| m.info.clone()).collect()
    }

    /// The model's estimates of the appliance's power in W for every sample of `aggregate`
    /// (whole-house mean power in W, one sample per step) that has a full window around it:
    /// `aggregate.len() − window + 1` values, value `i` for sample `i + window / 2`.
    pub fn run(&self, model: &str, aggregate: &[f32]) -> Result<Vec<f32>, Error> {
        let m = self
            .models
            .iter()
            .find(|m| m.info.id == model)
            .ok_or_else(|| Error::UnknownModel(model.to_owned()))?;
        let window = m.info.window as usize;
        if aggregate.len() < window {
            return Err(Error::TooShort(m.info.window));
        }
        validate(aggregate)?;
        let plan = m.plan()?;

        let normalised: Vec<f32> = aggregate.iter().map(|x| (x - m.mean) / m.std).collect();
        let windows = aggregate.len() - window + 1;
        let mut out = Vec::with_capacity(windows);
        let mut batch = Vec::with_capacity(windows.min(MAX_BATCH) * window);
        for first in (0..windows).step_by(MAX_BATCH) {
            let count = (windows - first).min(MAX_BATCH);
            batch.clear();
            for start in first..first + count {
                batch.extend_from_slice(&normalised[start..start + window]);
            }
            let y =
                run_batch(plan, &batch, count, window).map_err(|e| m.failed(format!("{e:#}")))?;
            // ReLU on the rescaled output: the regression can dip below 0 W when the appliance
            // is off. `f32::max` also maps a NaN to 0.
            out.extend(y.into_iter().map(|y| (y * m.scale).max(0.0)));
        }
        Ok(out)
    }
}

/// Runs `count` normalised windows through the plan; returns the raw model outputs.
fn run_batch(plan: &Plan, batch: &[f32], count: usize, window: usize) -> TractResult<Vec<f32>> {
    let input = Tensor::from_shape(&[count, window], batch)?;
    let outputs = plan.run(tvec!(input.into()))?;
    let output = outputs
        .first()
        .ok_or_else(|| TractError::msg("the model returned no output"))?
        .to_plain_array_view::<f32>()?;
    if output.len() != count {
        return Err(TractError::msg(format!(
            "the model returned {} values for {count} windows",
            output.len()
        )));
    }
    Ok(output.iter().copied().collect())
}

/// A deterministic synthetic aggregate in W, for tests and benchmarks (the same formula makes
/// `models/reference/*.json` in `models/reference/make_reference.py`). Sample `i`:
///
/// `120 + 80·sin(2π·i/45) + 150·[i mod 25 < 10] + 2000·[i mod 60 ∈ {20, 21, 22}]
///  + 1800·[110 ≤ i mod 200 < 130]`
///
/// (base load with a slow swing, a fridge-like 150 W cycle, a 3-minute 2 kW kettle every hour,
/// a 20-minute 1.8 kW heating phase), computed in f64 and rounded to f32.
pub fn synthetic_aggregate(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let t = i as f64;
            let mut x = 120.0 + 80.0 * (2.0 * std::f64::consts::PI * t / 45.0).sin();
            if i % 25 < 10 {
                x += 150.0;
            }
            if (20..23).contains(&(i % 60)) {
                x += 2000.0;
            }
            if (110..130).contains(&(i % 200)) {
                x += 1800.0;
            }
            x as f32
        })
        .collect()
}

/// Rejects samples no household meter reports (see [`MIN_AGGREGATE_W`], [`MAX_AGGREGATE_W`]).
fn validate(aggregate: &[f32]) -> Result<(), Error> {
    for (i, &x) in aggregate.iter().enumerate() {
        let problem = if x.is_nan() {
            "is NaN".to_owned()
        } else if x.is_infinite() {
            format!("is {x}")
        } else if x < MIN_AGGREGATE_W {
            format!(
                "= {x} W is below {MIN_AGGREGATE_W} W: the models take a household's \
                 consumption only (no PV export, no sign errors)"
            )
        } else if x > MAX_AGGREGATE_W {
            format!("= {x} W is above {MAX_AGGREGATE_W} W, more than any household connection")
        } else {
            continue;
        };
        return Err(Error::InvalidInput(format!("aggregate[{i}] {problem}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
