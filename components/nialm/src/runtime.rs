//! The tract runtime: the embedded models, parsed and optimized on first use, run in batches.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use tract_onnx::prelude::*;

use crate::{Error, MAX_AGGREGATE_W, MIN_AGGREGATE_W, ModelInfo};

/// Windows per tract run. Longer inputs run in several batches so that memory stays bounded
/// (the activations take about 6 KB per window; a month at 60 s is 40,000 windows).
pub(crate) const MAX_BATCH: usize = 4096;

/// A model as embedded at build time: the ONNX file and the JSON describing it.
pub(crate) struct Embedded {
    pub(crate) id: &'static str,
    pub(crate) onnx: &'static [u8],
    pub(crate) json: &'static str,
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

pub(crate) const EMBEDDED: [Embedded; 5] = [
    embed!("kettle"),
    embed!("fridge"),
    embed!("washing_machine"),
    embed!("dishwasher"),
    embed!("microwave"),
];

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

    /// The model's raw output `y` as what [`Disaggregator::run`] returns: `y · scale` W, and
    /// 0 W where that is below the model's on threshold (the appliance is off; the regression
    /// leaves small non-zero values there, and can dip below 0 W). A NaN becomes 0 W too.
    fn watts(&self, y: f32) -> f32 {
        let watts = y * self.scale;
        if watts >= self.info.on_threshold_w {
            watts
        } else {
            0.0
        }
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
    /// `aggregate.len() − window + 1` values, value `i` for sample `i + window / 2`. Each value
    /// is 0 W (off) or at least the model's [`ModelInfo::on_threshold_w`] (on): the threshold
    /// is applied here, callers need not.
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
            out.extend(y.into_iter().map(|y| m.watts(y)));
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
