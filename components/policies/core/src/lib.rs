//! The policy world (`wit/policy`, package `wattlet:policy`) as plain Rust: the types every
//! policy sees ([`Context`], [`Rows`], [`Decision`]), the [`Policy`] trait each shipped policy
//! library implements, [`export_policy!`], which turns one into the thin component export, and
//! the access log's hash chain ([`log`]), which the Data API writes and `wattlet audit verify`
//! checks, and a policy's content digest over its source ([`digest`]).
//!
//! No WIT export lives here: the Data API links this crate, and an export would travel into it.

/// Build-time only (the Data API's build script): not in the components.
#[cfg(not(target_family = "wasm"))]
pub mod digest;
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

/// Rows column by column, as they cross the component boundary (`wit/policy`'s `rows`): row `i`
/// is `at[i]`, `span[i]`, `samples[i]`, `origin[i]` and [`Rows::values_of`]`(i)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// The row's index in the rows the chain started with; `None` for a row a policy made.
    pub origin: Vec<Option<u32>>,
    /// ns since the epoch (an aggregate: its bucket's start).
    pub at: Vec<i64>,
    /// ns the row covers, [at, at + span): 0 for a measurement, the step for an aggregate.
    pub span: Vec<i64>,
    /// How many measurements the row stands for.
    pub samples: Vec<u32>,
    /// OBIS codes, one per column of `values`.
    pub registers: Vec<String>,
    /// Row-major, `registers.len()` per row; NaN where a row has no value.
    pub values: Vec<f64>,
}

/// Rows whose columns disagree in length: what a policy must never return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed rows: {0}")]
pub struct RowsError(String);

