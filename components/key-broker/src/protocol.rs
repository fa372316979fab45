//! The key broker's protocol (like Confidential Containers' KBS), defined once for the broker
//! and its clients (the worker host): request and response bodies (JSON), the paths, the error
//! codes, and the life of a session and of a token. Pure: no Spin, no storage, no clock of its
//! own (every time is a `now` in seconds since 1970 passed in).
//!
//! 1. `POST /kbs/v0/auth` [`AuthRequest`] → 200 [`AuthResponse`]: a single-use session with a
//!    fresh nonce.
//! 2. `POST /kbs/v0/attest` [`AttestRequest`] (evidence whose report data is
//!    `report_data(nonce, public_key)`) → 200 [`AttestResponse`]: a bearer token for
//!    [`TOKEN_LIFETIME_SECONDS`]. The session is consumed first, whatever the verdict.
//! 3. `GET /kbs/v0/resource/household-key/{key_id}` with `Authorization: Bearer <token>` → 200
//!    [`Released`]: the household's data key encrypted to the attested public key.
//! 4. `GET /kbs/v0/metrics` with the administrators' bearer token → OpenMetrics text.
//!
//! Dataset keys (a data set that belongs to no household, e.g. a DEBS stream run, sealed for
//! the confidential functions that process it): `POST /kbs/v0/dataset-key`
//! [`DatasetKeyRequest`] with the administrators' token → 201 [`DatasetKey`], the key itself,
//! shown this once (the data owner seals with it and reads the results with it); the broker
//! keeps it wrapped by the key-encryption key and releases it like a household key at
//! `GET /kbs/v0/resource/dataset-key/{key_id}`. `DELETE /kbs/v0/dataset-key/{key_id}`
//! (administrators) destroys it: every ciphertext under it is unreadable from then on.
//!
//! Errors are [`ErrorBody`]: `{"error":{"code","reason"?,"message"}}` with the code one of
//! [`ErrorCode`].

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use wattlet_attestation::{Evidence, Tee};
pub use wattlet_sealing::release::Released;

/// Where the manifest mounts the broker.
pub const PREFIX: &str = "/kbs/v0";
pub const AUTH_PATH: &str = "/kbs/v0/auth";
pub const ATTEST_PATH: &str = "/kbs/v0/attest";
pub const METRICS_PATH: &str = "/kbs/v0/metrics";
/// The prefix of a household key's path; the key id follows.
pub const HOUSEHOLD_KEY_PATH: &str = "/kbs/v0/resource/household-key/";

/// Creating (POST) and destroying (`DELETE …/{key_id}`) dataset keys.
pub const DATASET_KEY_PATH: &str = "/kbs/v0/dataset-key";
/// The prefix of a dataset key's release path; the key id follows.
pub const DATASET_KEY_RESOURCE_PATH: &str = "/kbs/v0/resource/dataset-key/";

/// How long a token is good for after a successful attestation.
pub const TOKEN_LIFETIME_SECONDS: u64 = 600;
/// How long a session (its nonce) may wait for its evidence. The policy's
/// `max_evidence_age_seconds` (age = attestation time − session creation) is usually shorter.
pub const SESSION_LIFETIME_SECONDS: u64 = 300;
/// Bytes of a nonce and of a token.
pub const NONCE_LEN: usize = 32;
pub const TOKEN_LEN: usize = 32;

/// The path of household key `key_id`.
pub fn household_key_path(key_id: &str) -> String {
    format!("{HOUSEHOLD_KEY_PATH}{key_id}")
}

/// The release path of dataset key `key_id`.
pub fn dataset_key_path(key_id: &str) -> String {
    format!("{DATASET_KEY_RESOURCE_PATH}{key_id}")
}

/// `POST /kbs/v0/dataset-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetKeyRequest {
    /// What the data set is, for the administrators (1–200 characters).
    pub name: String,
}

/// A new dataset key, as `POST /kbs/v0/dataset-key` answers it (the only time the key itself
/// leaves the broker other than to an attested host) and as its owner keeps it in a file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetKey {
    pub key_id: String,
    pub name: String,
    /// base64 of the 32-byte key.
    pub key: String,
    /// Seconds since 1970.
    pub created_at: u64,
}

