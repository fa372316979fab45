//! The broker's decisions: plain Rust over a [`Store`], the component's variables
//! ([`Variables`]) and the time of the request (`now`, seconds since 1970), so every decision is
//! tested natively. Each decision is logged (one line on stderr) and counted (`kbs_counter`).

use wattlet_attestation::{Policy, Reason, Refused, report_data, verify};
use wattlet_sealing::release::release_to;
use wattlet_sealing::{Kek, KeyId};

use crate::protocol::{
    self, ATTEST_PATH, AUTH_PATH, AttestRequest, AttestResponse, AuthRequest, DATASET_KEY_PATH,
    DATASET_KEY_RESOURCE_PATH, DatasetKey, DatasetKeyRequest, ErrorBody, ErrorCode, ErrorDetail,
    Grant, HOUSEHOLD_KEY_PATH, METRICS_PATH, NONCE_LEN, Session, SessionError, TOKEN_LEN,
    TOKEN_LIFETIME_SECONDS,
};
use crate::store::{Store, StoreError};
use crate::{Request, Response};

/// The Spin variables the broker reads.
pub const ADMIN_TOKEN: &str = "admin_token";
pub const KEY_ENCRYPTION_KEY: &str = "key_encryption_key";
pub const ATTESTATION_POLICY: &str = "attestation_policy";

/// The counters (`kbs_counter.metric`) and gauge of `GET /kbs/v0/metrics`.
pub const ATTESTATIONS: &str = "wattlet_kbs_attestations_total";
pub const KEY_RELEASES: &str = "wattlet_kbs_key_releases_total";
pub const SESSIONS: &str = "wattlet_kbs_sessions";

/// The component's variables (Spin's, or a map in tests).
pub trait Variables {
    fn get(&self, name: &str) -> Result<String, String>;
}

/// Which table a released key comes from.
#[derive(Clone, Copy)]
enum KeyKind {
    Household,
    Dataset,
}

impl KeyKind {
    fn what(self) -> &'static str {
        match self {
            KeyKind::Household => "household key",
            KeyKind::Dataset => "dataset key",
        }
    }
}

/// The broker for one request.
pub struct Broker<'a> {
    pub store: &'a dyn Store,
    pub variables: &'a dyn Variables,
    /// Seconds since 1970.
    pub now: u64,
}

/// An answer on its way out: the error code, or a body.
struct Failure {
    code: ErrorCode,
    reason: Option<&'static str>,
    message: String,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason: None,
            message: message.into(),
        }
    }

    fn refused(refused: &Refused) -> Failure {
        Failure {
            code: ErrorCode::AttestationRefused,
            reason: Some(refused.reason.label()),
            message: refused.detail.clone(),
        }
    }

    fn response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                reason: self.reason.map(str::to_owned),
                message: self.message,
            },
        };
        Response::json(self.code.status(), &body)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        eprintln!("wattlet-key-broker: {e}");
        Failure::new(ErrorCode::Internal, "the broker's storage failed")
    }
}

