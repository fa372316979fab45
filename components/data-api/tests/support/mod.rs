//! The Data API natively: its handlers over rusqlite on a temporary SQLite file (WAL and a busy
//! timeout, as `wattlet serve` opens it), a fixed `admin_token` and the `wattlet-anonymizer`
//! library, with requests built as the component receives them.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::types::ValueRef;
use serde_json::{Value as Json, json};
use wattlet_data_api::anonymizer::{self as api, Anonymizer};
use wattlet_data_api::db::Row;
use wattlet_data_api::policy::{self, Policies};
use wattlet_data_api::{
    Method, Request, Response, Rows, Secrets, Services, Storage, StorageError, Value,
};
use wattlet_policy_export_copy::ExportCopy;
use wattlet_policy_k_anonymity::KAnonymity;
use wattlet_policy_pause_window::PauseWindow;
use wattlet_policy_researchers_aggregate::ResearchersAggregate;
use wattlet_policy_retention::Retention;

/// Strong enough for `wattlet_access_token::check_secret`.
pub const ADMIN_TOKEN: &str = "admin-token-for-native-tests-5c1e9a0f27d84b63";
/// The `client_identity_key`: what the tests' "TLS terminator" proves identities with.
pub const IDENTITY_KEY: &str = "identity-key-for-native-tests-8d2f6b41e07a93c5";
/// The `key_encryption_key`: wraps the households' data keys at rest.
pub const KEY_ENCRYPTION_KEY: &str = "kek-for-native-tests-4a7d1e93c06b2f85e1d9";

/// When [`Api::register`]'s devices were registered: long before the fixed times the tests
/// upload, as for a household in the survey for years (the Data API accepts measurements from
/// a day before their device's registration).
pub const LONG_AGO: &str = "2000-01-01T00:00:00.000000000Z";

/// A hook run before each statement with its SQL and the connection (to play another request
/// writing in between).
type Hook = Box<dyn FnMut(&str, &rusqlite::Connection)>;

/// [`Storage`] on one rusqlite connection, as Spin and `wattlet serve` share one per database.
pub struct Sqlite {
    connection: rusqlite::Connection,
    before: RefCell<Option<Hook>>,
    /// Every statement run, in order.
    pub log: RefCell<Vec<String>>,
}

impl Storage for Sqlite {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, StorageError> {
        if let Some(hook) = self.before.borrow_mut().as_mut() {
            hook(sql, &self.connection);
        }
        self.log.borrow_mut().push(sql.to_owned());
        let io = |e: rusqlite::Error| StorageError::Io(e.to_string());
        let mut statement = self.connection.prepare(sql).map_err(io)?;
        let columns: Vec<String> = statement
            .column_names()
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let params = params.iter().map(|v| match v {
            Value::Integer(i) => rusqlite::types::Value::Integer(*i),
            Value::Real(f) => rusqlite::types::Value::Real(*f),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
            Value::Null => rusqlite::types::Value::Null,
        });
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(io)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(io)? {
            let values = (0..columns.len())
                .map(|i| match row.get_ref(i) {
                    Ok(ValueRef::Integer(i)) => Value::Integer(i),
                    Ok(ValueRef::Real(f)) => Value::Real(f),
                    Ok(ValueRef::Text(t)) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    Ok(ValueRef::Blob(b)) => Value::Blob(b.to_vec()),
                    Ok(ValueRef::Null) | Err(_) => Value::Null,
                })
                .collect();
            out.push(Row { values });
        }
        Ok(Rows { columns, rows: out })
    }
}

/// The secrets, replaceable by a test (a weak or missing one).
pub struct Secret {
    pub admin_token: RefCell<Result<String, String>>,
    pub identity_key: RefCell<Result<String, String>>,
    pub key_encryption_key: RefCell<Result<String, String>>,
    /// The `plaintext_results` variable (unset: plaintext results refused).
    pub plaintext_results: RefCell<Option<String>>,
}

impl Secrets for Secret {
    fn admin_token(&self) -> Result<String, String> {
        self.admin_token.borrow().clone()
    }

    fn client_identity_key(&self) -> Result<String, String> {
        self.identity_key.borrow().clone()
    }

    fn key_encryption_key(&self) -> Result<String, String> {
        self.key_encryption_key.borrow().clone()
    }

