//! A work item: one meter, one hour of output minutes, one appliance model, with the aggregate
//! power the model needs around that hour ([`WorkItem`]); or one meter's load forecast
//! ([`ForecastItem`]). Items carry their input so workers need no database of their own, only
//! the result store (and so a confidential worker could receive it encrypted).
//!
//! Both kinds share the queue. A forecast item's JSON carries `"kind": "forecast"`; an item
//! without `kind` is a NIALM item, as every item published before forecasts existed ([`Job`]).

use serde::{Deserialize, Serialize};

/// Seconds between samples of the aggregate series (the models are trained on 60 s means).
pub const STEP_SECONDS: i64 = 60;
/// Output samples per item: one hour.
pub const OUTPUT_SAMPLES: usize = 60;
/// The models' input window (models/README.md): 99 samples, the output is for the middle one.
pub const MODEL_WINDOW: usize = 99;
/// Samples of context needed on each side of an output sample.
pub const CONTEXT: usize = MODEL_WINDOW / 2;
/// Input samples per item.
pub const INPUT_SAMPLES: usize = OUTPUT_SAMPLES + 2 * CONTEXT;
/// Seconds covered by one item's output.
pub const WINDOW_SECONDS: i64 = OUTPUT_SAMPLES as i64 * STEP_SECONDS;

/// Checks a model of the NIALM component against the item format, by the window and step of the
/// model's own metadata (the component's `models`): an item carries [`INPUT_SAMPLES`] samples
/// [`STEP_SECONDS`] apart for [`OUTPUT_SAMPLES`] estimates, so it fits a model of window
/// [`MODEL_WINDOW`] and that step only. A worker refuses to start with a model that does not fit
/// rather than feed it input of the wrong resolution or get the wrong number of estimates.
pub fn check_model(id: &str, window: u32, step_seconds: u32) -> Result<(), String> {
    if i64::from(step_seconds) != STEP_SECONDS || window as usize != MODEL_WINDOW {
        return Err(format!(
            "model {id:?} takes windows of {window} samples {step_seconds} s apart; work items \
             carry {INPUT_SAMPLES} samples {STEP_SECONDS} s apart for {OUTPUT_SAMPLES} estimates, \
             which needs windows of {MODEL_WINDOW} samples"
        ));
    }
    Ok(())
}

/// The appliance models the manager plans for unless told otherwise (the files in `models/`).
pub const DEFAULT_MODELS: [&str; 5] = [
    "kettle",
    "fridge",
    "washing_machine",
    "dishwasher",
    "microwave",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The meter's uuid.
    pub meter: String,
    /// The appliance model id.
    pub model: String,
    /// Unix seconds of the first output sample (a full hour, UTC).
    pub window_start: i64,
    /// [`INPUT_SAMPLES`] aggregate power values in W, 60 s apart, starting [`CONTEXT`] samples
    /// before `window_start`.
    pub aggregate: Vec<f32>,
}

impl WorkItem {
    /// The deterministic id: the same meter, model and window always give the same id, which is
    /// the `Nats-Msg-Id` (JetStream drops a re-published copy) and the result's primary key.
    pub fn id(&self) -> String {
        item_id(&self.meter, &self.model, self.window_start)
    }

    /// Checks what a worker relies on; an item failing this is dead-lettered, not retried.
    pub fn validate(&self) -> Result<(), String> {
        if self.aggregate.len() != INPUT_SAMPLES {
            return Err(format!(
                "aggregate has {} samples, an item needs {INPUT_SAMPLES}",
                self.aggregate.len()
            ));
        }
        if self.window_start % WINDOW_SECONDS != 0 {
            return Err(format!(
                "window_start {} is not on a full hour",
                self.window_start
            ));
        }
        if self.meter.is_empty() || self.model.is_empty() {
            return Err("meter and model must not be empty".to_owned());
        }
        Ok(())
    }
}

/// See [`WorkItem::id`]: the first 128 bits of SHA-256 over a versioned, unambiguous key.
pub fn item_id(meter: &str, model: &str, window_start: i64) -> String {
    let key = format!("nialm/v1\n{meter}\n{model}\n{window_start}");
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    hex::encode(&digest.as_ref()[..16])
}

/// The subject an item is published on: one per model, so an operator can watch one model.
pub fn subject(model: &str) -> String {
    format!("{}.{model}", crate::WORK_SUBJECT)
}

