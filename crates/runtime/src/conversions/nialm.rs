//! `wattlet:nialm` ↔ the `wattlet-nialm` library's types.

use wattlet_nialm as native;

use crate::nialm::bindings::exports::wattlet::nialm::disaggregate as wit;

impl From<wit::ModelInfo> for native::ModelInfo {
    fn from(info: wit::ModelInfo) -> Self {
        native::ModelInfo {
            id: info.id,
            appliance: info.appliance,
            window: info.window,
            step_seconds: info.step_seconds,
            on_threshold_w: info.on_threshold_w,
            sha256: info.sha256,
        }
    }
}

impl From<wit::Error> for native::Error {
    fn from(error: wit::Error) -> Self {
        match error {
            wit::Error::UnknownModel(id) => native::Error::UnknownModel(id),
            wit::Error::TooShort(needed) => native::Error::TooShort(needed),
            wit::Error::InvalidInput(message) => native::Error::InvalidInput(message),
        }
    }
}