fn random<const N: usize>() -> Result<[u8; N], Failure> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        eprintln!("wattlet-key-broker: no randomness: {e}");
        Failure::new(ErrorCode::Internal, "no randomness")
    })?;
    Ok(bytes)
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Broker<'_> {
    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        let path = request.path.as_str();
        let method = request.method.as_str();
        let dataset_key = path
            .strip_prefix(DATASET_KEY_PATH)
            .and_then(|rest| rest.strip_prefix('/'));
        let (allowed, result) = if path == AUTH_PATH {
            (
                "POST",
                self.only(method, "POST").and_then(|()| self.auth(request)),
            )
        } else if path == ATTEST_PATH {
            (
                "POST",
                self.only(method, "POST")
                    .and_then(|()| self.attest(request)),
            )
        } else if path == METRICS_PATH {
            (
                "GET",
                self.only(method, "GET")
                    .and_then(|()| self.metrics(request)),
            )
        } else if let Some(key_id) = path.strip_prefix(HOUSEHOLD_KEY_PATH) {
            let release = self
                .only(method, "GET")
                .and_then(|()| self.release(request, KeyKind::Household, key_id));
            ("GET", release)
        } else if let Some(key_id) = path.strip_prefix(DATASET_KEY_RESOURCE_PATH) {
            let release = self
                .only(method, "GET")
                .and_then(|()| self.release(request, KeyKind::Dataset, key_id));
            ("GET", release)
        } else if path == DATASET_KEY_PATH {
            let create = self
                .only(method, "POST")
                .and_then(|()| self.create_dataset_key(request));
            ("POST", create)
        } else if let Some(key_id) = dataset_key {
            let delete = self
                .only(method, "DELETE")
                .and_then(|()| self.delete_dataset_key(request, key_id));
            ("DELETE", delete)
        } else {
            ("", Err(Failure::new(ErrorCode::NotFound, "not found")))
        };
        match result {
            Ok(response) => response,
            Err(failure) if failure.code == ErrorCode::MethodNotAllowed => {
                let mut response = failure.response();
                response.headers.push(("allow".into(), allowed.into()));
                response
            }
            Err(failure) => failure.response(),
        }
    }

    fn only(&self, method: &str, allowed: &str) -> Result<(), Failure> {
        if method == allowed {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} not allowed"),
            ))
        }
    }

    fn policy(&self) -> Result<Policy, Failure> {
        let text = self.variables.get(ATTESTATION_POLICY).unwrap_or_default();
        if text.trim().is_empty() {
            return Ok(Policy::default_strict());
        }
        Policy::from_toml(&text).map_err(|e| {
            eprintln!("wattlet-key-broker: attestation_policy does not parse: {e}");
            Failure::new(ErrorCode::Internal, "the attestation policy is invalid")
        })
    }

    /// `POST /kbs/v0/auth`: a new session with a fresh nonce.
    fn auth(&self, request: &Request) -> Result<Response, Failure> {
        let body: AuthRequest = serde_json::from_slice(&request.body)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, format!("auth request: {e}")))?;
        if let Err(e) = self.store.purge(self.now) {
            eprintln!("wattlet-key-broker: purge of expired sessions failed: {e}");
        }
        let session = Session::open(body.tee, self.now, random()?, random::<NONCE_LEN>()?);
        self.store.put_session(&session)?;
        Ok(Response::json(200, &session.response()))
    }

    /// `POST /kbs/v0/attest`: consumes the session, verifies the evidence, checks it against the
    /// policy, and grants a token for the public key.
    fn attest(&self, request: &Request) -> Result<Response, Failure> {
        // A broken policy refuses everything without using up the client's session.
        let policy = self.policy()?;
        let body: AttestRequest = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(e) => {
                self.attestation("unknown", Err("malformed"), "", &e.to_string());
                return Err(Failure::new(
                    ErrorCode::BadRequest,
                    format!("attest request: {e}"),
                ));
            }
        };
        let tee = body.evidence.tee;
        let refuse = |refused: Refused| {
            self.attestation(tee.name(), Err(refused.reason.label()), "", &refused.detail);
            Failure::refused(&refused)
        };
        let Some(session) = self.store.take_session(&body.session)? else {
            let message = "the session is unknown or was used already";
            self.attestation(tee.name(), Err("nonce_unknown_or_used"), "", message);
            return Err(Failure::new(ErrorCode::NonceUnknownOrUsed, message));
        };
        let age = match session.admit(tee, self.now) {
            Ok(age) => age,
            Err(e @ SessionError::Expired(_)) => {
                self.attestation(tee.name(), Err("nonce_unknown_or_used"), "", &e.to_string());
                return Err(Failure::new(ErrorCode::NonceUnknownOrUsed, e.to_string()));
            }
            Err(e @ SessionError::OtherTee { .. }) => {
                return Err(refuse(Refused::new(Reason::Malformed, e.to_string())));
            }
        };
        let public_key = protocol::decode_public_key(&body.public_key)
            .map_err(|e| refuse(Refused::new(Reason::Malformed, e)))?;
        let verified = verify(&body.evidence, self.now).map_err(refuse)?;
        let expected = report_data(&session.nonce, &public_key);
        policy.check(&verified, &expected, age).map_err(refuse)?;
        let token = protocol::token_text(&random::<TOKEN_LEN>()?);
        let grant = Grant {
            public_key,
            tee: verified.tee,
            measurement: verified.measurement.clone(),
            simulated: verified.simulated,
            expires_at: self.now + TOKEN_LIFETIME_SECONDS,
        };
        self.store
            .put_grant(&protocol::token_hash(&token), &grant)?;
        self.attestation(
            verified.tee.name(),
            Ok(()),
            &verified.measurement,
            if verified.simulated {
                "SIMULATED evidence accepted: the policy allows it; it proves nothing"
            } else {
                "accepted"
            },
        );
        Ok(Response::json(
            200,
            &AttestResponse {
                token,
                expires_at: grant.expires_at,
                tee: verified.tee,
                measurement: verified.measurement,
                simulated: verified.simulated,
            },
        ))
    }

    /// Logs and counts an attestation decision.
    fn attestation(&self, tee: &str, outcome: Result<(), &str>, measurement: &str, detail: &str) {
        let (outcome, reason) = match outcome {
            Ok(()) => ("accepted", "none"),
            Err(reason) => ("refused", reason),
        };
        eprintln!(
            "wattlet-key-broker: attestation outcome={outcome} tee={tee} reason={reason} \
             measurement={} detail={detail:?}",
            if measurement.is_empty() {
                "-"
            } else {
                measurement
            }
        );
        let labels = format!("tee=\"{tee}\",outcome=\"{outcome}\",reason=\"{reason}\"");
        if let Err(e) = self.store.count(ATTESTATIONS, &labels) {
            eprintln!("wattlet-key-broker: counting failed: {e}");
        }
    }

    /// Logs and counts a key release decision.
    fn key_release(&self, outcome: &str, key_id: &str, grant: Option<&Grant>) {
        let (tee, measurement) = grant.map_or(("-", "-"), |g| (g.tee.name(), &g.measurement));
        eprintln!(
            "wattlet-key-broker: key release outcome={outcome} tee={tee} key_id={key_id} \
             measurement={measurement}"
        );
        if let Err(e) = self
            .store
            .count(KEY_RELEASES, &format!("outcome=\"{outcome}\""))
        {
            eprintln!("wattlet-key-broker: counting failed: {e}");
        }
    }

    /// `GET /kbs/v0/resource/household-key/{key_id}` and
    /// `GET /kbs/v0/resource/dataset-key/{key_id}`.
    fn release(&self, request: &Request, kind: KeyKind, key_id: &str) -> Result<Response, Failure> {
        let key_id_shown: String = key_id.chars().take(64).collect();
        let grant = match protocol::bearer(request.header("authorization")) {
            Some(token) => self.store.grant(&protocol::token_hash(token))?,
            None => None,
        };
        let Some(grant) = grant.filter(|g| g.valid_at(self.now)) else {
            self.key_release("token_invalid", &key_id_shown, None);
            return Err(Failure::new(
                ErrorCode::TokenInvalid,
                "the token is unknown or expired: attest again",
            ));
        };
        let not_found = || {
            self.key_release("not_found", &key_id_shown, Some(&grant));
            Failure::new(ErrorCode::KeyNotFound, format!("no such {}", kind.what()))
        };
        let Ok(id) = KeyId::parse(key_id) else {
            return Err(not_found());
        };
        let wrapped = match kind {
            KeyKind::Household => self.store.wrapped_key(id.as_str())?,
            KeyKind::Dataset => self.store.wrapped_dataset_key(id.as_str())?,
        };
        let Some(wrapped) = wrapped else {
            return Err(not_found());
        };
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            eprintln!("wattlet-key-broker: {what}: {e}");
            Failure::new(ErrorCode::Internal, what.to_owned())
        };
        let key = self
            .kek()?
            .unwrap(&id, &wrapped)
            .map_err(|e| internal("the key does not unwrap", &e))?;
        let released = release_to(&grant.public_key, &id, &key)
            .map_err(|e| internal("the key release failed", &e))?;
        self.key_release("released", id.as_str(), Some(&grant));
        Ok(Response::json(200, &released))
    }

    /// Refuses a request without the administrators' bearer token.
    fn administrator(&self, request: &Request, what: &str) -> Result<(), Failure> {
        let admin = self.variables.get(ADMIN_TOKEN).unwrap_or_default();
        let given = protocol::bearer(request.header("authorization")).unwrap_or_default();
        if admin.len() < 16 || !same(admin.as_bytes(), given.as_bytes()) {
            return Err(Failure::new(
                ErrorCode::Unauthorized,
                format!("{what} need the administrators' bearer token"),
            ));
        }
        Ok(())
    }

    /// The key-encryption key (Spin variable).
    fn kek(&self) -> Result<Kek, Failure> {
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            eprintln!("wattlet-key-broker: {what}: {e}");
            Failure::new(ErrorCode::Internal, what.to_owned())
        };
        let secret = self
            .variables
            .get(KEY_ENCRYPTION_KEY)
            .map_err(|e| internal("key_encryption_key is not set", &e))?;
        Kek::from_secret(&secret).map_err(|e| internal("key_encryption_key is unusable", &e))
    }

    /// `POST /kbs/v0/dataset-key` (administrators): a new dataset key, answered once.
    fn create_dataset_key(&self, request: &Request) -> Result<Response, Failure> {
        self.administrator(request, "dataset keys")?;
        let body: DatasetKeyRequest = serde_json::from_slice(&request.body).map_err(|e| {
            Failure::new(ErrorCode::BadRequest, format!("dataset key request: {e}"))
        })?;
        let name = body.name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                "name: 1 to 200 printable characters",
            ));
        }
        let failed = |e: wattlet_sealing::SealError| {
            eprintln!("wattlet-key-broker: cannot make a dataset key: {e}");
            Failure::new(ErrorCode::Internal, "cannot make a key")
        };
        let id = KeyId::generate().map_err(failed)?;
        let key = wattlet_sealing::DataKey::generate().map_err(failed)?;
        let wrapped = self.kek()?.wrap(&id, &key).map_err(failed)?;
        self.store
            .put_dataset_key(id.as_str(), name, &wrapped, self.now)?;
        eprintln!(
            "wattlet-key-broker: dataset key created key_id={} name={name:?}",
            id.as_str()
        );
        Ok(Response::json(
            201,
            &DatasetKey {
                key_id: id.to_string(),
                name: name.to_owned(),
                key: protocol::b64(key.as_bytes()),
                created_at: self.now,
            },
        ))
    }

    /// `DELETE /kbs/v0/dataset-key/{key_id}` (administrators): destroys the key.
    fn delete_dataset_key(&self, request: &Request, key_id: &str) -> Result<Response, Failure> {
        self.administrator(request, "dataset keys")?;
        if !self.store.delete_dataset_key(key_id)? {
            return Err(Failure::new(ErrorCode::KeyNotFound, "no such dataset key"));
        }
        let key_id_shown: String = key_id.chars().take(64).collect();
        eprintln!("wattlet-key-broker: dataset key destroyed key_id={key_id_shown}");
        Ok(Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        })
    }

    /// `GET /kbs/v0/metrics` (administrators): OpenMetrics text.
    fn metrics(&self, request: &Request) -> Result<Response, Failure> {
        self.administrator(request, "the metrics")?;
        let counters = self.store.counters()?;
        let live = self.store.live_grants(self.now)?;
        let mut text = String::new();
        for (metric, help) in [
            (ATTESTATIONS, "Attestation decisions of the key broker."),
            (
                KEY_RELEASES,
                "Household key release decisions of the key broker.",
            ),
        ] {
            let family = metric.trim_end_matches("_total");
            text.push_str(&format!(
                "# TYPE {family} counter\n# HELP {family} {help}\n"
            ));
            for (_, labels, value) in counters.iter().filter(|(m, _, _)| m == metric) {
                text.push_str(&format!("{metric}{{{labels}}} {value}\n"));
            }
        }
        text.push_str(&format!(
            "# TYPE {SESSIONS} gauge\n# HELP {SESSIONS} Tokens (attested sessions) still valid.\n\
             {SESSIONS} {live}\n# EOF\n"
        ));
        Ok(Response {
            status: 200,
            headers: vec![(
                "content-type".into(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
            )],
            body: text.into_bytes(),
        })
    }
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};
    use wattlet_attestation::RuntimeClaims;
    use wattlet_attestation::attester::Attester;
    use wattlet_sealing::release::{Recipient, Released};
    use wattlet_sealing::{DataKey, Kek, KeyId};

    use super::*;
    use crate::protocol::AuthResponse;
    use crate::store::SqlStore;
    use crate::store::sqlite::Sqlite;

    const KEK: &str = "kek-for-the-broker-tests-0123456789abcdef";
    const ADMIN: &str = "admin-token-for-the-broker-tests";
    const SIMULATED_POLICY: &str = "allowed_tees = [\"simulated\"]\nallow_any_measurement = true\n";

    struct Vars(BTreeMap<&'static str, String>);

    impl Variables for Vars {
        fn get(&self, name: &str) -> Result<String, String> {
            self.0
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no variable {name}"))
        }
    }

    fn vars(policy: &str) -> Vars {
        Vars(BTreeMap::from([
            (ADMIN_TOKEN, ADMIN.to_owned()),
            (KEY_ENCRYPTION_KEY, KEK.to_owned()),
            (ATTESTATION_POLICY, policy.to_owned()),
        ]))
    }

    struct World {
        db: Sqlite,
        vars: Vars,
        now: u64,
    }

    impl World {
        fn new(policy: &str) -> World {
            World {
                db: Sqlite::memory(),
                vars: vars(policy),
                now: 1_800_000_000,
            }
        }

        fn call(&self, request: Request) -> (u16, Value) {
            let store = SqlStore::open(&self.db).unwrap();
            let response = Broker {
                store: &store,
                variables: &self.vars,
                now: self.now,
            }
            .handle(&request);
            let body = serde_json::from_slice(&response.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into()));
            (response.status, body)
        }

        fn post(&self, path: &str, body: &Value) -> (u16, Value) {
            self.call(Request::new("POST", path).with_body(body.to_string()))
        }

        fn auth(&self, tee: &str) -> AuthResponse {
            let (status, body) = self.post(AUTH_PATH, &json!({ "tee": tee }));
            assert_eq!(status, 200, "{body}");
            serde_json::from_value(body).unwrap()
        }

        /// Simulated evidence for `session` bound to `bound_key`, presented with `public_key`.
        fn attest_with(
            &self,
            session: &AuthResponse,
            bound_key: &[u8],
            public_key: &[u8],
        ) -> (u16, Value) {
            let nonce = protocol::decode_nonce(&session.nonce).unwrap();
            let evidence = Attester::simulated()
                .evidence(report_data(&nonce, bound_key), claims())
                .unwrap();
            self.post(
                ATTEST_PATH,
                &json!({
                    "session": session.session,
                    "evidence": evidence,
                    "public_key": protocol::b64(public_key),
                }),
            )
        }

        fn attest(&self, host: &Recipient) -> String {
            let session = self.auth("simulated");
            let (status, body) = self.attest_with(&session, &host.public_key(), &host.public_key());
            assert_eq!(status, 200, "{body}");
            body["token"].as_str().unwrap().to_owned()
        }

        fn release(&self, token: &str, key_id: &str) -> (u16, Value) {
            self.call(
                Request::new("GET", &protocol::household_key_path(key_id))
                    .with_header("Authorization", &format!("Bearer {token}")),
            )
        }

        /// A household key as the Data API stores it.
        fn household_key(&self) -> (KeyId, DataKey) {
            self.db
                .0
                .execute(
                    "CREATE TABLE IF NOT EXISTS household_key (household TEXT PRIMARY KEY, \
                     key_id TEXT NOT NULL UNIQUE, wrapped TEXT NOT NULL, created_at TEXT NOT NULL)",
                    [],
                )
                .unwrap();
            let id = KeyId::generate().unwrap();
            let key = DataKey::generate().unwrap();
            let wrapped = Kek::from_secret(KEK).unwrap().wrap(&id, &key).unwrap();
            self.db
                .0
                .execute(
                    "INSERT INTO household_key VALUES (?1, ?2, ?3, '2026-01-01T00:00:00Z')",
                    [id.as_str(), id.as_str(), &wrapped],
                )
                .unwrap();
            (id, key)
        }

        fn metrics(&self) -> String {
            let (status, body) = self.call(
                Request::new("GET", METRICS_PATH)
                    .with_header("authorization", &format!("Bearer {ADMIN}")),
            );
            assert_eq!(status, 200, "{body}");
            body.as_str().unwrap().to_owned()
        }
    }

    fn claims() -> RuntimeClaims {
        RuntimeClaims {
            host_sha256: "aa".repeat(32),
            components: [("nialm".to_owned(), "bb".repeat(32))].into(),
        }
    }

    #[test]
    fn simulated_evidence_under_a_policy_that_allows_it_releases_keys_to_the_host_only() {
        let world = World::new(SIMULATED_POLICY);
        let host = Recipient::generate();
        let session = world.auth("simulated");
        let (status, body) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["tee"], "simulated");
        assert_eq!(body["simulated"], true);
        assert_eq!(
            body["measurement"],
            wattlet_attestation::wattlet_measurement(&claims())
        );
        assert_eq!(body["expires_at"], world.now + TOKEN_LIFETIME_SECONDS);
        let token = body["token"].as_str().unwrap();

        let (id, key) = world.household_key();
        let (status, body) = world.release(token, id.as_str());
        assert_eq!(status, 200, "{body}");
        let released: Released = serde_json::from_value(body).unwrap();
        assert_eq!(host.open(&id, &released).unwrap(), key);
        assert!(Recipient::generate().open(&id, &released).is_err());

        let metrics = world.metrics();
        assert!(metrics.contains(
            "wattlet_kbs_attestations_total{tee=\"simulated\",outcome=\"accepted\",reason=\"none\"} 1"
        ), "{metrics}");
        assert!(metrics.contains("wattlet_kbs_key_releases_total{outcome=\"released\"} 1"));
        assert!(metrics.contains("\nwattlet_kbs_sessions 1\n"), "{metrics}");
        assert!(metrics.ends_with("# EOF\n"));
    }

    #[test]
    fn dataset_keys_are_made_by_administrators_released_to_attested_hosts_and_destroyed() {
        let world = World::new(SIMULATED_POLICY);
        let admin = |request: Request| {
            world.call(request.with_header("authorization", &format!("Bearer {ADMIN}")))
        };
        let create = |name: &str| {
            Request::new("POST", DATASET_KEY_PATH).with_body(json!({ "name": name }).to_string())
        };
        // Only administrators make keys, with a sensible name.
        let (status, body) = world.call(create("debs"));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
        for bad in ["", "  ", &"x".repeat(201), "a\nb"] {
            let (status, body) = admin(create(bad));
            assert_eq!(status, 400, "{bad:?}: {body}");
        }
        let (status, body) = admin(Request::new("POST", DATASET_KEY_PATH).with_body("{}"));
        assert_eq!(status, 400, "{body}");
        let (status, body) = admin(create("DEBS 2014, run 1"));
        assert_eq!(status, 201, "{body}");
        let made: DatasetKey = serde_json::from_value(body).unwrap();
        assert_eq!(made.name, "DEBS 2014, run 1");
        assert_eq!(made.created_at, world.now);
        let id = KeyId::parse(&made.key_id).unwrap();
        let key = DataKey::from_bytes(&protocol::decode_nonce(&made.key).unwrap()).unwrap();
        let (_, other) = admin(create("another run"));
        assert_ne!(other["key_id"], made.key_id);
        assert_ne!(other["key"], made.key);

        // Released to an attested host, like a household key; not by the household path.
        let host = Recipient::generate();
        let token = world.attest(&host);
        let release = |path: String| {
            world.call(
                Request::new("GET", &path).with_header("authorization", &format!("Bearer {token}")),
            )
        };
        let (status, body) = release(protocol::dataset_key_path(id.as_str()));
        assert_eq!(status, 200, "{body}");
        let released: Released = serde_json::from_value(body).unwrap();
        assert_eq!(host.open(&id, &released).unwrap(), key);
        let (status, _) = release(protocol::household_key_path(id.as_str()));
        assert_eq!(status, 404);
        let (status, _) = world.call(Request::new(
            "GET",
            &protocol::dataset_key_path(id.as_str()),
        ));
        assert_eq!(status, 401, "no token, no key");

        // Destroyed by administrators only; then never released again.
        let delete = Request::new("DELETE", &format!("{DATASET_KEY_PATH}/{}", id.as_str()));
        let (status, _) = world.call(delete.clone());
        assert_eq!(status, 401);
        let (status, body) = admin(delete.clone());
        assert_eq!(status, 204, "{body}");
        let (status, body) = admin(delete);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("key_not_found"))
        );
        let (status, body) = release(protocol::dataset_key_path(id.as_str()));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("key_not_found"))
        );

        // Wrong methods name the right one.
        let response = Broker {
            store: &SqlStore::open(&world.db).unwrap(),
            variables: &world.vars,
            now: world.now,
        }
        .handle(&Request::new("GET", DATASET_KEY_PATH));
        assert_eq!(response.status, 405);
        assert!(response.headers.contains(&("allow".into(), "POST".into())));
    }

    #[test]
    fn the_default_policy_refuses_simulated_evidence() {
        for policy in ["", "  \n"] {
            let world = World::new(policy);
            let host = Recipient::generate();
            let session = world.auth("simulated");
            let (status, body) =
                world.attest_with(&session, &host.public_key(), &host.public_key());
            assert_eq!(status, 403, "{body}");
            assert_eq!(body["error"]["code"], "attestation_refused");
            assert_eq!(body["error"]["reason"], "simulated");
            assert!(world.metrics().contains(
                "wattlet_kbs_attestations_total{tee=\"simulated\",outcome=\"refused\",reason=\"simulated\"} 1"
            ));
        }
    }

    #[test]
    fn a_session_is_single_use_and_expires() {
        let mut world = World::new(SIMULATED_POLICY);
        let host = Recipient::generate();
        let session = world.auth("simulated");
        let (status, _) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(status, 200);
        let (status, body) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "nonce_unknown_or_used");

        // A refused attempt uses the session up too.
        let session = world.auth("simulated");
        let other = Recipient::generate();
        let (status, body) = world.attest_with(&session, &other.public_key(), &host.public_key());
        assert_eq!(
            (status, body["error"]["reason"].clone()),
            (403, json!("report_data_mismatch"))
        );
        let (status, _) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(status, 401);

        let session = world.auth("simulated");
        world.now += protocol::SESSION_LIFETIME_SECONDS;
        let (status, body) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (401, json!("nonce_unknown_or_used"))
        );

        // Older than the policy's max_evidence_age_seconds (60) but within the session's life.
        world.now += 1;
        let session = world.auth("simulated");
        world.now += 61;
        let (status, body) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(
            (status, body["error"]["reason"].clone()),
            (403, json!("evidence_too_old"))
        );

        let metrics = world.metrics();
        assert!(metrics.contains(
            "wattlet_kbs_attestations_total{tee=\"simulated\",outcome=\"refused\",reason=\"nonce_unknown_or_used\"} 3"
        ), "{metrics}");
    }

    #[test]
    fn evidence_of_another_tee_than_the_session_or_a_bad_key_is_refused() {
        let world = World::new(SIMULATED_POLICY);
        let host = Recipient::generate();
        let session = world.auth("snp");
        let (status, body) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(
            (status, body["error"]["reason"].clone()),
            (403, json!("malformed"))
        );
        let session = world.auth("simulated");
        let (status, body) = world.attest_with(&session, &[1; 31], &[1; 31]);
        assert_eq!(
            (status, body["error"]["reason"].clone()),
            (403, json!("malformed"))
        );
        let (status, body) = world.post(ATTEST_PATH, &json!({"session": "x"}));
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("bad_request"))
        );
        let (status, _) = world.post(AUTH_PATH, &json!({"tee": "sev"}));
        assert_eq!(status, 400);
    }

    #[test]
    fn tokens_must_be_known_and_fresh_and_keys_must_exist() {
        let mut world = World::new(SIMULATED_POLICY);
        let host = Recipient::generate();
        let token = world.attest(&host);
        let unknown_id = KeyId::generate().unwrap();
        let (status, body) = world.release(&token, unknown_id.as_str());
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (404, json!("key_not_found")),
            "no household_key table yet"
        );
        let (id, _) = world.household_key();
        let (status, _) = world.release(&token, unknown_id.as_str());
        assert_eq!(status, 404);
        let (status, _) = world.release(&token, "not-a-key-id");
        assert_eq!(status, 404);
        let (status, body) = world.release("forged", id.as_str());
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (401, json!("token_invalid"))
        );
        let (status, _) = world.call(Request::new(
            "GET",
            &protocol::household_key_path(id.as_str()),
        ));
        assert_eq!(status, 401);
        let (status, _) = world.release(&token, id.as_str());
        assert_eq!(status, 200);
        world.now += TOKEN_LIFETIME_SECONDS;
        let (status, body) = world.release(&token, id.as_str());
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (401, json!("token_invalid"))
        );

        let metrics = world.metrics();
        for line in [
            "wattlet_kbs_key_releases_total{outcome=\"not_found\"} 3",
            "wattlet_kbs_key_releases_total{outcome=\"token_invalid\"} 3",
            "wattlet_kbs_key_releases_total{outcome=\"released\"} 1",
            "\nwattlet_kbs_sessions 0\n",
        ] {
            assert!(metrics.contains(line), "{line} in {metrics}");
        }
    }

    #[test]
    fn metrics_need_the_admin_token_and_routes_are_strict() {
        let world = World::new("");
        let (status, body) = world.call(Request::new("GET", METRICS_PATH));
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (401, json!("unauthorized"))
        );
        let (status, _) = world.call(
            Request::new("GET", METRICS_PATH)
                .with_header("authorization", "Bearer admin-token-for-the-broker-test"),
        );
        assert_eq!(status, 401);
        let (status, _) = world.call(Request::new("GET", AUTH_PATH));
        assert_eq!(status, 405);
        let (status, _) = world.call(Request::new("GET", "/kbs/v0/other"));
        assert_eq!(status, 404);
    }

    #[test]
    fn an_invalid_policy_refuses_without_using_the_session() {
        let mut world = World::new("allowed_tees = [\"nonsense\"]");
        let host = Recipient::generate();
        let session = world.auth("simulated");
        let (status, body) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (500, json!("internal"))
        );
        world.vars = vars(SIMULATED_POLICY);
        let (status, body) = world.attest_with(&session, &host.public_key(), &host.public_key());
        assert_eq!(status, 200, "{body}");
    }
}
