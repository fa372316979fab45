//! `wattlet:edge` ↔ the upload protocol's types (`wattlet-upload`).

use wattlet_upload as native;

use crate::uplink::bindings::exports::wattlet::edge::uplink as wit;

impl From<wit::Error> for native::Error {
    fn from(error: wit::Error) -> Self {
        match error {
            wit::Error::Refused(refusal) => native::Error::Refused(refusal.into()),
            wit::Error::Server(m) => native::Error::Server(m),
            wit::Error::Transport(m) => native::Error::Transport(m),
            wit::Error::InvalidUrl(m) => native::Error::InvalidUrl(m),
        }
    }
}

impl From<&native::MeterStatus> for wit::MeterStatus {
    fn from(status: &native::MeterStatus) -> Self {
        wit::MeterStatus {
            uuid: status.uuid.clone(),
            locked: status.locked,
            missing: status.missing.clone(),
        }
    }
}

impl From<&native::SetAside> for wit::SetAside {
    fn from(s: &native::SetAside) -> Self {
        wit::SetAside {
            meter: s.meter.clone(),
            code: s.code.map(Into::into),
            count: s.count,
        }
    }
}

impl From<&native::DeviceStatus> for wit::DeviceStatus {
    fn from(status: &native::DeviceStatus) -> Self {
        wit::DeviceStatus {
            components: status.components.clone(),
            last_measurement: status.last_measurement.clone(),
            meters: status.meters.iter().map(wit::MeterStatus::from).collect(),
            set_aside: status.set_aside.iter().map(wit::SetAside::from).collect(),
            clock_plausible: status.clock_plausible,
        }
    }
}

impl From<wit::MeasurementRefusal> for native::MeasurementRefusal {
    fn from(refusal: wit::MeasurementRefusal) -> Self {
        native::MeasurementRefusal {
            uuid: refusal.uuid,
            code: refusal.code.map(Into::into),
            message: refusal.message,
        }
    }
}

impl From<wit::UploadOutcome> for native::UploadOutcome {
    fn from(outcome: wit::UploadOutcome) -> Self {
        native::UploadOutcome {
            acknowledged: outcome.acknowledged,
            refused: outcome.refused.into_iter().map(Into::into).collect(),
        }
    }
}
