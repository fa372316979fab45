//! The WIT export `wattlet:nialm/disaggregate` over the native library, built for wasm32-wasip2.

use crate::{Disaggregator, Error, ModelInfo};

wit_bindgen::generate!({
    path: "../../wit/nialm",
    world: "nialm",
});

use exports::wattlet::nialm::disaggregate as wit;

struct Component;

export!(Component);

impl wit::Guest for Component {
    fn models() -> Vec<wit::ModelInfo> {
        Disaggregator::shared()
            .models()
            .into_iter()
            .map(info_to_wit)
            .collect()
    }

    fn run(model: String, aggregate: Vec<f32>) -> Result<Vec<f32>, wit::Error> {
        // The instance outlives the call, so the optimized models stay cached between calls.
        Disaggregator::shared()
            .run(&model, &aggregate)
            .map_err(|error| match error {
                Error::UnknownModel(id) => wit::Error::UnknownModel(id),
                Error::TooShort(needed) => wit::Error::TooShort(needed),
                Error::InvalidInput(message) => wit::Error::InvalidInput(message),
                // A broken embedded model is a defect of this build, not an answer: trap, and the
                // host sees the component fail.
                error @ Error::Model { .. } => panic!("{error}"),
            })
    }
}

fn info_to_wit(info: ModelInfo) -> wit::ModelInfo {
    wit::ModelInfo {
        id: info.id,
        appliance: info.appliance,
        window: info.window,
        step_seconds: info.step_seconds,
        on_threshold_w: info.on_threshold_w,
        sha256: info.sha256,
    }
}
