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

impl From<&native::DeviceStatus> for wit::DeviceStatus {
    fn from(status: &native::DeviceStatus) -> Self {
        wit::DeviceStatus {
            components: status.components.clone(),
            last_measurement: status.last_measurement.clone(),
            meters: status.meters.iter().map(wit::MeterStatus::from).collect(),
        }
    }
}
