//! What one client, one connection or one component may take of the server: the limits of
//! [`crate::app::ServeOptions::limits`], with defaults fit for production.
//!
//! Two of them follow Spin 4.1's `spin up` settings and take the same values:
//! `--request-timeout` (a duration: `30`, `30s`, `1500ms`, `us`, `ns`) and
//! `--max-instance-memory` (bytes; also `SPIN_MAX_INSTANCE_MEMORY`). wattlet applies them to
//! every component (Spin 4.1's request timeout holds for WASIp3 components only), may set them
//! per component (`[COMPONENT=]VALUE`, see [`PerComponent`]), has defaults where Spin has none,
//! and reads neither Spin's ranges (`1..8s`) nor per-instance reuse (wattlet makes one instance
//! per request).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// The limits `wattlet serve` enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (TLS handshakes included). At the cap the server stops
    /// accepting: further clients wait in the kernel's backlog until a connection closes.
    pub max_connections: usize,
    /// Requests running a component at once; more wait for a slot (at most their request
    /// timeout, then 503).
    pub max_concurrent_requests: usize,
    /// How long a client may take to send a request's headers. hyper arms the same timer as
    /// soon as a kept-alive connection is idle, so it also closes connections idle this long.
    pub header_timeout: Duration,
    /// The longest pause while a request body arrives; a body that stalls longer gets 408.
    pub body_timeout: Duration,
    /// How long a component may take to answer and stream its response, from instantiation
    /// on; a component that takes longer is stopped (epoch interruption) and, when it has not
    /// answered yet, its request gets 504.
    pub request_timeout: PerComponent<Duration>,
    /// The most linear memory an instance may grow to, in bytes; an instance that traps after
    /// a refused growth gets 500.
    pub max_instance_memory: PerComponent<usize>,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take to finish.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_concurrent_requests: 128,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: PerComponent::new(Duration::from_secs(30)),
            max_instance_memory: PerComponent::new(128 << 20),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// A value for every component, with overrides for some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerComponent<T> {
    pub default: T,
    pub components: BTreeMap<String, T>,
}

impl<T: Copy> PerComponent<T> {
    pub fn new(default: T) -> Self {
        PerComponent {
            default,
            components: BTreeMap::new(),
        }
    }

    /// The value for component `id`.
    pub fn get(&self, id: &str) -> T {
        self.components.get(id).copied().unwrap_or(self.default)
    }

    /// Every value that applies to some component (the default and each override).
    pub fn values(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::once(self.default).chain(self.components.values().copied())
    }

    /// Applies settings as the command line gives them: `VALUE` sets the default, `ID=VALUE`
    /// the value of component `ID`; later settings win.
    pub fn apply(&mut self, settings: &[Setting<T>]) {
        for setting in settings {
            match &setting.component {
                Some(id) => {
                    self.components.insert(id.clone(), setting.value);
                }
                None => self.default = setting.value,
            }
        }
    }
}

/// One `[COMPONENT=]VALUE` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub component: Option<String>,
    pub value: T,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "{0:?} is not a duration: a number with no suffix or `s` (seconds), `ms`, `us` or `ns`"
    )]
    Duration(String),
    #[error(
        "{0:?} is not a size in bytes: a number, optionally with `K`, `M` or `G` (KiB, MiB, GiB)"
    )]
    Bytes(String),
    #[error("{0:?}: the value must be greater than zero")]
    Zero(String),
}

impl<T: FromStr<Err = LimitError>> FromStr for Setting<T> {
    type Err = LimitError;

    fn from_str(text: &str) -> Result<Self, LimitError> {
        match text.split_once('=') {
            Some((component, value)) => Ok(Setting {
                component: Some(component.trim().to_owned()),
                value: value.trim().parse()?,
            }),
            None => Ok(Setting {
                component: None,
                value: text.trim().parse()?,
            }),
        }
    }
}