    fn plaintext_results(&self) -> Option<String> {
        self.plaintext_results.borrow().clone()
    }
}

/// The `wattlet-anonymizer` library; refuses while `failing` is set (a crash stand-in).
pub struct Library {
    pub failing: Cell<bool>,
    pub calls: Cell<usize>,
}

impl Anonymizer for Library {
    fn anonymize(&self, r: &api::Registration, draw: api::Draw) -> Result<api::Anonymized, String> {
        use wattlet_anonymizer as lib;
        self.calls.set(self.calls.get() + 1);
        if self.failing.get() {
            return Err("the anonymizer is unavailable".to_owned());
        }
        let registration = lib::Registration {
            contact: lib::Contact {
                name: r.contact.name.clone(),
                email: r.contact.email.clone(),
            },
            address: r.address.as_ref().map(|a| lib::Address {
                street: a.street.clone(),
                house_number: a.house_number.clone(),
                postal_code: a.postal_code.clone(),
                city: a.city.clone(),
                country: a.country.clone(),
            }),
            location: lib::Location {
                latitude: r.location.latitude,
                longitude: r.location.longitude,
            },
            pv_systems: r
                .pv_systems
                .iter()
                .map(|pv| lib::PvSystem {
                    nominal_power_kwp: pv.nominal_power_kwp,
                    azimuth: pv.azimuth,
                    tilt: pv.tilt,
                    installation_date: pv.installation_date.clone(),
                })
                .collect(),
            population_density_per_km2: r.population_density_per_km2,
        };
        let draw = lib::Draw {
            distance_uniform: draw.distance_uniform,
            bearing_uniform: draw.bearing_uniform,
        };
        let a = lib::anonymize(&registration, draw).map_err(|e| e.to_string())?;
        let d = a.displacement;
        Ok(api::Anonymized {
            location: api::Location {
                latitude: a.location.latitude,
                longitude: a.location.longitude,
            },
            pv_systems: a
                .pv_systems
                .into_iter()
                .map(|pv| api::AnonymizedPvSystem {
                    nominal_power_kwp: pv.nominal_power_kwp,
                    azimuth: pv.azimuth,
                    tilt: pv.tilt,
                    installation_date: pv.installation_date,
                })
                .collect(),
            displacement: api::Displacement {
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

/// The shipped policy libraries, as the composed components run them.
pub struct PolicyLibraries;

impl Policies for PolicyLibraries {
    fn validate(&self, policy: &str, parameters: &str) -> Result<(), String> {
        use wattlet_policy::Policy;
        match policy {
            "researchers-aggregate" => ResearchersAggregate::validate(parameters),
            "pause-window" => PauseWindow::validate(parameters),
            "retention" => Retention::validate(parameters),
            "k-anonymity" => KAnonymity::validate(parameters),
            "export-copy" => ExportCopy::validate(parameters),
            other => return Err(format!("unknown policy {other}")),
        }
        .map_err(|e| e.to_string())
    }

    fn at_least_as_strict(
        &self,
        policy: &str,
        parameters: &str,
        than: &str,
    ) -> Result<bool, String> {
        use wattlet_policy::Policy;
        match policy {
            "researchers-aggregate" => ResearchersAggregate::at_least_as_strict(parameters, than),
            "pause-window" => PauseWindow::at_least_as_strict(parameters, than),
            "retention" => Retention::at_least_as_strict(parameters, than),
            "k-anonymity" => KAnonymity::at_least_as_strict(parameters, than),
            "export-copy" => ExportCopy::at_least_as_strict(parameters, than),
            other => return Err(format!("unknown policy {other}")),
        }
        .map_err(|e| e.to_string())
    }

    fn rows(
        &self,
        hook: policy::Hook,
        policy: &str,
        parameters: &str,
        object: policy::ObjectKind,
        context: &policy::Context,
        rows: &policy::Rows,
    ) -> policy::Decision {
        fn run<P: wattlet_policy::Policy>(
            hook: policy::Hook,
            parameters: &str,
            object: policy::ObjectKind,
            context: &policy::Context,
            rows: policy::Rows,
        ) -> policy::Decision {
            match hook {
                policy::Hook::Read => P::read(parameters, object, context, rows),
                policy::Hook::Write => P::write(parameters, object, context, rows),
            }
        }
        let rows = rows.clone();
        match policy {
            "researchers-aggregate" => {
                run::<ResearchersAggregate>(hook, parameters, object, context, rows)
            }
            "pause-window" => run::<PauseWindow>(hook, parameters, object, context, rows),
            "retention" => run::<Retention>(hook, parameters, object, context, rows),
            "k-anonymity" => run::<KAnonymity>(hook, parameters, object, context, rows),
            "export-copy" => run::<ExportCopy>(hook, parameters, object, context, rows),
            other => policy::Decision::Deny(format!("unknown policy {other}")),
        }
    }

    fn delete(
        &self,
        policy: &str,
        parameters: &str,
        object: policy::ObjectKind,
        context: &policy::Context,
    ) -> policy::Decision {
        use wattlet_policy::Policy;
        match policy {
            "researchers-aggregate" => ResearchersAggregate::delete(parameters, object, context),
            "pause-window" => PauseWindow::delete(parameters, object, context),
            "retention" => Retention::delete(parameters, object, context),
            "k-anonymity" => KAnonymity::delete(parameters, object, context),
            "export-copy" => ExportCopy::delete(parameters, object, context),
            other => policy::Decision::Deny(format!("unknown policy {other}")),
        }
    }
}

/// A Data API on its own database file.
pub struct Api {
    pub path: PathBuf,
    pub storage: Sqlite,
    pub anonymizer: Library,
    pub policies: PolicyLibraries,
    pub secrets: Secret,
    _dir: tempfile::TempDir,
}

/// A status and the body as JSON (`null` when empty or not JSON).
pub type Reply = (u16, Json);

/// A registered household: its id, device, the participant's email and its meters (the first
/// electricity, the second PV generation).
#[derive(Debug, Clone)]
pub struct Household {
    pub id: String,
    pub device: String,
    pub email: String,
    pub meters: Vec<String>,
}

/// A name no other call in this process uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh v4 UUID (random bytes from the OS).
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("random bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Api {
    pub fn new() -> Api {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sqlite_db.db");
        let connection = rusqlite::Connection::open(&path).expect("open the database");
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        Api {
            path,
            storage: Sqlite {
                connection,
                before: RefCell::new(None),
                log: RefCell::new(Vec::new()),
            },
            anonymizer: Library {
                failing: Cell::new(false),
                calls: Cell::new(0),
            },
            policies: PolicyLibraries,
            secrets: Secret {
                admin_token: RefCell::new(Ok(ADMIN_TOKEN.to_owned())),
                identity_key: RefCell::new(Ok(IDENTITY_KEY.to_owned())),
                key_encryption_key: RefCell::new(Ok(KEY_ENCRYPTION_KEY.to_owned())),
                plaintext_results: RefCell::new(None),
            },
            _dir: dir,
        }
    }

    pub fn handle(&self, request: &Request) -> Response {
        let services = Services {
            storage: &self.storage,
            secrets: &self.secrets,
            anonymizer: &self.anonymizer,
            policies: &self.policies,
        };
        wattlet_data_api::handle(request, &services)
    }

    /// Runs `hook` before every statement until [`Api::no_hook`].
    pub fn before_each_statement(&self, hook: impl FnMut(&str, &rusqlite::Connection) + 'static) {
        *self.storage.before.borrow_mut() = Some(Box::new(hook));
    }

    pub fn no_hook(&self) {
        *self.storage.before.borrow_mut() = None;
    }

    /// Runs SQL directly on the database (not through the API).
    pub fn sql(&self, sql: &str, params: impl rusqlite::Params) -> usize {
        self.storage
            .connection
            .execute(sql, params)
            .expect("direct SQL")
    }

    /// One text value selected directly from the database.
    pub fn sql_text(&self, sql: &str, params: impl rusqlite::Params) -> Option<String> {
        use rusqlite::OptionalExtension as _;
        self.storage
            .connection
            .query_row(sql, params, |row| row.get::<_, Option<String>>(0))
            .optional()
            .expect("direct SQL")
            .flatten()
    }

    pub fn count(&self, sql: &str, params: impl rusqlite::Params) -> i64 {
        self.storage
            .connection
            .query_row(sql, params, |row| row.get(0))
            .expect("direct SQL")
    }

    /// Sends `method path` with these headers and an optional JSON body.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Json>,
    ) -> Reply {
        let response = self.handle(&request(method, path, headers, body));
        (response.status, response.json())
    }

    pub fn with_token(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Reply {
        let bearer = format!("Bearer {token}");
        self.send(method, path, &[("authorization", &bearer)], body)
    }

    pub fn admin(&self, method: Method, path: &str, body: Option<&Json>) -> Reply {
        self.with_token(ADMIN_TOKEN, method, path, body)
    }

    /// As the household's device: the identity headers a TLS terminator sets, with its proof.
    pub fn as_device(
        &self,
        household: &Household,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Reply {
        let response = self.as_device_response(household, method, path, body);
        (response.status, response.json())
    }

    /// [`Api::as_device`]'s whole response: its headers, and a body that need not be JSON.
    pub fn as_device_response(
        &self,
        household: &Household,
        method: Method,
        path: &str,
        body: Option<&Json>,
    ) -> Response {
        let headers = identity_headers(&household.device, &household.email, &method, path);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.handle(&request(method, path, &headers, body))
    }

    /// Mints a token with `request` (as the administrator).
    pub fn mint(&self, request: Json) -> String {
        let (status, body) = self.admin(Method::Post, "/api/management/token", Some(&request));
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Registers a household with an address, a PV system, an electricity and a PV meter; its
    /// device counts as registered [`LONG_AGO`].
    pub fn register(&self) -> Household {
        let household = self.register_now();
        self.sql(
            "UPDATE measurement_device SET registered_at = ?1 WHERE household = ?2",
            (LONG_AGO, &household.id),
        );
        household
    }

    /// [`Api::register`], the device registered now.
    pub fn register_now(&self) -> Household {
        let device = unique("pi");
        let email = format!("{}@example.org", unique("p"));
        let (status, body) = self.admin(
            Method::Post,
            "/api/management/household",
            Some(&json!({
                "name": "Erika Mustermann", "email": email, "device": device,
                "meters": [
                    { "uuid": uuid4(), "type": "ELECTRICITY", "model": "MT681" },
                    { "type": "PV-GENERATION", "model": "EASY", "pv_systems": [0] },
                ],
                "location": { "latitude": 48.1372, "longitude": 11.5756, "nuts3": "DE212" },
                "address": { "street": "Marienplatz", "house_number": "8", "postal_code": "80331",
                             "city": "München", "country": "DE" },
                "pv_systems": [{ "nominal_power_kwp": 7.4, "azimuth": 180.0, "tilt": 30.0,
                                 "installation_date": "2021-06-15" }],
            })),
        );
        assert_eq!(status, 201, "{body}");
        Household {
            id: body["household"].as_str().expect("id").to_owned(),
            device,
            email,
            meters: body["meters"]
                .as_array()
                .expect("meters")
                .iter()
                .map(|m| m["uuid"].as_str().expect("uuid").to_owned())
                .collect(),
        }
    }

    /// Sets the household's consent to `state` directly in the database.
    pub fn set_consent(&self, household: &Household, state: wattlet_survey::ConsentState) {
        self.sql(
            "UPDATE consent SET state = ?1 WHERE household = ?2",
            (state.as_str(), &household.id),
        );
    }

    pub fn consent_state(&self, household: &Household) -> String {
        self.sql_text(
            "SELECT state FROM consent WHERE household = ?1",
            [&household.id],
        )
        .expect("a consent row")
    }

    /// Uploads measurements as the household's device.
    pub fn upload(&self, household: &Household, measurements: &[Json]) -> Reply {
        self.as_device(
            household,
            Method::Post,
            "/api/household/meter/measurement",
            Some(&json!({ "measurements": measurements })),
        )
    }
}

/// Seconds since 1970 now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// The identity headers a TLS terminator sets for `device` of `email` on `method path` (the
/// query is not signed), proven now with [`IDENTITY_KEY`] and a fresh nonce.
pub fn identity_headers(
    device: &str,
    email: &str,
    method: &Method,
    path: &str,
) -> Vec<(&'static str, String)> {
    let path = path.split('?').next().unwrap_or(path);
    proven_headers(
        IDENTITY_KEY,
        unix_now(),
        (method.as_str(), path),
        (device, email),
    )
}

/// The identity headers of `device`/`email` (serial `5f3a`) with a proof made by `key` at `at`
/// for `method path`, with a fresh nonce.
pub fn proven_headers(
    key: &str,
    at: u64,
    (method, path): (&str, &str),
    (device, email): (&str, &str),
) -> Vec<(&'static str, String)> {
    use wattlet_survey::identity::{self, Bound, Identity};
    let nonce = unique("nonce").replace('-', "");
    let nonce = format!("{nonce}{}", uuid4().replace('-', ""));
    let proof = identity::prove(
        key.as_bytes(),
        Bound { method, path },
        Identity {
            device,
            email,
            serial: "5f3a",
        },
        at,
        &nonce,
    );
    vec![
        (identity::DEVICE, device.to_owned()),
        (identity::EMAIL, email.to_owned()),
        (identity::SERIAL, "5f3a".to_owned()),
        (identity::PROOF, proof),
    ]
}

/// `method path` with these headers and an optional JSON body.
fn request(method: Method, path: &str, headers: &[(&str, &str)], body: Option<&Json>) -> Request {
    let mut request = Request::new(method, path);
    for (name, value) in headers {
        request = request.with_header(name, value);
    }
    if let Some(body) = body {
        request = request.with_body(body.to_string());
    }
    request
}

/// A measurement of `meter` at `at` with these readings.
pub fn measurement(meter: &str, at: &str, data: Json) -> Json {
    json!({ "uuid": uuid4(), "meter": meter, "measured_at": at, "data": data })
}

/// Asserts a refusal: `code`'s status, `code` and a message.
#[track_caller]
pub fn assert_refused(reply: &Reply, code: wattlet_survey::RefusalCode) {
    let (status, body) = reply;
    assert_eq!(*status, code.status(), "{body}");
    assert_eq!(body["code"], code.as_str(), "{body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

impl Api {
    /// The error SQLite gives for `sql` run directly.
    pub fn storage_refuses(&self, sql: &str) -> String {
        match self.storage.connection.execute(sql, []) {
            Ok(_) => panic!("{sql} was accepted"),
            Err(e) => e.to_string(),
        }
    }
}

/// A registered household with consent and one power reading (500 W at 2026-11-23T16:00:00Z).
pub fn measured(api: &Api) -> Household {
    let household = api.register();
    api.set_consent(&household, wattlet_survey::ConsentState::Granted);
    let reply = api.upload(
        &household,
        &[measurement(
            &household.meters[0],
            "2026-11-23T16:00:00Z",
            json!([{ "0100010700ff": 0.5 }]),
        )],
    );
    assert_eq!(reply.0, 200, "{}", reply.1);
    household
}

/// The household's data key as the manager (token `manager`) receives it with the power
/// readings of a [`measured`] household.
pub fn key_of(
    api: &Api,
    manager: &str,
    household: &Household,
) -> (wattlet_sealing::KeyId, wattlet_sealing::DataKey) {
    use base64::Engine as _;
    let (status, body) = api.with_token(
        manager,
        Method::Get,
        &format!(
            "/api/worker/meter/{}/power?from=2026-11-23T16:00:00Z&to=2026-11-23T17:00:00Z",
            household.meters[0]
        ),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["readings"][0]["power_w"], 500.0, "{body}");
    let id = wattlet_sealing::KeyId::parse(body["key"]["id"].as_str().expect("key id"))
        .expect("a key id");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["key"]["key"].as_str().expect("key"))
        .expect("base64");
    (
        id,
        wattlet_sealing::DataKey::from_bytes(&bytes).expect("32 bytes"),
    )
}

/// `plaintext` sealed as a result of `item` under `key`: an entry of a `POST /api/worker/...`.
pub fn seal(
    key: &(wattlet_sealing::KeyId, wattlet_sealing::DataKey),
    item: &str,
    plaintext: &Json,
) -> Json {
    let sealed = wattlet_sealing::Sealed::seal(
        &key.1,
        &key.0,
        item,
        wattlet_sealing::Purpose::Result,
        plaintext.to_string().as_bytes(),
    )
    .expect("sealed");
    json!({ "sealed": sealed })
}
