//! The cloud as a device meets it: the repository's application (`spin.toml`, the Data API)
//! served by `wattlet serve`'s library over mutual TLS on loopback, with a CA of its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use serde_json::{Value, json};
use tokio::runtime::Handle;
use wattlet_api_client::ApiClient;
use wattlet_pki::CaDir;
use wattlet_serve::server::ServeOptions;
use wattlet_serve::tls::ClientAuth;

use crate::pki::{self, Device};
use crate::serve::{self, Served};

/// The Data API's `admin_token` wherever the tests serve it (strong enough for the Data API's
/// rule, `wattlet_access_token::check_secret`).
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-3b9f0c61d2e84a57";

/// The application's `client_identity_key` wherever the tests serve it: `wattlet serve` proves
/// the identity headers with it and the Data API checks the proofs; a test that plays the
/// ingress in front of `spin up` proves identities with it too ([`ingress_identity`]).
pub const IDENTITY_KEY: &str = "identity-key-for-tests-7e1a4c90b5d23f68";

/// The application's `key_encryption_key` wherever the tests serve it: wraps the households'
/// data keys at rest.
pub const KEY_ENCRYPTION_KEY: &str = "kek-for-tests-b61f0e27c94d3a58e0c7";

/// The variables of the repository's application (`spin.toml`) in every test
/// (`plaintext_results` keeps its default: plaintext results refused).
pub const APP_VARIABLES: [(&str, &str); 3] = [
    ("admin_token", ADMIN_TOKEN),
    ("client_identity_key", IDENTITY_KEY),
    ("key_encryption_key", KEY_ENCRYPTION_KEY),
];

/// The identity headers an ingress in front of Spin sets for a client that presented the
/// certificate of `device` (participant `email`, serial `serial`), with their proof for
/// `method path` made now with [`IDENTITY_KEY`]: what a test sends to the application on
/// `spin up` on a device's behalf. A proof is good for one request (the query is not signed).
pub fn ingress_identity(
    method: &str,
    path: &str,
    device: &str,
    email: &str,
    serial: &str,
) -> Vec<(&'static str, String)> {
    ingress_identity_at(
        crate::clock::unix_now(),
        method,
        path,
        device,
        email,
        serial,
    )
}

/// [`ingress_identity`] with the proof made at `now` (seconds since 1970): an old one.
pub fn ingress_identity_at(
    now: u64,
    method: &str,
    path: &str,
    device: &str,
    email: &str,
    serial: &str,
) -> Vec<(&'static str, String)> {
    use wattlet_survey::identity::{self, Bound, Identity};
    let path = path.split('?').next().unwrap_or(path);
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let proof = identity::prove(
        IDENTITY_KEY.as_bytes(),
        Bound { method, path },
        Identity {
            device,
            email,
            serial,
        },
        now,
        &nonce,
    );
    vec![
        (identity::DEVICE, device.to_owned()),
        (identity::EMAIL, email.to_owned()),
        (identity::SERIAL, serial.to_owned()),
        (identity::PROOF, proof),
    ]
}

/// When [`registered_long_ago`] devices count as registered: long before the fixed times the
/// tests upload (the Data API accepts measurements from a day before their device's
/// registration), as for a household in the survey for years.
pub const LONG_AGO: &str = "2000-01-01T00:00:00.000000000Z";

/// Makes `device` of the Data API whose database is `database` count as registered
/// [`LONG_AGO`]. Written into the database: no request can register a device in the past.
pub fn registered_long_ago(database: &Path, device: &str) {
    let db = rusqlite::Connection::open(database).expect("open the Data API's database");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let changed = db
        .execute(
            "UPDATE measurement_device SET registered_at = ?1 WHERE id = ?2",
            [LONG_AGO, device],
        )
        .expect("backdate the registration");
    assert_eq!(changed, 1, "no device {device} in {}", database.display());
}

