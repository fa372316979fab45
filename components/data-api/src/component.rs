//! The Spin HTTP component: the thin layer between spin-sdk 5 and the handlers. It converts
//! Spin's request and response, and provides the [`Services`] from Spin's `default` SQLite
//! database, its variables and the anonymizer component's WIT import
//! (`wattlet:anonymizer/anonymize`, composed in by `wac plug`).

use std::cell::OnceCell;

use spin_sdk::http_component;
use spin_sdk::sqlite::{Connection, Error as SqliteError, Value as SqliteValue};

use crate::anonymizer::{self as ours, Anonymizer};
use crate::db::{Row, Rows, Storage, StorageError, Value};
use crate::http::{Method, Request};
use crate::policy::{self as ours_policy, Policies};
use crate::services::{Secrets, Services};

wit_bindgen::generate!({
    path: "../../wit/anonymizer",
    world: "anonymizer-client",
});

use wattlet::anonymizer::anonymize as wit;

#[http_component]
fn handle(req: spin_sdk::http::Request) -> spin_sdk::http::Response {
    let storage = SpinDatabase::default();
    let services = Services {
        storage: &storage,
        secrets: &SpinVariables,
        anonymizer: &WitAnonymizer,
        policies: &WitPolicies,
    };
    let response = crate::handle(&request(&req), &services);
    let mut answer = spin_sdk::http::Response::builder();
    answer.status(response.status);
    for (name, value) in response.headers {
        answer.header(name, value);
    }
    answer.body(response.body).build()
}

fn request(req: &spin_sdk::http::Request) -> Request {
    use spin_sdk::http::Method as M;
    let method = match req.method() {
        M::Get => Method::Get,
        M::Post => Method::Post,
        M::Put => Method::Put,
        M::Delete => Method::Delete,
        M::Patch => Method::Patch,
        M::Head => Method::Head,
        M::Options => Method::Options,
        M::Connect => Method::Connect,
        M::Trace => Method::Trace,
        M::Other(other) => Method::Other(other.clone()),
    };
    let target = match req.query() {
        "" => req.path().to_owned(),
        query => format!("{}?{query}", req.path()),
    };
    let mut request = Request::new(method, &target);
    // A header whose value is not UTF-8 is no value the Data API reads: left out.
    for (name, value) in req.headers() {
        if let Some(value) = value.as_str() {
            request = request.with_header(name, value);
        }
    }
    request.with_body(req.body().to_vec())
}

/// Spin's `default` database, opened on the first statement of a request.
#[derive(Default)]
struct SpinDatabase {
    connection: OnceCell<Connection>,
}

impl SpinDatabase {
    fn connection(&self) -> Result<&Connection, StorageError> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection);
        }
        let connection = Connection::open_default().map_err(storage_error)?;
        Ok(self.connection.get_or_init(|| connection))
    }
}

impl Storage for SpinDatabase {
    fn open(&self) -> Result<(), StorageError> {
        self.connection().map(|_| ())
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, StorageError> {
        let params: Vec<SqliteValue> = params
            .iter()
            .map(|v| match v {
                Value::Integer(i) => SqliteValue::Integer(*i),
                Value::Real(f) => SqliteValue::Real(*f),
                Value::Text(s) => SqliteValue::Text(s.clone()),
                Value::Blob(b) => SqliteValue::Blob(b.clone()),
                Value::Null => SqliteValue::Null,
            })
            .collect();
        let result = self
            .connection()?
            .execute(sql, &params)
            .map_err(storage_error)?;
        Ok(Rows {
            columns: result.columns,
            rows: result
                .rows
                .into_iter()
                .map(|row| Row {
                    values: row
                        .values
                        .into_iter()
                        .map(|v| match v {
                            SqliteValue::Integer(i) => Value::Integer(i),
                            SqliteValue::Real(f) => Value::Real(f),
                            SqliteValue::Text(s) => Value::Text(s),
                            SqliteValue::Blob(b) => Value::Blob(b),
                            SqliteValue::Null => Value::Null,
                        })
                        .collect(),
                })
                .collect(),
        })
    }
}

fn storage_error(e: SqliteError) -> StorageError {
    match e {
        SqliteError::NoSuchDatabase => StorageError::NoSuchDatabase,
        SqliteError::AccessDenied => StorageError::AccessDenied,
        SqliteError::InvalidConnection => StorageError::InvalidConnection,
        SqliteError::DatabaseFull => StorageError::DatabaseFull,
        SqliteError::Io(message) => StorageError::Io(message),
    }
}

/// The component's Spin variables.
struct SpinVariables;

impl Secrets for SpinVariables {
    fn admin_token(&self) -> Result<String, String> {
        spin_sdk::variables::get("admin_token").map_err(|e| e.to_string())
    }

