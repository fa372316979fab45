//! The wattlet Data API: the REST API of the cloud, built as a Spin HTTP component (spin-sdk 5,
//! exports `wasi:http/incoming-handler@0.2.0`) that runs unchanged on `spin up` and on
//! `wattlet serve`.
//!
//! The component is mounted at `/api/...` in the repository's `spin.toml`; every body is JSON.
//! Numbers in brackets are the endpoints of the Data API table in DESIGN.md.
//!
//! | method | path | who |
//! |---|---|---|
//! | GET | /api/health, /api/version | anyone |
//! | POST | /api/management/household | researcher, administrator |
//! | GET | /api/management/household \[10\] | researcher, administrator |
//! | GET, PATCH | /api/management/household/:id | researcher, administrator |
//! | POST | /api/management/device/:id/revoke | administrator |
//! | PUT | /api/management/nuts3_region | administrator |
//! | POST | /api/management/token | administrator |
//! | POST | /api/management/token/:id/revoke | administrator |
//! | GET, POST | /api/management/rollout | administrator |
//! | POST | /api/management/rollout/:id/{advance,resume,cancel} | administrator |
//! | GET | /api/management/metrics | administrator |
//! | GET | /api/account \[1\] | participant |
//! | GET | /api/household \[2\] | participant |
//! | GET, POST \[3\], DELETE \[4\] | /api/household/consent | participant |
//! | POST | /api/household/token | device |
//! | GET | /api/household/measurement_device \[5\] | participant |
//! | PUT | /api/household/measurement_device/status | device |
//! | GET, POST | /api/household/measurement_device/rollout | device |
//! | GET | /api/household/meter \[6\] | participant |
//! | GET | /api/household/pv_system \[9\] | participant |
//! | POST | /api/household/meter/measurement \[8\] | device |
//! | GET | /api/household/meter/:uuid/measurement \[7\] | participant |
//! | GET | /api/management/meter/:uuid/measurement | researcher, administrator |
//! | GET | /api/management/region/:nuts3/measurement | researcher, administrator |
//! | POST | /api/management/purge | administrator |
//! | GET, POST | /api/household/policies | participant |
//! | DELETE | /api/household/policies/:id | participant |
//! | GET, POST | /api/management/policies | researcher (GET), administrator |
//! | DELETE | /api/management/policies/:id | administrator |
//! | GET | /api/household/access_log | participant |
//! | GET, DELETE | /api/household/export_copy | participant |
//! | GET | /api/management/access_log | administrator |
//! | GET | /api/household/meter/:uuid/disaggregation | participant |
//! | GET | /api/management/meter/:uuid/disaggregation | researcher, administrator |
//! | GET | /api/household/meter/:uuid/forecast | participant |
//! | GET | /api/management/meter/:uuid/forecast | researcher, administrator |
//! | GET | /api/worker/meters | manager |
//! | GET | /api/worker/meter/:uuid/power | manager |
//! | POST | /api/worker/disaggregation | worker |
//! | GET | /api/worker/disaggregation/:item | worker |
//! | POST | /api/worker/forecast | worker |
//!
//! Authentication is described in [`auth`]. Unknown paths get a JSON 404, a known path with the
//! wrong method a JSON 405 with `allow`. Errors are `{"error": "<message>", "code": "<code>"}`,
//! the code one of `wattlet_survey::RefusalCode` (see [`error`]).
//!
//! The handlers are plain Rust over small traits, so the crate builds and is tested natively:
//! [`handle`] answers a [`Request`] with a [`Response`] using the [`Services`] of where it runs,
//! a [`Storage`] (one SQL statement with parameters in, rows out), the `admin_token`,
//! `client_identity_key` and `key_encryption_key` secrets ([`Secrets`]) and the [`Anonymizer`]. On `wasm32` the thin `component` module implements
//! them with spin-sdk's sqlite and variables and the anonymizer's WIT import, and exports the
//! Spin HTTP handler; native tests (`tests/`) use rusqlite on SQLite files and the
//! `wattlet-anonymizer` library.

mod access_log;
mod anonymization;
pub mod anonymizer;
mod auth;
pub mod db;
mod error;
mod handlers;
pub mod http;
mod keys;
pub mod policy;
mod registration;
pub mod rollout;
mod schema;
mod services;
mod timestamp;
mod validate;

