//! The guest side of `wattlet:survey` and `wattlet:edge`: `From` impls between the types
//! `wit_bindgen::generate!` makes and the native ones.

use wattlet_survey as survey;

use crate::component::wit;
use crate::component::wit_survey;
use crate::protocol;

wattlet_survey::refusal_code_conversions!(wit_survey::RefusalCode);

impl From<survey::ConsentState> for wit_survey::ConsentState {
    fn from(state: survey::ConsentState) -> Self {
        match state {
            survey::ConsentState::NotGranted => wit_survey::ConsentState::NotGranted,
            survey::ConsentState::Granted => wit_survey::ConsentState::Granted,
            survey::ConsentState::Revoked => wit_survey::ConsentState::Revoked,
        }
    }
}

impl From<wit_survey::Measurement> for survey::Measurement {
    fn from(m: wit_survey::Measurement) -> Self {
        survey::Measurement {
            uuid: m.uuid,
            meter: m.meter,
            measured_at: m.measured_at,
            values: m.values,
        }
    }
}

impl From<survey::Refusal> for wit_survey::Refusal {
    fn from(refusal: survey::Refusal) -> Self {
        wit_survey::Refusal {
            status: refusal.status,
            code: refusal.code.map(wit_survey::RefusalCode::from),
            message: refusal.message,
        }
    }
}

impl From<protocol::Error> for wit::Error {
    fn from(error: protocol::Error) -> Self {
        match error {
            protocol::Error::Refused(refusal) => wit::Error::Refused(refusal.into()),
            protocol::Error::Server(m) => wit::Error::Server(m),
            protocol::Error::Transport(m) => wit::Error::Transport(m),
            protocol::Error::InvalidUrl(m) => wit::Error::InvalidUrl(m),
        }
    }
}

impl From<wit::MeterStatus> for protocol::MeterStatus {
    fn from(m: wit::MeterStatus) -> Self {
        protocol::MeterStatus {
            uuid: m.uuid,
            locked: m.locked,
            missing: m.missing,
        }
    }
}

impl From<wit::SetAside> for protocol::SetAside {
    fn from(s: wit::SetAside) -> Self {
        protocol::SetAside {
            meter: s.meter,
            code: s.code.map(Into::into),
            count: s.count,
        }
    }
}

impl From<wit::DeviceStatus> for protocol::DeviceStatus {
    fn from(status: wit::DeviceStatus) -> Self {
        protocol::DeviceStatus {
            components: status.components,
            last_measurement: status.last_measurement,
            meters: status.meters.into_iter().map(Into::into).collect(),
            set_aside: status.set_aside.into_iter().map(Into::into).collect(),
            clock_plausible: status.clock_plausible,
        }
    }
}

impl From<protocol::MeasurementRefusal> for wit::MeasurementRefusal {
    fn from(refusal: protocol::MeasurementRefusal) -> Self {
        wit::MeasurementRefusal {
            uuid: refusal.uuid,
            code: refusal.code.map(Into::into),
            message: refusal.message,
        }
    }
}

impl From<protocol::UploadOutcome> for wit::UploadOutcome {
    fn from(outcome: protocol::UploadOutcome) -> Self {
        wit::UploadOutcome {
            acknowledged: outcome.acknowledged,
            refused: outcome.refused.into_iter().map(Into::into).collect(),
        }
    }
}
