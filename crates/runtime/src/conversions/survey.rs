//! `wattlet:survey` ↔ `wattlet-survey`.

use wattlet_survey as native;

use crate::uplink::bindings::wattlet::survey::types as wit;

impl From<wit::ConsentState> for native::ConsentState {
    fn from(state: wit::ConsentState) -> Self {
        match state {
            wit::ConsentState::NotGranted => native::ConsentState::NotGranted,
            wit::ConsentState::Granted => native::ConsentState::Granted,
            wit::ConsentState::Revoked => native::ConsentState::Revoked,
        }
    }
}

impl From<&native::Measurement> for wit::Measurement {
    fn from(m: &native::Measurement) -> Self {
        wit::Measurement {
            uuid: m.uuid.clone(),
            meter: m.meter.clone(),
            measured_at: m.measured_at.clone(),
            values: m.values.clone(),
        }
    }
}

wattlet_survey::refusal_code_conversions!(wit::RefusalCode);

impl From<wit::Refusal> for native::Refusal {
    fn from(refusal: wit::Refusal) -> Self {
        native::Refusal {
            status: refusal.status,
            code: refusal.code.map(native::RefusalCode::from),
            message: refusal.message,
        }
    }
}
