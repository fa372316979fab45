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
            last_reading: status.last_reading.clone(),
            probe: status.probe.map(Into::into),
        }
    }
}

impl From<native::ProbeStats> for wit::ProbeStats {
    fn from(p: native::ProbeStats) -> Self {
        wit::ProbeStats {
            telegrams: p.telegrams,
            parser_failures: p.parser_failures,
            skipped_bytes: p.skipped_bytes,
            skipped_frames: p.skipped_frames,
        }
    }
}

impl From<&native::UpdateState> for wit::UpdateState {
    fn from(u: &native::UpdateState) -> Self {
        wit::UpdateState {
            state: u.state.clone(),
            component: u.component.clone(),
            from: u.from.clone(),
            to: u.to.clone(),
            reason: u.reason.clone(),
        }
    }
}

impl From<&native::DiagnosticsBundle> for wit::DiagnosticsBundle {
    fn from(b: &native::DiagnosticsBundle) -> Self {
        wit::DiagnosticsBundle {
            logs: b.logs.clone(),
            config: b.config.clone(),
            probes: b
                .probes
                .iter()
                .map(|(meter, stats)| (meter.clone(), (*stats).into()))
                .collect(),
            skipped: b
                .skipped
                .iter()
                .map(|s| wit::SkippedRange {
                    meter: s.meter.clone(),
                    at: s.at.clone(),
                    offset: s.offset,
                    length: s.length,
                    reason: s.reason.clone(),
                })
                .collect(),
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
            uptime_s: status.uptime_s,
            buffer: status.buffer.map(|b| wit::BufferDepth {
                unsent: b.unsent,
                set_aside: b.set_aside,
            }),
            free_disk_bytes: status.free_disk_bytes,
            device_time: status.device_time.clone(),
            update: status.update.as_ref().map(Into::into),
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

impl From<wit::RolloutAdmission> for native::RolloutAdmission {
    fn from(a: wit::RolloutAdmission) -> Self {
        native::RolloutAdmission {
            component: a.component,
            version: a.version,
            rollout: a.rollout,
        }
    }
}

impl From<&native::UpdateOutcome> for wit::UpdateOutcome {
    fn from(o: &native::UpdateOutcome) -> Self {
        wit::UpdateOutcome {
            component: o.component.clone(),
            version: o.version.clone(),
            committed: o.committed,
            reason: o.reason.clone(),
        }
    }
}