/// The most history a forecast item carries: Q1's median over "all previous days" becomes one
/// over the previous days of this window.
pub const FORECAST_HISTORY_DAYS: i64 = 7;
/// The least history a forecast item carries (a meter younger than this gets none yet).
pub const FORECAST_MIN_SECONDS: i64 = 3600;
/// The manager publishes a meter's next forecast item once its `at` moved on this much.
pub const FORECAST_EVERY_SECONDS: i64 = 300;
/// The subject forecast items are published on (the "model" of a forecast).
pub const FORECAST: &str = "forecast";

/// A meter's load forecast to compute: its 60 s mean power series ([`crate::plan::series`])
/// over up to [`FORECAST_HISTORY_DAYS`] before `at`, which Q1 turns into forecasts made at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastItem {
    /// The meter's uuid.
    pub meter: String,
    /// Unix seconds, a multiple of 60: the end of the last complete minute of data.
    pub at: i64,
    /// Power in W, one mean per minute, the last one for the minute before `at`.
    pub series: Vec<f32>,
}

impl ForecastItem {
    /// The deterministic id, as [`WorkItem::id`]: the same meter and `at` give the same id.
    pub fn id(&self) -> String {
        forecast_id(&self.meter, self.at)
    }

    /// Unix seconds of the first minute of the series.
    pub fn start(&self) -> i64 {
        self.at - self.series.len() as i64 * STEP_SECONDS
    }

    /// Checks what a worker relies on; an item failing this is dead-lettered, not retried.
    pub fn validate(&self) -> Result<(), String> {
        let minutes = self.series.len() as i64;
        let (least, most) = (
            FORECAST_MIN_SECONDS / STEP_SECONDS,
            FORECAST_HISTORY_DAYS * 86_400 / STEP_SECONDS,
        );
        if !(least..=most).contains(&minutes) {
            return Err(format!(
                "series has {minutes} minutes, a forecast item needs {least}–{most}"
            ));
        }
        if self.at % STEP_SECONDS != 0 {
            return Err(format!("at {} is not on a full minute", self.at));
        }
        // Q1 runs on u32 event times.
        if self.start() < 0 || self.at > i64::from(u32::MAX) {
            return Err(format!("at {} is outside 1970–2106", self.at));
        }
        if let Some(i) = self.series.iter().position(|w| !w.is_finite()) {
            return Err(format!("series[{i}] is not a finite power"));
        }
        if self.meter.is_empty() {
            return Err("meter must not be empty".to_owned());
        }
        Ok(())
    }
}

/// See [`ForecastItem::id`].
pub fn forecast_id(meter: &str, at: i64) -> String {
    let key = format!("forecast/v1\n{meter}\n{at}");
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    hex::encode(&digest.as_ref()[..16])
}

/// The items with a `kind` tag: every kind but the original NIALM item.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged {
    Forecast(ForecastItem),
}

/// Any item on the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Nialm(WorkItem),
    Forecast(ForecastItem),
}

impl Job {
    pub fn id(&self) -> String {
        match self {
            Job::Nialm(item) => item.id(),
            Job::Forecast(item) => item.id(),
        }
    }

