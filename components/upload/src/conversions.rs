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
            last_reading: m.last_reading,
            probe: m.probe.map(Into::into),
        }
    }
}

impl From<wit::ProbeStats> for protocol::ProbeStats {
    fn from(p: wit::ProbeStats) -> Self {
        protocol::ProbeStats {
            telegrams: p.telegrams,
            parser_failures: p.parser_failures,
            skipped_bytes: p.skipped_bytes,
            skipped_frames: p.skipped_frames,
        }
    }
}

impl From<wit::UpdateState> for protocol::UpdateState {
    fn from(u: wit::UpdateState) -> Self {
        protocol::UpdateState {
            state: u.state,
            component: u.component,
            from: u.from,
            to: u.to,
            reason: u.reason,
        }
    }
}

impl From<wit::DiagnosticsBundle> for protocol::DiagnosticsBundle {
    fn from(b: wit::DiagnosticsBundle) -> Self {
        protocol::DiagnosticsBundle {
            logs: b.logs,
            config: b.config,
            probes: b
                .probes
                .into_iter()
                .map(|(meter, stats)| (meter, stats.into()))
                .collect(),
            skipped: b
                .skipped
                .into_iter()
                .map(|s| protocol::SkippedRange {
                    meter: s.meter,
                    at: s.at,
                    offset: s.offset,
                    length: s.length,
                    reason: s.reason,
                })
                .collect(),
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
            uptime_s: status.uptime_s,
            buffer: status.buffer.map(|b| protocol::BufferDepth {
                unsent: b.unsent,
                set_aside: b.set_aside,
            }),
            free_disk_bytes: status.free_disk_bytes,
            device_time: status.device_time,
            update: status.update.map(Into::into),
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

impl From<protocol::RolloutAdmission> for wit::RolloutAdmission {
    fn from(a: protocol::RolloutAdmission) -> Self {
        wit::RolloutAdmission {
            component: a.component,
            version: a.version,
            rollout: a.rollout,
        }
    }
}

impl From<wit::UpdateOutcome> for protocol::UpdateOutcome {
    fn from(o: wit::UpdateOutcome) -> Self {
        protocol::UpdateOutcome {
            component: o.component,
            version: o.version,
            committed: o.committed,
            reason: o.reason,
        }
    }
}
