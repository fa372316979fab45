//! The policy world (`wit/policy`, package `wattlet:policy`) as plain Rust: the types every
//! policy sees ([`Context`], [`Row`], [`Decision`]), the [`Policy`] trait each shipped policy
//! library implements, [`export_policy!`], which turns one into the thin component export, and
//! the access log's hash chain ([`log`]), which the Data API writes and `wattlet audit verify`
//! checks.
//!
//! No WIT export lives here: the Data API links this crate, and an export would travel into it.

pub mod log;

/// The data object a policy is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Measurements,
    Registration,
    Disaggregation,
    Forecast,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Measurements => "measurements",
            ObjectKind::Registration => "registration",
            ObjectKind::Disaggregation => "disaggregation",
            ObjectKind::Forecast => "forecast",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectKind> {
        [
            ObjectKind::Measurements,
            ObjectKind::Registration,
            ObjectKind::Disaggregation,
            ObjectKind::Forecast,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Participant,
    Researcher,
    Administrator,
    Service,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Researcher => "researcher",
            Role::Administrator => "administrator",
            Role::Service => "service",
        }
    }
}

/// Nanoseconds since the Unix epoch; `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub role: Role,
    /// The token's caveats as encoded; empty without a token.
    pub caveats: Vec<String>,
    pub purpose: Option<String>,
    pub range: TimeRange,
    /// The Data API's clock (ns since the epoch): a policy's only clock.
    pub now: i64,
    /// Households sharing the household's NUTS-3 region, itself included (in a region query,
    /// those it covers); `None` when the region is unknown or the participant reads.
    pub peers: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub obis: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The measurement's uuid; empty for an aggregate.
    pub id: String,
    /// ns since the epoch (an aggregate: its bucket's start).
    pub at: i64,
    /// ns the row covers, [at, at + span): 0 for a measurement, the step for an aggregate.
    pub span: i64,
    /// How many measurements the row stands for.
    pub samples: u32,
    pub readings: Vec<Reading>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow,
    Deny(String),
    Transform(Vec<Row>),
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny(_) => "deny",
            Decision::Transform(_) => "transform",
        }
    }
}

/// Parameters a policy refuses: the message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

/// Parses a policy's parameters (JSON text) into `T`, unknown fields refused by `T`.
pub fn parse_parameters<T: serde::de::DeserializeOwned>(parameters: &str) -> Result<T, ParamError> {
    serde_json::from_str(parameters).map_err(|e| ParamError(format!("parameters: {e}")))
}

/// One policy: the hooks of its WIT interface over plain Rust.
pub trait Policy {
    /// The name attachments use (also its WIT interface's name).
    const NAME: &'static str;

    fn validate(parameters: &str) -> Result<(), ParamError>;

    /// Whether `parameters` restrict at least as much as `than` (both must be valid).
    fn at_least_as_strict(parameters: &str, than: &str) -> Result<bool, ParamError>;

    fn read(parameters: &str, object: ObjectKind, context: &Context, rows: Vec<Row>) -> Decision;

    /// Writes are allowed unless a policy says otherwise.
    fn write(
        _parameters: &str,
        _object: ObjectKind,
        _context: &Context,
        _rows: Vec<Row>,
    ) -> Decision {
        Decision::Allow
    }

    fn delete(_parameters: &str, _object: ObjectKind, _context: &Context) -> Decision {
        Decision::Allow
    }
}

/// RFC 3339 to ns since the epoch.
pub fn parse_rfc3339(s: &str) -> Result<i64, ParamError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ParamError(format!("{s:?} is not an RFC 3339 time: {e}")))?;
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| ParamError(format!("{s:?} is out of range")))
}

/// Exports a [`Policy`] as the component of its WIT world: `export_policy!("retention-policy",
/// retention, Retention);` in the policy crate's wasm-only module.
#[macro_export]
macro_rules! export_policy {
    ($world:literal, $iface:ident, $policy:ty) => {
        wit_bindgen::generate!({
            path: "../../../wit/policy",
            world: $world,
        });

        use exports::wattlet::policy::$iface as hooks;
        use wattlet::policy::types as wit;

        struct Component;

        export!(Component);

        fn object(o: wit::ObjectKind) -> $crate::ObjectKind {
            match o {
                wit::ObjectKind::Measurements => $crate::ObjectKind::Measurements,
                wit::ObjectKind::Registration => $crate::ObjectKind::Registration,
                wit::ObjectKind::Disaggregation => $crate::ObjectKind::Disaggregation,
                wit::ObjectKind::Forecast => $crate::ObjectKind::Forecast,
            }
        }

        fn context(c: wit::Context) -> $crate::Context {
            $crate::Context {
                role: match c.role {
                    wit::Role::Participant => $crate::Role::Participant,
                    wit::Role::Researcher => $crate::Role::Researcher,
                    wit::Role::Administrator => $crate::Role::Administrator,
                    wit::Role::Service => $crate::Role::Service,
                },
                caveats: c.caveats,
                purpose: c.purpose,
                range: $crate::TimeRange {
                    from: c.range.from,
                    to: c.range.to,
                },
                now: c.now,
                peers: c.peers,
            }
        }

        fn rows_in(rows: Vec<wit::Row>) -> Vec<$crate::Row> {
            rows.into_iter()
                .map(|r| $crate::Row {
                    id: r.id,
                    at: r.at,
                    span: r.span,
                    samples: r.samples,
                    readings: r
                        .readings
                        .into_iter()
                        .map(|x| $crate::Reading {
                            obis: x.obis,
                            value: x.value,
                        })
                        .collect(),
                })
                .collect()
        }

        fn decision(d: $crate::Decision) -> wit::Decision {
            match d {
                $crate::Decision::Allow => wit::Decision::Allow,
                $crate::Decision::Deny(reason) => wit::Decision::Deny(reason),
                $crate::Decision::Transform(rows) => wit::Decision::Transform(
                    rows.into_iter()
                        .map(|r| wit::Row {
                            id: r.id,
                            at: r.at,
                            span: r.span,
                            samples: r.samples,
                            readings: r
                                .readings
                                .into_iter()
                                .map(|x| wit::Reading {
                                    obis: x.obis,
                                    value: x.value,
                                })
                                .collect(),
                        })
                        .collect(),
                ),
            }
        }

        impl hooks::Guest for Component {
            fn validate(parameters: String) -> Result<(), String> {
                <$policy as $crate::Policy>::validate(&parameters).map_err(|e| e.to_string())
            }

            fn at_least_as_strict(parameters: String, than: String) -> Result<bool, String> {
                <$policy as $crate::Policy>::at_least_as_strict(&parameters, &than)
                    .map_err(|e| e.to_string())
            }

            fn read(
                parameters: String,
                o: wit::ObjectKind,
                c: wit::Context,
                rows: Vec<wit::Row>,
            ) -> wit::Decision {
                decision(<$policy as $crate::Policy>::read(
                    &parameters,
                    object(o),
                    &context(c),
                    rows_in(rows),
                ))
            }

            fn write(
                parameters: String,
                o: wit::ObjectKind,
                c: wit::Context,
                rows: Vec<wit::Row>,
            ) -> wit::Decision {
                decision(<$policy as $crate::Policy>::write(
                    &parameters,
                    object(o),
                    &context(c),
                    rows_in(rows),
                ))
            }

            fn delete(parameters: String, o: wit::ObjectKind, c: wit::Context) -> wit::Decision {
                decision(<$policy as $crate::Policy>::delete(
                    &parameters,
                    object(o),
                    &context(c),
                ))
            }
        }
    };
}
