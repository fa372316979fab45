//! `wattlet edge --config FILE`: the device's configuration (TOML).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wattlet_meter_parser::Protocol;
pub use wattlet_serial::Framing;
use wattlet_survey::obis::{self, ENERGY_IMPORT};

pub use crate::update::UpdateSettings;

/// The survey's report cycle is at most an hour.
const MAX_REPORT_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} sets nothing: fill in cloud, [identity] and a [[meter]] (the comments in it and \
         the README, \"Installing on a Raspberry Pi\", say how)"
    )]
    Unconfigured { path: PathBuf },
}

impl ConfigError {
    /// The exit status for a configuration the daemon refuses: `EX_CONFIG` (sysexits.h), which
    /// the systemd unit does not restart on (`RestartPreventExitStatus=78`).
    pub const EXIT_STATUS: u8 = 78;
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cloud: String,
    state_dir: PathBuf,
    identity: RawIdentity,
    #[serde(default)]
    cycles: RawCycles,
    #[serde(default)]
    journal: bool,
    metrics_listen: Option<std::net::SocketAddr>,
    updates: Option<RawUpdates>,
    #[serde(rename = "meter", default)]
    meters: Vec<RawMeter>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    certificate: PathBuf,
    key: PathBuf,
    cloud_ca: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdates {
    repository: String,
    root: PathBuf,
    #[serde(default = "default_poll")]
    poll: String,
    #[serde(default = "default_trial_deadline")]
    trial_deadline: String,
    #[serde(default = "default_max_tries")]
    max_tries: u32,
    #[serde(default = "default_rollouts")]
    rollouts: bool,
}

fn default_poll() -> String {
    "6h".into()
}

fn default_trial_deadline() -> String {
    "15m".into()
}

fn default_max_tries() -> u32 {
    3
}

fn default_rollouts() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCycles {
    measure: String,
    report: String,
    consent: String,
}

impl Default for RawCycles {
    fn default() -> Self {
        RawCycles {
            measure: "15m".into(),
            report: "60m".into(),
            consent: "5m".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeter {
    uuid: String,
    device: PathBuf,
    protocol: String,
    baud: Option<u32>,
    framing: Option<String>,
    model: Option<String>,
    expected: Option<Vec<String>>,
}

/// The device's configuration, checked: paths absolute (relative ones are resolved against the
/// configuration file's directory), cycles within the survey's limits, meters well formed.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The cloud's base URL, `https://host[:port]`.
    pub cloud: String,
    pub state_dir: PathBuf,
    pub identity: Identity,
    pub measure_every: Duration,
    pub report_every: Duration,
    pub consent_every: Duration,
    /// Keep a permanent record (uuid, meter, time) of every measurement taken, in the same
    /// transaction as the measurement: the evidence tests compare the cloud against.
    pub journal: bool,
    /// Where Prometheus metrics are served (`/metrics`); `None`: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The update agent (`[updates]`); `None`: no updates are fetched.
    pub updates: Option<UpdateSettings>,
    pub meters: Vec<MeterConfig>,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub cloud_ca: PathBuf,
}

#[derive(Debug, Clone)]
pub struct MeterConfig {
    pub uuid: String,
    pub device: PathBuf,
    pub protocol: Protocol,
    pub baud: u32,
    pub framing: Framing,
    pub model: Option<String>,
    /// OBIS codes the meter must deliver; fewer means it is locked and needs its PIN.
    pub expected: Vec<String>,
}

impl EdgeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // The packaged example is all comments: say what to do rather than "missing field".
        if text
            .parse::<toml::Table>()
            .is_ok_and(|table| table.is_empty())
        {
            return Err(ConfigError::Unconfigured {
                path: path.to_path_buf(),
            });
        }
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| base.join(p);
        if !raw.cloud.starts_with("https://") {
            return Err(invalid(format!(
                "cloud = {:?}: the device talks to the cloud only over mutual TLS, use https://",
                raw.cloud
            )));
        }
        let duration = |name: &str, text: &str| {
            humantime::parse_duration(text)
                .map_err(|e| {
                    invalid(format!(
                        "cycles.{name} = {text:?}: {e} (e.g. \"15m\", \"2s\")"
                    ))
                })
                .and_then(|d| {
                    if d.is_zero() {
                        Err(invalid(format!("cycles.{name} must be longer than zero")))
                    } else {
                        Ok(d)
                    }
                })
        };
        let measure_every = duration("measure", &raw.cycles.measure)?;
        let report_every = duration("report", &raw.cycles.report)?;
        let consent_every = duration("consent", &raw.cycles.consent)?;
        if report_every > MAX_REPORT_INTERVAL {
            return Err(invalid(format!(
                "cycles.report = {:?}: the report cycle is at most 60 minutes",
                raw.cycles.report
            )));
        }
        let updates = match raw.updates {
            None => None,
            Some(u) => {
                let repository = if u.repository.starts_with("https://") {
                    url::Url::parse(&u.repository).map_err(|e| {
                        invalid(format!("updates.repository = {:?}: {e}", u.repository))
                    })?
                } else if u.repository.contains("://") {
                    return Err(invalid(format!(
                        "updates.repository = {:?}: use https:// (over the device's mutual TLS) or a directory",
                        u.repository
                    )));
                } else {
                    let dir =
                        std::path::absolute(resolve(Path::new(&u.repository))).map_err(|e| {
                            invalid(format!("updates.repository = {:?}: {e}", u.repository))
                        })?;
                    url::Url::from_directory_path(&dir).map_err(|()| {
                        invalid(format!(
                            "updates.repository = {:?}: not a directory path",
                            u.repository
                        ))
                    })?
                };
                let poll_every = duration("poll", &u.poll).map_err(|_| {
                    invalid(format!(
                        "updates.poll = {:?}: not a duration (e.g. \"6h\")",
                        u.poll
                    ))
                })?;
                let trial_deadline =
                    duration("trial_deadline", &u.trial_deadline).map_err(|_| {
                        invalid(format!(
                            "updates.trial_deadline = {:?}: not a duration (e.g. \"15m\")",
                            u.trial_deadline
                        ))
                    })?;
                if u.max_tries == 0 {
                    return Err(invalid("updates.max_tries must be at least 1".into()));
                }
                Some(UpdateSettings {
                    repository,
                    root: resolve(&u.root),
                    poll_every,
                    trial_deadline,
                    max_tries: u.max_tries,
                    rollouts: u.rollouts,
                })
            }
        };
        if raw.meters.is_empty() {
            return Err(invalid(
                "no [[meter]]: a device reads at least one meter".into(),
            ));
        }
        let mut meters = Vec::new();
        for (i, m) in raw.meters.into_iter().enumerate() {
            let at = |field: &str| format!("meter {} ({field})", i + 1);
            if m.uuid.is_empty()
                || m.uuid.len() > 64
                || !m
                    .uuid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(invalid(format!(
                    "{}: {:?} is not a meter uuid",
                    at("uuid"),
                    m.uuid
                )));
            }
            if meters
                .iter()
                .any(|other: &MeterConfig| other.uuid == m.uuid)
            {
                return Err(invalid(format!("{}: {} appears twice", at("uuid"), m.uuid)));
            }
            let protocol = match m.protocol.as_str() {
                "sml" => Protocol::Sml,
                "iec62056-21" => Protocol::Iec62056_21,
                "dsmr" => Protocol::Dsmr,
                other => {
                    return Err(invalid(format!(
                        "{}: {other:?} is not one of sml, iec62056-21, dsmr",
                        at("protocol")
                    )));
                }
            };
            // The line settings each protocol uses unless the meter says otherwise.
            let (default_baud, default_framing) = match protocol {
                Protocol::Sml => (9600, Framing::EightN1),
                Protocol::Dsmr => (115_200, Framing::EightN1),
                Protocol::Iec62056_21 => (2400, Framing::SevenE1),
            };
            let framing = match m.framing.as_deref() {
                None => default_framing,
                Some("8N1") => Framing::EightN1,
                Some("7E1") => Framing::SevenE1,
                Some(other) => {
                    return Err(invalid(format!(
                        "{}: {other:?} is not 8N1 or 7E1",
                        at("framing")
                    )));
                }
            };
            let expected = m.expected.unwrap_or_else(|| {
                match protocol {
                    Protocol::Sml => &obis::expected::SML[..],
                    Protocol::Dsmr => &obis::expected::DSMR[..],
                    Protocol::Iec62056_21 => &obis::expected::IEC62056_21[..],
                }
                .iter()
                .map(|c| (*c).to_owned())
                .collect()
            });
            for code in &expected {
                if !obis::is_obis_hex(&code.to_ascii_lowercase()) {
                    return Err(invalid(format!(
                        "{}: {code:?} is not an OBIS code in 12 hex digits (e.g. {ENERGY_IMPORT})",
                        at("expected")
                    )));
                }
            }
            meters.push(MeterConfig {
                uuid: m.uuid,
                device: resolve(&m.device),
                protocol,
                baud: m.baud.unwrap_or(default_baud),
                framing,
                model: m.model,
                expected: expected.iter().map(|c| c.to_ascii_lowercase()).collect(),
            });
        }
        Ok(EdgeConfig {
            cloud: raw.cloud.trim_end_matches('/').to_owned(),
            state_dir: resolve(&raw.state_dir),
            identity: Identity {
                certificate: resolve(&raw.identity.certificate),
                key: resolve(&raw.identity.key),
                cloud_ca: resolve(&raw.identity.cloud_ca),
            },
            measure_every,
            report_every,
            consent_every,
            journal: raw.journal,
            metrics_listen: raw.metrics_listen,
            updates,
            meters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_survey::obis::{ENERGY_EXPORT, POWER_SUM};

    const GOOD: &str = r#"
        cloud = "https://127.0.0.1:8443/"
        state_dir = "state"
        [identity]
        certificate = "device.crt"
        key = "/etc/wattlet/device.key"
        cloud_ca = "ca.crt"
        [cycles]
        measure = "2s"
        [[meter]]
        uuid = "7f0c6d4e-1111-4222-8333-944455556666"
        device = "/dev/ttyUSB0"
        protocol = "sml"
        [[meter]]
        uuid = "pv-1"
        device = "/dev/ttyUSB1"
        protocol = "iec62056-21"
        expected = ["0100020800FF"]
    "#;

    #[test]
    fn defaults_and_resolution() {
        let config = EdgeConfig::parse(GOOD, Path::new("/etc/wattlet/edge.toml")).unwrap();
        assert_eq!(config.cloud, "https://127.0.0.1:8443");
        assert_eq!(config.state_dir, Path::new("/etc/wattlet/state"));
        assert_eq!(config.identity.key, Path::new("/etc/wattlet/device.key"));
        assert_eq!(config.measure_every, Duration::from_secs(2));
        assert_eq!(config.report_every, Duration::from_secs(3600));
        assert_eq!(config.consent_every, Duration::from_secs(300));
        assert!(!config.journal);
        assert_eq!(config.updates, None);
        let text = format!(
            "{GOOD}\n[updates]\nrepository = \"https://cloud.example:8443/updates/\"\nroot = \"1.root.json\"\ntrial_deadline = \"2m\"\n"
        );
        let updates = EdgeConfig::parse(&text, Path::new("/etc/wattlet/edge.toml"))
            .unwrap()
            .updates
            .unwrap();
        assert_eq!(
            updates.repository.as_str(),
            "https://cloud.example:8443/updates/"
        );
        assert_eq!(updates.root, Path::new("/etc/wattlet/1.root.json"));
        assert_eq!(updates.poll_every, Duration::from_secs(6 * 3600));
        assert_eq!(updates.trial_deadline, Duration::from_secs(120));
        assert_eq!(updates.max_tries, 3);
        assert!(
            updates.rollouts,
            "the cloud's rollouts gate updates unless told otherwise"
        );
        let local = EdgeConfig::parse(
            &format!(
                "{GOOD}\n[updates]\nrepository = \"repo\"\nroot = \"r.json\"\nrollouts = false\n"
            ),
            Path::new("/etc/wattlet/edge.toml"),
        )
        .unwrap()
        .updates
        .unwrap();
        assert_eq!(local.repository.as_str(), "file:///etc/wattlet/repo/");
        assert!(!local.rollouts);
        let [sml, iec] = &config.meters[..] else {
            panic!("two meters")
        };
        assert_eq!((sml.baud, sml.framing), (9600, Framing::EightN1));
        assert_eq!(sml.expected, [ENERGY_IMPORT, POWER_SUM]);
        assert_eq!((iec.baud, iec.framing), (2400, Framing::SevenE1));
        assert_eq!(iec.expected, [ENERGY_EXPORT]);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (GOOD.replace("https://", "http://"), "mutual TLS"),
            (GOOD.replace("\"2s\"", "\"soon\""), "cycles.measure"),
            (
                GOOD.replace("measure = \"2s\"", "report = \"2h\""),
                "at most 60 minutes",
            ),
            (GOOD.replace("\"pv-1\"", "\"pv 1\""), "meter 2 (uuid)"),
            (
                GOOD.replace("\"pv-1\"", "\"7f0c6d4e-1111-4222-8333-944455556666\""),
                "twice",
            ),
            (
                GOOD.replace("\"iec62056-21\"", "\"mbus\""),
                "meter 2 (protocol)",
            ),
            (GOOD.replace("0100020800FF", "1.8.0"), "meter 2 (expected)"),
            (GOOD.replace("[cycles]", "[cycles]\nturbo = true"), "turbo"),
            (
                format!(
                    "{GOOD}\n[updates]\nrepository = \"http://cloud/updates\"\nroot = \"root.json\""
                ),
                "updates.repository",
            ),
            (
                format!(
                    "{GOOD}\n[updates]\nrepository = \"updates\"\nroot = \"r.json\"\nmax_tries = 0"
                ),
                "max_tries",
            ),
            (
                format!(
                    "{GOOD}\n[updates]\nrepository = \"updates\"\nroot = \"r.json\"\npoll = \"often\""
                ),
                "updates.poll",
            ),
        ];
        for (text, needle) in cases {
            let error = EdgeConfig::parse(&text, Path::new("edge.toml"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(needle), "{needle:?} not in {error:?}");
        }
    }

    /// The example the Debian package installs as /etc/wattlet/edge.toml is refused with
    /// what to do, and becomes a configuration once its lines are uncommented.
    #[test]
    fn the_packaged_example_is_refused_until_filled_in() {
        let example = include_str!("../debian/edge.toml");
        let path = Path::new("/etc/wattlet/edge.toml");
        let error = EdgeConfig::parse(example, path).unwrap_err();
        assert!(matches!(error, ConfigError::Unconfigured { .. }), "{error}");
        assert!(error.to_string().contains("Installing on a Raspberry Pi"));
        // The settings start at `cloud`; above them is prose.
        let filled: String = example
            .lines()
            .skip_while(|line| !line.starts_with("# cloud ="))
            .map(|line| line.strip_prefix("# ").unwrap_or(line))
            .filter(|line| line.starts_with(|c: char| c.is_ascii_lowercase() || c == '['))
            .map(|line| format!("{line}\n"))
            .collect();
        let config = EdgeConfig::parse(&filled, path).expect("the example, uncommented");
        assert_eq!(config.state_dir, Path::new("/var/lib/wattlet"));
        assert_eq!(config.identity.key, Path::new("/etc/wattlet/device.key"));
        assert_eq!(config.meters[0].device, Path::new("/dev/wattlet-probe0"));
    }
}