/// A timeout as Spin writes it: `30`, `30s`, `1500ms`, `250us` (or `μs`), `100ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl FromStr for Timeout {
    type Err = LimitError;

    fn from_str(text: &str) -> Result<Self, LimitError> {
        let error = || LimitError::Duration(text.to_owned());
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| error())?;
        let seconds = match unit.trim() {
            "" | "s" => number,
            "ms" => number / 1e3,
            "us" | "μs" => number / 1e6,
            "ns" => number / 1e9,
            _ => return Err(error()),
        };
        let duration = Duration::try_from_secs_f64(seconds).map_err(|_| error())?;
        if duration.is_zero() {
            return Err(LimitError::Zero(text.to_owned()));
        }
        Ok(Timeout(duration))
    }
}

/// A size in bytes: `134217728`, `128M`, `512K`, `1G` (binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = LimitError;

    fn from_str(text: &str) -> Result<Self, LimitError> {
        let error = || LimitError::Bytes(text.to_owned());
        let trimmed = text.trim();
        let (number, shift) = match trimmed.char_indices().last() {
            Some((at, 'K' | 'k')) => (&trimmed[..at], 10),
            Some((at, 'M' | 'm')) => (&trimmed[..at], 20),
            Some((at, 'G' | 'g')) => (&trimmed[..at], 30),
            _ => (trimmed, 0),
        };
        let number: usize = number.parse().map_err(|_| error())?;
        let bytes = number.checked_mul(1 << shift).ok_or_else(error)?;
        if bytes == 0 {
            return Err(LimitError::Zero(text.to_owned()));
        }
        Ok(ByteSize(bytes))
    }
}

impl From<Setting<Timeout>> for Setting<Duration> {
    fn from(setting: Setting<Timeout>) -> Self {
        Setting {
            component: setting.component,
            value: setting.value.0,
        }
    }
}

impl From<Setting<ByteSize>> for Setting<usize> {
    fn from(setting: Setting<ByteSize>) -> Self {
        Setting {
            component: setting.component,
            value: setting.value.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_as_spin_writes_them() {
        for (text, expect) in [
            ("30", Duration::from_secs(30)),
            ("30s", Duration::from_secs(30)),
            ("1.5", Duration::from_millis(1500)),
            ("1500ms", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("250μs", Duration::from_micros(250)),
            ("100ns", Duration::from_nanos(100)),
        ] {
            assert_eq!(text.parse::<Timeout>(), Ok(Timeout(expect)), "{text}");
        }
        for text in ["", "s", "10m", "1..8s", "-1", "abc"] {
            assert!(
                matches!(text.parse::<Timeout>(), Err(LimitError::Duration(_))),
                "{text}"
            );
        }
        assert!(matches!("0".parse::<Timeout>(), Err(LimitError::Zero(_))));
    }

    #[test]
    fn sizes_are_bytes_or_binary_units() {
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("512K".parse(), Ok(ByteSize(512 << 10)));
        assert_eq!("128M".parse(), Ok(ByteSize(128 << 20)));
        assert_eq!("1g".parse(), Ok(ByteSize(1 << 30)));
        for text in ["", "M", "12X", "-1", "99999999999999999999G"] {
            assert!(
                matches!(text.parse::<ByteSize>(), Err(LimitError::Bytes(_))),
                "{text}"
            );
        }
        assert!(matches!("0".parse::<ByteSize>(), Err(LimitError::Zero(_))));
    }

    #[test]
    fn settings_set_the_default_or_one_component() {
        let settings: Vec<Setting<usize>> = ["64M", "probe=16M", "other = 1K", "32M"]
            .iter()
            .map(|t| t.parse::<Setting<ByteSize>>().expect("setting").into())
            .collect();
        let mut memory = PerComponent::new(1);
        memory.apply(&settings);
        assert_eq!(memory.get("probe"), 16 << 20);
        assert_eq!(memory.get("other"), 1 << 10);
        assert_eq!(memory.get("anyone"), 32 << 20);
        assert_eq!(memory.values().max(), Some(32 << 20));
        assert!("probe=".parse::<Setting<Timeout>>().is_err());
    }
}
