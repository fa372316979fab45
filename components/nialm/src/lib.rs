//! The NIALM component: a household's whole-house power → the power of single appliances.
//!
//! One seq2point CNN per appliance (`models/README.md`: kettle, dishwasher, washing machine and
//! microwave each trained on one real home, REFIT house 2 or 20, and scored on the other; the
//! fridge on synthetic households), embedded in the binary together with its metadata and run
//! with tract. A model looks at [`ModelInfo::window`] consecutive mean-power samples, one per
//! [`ModelInfo::step_seconds`] (99 × 60 s for every shipped model; both come from the model's
//! JSON), and estimates the appliance's power at the window's midpoint. [`Disaggregator::run`]
//! slides the window over the whole input and runs every window of a call as one batch:
//!
//! - input `x` in W is normalised to `(x − mean) / std` (the constants of the model's JSON);
//! - the model's output `y` becomes `y · scale` W (`scale` from the JSON), and 0 W where that
//!   is below the model's [`ModelInfo::on_threshold_w`] (so every value is "off" = 0 W or
//!   "on" ≥ the threshold);
//! - output `i` is the estimate for input sample `i + window / 2`, so `n` samples give
//!   `n − window + 1` estimates.
//!
//! Each model is parsed and optimized by tract on first use and cached in the [`Disaggregator`];
//! later calls only run the optimized plan.
//!
//! This crate is a plain library tested natively; `component` is the thin
//! `wattlet:nialm/disaggregate` export built for wasm32-wasip2.
//!
//! The tract runtime and the embedded models are the `runtime` feature (on by default); without
//! it the crate is only the types a host needs to talk to the component ([`ModelInfo`],
//! [`Error`]), so a host that runs the component links no tract.

#[cfg(all(target_family = "wasm", feature = "runtime"))]
mod component;
#[cfg(feature = "runtime")]
mod runtime;

#[cfg(feature = "runtime")]
pub use runtime::Disaggregator;

/// The lowest aggregate sample accepted, in W. A consumption meter reads ≥ 0; small negatives
/// come from meter offsets and rounding. Anything lower is export (PV) that the models never saw
/// in training, or a sign error, and would give meaningless estimates.
pub const MIN_AGGREGATE_W: f32 = -50.0;

/// The highest aggregate sample accepted, in W: above any household connection (a German
/// 3 × 63 A connection is about 43 kW), so a larger value is a unit or decoding error.
pub const MAX_AGGREGATE_W: f32 = 100_000.0;

/// One embedded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// What [`Disaggregator::run`] takes as `model`; the appliance's name, e.g. `kettle`.
    pub id: String,
    /// The appliance the model estimates, e.g. `washing_machine`.
    pub appliance: String,
    /// Samples one estimate looks at (from the model's JSON; 99 for every shipped model: the
    /// sample itself and 49 either side).
    pub window: u32,
    /// Seconds between samples; each sample is the mean power over that step (from the model's
    /// JSON; 60 for every shipped model).
    pub step_seconds: u32,
    /// The appliance counts as "on" in a minute whose estimated power is at least this, in W.
    /// [`Disaggregator::run`] already returns 0 W for every estimate below it.
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

#[cfg(all(test, feature = "runtime"))]
mod tests;