    fn client_identity_key(&self) -> Result<String, String> {
        spin_sdk::variables::get(wattlet_survey::identity::KEY_VARIABLE).map_err(|e| e.to_string())
    }

    fn key_encryption_key(&self) -> Result<String, String> {
        spin_sdk::variables::get(crate::keys::KEK_VARIABLE).map_err(|e| e.to_string())
    }

    fn plaintext_results(&self) -> Option<String> {
        spin_sdk::variables::get(crate::keys::PLAINTEXT_VARIABLE).ok()
    }
}

/// The anonymizer through its WIT import.
struct WitAnonymizer;

impl Anonymizer for WitAnonymizer {
    fn anonymize(
        &self,
        r: &ours::Registration,
        draw: ours::Draw,
    ) -> Result<ours::Anonymized, String> {
        let registration = wit::Registration {
            contact: wit::Contact {
                name: r.contact.name.clone(),
                email: r.contact.email.clone(),
            },
            address: r.address.as_ref().map(|a| wit::Address {
                street: a.street.clone(),
                house_number: a.house_number.clone(),
                postal_code: a.postal_code.clone(),
                city: a.city.clone(),
                country: a.country.clone(),
            }),
            location: wit::Location {
                latitude: r.location.latitude,
                longitude: r.location.longitude,
            },
            pv_systems: r
                .pv_systems
                .iter()
                .map(|pv| wit::PvSystem {
                    nominal_power_kwp: pv.nominal_power_kwp,
                    azimuth: pv.azimuth,
                    tilt: pv.tilt,
                    installation_date: pv.installation_date.clone(),
                })
                .collect(),
            population_density_per_km2: r.population_density_per_km2,
        };
        let draw = wit::Draw {
            distance_uniform: draw.distance_uniform,
            bearing_uniform: draw.bearing_uniform,
        };
        let a = wit::anonymize(&registration, draw).map_err(|e| format!("{e:?}"))?;
        let d = a.displacement;
        Ok(ours::Anonymized {
            location: ours::Location {
                latitude: a.location.latitude,
                longitude: a.location.longitude,
            },
            pv_systems: a
                .pv_systems
                .into_iter()
                .map(|pv| ours::AnonymizedPvSystem {
                    nominal_power_kwp: pv.nominal_power_kwp,
                    azimuth: pv.azimuth,
                    tilt: pv.tilt,
                    installation_date: pv.installation_date,
                })
                .collect(),
            displacement: ours::Displacement {
                population_density_per_km2: d.population_density_per_km2,
                density_unknown: d.density_unknown,
                d_min_m: d.d_min_m,
                d_max_m: d.d_max_m,
                distance_m: d.distance_m,
                bearing_deg: d.bearing_deg,
            },
        })
    }
}

/// The shipped policies through their WIT imports (`wattlet:policy`), each composed in by
/// `wac plug`: a call is an in-process call into the policy component's instance.
mod chain {
    wit_bindgen::generate!({
        path: "../../wit/policy",
        world: "policy-chain",
    });
}

use chain::wattlet::policy::{
    export_copy, k_anonymity, pause_window, researchers_aggregate, retention, types as pw,
};

struct WitPolicies;

fn wit_object(o: ours_policy::ObjectKind) -> pw::ObjectKind {
    match o {
        ours_policy::ObjectKind::Measurements => pw::ObjectKind::Measurements,
        ours_policy::ObjectKind::Registration => pw::ObjectKind::Registration,
        ours_policy::ObjectKind::Disaggregation => pw::ObjectKind::Disaggregation,
        ours_policy::ObjectKind::Forecast => pw::ObjectKind::Forecast,
    }
}

fn wit_context(c: &ours_policy::Context) -> pw::Context {
    pw::Context {
        role: match c.role {
            ours_policy::Role::Participant => pw::Role::Participant,
            ours_policy::Role::Researcher => pw::Role::Researcher,
            ours_policy::Role::Administrator => pw::Role::Administrator,
            ours_policy::Role::Service => pw::Role::Service,
        },
        caveats: c.caveats.clone(),
        purpose: c.purpose.clone(),
        range: pw::TimeRange {
            from: c.range.from,
            to: c.range.to,
        },
        now: c.now,
        peers: c.peers,
    }
}

fn wit_rows(r: &ours_policy::Rows) -> pw::Rows {
    pw::Rows {
        origin: r.origin.clone(),
        at: r.at.clone(),
        span: r.span.clone(),
        samples: r.samples.clone(),
        registers: r.registers.clone(),
        values: r.values.clone(),
    }
}

fn our_decision(d: pw::Decision) -> ours_policy::Decision {
    match d {
        pw::Decision::Allow => ours_policy::Decision::Allow,
        pw::Decision::Deny(reason) => ours_policy::Decision::Deny(reason),
        pw::Decision::Transform(r) => ours_policy::Decision::Transform(our_rows(r)),
        pw::Decision::Copy(r) => ours_policy::Decision::Copy(our_rows(r)),
    }
}

fn our_rows(r: pw::Rows) -> ours_policy::Rows {
    ours_policy::Rows {
        origin: r.origin,
        at: r.at,
        span: r.span,
        samples: r.samples,
        registers: r.registers,
        values: r.values,
    }
}

/// Calls the hook `$hook` of the policy named `$policy`, with the same arguments for each.
macro_rules! dispatch {
    ($policy:expr, $unknown:expr, $hook:ident($($arg:expr),*)) => {
        match $policy {
            "researchers-aggregate" => researchers_aggregate::$hook($($arg),*),
            "pause-window" => pause_window::$hook($($arg),*),
            "retention" => retention::$hook($($arg),*),
            "k-anonymity" => k_anonymity::$hook($($arg),*),
            "export-copy" => export_copy::$hook($($arg),*),
            _ => $unknown,
        }
    };
}

impl Policies for WitPolicies {
    fn validate(&self, policy: &str, parameters: &str) -> Result<(), String> {
        dispatch!(
            policy,
            Err(format!("unknown policy {policy}")),
            validate(parameters)
        )
    }

