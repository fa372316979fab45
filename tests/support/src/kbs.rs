//! The key broker as a confidential host meets it: sessions, simulated evidence, tokens and key
//! releases over a kept-alive connection; household keys put into the application's database
//! as the Data API stores them (wrapped by [`crate::KEY_ENCRYPTION_KEY`]).

use std::path::Path;

use hyper::Method;
use serde_json::{Value, json};
use wattlet_attestation::RuntimeClaims;
use wattlet_attestation::attester::Attester;
use wattlet_key_broker::protocol::{self, ATTEST_PATH, AUTH_PATH, AuthResponse};
use wattlet_sealing::release::Recipient;
use wattlet_sealing::{DataKey, Kek, KeyId};

use crate::http::{Connection, Reply};

/// The attestation policy that accepts simulated evidence of any measurement (tests only: it
/// proves nothing).
pub const SIMULATED_POLICY: &str = "allowed_tees = [\"simulated\"]\nallow_any_measurement = true\n";

/// The claims of a host in the tests.
pub fn claims() -> RuntimeClaims {
    RuntimeClaims {
        host_sha256: "aa".repeat(32),
        components: [("nialm".to_owned(), "bb".repeat(32))].into(),
    }
}

/// A new household key in `database` (the application's default database), stored as the Data
/// API stores it: table `household_key`, wrapped with the key-encryption key of `kek_secret`.
pub fn household_key(database: &Path, kek_secret: &str) -> (KeyId, DataKey) {
    let db = rusqlite::Connection::open(database).expect("open the application's database");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    db.execute(
        "CREATE TABLE IF NOT EXISTS household_key (household TEXT PRIMARY KEY, \
         key_id TEXT NOT NULL UNIQUE, wrapped TEXT NOT NULL, created_at TEXT NOT NULL)",
        [],
    )
    .expect("household_key table");
    let id = KeyId::generate().expect("key id");
    let key = DataKey::generate().expect("data key");
    let wrapped = Kek::from_secret(kek_secret)
        .expect("key-encryption key")
        .wrap(&id, &key)
        .expect("wrap");
    db.execute(
        "INSERT INTO household_key (household, key_id, wrapped, created_at) \
         VALUES (?1, ?2, ?3, '2026-01-01T00:00:00Z')",
        rusqlite::params![crate::uuid4(), id.as_str(), wrapped],
    )
    .expect("insert the household key");
    (id, key)
}

async fn post(connection: &mut Connection, path: &str, body: &Value) -> Reply {
    connection
        .send(
            Method::POST,
            path,
            body.to_string().as_bytes(),
            &[("content-type", "application/json")],
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e:#}"))
}

/// `POST /kbs/v0/auth` for `tee`.
pub async fn auth(connection: &mut Connection, tee: &str) -> AuthResponse {
    let reply = post(connection, AUTH_PATH, &json!({ "tee": tee })).await;
    assert_eq!(reply.status, 200, "auth: {}", reply.text);
    serde_json::from_value(reply.body).expect("auth response")
}

/// `POST /kbs/v0/attest` with simulated evidence for `session` whose report data binds
/// `bound_key`, presenting `public_key`.
pub async fn attest_with(
    connection: &mut Connection,
    session: &AuthResponse,
    bound_key: &[u8],
    public_key: &[u8],
) -> Reply {
    let nonce = protocol::decode_nonce(&session.nonce).expect("nonce");
    let evidence = Attester::simulated()
        .evidence(
            wattlet_attestation::report_data(&nonce, bound_key),
            claims(),
        )
        .expect("simulated evidence");
    post(
        connection,
        ATTEST_PATH,
        &json!({
            "session": session.session,
            "evidence": evidence,
            "public_key": protocol::b64(public_key),
        }),
    )
    .await
}

/// A whole attestation of `host` with simulated evidence; the token.
pub async fn attest(connection: &mut Connection, host: &Recipient) -> String {
    let session = auth(connection, "simulated").await;
    let reply = attest_with(connection, &session, &host.public_key(), &host.public_key()).await;
    assert_eq!(reply.status, 200, "attest: {}", reply.text);
    reply.body["token"].as_str().expect("token").to_owned()
}

/// `GET /kbs/v0/resource/household-key/{key_id}` with `token`.
pub async fn release(connection: &mut Connection, token: &str, key_id: &str) -> Reply {
    let path = protocol::household_key_path(key_id);
    let bearer = format!("Bearer {token}");
    connection
        .get(&path, &[("authorization", bearer.as_str())])
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
}
