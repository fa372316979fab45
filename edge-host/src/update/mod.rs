//! The update agent: new component versions from the signed repository, staged in the
//! inactive slot, checked, switched to, proven healthy and committed, or rolled back.
//!
//! - [`machine`]: the update of one component as a pure state machine.
//! - [`slots`]: its state and slot directories on disk (atomic writes), and which component to
//!   run after a restart ([`slots::resolve`]: never neither).
//! - [`health`]: the parser's health check (golden telegrams through old and new parser).
//! - [`agent`]: the whole update: verify through TUF (`wattlet_updates::Verifier`), stage,
//!   precompile, link check, switch, health check, commit (version floor) or roll back.

pub mod agent;
pub mod health;
pub mod machine;
pub mod slots;

pub use agent::{Admission, Agent, Applied, UpdateSettings};

/// The components a device updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `wattlet:meter/meter-parser`: checked by replaying golden telegrams.
    MeterParser,
    /// `wattlet:edge/upload`: checked by its first acknowledged upload.
    Upload,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::MeterParser, Kind::Upload];

    /// Its name in the repository (`components/<name>/<version>.wasm`), the state directory
    /// and the device's status report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::MeterParser => "meter-parser",
            Kind::Upload => "upload",
        }
    }

    /// The cargo package the shipped component is built from (`wattlet_runtime::locate`).
    pub fn package(self) -> &'static str {
        match self {
            Kind::MeterParser => "wattlet-meter-parser",
            Kind::Upload => "wattlet-upload",
        }
    }

    /// The WIT world names a release of this component may declare. The link check against
    /// the host's real linker decides; this only refuses a release meant for another world.
    pub fn worlds(self) -> &'static [&'static str] {
        match self {
            Kind::MeterParser => &["wattlet:meter/meter-parser", "wattlet:meter/parser"],
            Kind::Upload => &["wattlet:edge/upload"],
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}
