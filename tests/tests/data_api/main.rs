//! The Data API component (components/data-api) served by `wattlet serve` from the repository's
//! `spin.toml` on loopback: administration (registration, listing, device revocation),
//! authentication failures and routing over plain HTTP; devices over real mutual TLS 1.3 with
//! certificates from `wattlet_pki` (consent, status reports, measurement upload and reads).
//!
//! Two servers for all tests (the component is compiled once each), tests use their own
//! households. By topic:
//! - [`admin`]: the admin token, device revocation, participant endpoints without a certificate,
//!   routing;
//! - [`tokens`]: access tokens, their roles and restrictions;
//! - [`registration`]: registering households, their details, conflicts and invalid input;
//! - [`consent`]: devices and consent, unknown and revoked devices, status reports;
//! - [`uploads`]: measurements up and back, refusals, foreign meters, bad batches;
//! - [`anonymization`]: revocation anonymizes and leaves no trace, NUTS-3 densities;
//! - [`workers`]: the NIALM manager's and workers' endpoints and their role.

mod admin;
mod anonymization;
mod consent;
mod registration;
mod tokens;
mod uploads;
mod workers;

use std::path::Path;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use wattlet_pki::CaDir;
use wattlet_serve::server::{ClientAuth, ServeOptions, TlsOptions};
use wattlet_survey::RefusalCode;
use wattlet_testkit::clock::{rfc3339, unix_now};
use wattlet_testkit::http::{Client, Reply};
use wattlet_testkit::scan::{self, Needle};
use wattlet_testkit::serve::{self, Served};
use wattlet_testkit::{ADMIN_TOKEN, APP_VARIABLES, pki, unique, uuid4};

/// A household location for registrations that are not about locations.
fn location() -> Value {
    json!({ "latitude": 48.1372, "longitude": 11.5756 })
}

/// The Data API for the repository's `spin.toml`, its state in `state`.
fn start(state: &Path, tls: Option<TlsOptions>) -> Served {
    let options = ServeOptions {
        tls,
        ..serve::app_options(state)
    };
    serve::start(&options, &APP_VARIABLES)
}

/// The plain-HTTP server.
fn api() -> &'static Served {
    static API: std::sync::OnceLock<Served> = std::sync::OnceLock::new();
    API.get_or_init(|| {
        let state = tempfile::tempdir().expect("temp dir");
        start(state.path(), None).keeping(state)
    })
}

/// A client of the plain-HTTP server.
fn plain() -> &'static Client {
    static PLAIN: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    PLAIN.get_or_init(|| Client::plain(api().addr))
}

/// The mutual-TLS server: its CA issues the server's and every device's certificate.
struct TlsApi {
    served: Served,
    ca: CaDir,
    dir: tempfile::TempDir,
}

fn tls_api() -> &'static TlsApi {
    static API: std::sync::OnceLock<TlsApi> = std::sync::OnceLock::new();
    API.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, tls) = pki::server_ca(dir.path(), ClientAuth::Required);
        let served = start(&dir.path().join("state"), Some(tls));
        TlsApi { served, ca, dir }
    })
}

/// A client presenting a device certificate for `device` and `email` (any device id the CA
/// signs, registered or not).
fn device_client(device: &str, email: &str) -> Client {
    let api = tls_api();
    let device = pki::device(&api.ca, api.dir.path(), device, email);
    Client::tls(api.served.addr, device.tls)
}

async fn admin(method: Method, path: &str, body: Option<&Value>) -> Reply {
    admin_as(plain(), method, path, body).await
}

async fn admin_as(client: &Client, method: Method, path: &str, body: Option<&Value>) -> Reply {
    client.bearer(ADMIN_TOKEN).call(method, path, body).await
}

/// A request to the plain server with `token`.
async fn with_token(token: &str, method: Method, path: &str, body: Option<&Value>) -> Reply {
    plain().bearer(token).call(method, path, body).await
}