impl Rows {
    /// No rows, with these columns.
    pub fn with_registers(registers: Vec<String>) -> Rows {
        Rows {
            registers,
            ..Rows::default()
        }
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Appends a row; `values` has one entry per register (NaN: none).
    pub fn push(&mut self, origin: Option<u32>, at: i64, span: i64, samples: u32, values: &[f64]) {
        debug_assert_eq!(values.len(), self.registers.len());
        self.origin.push(origin);
        self.at.push(at);
        self.span.push(span);
        self.samples.push(samples);
        self.values.extend_from_slice(values);
    }

    /// Row `i`'s values, one per register.
    pub fn values_of(&self, i: usize) -> &[f64] {
        let n = self.registers.len();
        &self.values[i * n..(i + 1) * n]
    }

    /// Row `i`'s registers that have a value, with it.
    pub fn readings_of(&self, i: usize) -> impl Iterator<Item = (&str, f64)> {
        self.registers
            .iter()
            .zip(self.values_of(i))
            .filter(|(_, v)| !v.is_nan())
            .map(|(r, v)| (r.as_str(), *v))
    }

    /// The rows `keep` says yes to, in order, origins kept.
    pub fn filter(&self, mut keep: impl FnMut(usize) -> bool) -> Rows {
        let mut out = Rows::with_registers(self.registers.clone());
        for i in 0..self.len() {
            if keep(i) {
                out.push(
                    self.origin[i],
                    self.at[i],
                    self.span[i],
                    self.samples[i],
                    self.values_of(i),
                );
            }
        }
        out
    }

    /// The same rows with only the columns whose register `keep` says yes to.
    pub fn only_registers(&self, mut keep: impl FnMut(&str) -> bool) -> Rows {
        let columns: Vec<usize> = (0..self.registers.len())
            .filter(|&j| keep(&self.registers[j]))
            .collect();
        let mut out =
            Rows::with_registers(columns.iter().map(|&j| self.registers[j].clone()).collect());
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..self.len() {
            let row = self.values_of(i);
            values.clear();
            values.extend(columns.iter().map(|&j| row[j]));
            out.push(
                self.origin[i],
                self.at[i],
                self.span[i],
                self.samples[i],
                &values,
            );
        }
        out
    }

    /// Checks that the columns agree (every row has its origin, span, samples and values), that
    /// every value is a number or NaN (none) and every origin one of `inputs` rows. The Data API
    /// checks what a policy returns before it trusts it.
    pub fn check(&self, inputs: usize) -> Result<(), RowsError> {
        let n = self.len();
        let lengths = [self.origin.len(), self.span.len(), self.samples.len()];
        if lengths.iter().any(|l| *l != n) {
            return Err(RowsError(format!(
                "{n} times but {lengths:?} origins, spans and samples"
            )));
        }
        if self.values.len() != n * self.registers.len() {
            return Err(RowsError(format!(
                "{} values for {n} rows of {} registers",
                self.values.len(),
                self.registers.len()
            )));
        }
        if let Some(v) = self.values.iter().find(|v| v.is_infinite()) {
            return Err(RowsError(format!("a value of {v}")));
        }
        if let Some(o) = self
            .origin
            .iter()
            .flatten()
            .find(|o| **o as usize >= inputs)
        {
            return Err(RowsError(format!("origin {o} of {inputs} rows")));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow,
    Deny(String),
    Transform(Rows),
    /// A write only: store the rows as given and copy these into the household's export copy.
    Copy(Rows),
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny(_) => "deny",
            Decision::Transform(_) => "transform",
            Decision::Copy(_) => "copy",
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

    fn read(parameters: &str, object: ObjectKind, context: &Context, rows: Rows) -> Decision;

    /// Writes are allowed unless a policy says otherwise.
    fn write(_parameters: &str, _object: ObjectKind, _context: &Context, _rows: Rows) -> Decision {
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

        // The same columns on both sides: moved, not copied.
        fn rows_in(r: wit::Rows) -> $crate::Rows {
            $crate::Rows {
                origin: r.origin,
                at: r.at,
                span: r.span,
                samples: r.samples,
                registers: r.registers,
                values: r.values,
            }
        }

        fn rows_out(r: $crate::Rows) -> wit::Rows {
            wit::Rows {
                origin: r.origin,
                at: r.at,
                span: r.span,
                samples: r.samples,
                registers: r.registers,
                values: r.values,
            }
        }

        fn decision(d: $crate::Decision) -> wit::Decision {
            match d {
                $crate::Decision::Allow => wit::Decision::Allow,
                $crate::Decision::Deny(reason) => wit::Decision::Deny(reason),
                $crate::Decision::Transform(r) => wit::Decision::Transform(rows_out(r)),
                $crate::Decision::Copy(r) => wit::Decision::Copy(rows_out(r)),
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
                rows: wit::Rows,
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
                rows: wit::Rows,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn two_registers() -> Rows {
        let mut rows = Rows::with_registers(vec!["0100100700ff".into(), "0100010800ff".into()]);
        rows.push(Some(0), 10, 0, 1, &[1.0, f64::NAN]);
        rows.push(Some(1), 20, 0, 1, &[2.0, 200.0]);
        rows.push(None, 30, 5, 4, &[3.0, 300.0]);
        rows
    }

    #[test]
    fn rows_are_read_and_filtered_column_by_column() {
        let rows = two_registers();
        assert_eq!((rows.len(), rows.check(2)), (3, Ok(())));
        assert_eq!(rows.values_of(1), [2.0, 200.0]);
        assert_eq!(
            rows.readings_of(0).collect::<Vec<_>>(),
            [("0100100700ff", 1.0)]
        );
        let kept = rows.filter(|i| rows.at[i] != 20);
        assert_eq!(kept.origin, [Some(0), None]);
        assert_eq!(
            (kept.span.as_slice(), kept.samples.as_slice()),
            (&[0, 5][..], &[1, 4][..])
        );
        assert_eq!(kept.values_of(1), [3.0, 300.0]);
        assert_eq!(kept.registers, rows.registers);
        let energy = rows.only_registers(|r| r == "0100010800ff");
        assert_eq!(energy.registers, ["0100010800ff"]);
        assert_eq!((energy.len(), energy.origin[1]), (3, Some(1)));
        assert_eq!(energy.values_of(1), [200.0]);
        assert!(energy.values_of(0)[0].is_nan());
        assert_eq!(energy.check(2), Ok(()));
    }

    #[test]
    fn rows_whose_columns_disagree_are_refused() {
        let mut short = two_registers();
        short.samples.pop();
        assert!(short.check(2).is_err());
        let mut ragged = two_registers();
        ragged.values.pop();
        let e = ragged.check(2).expect_err("a value missing");
        assert!(
            e.to_string().contains("5 values for 3 rows of 2 registers"),
            "{e}"
        );
        let mut endless = two_registers();
        endless.values[0] = f64::INFINITY;
        assert!(endless.check(2).is_err());
        // An origin names one of the rows the chain started with, no other.
        assert!(two_registers().check(1).is_err());
        assert!(Rows::default().check(0).is_ok());
    }
}