impl std::fmt::Debug for DatasetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetKey")
            .field("key_id", &self.key_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `POST /kbs/v0/auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRequest {
    pub tee: Tee,
}

/// The answer to [`AuthRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    /// 32 hex digits.
    pub session: String,
    /// base64 (standard) of [`NONCE_LEN`] random bytes.
    pub nonce: String,
    pub expires_at: u64,
}

/// `POST /kbs/v0/attest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    pub session: String,
    pub evidence: Evidence,
    /// base64 (standard) of the host's 32-byte X25519 public key (`Recipient::public_key`).
    pub public_key: String,
}

/// The answer to an accepted [`AttestRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestResponse {
    /// base64url (no padding) of [`TOKEN_LEN`] random bytes: the bearer token.
    pub token: String,
    pub expires_at: u64,
    pub tee: Tee,
    pub measurement: String,
    /// True when the evidence was simulated (proves nothing; only a policy that allows
    /// `simulated` accepts it).
    pub simulated: bool,
}

/// The refusal codes of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a body or header that does not parse.
    BadRequest,
    /// 401: the session is unknown, expired or already used (a replayed nonce).
    NonceUnknownOrUsed,
    /// 403: the evidence was refused (`reason` says why: a `Reason` label).
    AttestationRefused,
    /// 401: the bearer token is unknown or expired.
    TokenInvalid,
    /// 404: no such household key (shredded on consent revocation, or never made).
    KeyNotFound,
    /// 401: the metrics need the administrators' token.
    Unauthorized,
    /// 404: no such route.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 500: the broker's configuration or storage failed.
    Internal,
}

impl ErrorCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NonceUnknownOrUsed => "nonce_unknown_or_used",
            ErrorCode::AttestationRefused => "attestation_refused",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the code is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::NonceUnknownOrUsed | ErrorCode::TokenInvalid | ErrorCode::Unauthorized => {
                401
            }
            ErrorCode::AttestationRefused => 403,
            ErrorCode::KeyNotFound | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Internal => 500,
        }
    }
}

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// With `attestation_refused`: the `Reason` label (`simulated`, `report_data_mismatch`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub message: String,
}

/// A session as the broker keeps it between `auth` and `attest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub session: String,
    /// The raw nonce.
    pub nonce: Vec<u8>,
    pub tee: Tee,
    pub created_at: u64,
    pub expires_at: u64,
}

/// Why a consumed session does not admit evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session expired at {0}")]
    Expired(u64),
    #[error("the session was opened for {opened}, the evidence is {evidence}")]
    OtherTee { opened: Tee, evidence: Tee },
}

impl Session {
    /// A new session opened at `now` for `tee`, with `session_id` and `nonce` random.
    pub fn open(tee: Tee, now: u64, session_id: [u8; 16], nonce: [u8; NONCE_LEN]) -> Session {
        Session {
            session: hex::encode(session_id),
            nonce: nonce.to_vec(),
            tee,
            created_at: now,
            expires_at: now + SESSION_LIFETIME_SECONDS,
        }
    }

    /// What the client is told.
    pub fn response(&self) -> AuthResponse {
        AuthResponse {
            session: self.session.clone(),
            nonce: STANDARD.encode(&self.nonce),
            expires_at: self.expires_at,
        }
    }

    /// Whether this (already consumed) session admits evidence of `tee` at `now`; the evidence
    /// age is then `now - created_at`.
    pub fn admit(&self, tee: Tee, now: u64) -> Result<u64, SessionError> {
        if now >= self.expires_at {
            return Err(SessionError::Expired(self.expires_at));
        }
        if tee != self.tee {
            return Err(SessionError::OtherTee {
                opened: self.tee,
                evidence: tee,
            });
        }
        Ok(now.saturating_sub(self.created_at))
    }
}

/// What the broker keeps of a successful attestation, under the SHA-256 of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub public_key: Vec<u8>,
    pub tee: Tee,
    pub measurement: String,
    pub simulated: bool,
    pub expires_at: u64,
}

impl Grant {
    /// Whether the token still admits key releases at `now`.
    pub fn valid_at(&self, now: u64) -> bool {
        now < self.expires_at
    }
}