/// The registration of a household with one electricity meter (`meter`, a UUID) and device
/// `device`, as an administrator posts it to `/api/management/household`.
pub fn household(name: &str, email: &str, device: &str, meter: &str) -> Value {
    json!({
        "name": name, "email": email, "device": device,
        "meters": [{"uuid": meter, "type": "ELECTRICITY", "model": "MT681"}],
        "location": {"latitude": 50.9375, "longitude": 6.9603},
    })
}

/// A new access token with `role` (`researcher`, `worker`, …), minted through `admin`, an
/// administrator's client of a Data API (on `wattlet serve` or on Spin).
pub async fn mint(admin: &ApiClient, role: &str) -> String {
    let minted = admin
        .call(
            "POST",
            "/api/management/token",
            Some(&json!({ "role": role })),
        )
        .await
        .unwrap_or_else(|e| panic!("mint a {role} token: {e}"));
    minted["token"].as_str().expect("token").to_owned()
}

/// The cloud, served on its own runtime for the whole test: clients present certificates of
/// its CA (devices) or none (administrators, with the bearer token).
pub struct Cloud {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub ca: CaDir,
    admin_tls: Arc<ClientConfig>,
    served: Served,
}

impl Cloud {
    /// Makes a CA in `dir` and serves the application with its state in `dir/cloud`.
    pub fn start(dir: &Path) -> Cloud {
        Cloud::start_with(dir, &[])
    }

    /// [`Cloud::start`] with variables besides [`APP_VARIABLES`] (e.g. the key broker's
    /// `attestation_policy`).
    pub fn start_with(dir: &Path, variables: &[(&str, &str)]) -> Cloud {
        Cloud::start_from(dir, variables, serve::app_options(&dir.join("cloud")))
    }

    /// [`Cloud::start_with`] serving `options` (e.g. [`serve::app_options_with_data_api`] with
    /// its own limits), on the cloud's TLS.
    pub fn start_from(dir: &Path, variables: &[(&str, &str)], options: ServeOptions) -> Cloud {
        let (ca, tls) = pki::server_ca(dir, ClientAuth::Optional);
        let options = ServeOptions {
            tls: Some(tls),
            ..options
        };
        let mut all = APP_VARIABLES.to_vec();
        all.extend_from_slice(variables);
        let served = serve::start(&options, &all);
        Cloud {
            addr: served.addr,
            dir: dir.to_path_buf(),
            admin_tls: pki::anonymous(&ca),
            ca,
            served,
        }
    }