    pub fn meter(&self) -> &str {
        match self {
            Job::Nialm(item) => &item.meter,
            Job::Forecast(item) => &item.meter,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self {
            Job::Nialm(item) => item.validate(),
            Job::Forecast(item) => item.validate(),
        }
    }

    /// The subject the item is published on.
    pub fn subject(&self) -> String {
        match self {
            Job::Nialm(item) => subject(&item.model),
            Job::Forecast(_) => subject(FORECAST),
        }
    }

    /// The item's JSON on the queue (the plaintext of a sealed item).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            Job::Nialm(item) => serde_json::to_vec(item),
            Job::Forecast(item) => serde_json::to_vec(&Tagged::Forecast(item.clone())),
        }
    }

    /// Reads an item's JSON: tagged by `kind`, or a NIALM item without one.
    pub fn from_json(value: serde_json::Value) -> Result<Job, String> {
        if value.get("kind").is_some() {
            match serde_json::from_value(value).map_err(|e| e.to_string())? {
                Tagged::Forecast(item) => Ok(Job::Forecast(item)),
            }
        } else {
            serde_json::from_value(value)
                .map(Job::Nialm)
                .map_err(|e| e.to_string())
        }
    }

    pub fn from_slice(json: &[u8]) -> Result<Job, String> {
        Job::from_json(serde_json::from_slice(json).map_err(|e| e.to_string())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> WorkItem {
        WorkItem {
            meter: "6f1c2a4e-0000-4000-8000-000000000001".to_owned(),
            model: "kettle".to_owned(),
            window_start: 1_764_000_000 - 1_764_000_000 % WINDOW_SECONDS,
            aggregate: vec![100.0; INPUT_SAMPLES],
        }
    }

    #[test]
    fn models_must_fit_the_item_format() {
        assert_eq!(check_model("kettle", 99, 60), Ok(()));
        for (window, step) in [(599, 60), (99, 8), (129, 30)] {
            let error = check_model("kettle", window, step).expect_err("does not fit");
            assert!(
                error.contains(&format!("{window} samples {step} s apart")),
                "{error}"
            );
        }
    }

    #[test]
    fn id_depends_on_meter_model_and_window_only() {
        let a = item();
        let mut b = a.clone();
        b.aggregate[0] = 5.0;
        assert_eq!(a.id(), b.id(), "the input data is not part of the identity");
        for changed in [
            WorkItem {
                meter: "other".into(),
                ..a.clone()
            },
            WorkItem {
                model: "fridge".into(),
                ..a.clone()
            },
            WorkItem {
                window_start: a.window_start + WINDOW_SECONDS,
                ..a.clone()
            },
        ] {
            assert_ne!(a.id(), changed.id());
        }
        assert_eq!(a.id().len(), 32);
    }

    #[test]
    fn validate_rejects_what_a_worker_cannot_use() {
        assert!(item().validate().is_ok());
        let short = WorkItem {
            aggregate: vec![1.0; 10],
            ..item()
        };
        assert!(short.validate().unwrap_err().contains("10 samples"));
        let off_hour = WorkItem {
            window_start: item().window_start + 60,
            ..item()
        };
        assert!(off_hour.validate().unwrap_err().contains("full hour"));
    }

    fn forecast() -> ForecastItem {
        ForecastItem {
            meter: "6f1c2a4e-0000-4000-8000-000000000001".to_owned(),
            at: 1_764_000_000,
            series: vec![500.0; 120],
        }
    }

    #[test]
    fn both_kinds_round_trip_and_untagged_items_are_nialm() {
        let nialm = Job::Nialm(item());
        let old = serde_json::to_vec(&item()).unwrap();
        assert_eq!(Job::from_slice(&old).unwrap(), nialm);
        assert_eq!(Job::from_slice(&nialm.to_json().unwrap()).unwrap(), nialm);
        let job = Job::Forecast(forecast());
        let json: serde_json::Value = serde_json::from_slice(&job.to_json().unwrap()).unwrap();
        assert_eq!(json["kind"], "forecast");
        assert_eq!(Job::from_json(json).unwrap(), job);
        assert!(Job::from_json(serde_json::json!({"kind": "other"})).is_err());
        assert_eq!(job.subject(), "nialm.work.forecast");
    }

    #[test]
    fn forecast_ids_and_validation() {
        let a = forecast();
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("forecast/v1\n{}\n{}", a.meter, a.at).as_bytes(),
        );
        assert_eq!(a.id(), hex::encode(&digest.as_ref()[..16]));
        let b = ForecastItem {
            series: vec![1.0; 60],
            ..a.clone()
        };
        assert_eq!(a.id(), b.id(), "the input data is not part of the identity");
        assert_ne!(
            a.id(),
            ForecastItem {
                at: a.at + 60,
                ..b.clone()
            }
            .id()
        );
        assert!(a.validate().is_ok() && b.validate().is_ok());
        assert_eq!(a.start(), a.at - 120 * 60);
        let short = ForecastItem {
            series: vec![1.0; 59],
            ..a.clone()
        };
        assert!(short.validate().unwrap_err().contains("59 minutes"));
        let long = ForecastItem {
            series: vec![1.0; 7 * 1440 + 1],
            ..a.clone()
        };
        assert!(long.validate().is_err());
        let off = ForecastItem {
            at: a.at + 1,
            ..a.clone()
        };
        assert!(off.validate().unwrap_err().contains("full minute"));
        let mut nan = a.clone();
        nan.series[3] = f32::NAN;
        assert!(nan.validate().unwrap_err().contains("series[3]"));
    }
}
