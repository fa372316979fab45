//! A work item: one meter, one hour of output minutes, one appliance model, with the aggregate
//! power the model needs around that hour. Items carry their input so workers need no database
//! of their own, only the result store (and so a confidential worker could receive it encrypted).

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
}