    fn at_least_as_strict(
        &self,
        policy: &str,
        parameters: &str,
        than: &str,
    ) -> Result<bool, String> {
        dispatch!(
            policy,
            Err(format!("unknown policy {policy}")),
            at_least_as_strict(parameters, than)
        )
    }

    fn rows(
        &self,
        hook: ours_policy::Hook,
        policy: &str,
        parameters: &str,
        object: ours_policy::ObjectKind,
        context: &ours_policy::Context,
        rows: &ours_policy::Rows,
    ) -> ours_policy::Decision {
        let object = wit_object(object);
        let context = wit_context(context);
        let rows = wit_rows(rows);
        // Fail closed: an attachment naming no composed policy serves and stores nothing.
        let unknown = || pw::Decision::Deny(format!("policy {policy} is not part of this build"));
        let decision = match hook {
            ours_policy::Hook::Read => {
                dispatch!(policy, unknown(), read(parameters, object, &context, &rows))
            }
            ours_policy::Hook::Write => {
                dispatch!(
                    policy,
                    unknown(),
                    write(parameters, object, &context, &rows)
                )
            }
        };
        our_decision(decision)
    }

    fn delete(
        &self,
        policy: &str,
        parameters: &str,
        object: ours_policy::ObjectKind,
        context: &ours_policy::Context,
    ) -> ours_policy::Decision {
        let object = wit_object(object);
        let context = wit_context(context);
        let decision = dispatch!(
            policy,
            pw::Decision::Deny(format!("policy {policy} is not part of this build")),
            delete(parameters, object, &context)
        );
        our_decision(decision)
    }
}