/// A bearer token: its text (given to the client once) and the hash the broker keeps.
pub fn token_text(bytes: &[u8; TOKEN_LEN]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a token's text, hex: what the broker stores (a copy of its database holds no
/// usable token).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A 32-byte X25519 public key from its base64 text.
pub fn decode_public_key(text: &str) -> Result<Vec<u8>, String> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| format!("public_key is not base64: {e}"))?;
    if bytes.len() != 32 {
        return Err(format!(
            "public_key has {} bytes, an X25519 key has 32",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The nonce of an [`AuthResponse`] as bytes.
pub fn decode_nonce(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("nonce is not base64: {e}"))
}

/// base64 (standard) of bytes, as the protocol writes keys and nonces.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_documented_json() {
        let auth: AuthRequest = serde_json::from_str(r#"{"tee":"simulated"}"#).unwrap();
        assert_eq!(auth.tee, Tee::Simulated);
        assert!(serde_json::from_str::<AuthRequest>(r#"{"tee":"sev"}"#).is_err());
        assert!(serde_json::from_str::<AuthRequest>(r#"{"tee":"snp","x":1}"#).is_err());

        let session = Session::open(Tee::Snp, 1000, [0xab; 16], [7; NONCE_LEN]);
        let json = serde_json::to_value(session.response()).unwrap();
        assert_eq!(json["session"], "ab".repeat(16));
        assert_eq!(
            decode_nonce(json["nonce"].as_str().unwrap()).unwrap(),
            [7; 32]
        );
        assert_eq!(json["expires_at"], 1000 + SESSION_LIFETIME_SECONDS);

        let error = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::AttestationRefused,
                reason: Some("simulated".into()),
                message: "no".into(),
            },
        };
        let json = serde_json::to_value(&error).unwrap();
        assert_eq!(json["error"]["code"], "attestation_refused");
        assert_eq!(json["error"]["reason"], "simulated");
        let plain = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::TokenInvalid,
                reason: None,
                message: "no".into(),
            },
        };
        assert!(
            serde_json::to_value(&plain).unwrap()["error"]
                .get("reason")
                .is_none()
        );
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::NonceUnknownOrUsed,
            ErrorCode::AttestationRefused,
            ErrorCode::TokenInvalid,
            ErrorCode::KeyNotFound,
            ErrorCode::Unauthorized,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        assert_eq!(ErrorCode::NonceUnknownOrUsed.status(), 401);
        assert_eq!(ErrorCode::AttestationRefused.status(), 403);
        assert_eq!(ErrorCode::KeyNotFound.status(), 404);
    }

    #[test]
    fn a_session_admits_evidence_of_its_tee_until_it_expires() {
        let session = Session::open(Tee::Tdx, 100, [1; 16], [2; NONCE_LEN]);
        assert_eq!(session.admit(Tee::Tdx, 100), Ok(0));
        assert_eq!(session.admit(Tee::Tdx, 142), Ok(42));
        assert_eq!(
            session.admit(Tee::Tdx, 100 + SESSION_LIFETIME_SECONDS),
            Err(SessionError::Expired(100 + SESSION_LIFETIME_SECONDS))
        );
        assert!(matches!(
            session.admit(Tee::Simulated, 101),
            Err(SessionError::OtherTee { .. })
        ));
    }

    #[test]
    fn a_grant_lapses_and_tokens_are_kept_hashed() {
        let grant = Grant {
            public_key: vec![1; 32],
            tee: Tee::Snp,
            measurement: "aa".into(),
            simulated: false,
            expires_at: 700,
        };
        assert!(grant.valid_at(699));
        assert!(!grant.valid_at(700));
        let token = token_text(&[0xff; TOKEN_LEN]);
        assert!(!token.contains(['+', '/', '=']), "base64url: {token}");
        assert_eq!(token.len(), 43);
        assert_eq!(token_hash(&token).len(), 64);
        assert_ne!(token_hash(&token), token_hash("other"));
    }

    #[test]
    fn bearer_tokens_and_public_keys_parse_strictly() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
        assert_eq!(decode_public_key(&b64(&[3; 32])).unwrap(), vec![3; 32]);
        assert!(decode_public_key(&b64(&[3; 31])).is_err());
        assert!(decode_public_key("not base64!").is_err());
        assert_eq!(
            household_key_path("00ff"),
            "/kbs/v0/resource/household-key/00ff"
        );
    }
}