    /// The runtime the cloud runs on; tests block on it for their own clients.
    pub fn runtime(&self) -> &Handle {
        self.served.handle()
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The Data API's database file (for tests that check what it holds).
    pub fn database(&self) -> PathBuf {
        self.served.database()
    }

    /// A TLS client configuration without a certificate (an administrator's console).
    pub fn anonymous_tls(&self) -> Arc<ClientConfig> {
        self.admin_tls.clone()
    }

    /// An administrator's [`ApiClient`]: no certificate, the admin token.
    pub fn admin_client(&self) -> ApiClient {
        ApiClient::new(&self.url(), Some(self.anonymous_tls()))
            .expect("client")
            .with_bearer(ADMIN_TOKEN)
    }

    /// Registers a household with one device and one electricity meter (see [`household`]),
    /// the device [`registered_long_ago`]; returns the device's identity.
    pub fn register(&self, name: &str, email: &str, device: &str, meter: &str) -> Device {
        let identity = self.register_now(name, email, device, meter);
        registered_long_ago(&self.database(), device);
        identity
    }

    /// [`Cloud::register`], the device registered now.
    pub fn register_now(&self, name: &str, email: &str, device: &str, meter: &str) -> Device {
        self.post_registration(household(name, email, device, meter), device, email)
    }

    /// [`Cloud::register`], the household located in the NUTS-3 region `nuts3`.
    pub fn register_in(
        &self,
        nuts3: &str,
        (name, email): (&str, &str),
        device: &str,
        meter: &str,
    ) -> Device {
        let mut registration = household(name, email, device, meter);
        registration["location"]["nuts3"] = json!(nuts3);
        let identity = self.post_registration(registration, device, email);
        registered_long_ago(&self.database(), device);
        identity
    }

    fn post_registration(&self, registration: Value, device: &str, email: &str) -> Device {
        let (status, body) = self.admin("POST", "/api/management/household", Some(registration));
        assert_eq!(status, 201, "register {device}: {body}");
        self.device(device, email)
    }

    /// A certificate for `device` (registered or not) of participant `email`.
    pub fn device(&self, device: &str, email: &str) -> Device {
        pki::device(&self.ca, &self.dir, device, email)
    }

    /// The device's household grants consent.
    pub fn grant(&self, device: &Device) {
        let (status, body) = self.as_device(device, "POST", "/api/household/consent", None);
        assert_eq!(status, 200, "grant consent: {body}");
    }

    /// A new access token with `role` (`researcher`, `worker`, …), minted by the administrator.
    pub fn mint(&self, role: &str) -> String {
        self.runtime().block_on(mint(&self.admin_client(), role))
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(&self.admin_tls, method, path, Some(ADMIN_TOKEN), body)
    }

    pub fn as_device(
        &self,
        device: &Device,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(&device.tls, method, path, None, body)
    }

    pub fn call(
        &self,
        tls: &Arc<ClientConfig>,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut client = ApiClient::new(&self.url(), Some(tls.clone())).expect("client");
        if let Some(token) = bearer {
            client = client.with_bearer(token);
        }
        self.runtime()
            .block_on(client.send(method, path, body.as_ref(), &[]))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Every measurement uuid the cloud holds for `meter`, as its owner sees them.
    pub fn measurements(&self, owner: &Device, meter: &str) -> Vec<String> {
        let (status, body) = self.as_device(
            owner,
            "GET",
            &format!("/api/household/meter/{meter}/measurement?limit=10000"),
            None,
        );
        assert_eq!(status, 200, "read measurements: {body}");
        let mut uuids: Vec<String> = body["measurements"]
            .as_array()
            .expect("measurements")
            .iter()
            .map(|m| m["uuid"].as_str().expect("uuid").to_owned())
            .collect();
        uuids.sort();
        uuids
    }
}

/// The measurement (`wattlet_attestation::wattlet_measurement`) of a NIALM worker whose
/// executable is `binary` and whose nialm and stream components are the built ones the tests
/// use.
pub fn worker_measurement(binary: &Path) -> String {
    measurement(
        binary,
        &[
            (wattlet_workers::tee::NIALM_CLAIM, "wattlet-nialm"),
            (
                wattlet_workers::tee::STREAM_CLAIM,
                "wattlet-stream-analytics",
            ),
        ],
    )
}

/// The measurement of a DEBS stream worker (`wattlet worker stream`, the operators as the
/// built stream component) whose executable is `binary`.
pub fn stream_worker_measurement(binary: &Path) -> String {
    measurement(
        binary,
        &[(
            wattlet_workers::tee::STREAM_CLAIM,
            "wattlet-stream-analytics",
        )],
    )
}

/// The measurement of `binary` running the built components (claim name, component name).
fn measurement(binary: &Path, components: &[(&str, &str)]) -> String {
    let sha256 = |path: &Path| {
        wattlet_attestation::sha256_hex(&std::fs::read(path).expect("read a measured file"))
    };
    let claims = wattlet_attestation::RuntimeClaims {
        host_sha256: sha256(binary),
        components: components
            .iter()
            .map(|(claim, name)| {
                let path = wattlet_runtime::locate::locate(name, None)
                    .unwrap_or_else(|e| panic!("the built component {name}: {e:#}"));
                ((*claim).to_owned(), sha256(&path))
            })
            .collect(),
    };
    wattlet_attestation::wattlet_measurement(&claims)
}

/// A key broker `attestation_policy` accepting simulated evidence of exactly `measurement`.
pub fn simulated_policy(measurement: &str) -> String {
    format!("allowed_tees = [\"simulated\"]\nmeasurements = [\"{measurement}\"]\n")
}