/// Mints a token with `request` as `minter` (the admin token or a token); returns it.
async fn mint(minter: &str, request: Value) -> String {
    let reply = with_token(
        minter,
        Method::POST,
        "/api/management/token",
        Some(&request),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{request}: {}",
        reply.text
    );
    reply.body["token"].as_str().expect("token").to_owned()
}

/// The administrators' client on the mutual-TLS server: every TLS client needs a certificate,
/// the bearer token is what makes it an administrator.
fn tls_admin() -> &'static Client {
    static ADMIN: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    ADMIN.get_or_init(|| device_client("admin-console", "admin@example.org"))
}

struct Household {
    id: String,
    device: String,
    email: String,
    meters: Vec<String>,
}

/// Registers a household on the plain server.
async fn register() -> Household {
    register_on(plain(), api()).await
}

/// Registers a household on the mutual-TLS server; returns it with its device's client.
async fn register_device() -> (Household, Client) {
    let household = register_on(tls_admin(), &tls_api().served).await;
    let client = device_client(&household.device, &household.email);
    (household, client)
}

/// Registers a household with one electricity meter (fixed uuid) and one PV meter (generated)
/// through `client` of `served`; its device counts as registered long ago
/// ([`wattlet_testkit::cloud::registered_long_ago`]), so the tests' fixed times are plausible.
async fn register_on(client: &Client, served: &Served) -> Household {
    let device = unique("dev");
    let email = format!("{}@example.org", unique("p"));
    let meter = uuid4();
    let reply = admin_as(
        client,
        Method::POST,
        "/api/management/household",
        Some(&json!({
            "name": "Erika Mustermann",
            "email": email,
            "device": device,
            "meters": [
                { "uuid": meter, "type": "ELECTRICITY", "model": "MT681" },
                { "type": "PV-GENERATION", "model": "EASY" },
            ],
            "location": { "latitude": 48.1372, "longitude": 11.5756 },
        })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let meters: Vec<String> = reply.body["meters"]
        .as_array()
        .expect("meters")
        .iter()
        .map(|m| m["uuid"].as_str().expect("uuid").to_owned())
        .collect();
    assert_eq!(meters[0], meter);
    wattlet_testkit::cloud::registered_long_ago(&served.database(), &device);
    Household {
        id: reply.body["household"].as_str().expect("id").to_owned(),
        device,
        email,
        meters,
    }
}

async fn household_in_listing(id: &str) -> Value {
    household_listed_on(plain(), id).await
}

async fn household_listed_on(client: &Client, id: &str) -> Value {
    let reply = admin_as(client, Method::GET, "/api/management/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["households"]
        .as_array()
        .expect("households")
        .iter()
        .find(|h| h["household"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

// Devices and participants over mutual TLS

/// The reply is a refusal with `code` (and the code's status) and an `error` message
/// containing `needle`.
fn assert_refused(reply: &Reply, code: RefusalCode, needle: &str) {
    assert_eq!(reply.status.as_u16(), code.status(), "{}", reply.text);
    assert_eq!(reply.body["code"], code.as_str(), "{}", reply.text);
    let message = reply.body["error"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

async fn grant(client: &Client) {
    let reply = client
        .call(Method::POST, "/api/household/consent", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

fn measurement(meter: &str, measured_at: &str, kwh: f64) -> Value {
    json!({
        "uuid": uuid4(),
        "meter": meter,
        "measured_at": measured_at,
        "data": [{ "0100010800ff": kwh }, { "0100100700ff": 0.42, "0100020800ff": 0 }],
    })
}

async fn upload(client: &Client, batch: &[Value]) -> Reply {
    client
        .call(
            Method::POST,
            "/api/household/meter/measurement",
            Some(&json!({ "measurements": batch })),
        )
        .await
}

async fn read(client: &Client, meter: &str, query: &str) -> Reply {
    client
        .call(
            Method::GET,
            &format!("/api/household/meter/{meter}/measurement{query}"),
            None,
        )
        .await
}

/// The uuids a read returned, in order.
fn uuids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .map(|m| m["uuid"].as_str().expect("uuid").to_owned())
        .collect()
}

fn uuid_of(m: &Value) -> String {
    m["uuid"].as_str().expect("uuid").to_owned()
}