#[cfg(target_family = "wasm")]
mod component;

pub use crate::anonymizer::Anonymizer;
pub use crate::db::{Rows, Storage, StorageError, Value};
pub use crate::http::{Method, Request, Response};
pub use crate::policy::Policies;
pub use crate::services::{Secrets, Services};

use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{
    consent, disaggregation, export_copy, forecast, health, household, management, measurement,
    metrics, participants, policies, purge, regions, research, rollouts, service, tokens, worker,
};
use crate::services::Env;
use wattlet_access_token::DataClass;

const SERVICE: &str = "wattlet-data-api";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The prefix the manifest mounts the component at.
const PREFIX: &str = "/api";

/// Answers one request: errors become `{"error", "code"}` answers.
pub fn handle(request: &Request, services: &Services<'_>) -> Response {
    match route(request, services) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// What a path resolves to: its handler per method, or a service endpoint without database.
enum Endpoint<'a> {
    Health,
    Version,
    CreateOrListHouseholds,
    Participant(&'a str),
    RevokeDevice(&'a str),
    Fleet,
    DeviceHealth(&'a str),
    Diagnostics(&'a str),
    UploadDiagnostics,
    Regions,
    MintToken,
    RevokeToken(&'a str),
    Metrics,
    Account,
    Household,
    ParticipantToken,
    Consent,
    Devices,
    DeviceStatus,
    Meters,
    PvSystems,
    UploadMeasurements,
    ReadMeasurements(&'a str),
    AnyMeasurements(&'a str),
    RegionMeasurements(&'a str),
    Purge,
    HouseholdPolicies,
    HouseholdPolicy(&'a str),
    StudyPolicies,
    StudyPolicy(&'a str),
    HouseholdLog,
    ExportCopy,
    StudyLog,
    OwnDisaggregation(&'a str),
    AnyDisaggregation(&'a str),
    OwnForecast(&'a str),
    AnyForecast(&'a str),
    WorkerMeters,
    WorkerPower(&'a str),
    WorkerResults,
    WorkerResult(&'a str),
    WorkerForecasts,
    Rollouts,
    RolloutAction(&'a str, &'a str),
    DeviceRollout,
}

impl Endpoint<'_> {
    fn allow(&self) -> &'static str {
        match self {
            Endpoint::Health
            | Endpoint::Version
            | Endpoint::Metrics
            | Endpoint::Fleet
            | Endpoint::DeviceHealth(_)
            | Endpoint::Account
            | Endpoint::Household
            | Endpoint::Devices
            | Endpoint::Meters
            | Endpoint::PvSystems
            | Endpoint::ReadMeasurements(_)
            | Endpoint::AnyMeasurements(_)
            | Endpoint::RegionMeasurements(_)
            | Endpoint::HouseholdLog
            | Endpoint::StudyLog
            | Endpoint::OwnDisaggregation(_)
            | Endpoint::AnyDisaggregation(_)
            | Endpoint::OwnForecast(_)
            | Endpoint::AnyForecast(_)
            | Endpoint::WorkerMeters
            | Endpoint::WorkerPower(_)
            | Endpoint::WorkerResult(_) => "GET",
            Endpoint::CreateOrListHouseholds
            | Endpoint::Rollouts
            | Endpoint::DeviceRollout
            | Endpoint::HouseholdPolicies
            | Endpoint::StudyPolicies => "GET, POST",
            Endpoint::HouseholdPolicy(_) | Endpoint::StudyPolicy(_) => "DELETE",
            Endpoint::ExportCopy => "GET, DELETE",
            Endpoint::Participant(_) => "GET, PATCH",
            Endpoint::RevokeDevice(_)
            | Endpoint::RevokeToken(_)
            | Endpoint::UploadMeasurements
            | Endpoint::MintToken
            | Endpoint::ParticipantToken
            | Endpoint::WorkerResults
            | Endpoint::WorkerForecasts
            | Endpoint::RolloutAction(..)
            | Endpoint::Purge => "POST",
            Endpoint::Consent => "GET, POST, DELETE",
            Endpoint::Diagnostics(_) => "GET, POST",
            Endpoint::DeviceStatus | Endpoint::UploadDiagnostics | Endpoint::Regions => "PUT",
        }
    }
}

impl Endpoint<'_> {
    /// The class of personal data it serves, for tokens restricted to one
    /// ([`auth::data_caveats`]); `None` for everything else.
    fn data_class(&self) -> Option<DataClass> {
        match self {
            Endpoint::ReadMeasurements(_)
            | Endpoint::AnyMeasurements(_)
            | Endpoint::RegionMeasurements(_)
            | Endpoint::UploadMeasurements
            | Endpoint::ExportCopy
            | Endpoint::WorkerPower(_) => Some(DataClass::Measurements),
            Endpoint::CreateOrListHouseholds
            | Endpoint::Participant(_)
            | Endpoint::Account
            | Endpoint::Household => Some(DataClass::Registration),
            Endpoint::OwnDisaggregation(_)
            | Endpoint::AnyDisaggregation(_)
            | Endpoint::WorkerResults
            | Endpoint::WorkerResult(_) => Some(DataClass::Disaggregation),
            Endpoint::OwnForecast(_) | Endpoint::AnyForecast(_) | Endpoint::WorkerForecasts => {
                Some(DataClass::Forecast)
            }
            Endpoint::Health
            | Endpoint::Version
            | Endpoint::RevokeDevice(_)
            | Endpoint::Fleet
            | Endpoint::DeviceHealth(_)
            | Endpoint::Diagnostics(_)
            | Endpoint::UploadDiagnostics
            | Endpoint::Regions
            | Endpoint::MintToken
            | Endpoint::RevokeToken(_)
            | Endpoint::Metrics
            | Endpoint::ParticipantToken
            | Endpoint::Consent
            | Endpoint::Devices
            | Endpoint::DeviceStatus
            | Endpoint::Meters
            | Endpoint::PvSystems
            | Endpoint::HouseholdPolicies
            | Endpoint::HouseholdPolicy(_)
            | Endpoint::StudyPolicies
            | Endpoint::StudyPolicy(_)
            | Endpoint::HouseholdLog
            | Endpoint::StudyLog
            | Endpoint::WorkerMeters
            | Endpoint::Rollouts
            | Endpoint::RolloutAction(..)
            | Endpoint::DeviceRollout
            | Endpoint::Purge => None,
        }
    }
}

fn resolve(path: &str) -> Option<Endpoint<'_>> {
    let rest = path.strip_prefix(PREFIX)?;
    let segments: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
    Some(match segments.as_slice() {
        ["health"] => Endpoint::Health,
        ["version"] => Endpoint::Version,
        ["management", "household"] => Endpoint::CreateOrListHouseholds,
        ["management", "household", id] if !id.is_empty() => Endpoint::Participant(id),
        ["management", "device", id, "revoke"] if !id.is_empty() => Endpoint::RevokeDevice(id),
        ["management", "devices"] => Endpoint::Fleet,
        ["management", "device", id, "health"] if !id.is_empty() => Endpoint::DeviceHealth(id),
        ["management", "device", id, "diagnostics"] if !id.is_empty() => Endpoint::Diagnostics(id),
        ["management", "nuts3_region"] => Endpoint::Regions,
        ["management", "token"] => Endpoint::MintToken,
        ["management", "token", id, "revoke"] if !id.is_empty() => Endpoint::RevokeToken(id),
        ["management", "metrics"] => Endpoint::Metrics,
        ["management", "purge"] => Endpoint::Purge,
        ["management", "rollout"] => Endpoint::Rollouts,
        [
            "management",
            "rollout",
            id,
            action @ ("advance" | "resume" | "cancel"),
        ] if !id.is_empty() => Endpoint::RolloutAction(id, action),
        ["account"] => Endpoint::Account,
        ["household"] => Endpoint::Household,
        ["household", "consent"] => Endpoint::Consent,
        ["household", "token"] => Endpoint::ParticipantToken,
        ["household", "measurement_device"] => Endpoint::Devices,
        ["household", "measurement_device", "status"] => Endpoint::DeviceStatus,
        ["household", "measurement_device", "rollout"] => Endpoint::DeviceRollout,
        ["household", "measurement_device", "diagnostics"] => Endpoint::UploadDiagnostics,
        ["household", "meter"] => Endpoint::Meters,
        ["household", "pv_system"] => Endpoint::PvSystems,
        ["household", "meter", "measurement"] => Endpoint::UploadMeasurements,
        ["household", "meter", uuid, "measurement"] if !uuid.is_empty() => {
            Endpoint::ReadMeasurements(uuid)
        }
        ["management", "meter", uuid, "measurement"] if !uuid.is_empty() => {
            Endpoint::AnyMeasurements(uuid)
        }
        ["management", "region", code, "measurement"] if !code.is_empty() => {
            Endpoint::RegionMeasurements(code)
        }
        ["household", "policies"] => Endpoint::HouseholdPolicies,
        ["household", "policies", id] if !id.is_empty() => Endpoint::HouseholdPolicy(id),
        ["management", "policies"] => Endpoint::StudyPolicies,
        ["management", "policies", id] if !id.is_empty() => Endpoint::StudyPolicy(id),
        ["household", "access_log"] => Endpoint::HouseholdLog,
        ["household", "export_copy"] => Endpoint::ExportCopy,
        ["management", "access_log"] => Endpoint::StudyLog,
        ["household", "meter", uuid, "disaggregation"] if !uuid.is_empty() => {
            Endpoint::OwnDisaggregation(uuid)
        }
        ["management", "meter", uuid, "disaggregation"] if !uuid.is_empty() => {
            Endpoint::AnyDisaggregation(uuid)
        }
        ["household", "meter", uuid, "forecast"] if !uuid.is_empty() => Endpoint::OwnForecast(uuid),
        ["management", "meter", uuid, "forecast"] if !uuid.is_empty() => {
            Endpoint::AnyForecast(uuid)
        }
        ["worker", "meters"] => Endpoint::WorkerMeters,
        ["worker", "meter", uuid, "power"] if !uuid.is_empty() => Endpoint::WorkerPower(uuid),
        ["worker", "disaggregation"] => Endpoint::WorkerResults,
        ["worker", "disaggregation", item] if !item.is_empty() => Endpoint::WorkerResult(item),
        ["worker", "forecast"] => Endpoint::WorkerForecasts,
        _ => return None,
    })
}

fn route(req: &Request, services: &Services<'_>) -> ApiResult<Response> {
    let endpoint =
        resolve(req.path()).ok_or_else(|| ApiError::not_found("not found".to_owned()))?;
    let method = req.method();
    let not_allowed = || ApiError::MethodNotAllowed {
        allow: endpoint.allow(),
    };
    // Service endpoints answer without touching the schema.
    match (&endpoint, method) {
        (Endpoint::Health, Method::Get) => return Ok(service::health(services)),
        (Endpoint::Version, Method::Get) => return Ok(service::version()),
        (Endpoint::Health | Endpoint::Version, _) => return Err(not_allowed()),
        _ => {}
    }
    let allowed = endpoint
        .allow()
        .split(", ")
        .any(|m| m == method.to_string());
    if !allowed {
        return Err(not_allowed());
    }
    // A weak or missing secret gives tokens and identities away: nothing is answered with it.
    auth::check_secrets(services.secrets)?;
    let env = Env {
        db: Db::open(services.storage)?,
        secrets: services.secrets,
        anonymizer: services.anonymizer,
        policies: services.policies,
    };
    // Deleted and overwritten personal data (and shredded data keys) is zeroed, not left in
    // free pages. `wattlet serve` opens its connections with it; Spin leaves it off: the
    // connection may be shared and is not ours to configure once, so every request checks it
    // and turns it on when it is off. A host that refuses the pragma sets it itself.
    let secure = env
        .db
        .try_query("PRAGMA secure_delete", &[])
        .ok()
        .and_then(|rows| rows.rows.first().and_then(|r| r.get::<i64>(0)));
    if secure != Some(1)
        && let Err(e) = env.db.try_query("PRAGMA secure_delete = ON", &[])
    {
        eprintln!("wattlet-data-api: PRAGMA secure_delete refused: {e}");
    }
    schema::migrate(&env.db)?;
    anonymization::complete_pending(&env)?;
    auth::data_caveats(req, &env, endpoint.data_class())?;
    match (&endpoint, method) {
        (Endpoint::CreateOrListHouseholds, Method::Post) => management::create_household(req, &env),
        (Endpoint::CreateOrListHouseholds, _) => management::list_households(req, &env),
        (Endpoint::Participant(id), Method::Get) => participants::get(req, &env, id),
        (Endpoint::Participant(id), _) => participants::update(req, &env, id),
        (Endpoint::RevokeDevice(id), _) => management::revoke_device(req, &env, id),
        (Endpoint::Fleet, _) => health::fleet(req, &env),
        (Endpoint::DeviceHealth(id), _) => health::history(req, &env, id),
        (Endpoint::Diagnostics(id), Method::Post) => health::request_diagnostics(req, &env, id),
        (Endpoint::Diagnostics(id), _) => health::list_diagnostics(req, &env, id),
        (Endpoint::UploadDiagnostics, _) => health::upload_diagnostics(req, &env),
        (Endpoint::Regions, _) => regions::import(req, &env),
        (Endpoint::MintToken, _) => tokens::mint(req, &env),
        (Endpoint::RevokeToken(id), _) => tokens::revoke(req, &env, id),
        (Endpoint::Metrics, _) => metrics::metrics(req, &env),
        (Endpoint::Account, _) => household::account(req, &env),
        (Endpoint::Household, _) => household::get(req, &env),
        (Endpoint::ParticipantToken, _) => tokens::mint_participant(req, &env),
        (Endpoint::Consent, Method::Get) => consent::get(req, &env),
        (Endpoint::Consent, Method::Post) => consent::grant(req, &env),
        (Endpoint::Consent, _) => consent::revoke(req, &env),
        (Endpoint::Devices, _) => household::list_devices(req, &env),
        (Endpoint::DeviceStatus, _) => household::put_status(req, &env),
        (Endpoint::Meters, _) => household::list_meters(req, &env),
        (Endpoint::PvSystems, _) => household::list_pv_systems(req, &env),
        (Endpoint::UploadMeasurements, _) => measurement::upload(req, &env),
        (Endpoint::ReadMeasurements(uuid), _) => measurement::read(req, &env, uuid),
        (Endpoint::AnyMeasurements(uuid), _) => measurement::read_any(req, &env, uuid),
        (Endpoint::RegionMeasurements(code), _) => research::region_measurements(req, &env, code),
        (Endpoint::Purge, _) => purge::purge(req, &env),
        (Endpoint::HouseholdPolicies, Method::Get) => policies::household_list(req, &env),
        (Endpoint::HouseholdPolicies, _) => policies::household_attach(req, &env),
        (Endpoint::HouseholdPolicy(id), _) => policies::household_detach(req, &env, id),
        (Endpoint::StudyPolicies, Method::Get) => policies::study_list(req, &env),
        (Endpoint::StudyPolicies, _) => policies::study_attach(req, &env),
        (Endpoint::StudyPolicy(id), _) => policies::study_detach(req, &env, id),
        (Endpoint::HouseholdLog, _) => policies::household_log(req, &env),
        (Endpoint::ExportCopy, Method::Get) => export_copy::download(req, &env),
        (Endpoint::ExportCopy, _) => export_copy::delete(req, &env),
        (Endpoint::StudyLog, _) => policies::study_log(req, &env),
        (Endpoint::OwnDisaggregation(uuid), _) => disaggregation::read_own(req, &env, uuid),
        (Endpoint::AnyDisaggregation(uuid), _) => disaggregation::read_any(req, &env, uuid),
        (Endpoint::OwnForecast(uuid), _) => forecast::read_own(req, &env, uuid),
        (Endpoint::AnyForecast(uuid), _) => forecast::read_any(req, &env, uuid),
        (Endpoint::WorkerMeters, _) => worker::meters(req, &env),
        (Endpoint::WorkerPower(uuid), _) => worker::power(req, &env, uuid),
        (Endpoint::WorkerResults, _) => worker::store(req, &env),
        (Endpoint::WorkerResult(item), _) => worker::result(req, &env, item),
        (Endpoint::WorkerForecasts, _) => forecast::store(req, &env),
        (Endpoint::Rollouts, Method::Post) => rollouts::create(req, &env),
        (Endpoint::Rollouts, _) => rollouts::list(req, &env),
        (Endpoint::RolloutAction(id, action), _) => rollouts::act(req, &env, id, action),
        (Endpoint::DeviceRollout, Method::Post) => rollouts::report(req, &env),
        (Endpoint::DeviceRollout, _) => rollouts::admitted(req, &env),
        (Endpoint::Health | Endpoint::Version, _) => Err(not_allowed()),
    }
}
