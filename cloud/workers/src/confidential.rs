//! The worker as a confidential function (DESIGN.md "Confidential functions"): it gets a
//! household's data key only after the key broker has verified its attestation evidence.
//!
//! At start the worker makes an ephemeral key pair ([`Recipient`]), asks the broker for a
//! session (`POST /kbs/v0/auth`: a fresh nonce), has its TEE produce evidence whose report data
//! is `SHA-512(nonce ‖ public key)` and whose runtime claims name the host binary and the nialm
//! component, and sends it (`POST /kbs/v0/attest`). Accepted, it gets a bearer token (600 s);
//! with it, `GET /kbs/v0/resource/household-key/{key_id}` releases a key encrypted to the
//! worker's public key only (HPKE). Keys are cached per key id until the token expires; the
//! next key needed then re-attests first (and starts a fresh cache, so a key destroyed at the
//! broker does not outlive one token in the worker's memory).
//!
//! Refused evidence is an error with the broker's reason label: the worker stops before it
//! fetches any item, and the items stay in the queue for a worker that passes.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::Value;
use wattlet_api_client::ApiClient;

use crate::api::ApiOptions;
use wattlet_attestation::{Evidence, Tee};
use wattlet_key_broker::protocol::{
    ATTEST_PATH, AUTH_PATH, AttestRequest, AttestResponse, AuthRequest, AuthResponse,
    dataset_key_path, household_key_path,
};
use wattlet_sealing::release::{Recipient, Released};
use wattlet_sealing::{DataKey, KeyId};

/// Re-attest this long before the token expires, so no key request races its expiry.
const TOKEN_MARGIN: i64 = 30;

/// What produces attestation evidence: the TEE the worker runs in (or the simulated one).
pub trait Attest: Send + Sync {
    /// The TEE's name in the broker's protocol (`snp`, `tdx`, `sgx`, `simulated`).
    fn tee(&self) -> Tee;
    /// The report data binding `nonce` and `public_key` (SHA-512 of their concatenation).
    fn report_data(&self, nonce: &[u8], public_key: &[u8]) -> [u8; 64];
    /// Evidence carrying `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> anyhow::Result<Evidence>;
}

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfidentialError {
    /// The broker refused the evidence (its reason label, e.g. `measurement_not_allowed`).
    #[error("attestation refused by the key broker (reason: {reason}): {message}")]
    Refused { reason: String, message: String },
    /// The broker has no such key: destroyed when its household revoked consent, or never made
    /// (a forged item).
    #[error("the key broker has no key {0}")]
    KeyNotFound(String),
    /// The broker cannot be reached or failed: worth trying again later.
    #[error("the key broker is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

/// How a worker reaches the key broker and proves what it runs.
pub struct ConfidentialOptions {
    /// The broker (`/kbs/v0/...`), with the same TLS options as the Data API connection.
    pub broker: ApiOptions,
    pub attester: Box<dyn Attest>,
}

struct Token {
    bearer: String,
    expires_at: i64,
}

/// The worker's side of the key broker: attestation, its token and the keys it released.
pub struct Confidential {
    broker: ApiClient,
    attester: Box<dyn Attest>,
    recipient: Recipient,
    token: tokio::sync::Mutex<Option<Token>>,
    keys: std::sync::Mutex<HashMap<KeyId, DataKey>>,
    metrics: ConfidentialMetrics,
}

impl std::fmt::Debug for Confidential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confidential")
            .field("tee", &self.attester.tee().name())
            .finish_non_exhaustive()
    }
}

impl Confidential {
    /// Attests once with the broker at `broker` (an [`ApiClient`] without a bearer token);
    /// refused evidence is [`ConfidentialError::Refused`].
    pub async fn start(
        broker: ApiClient,
        attester: Box<dyn Attest>,
        metrics: ConfidentialMetrics,
    ) -> Result<Confidential, ConfidentialError> {
        let confidential = Confidential {
            broker,
            attester,
            recipient: Recipient::generate(),
            token: tokio::sync::Mutex::new(None),
            keys: std::sync::Mutex::new(HashMap::new()),
            metrics,
        };
        let token = confidential.attest().await?;
        *confidential.token.lock().await = Some(token);
        Ok(confidential)
    }

    /// [`Confidential::start`] for a worker that must not touch its input before it is
    /// attested: the error says that no `what` was fetched (and a refusal is logged).
    pub async fn start_or_refuse(
        options: ConfidentialOptions,
        metrics: ConfidentialMetrics,
        what: &str,
    ) -> anyhow::Result<Confidential> {
        let broker = crate::api::client(&options.broker)?;
        match Confidential::start(broker, options.attester, metrics).await {
            Ok(attested) => Ok(attested),
            Err(error @ ConfidentialError::Refused { .. }) => {
                tracing::error!("{error}; stopping before fetching any {what}");
                Err(anyhow::Error::new(error).context(format!(
                    "the key broker refused this worker; no {what} was fetched"
                )))
            }
            Err(error) => Err(anyhow::Error::new(error).context(format!(
                "cannot attest with the key broker; no {what} was fetched"
            ))),
        }
    }

    pub fn metrics(&self) -> &ConfidentialMetrics {
        &self.metrics
    }

    /// auth → evidence → attest.
    async fn attest(&self) -> Result<Token, ConfidentialError> {
        let tee = self.attester.tee();
        let tee_name = tee.name();
        let started = Instant::now();
        let auth: AuthResponse = self
            .post(
                AUTH_PATH,
                &serde_json::to_value(AuthRequest { tee }).map_err(unavailable)?,
            )
            .await?;
        self.metrics.observe("auth", started);
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(&auth.nonce)
            .context("the key broker's nonce is not base64")
            .map_err(ConfidentialError::Unavailable)?;
        let public_key = self.recipient.public_key();
        let report_data = self.attester.report_data(&nonce, &public_key);
        let started = Instant::now();
        let evidence = self
            .attester
            .evidence(&report_data)
            .context("the TEE gave no attestation evidence")
            .map_err(ConfidentialError::Unavailable)?;
        self.metrics.observe("evidence", started);
        let request = AttestRequest {
            session: auth.session,
            evidence,
            public_key: base64::engine::general_purpose::STANDARD.encode(&public_key),
        };
        let started = Instant::now();
        let answer = self
            .post::<AttestResponse>(
                ATTEST_PATH,
                &serde_json::to_value(request).map_err(unavailable)?,
            )
            .await;
        self.metrics.observe("attest", started);
        match answer {
            Ok(accepted) => {
                self.metrics.attestation(tee_name, "accepted", "");
                tracing::info!(
                    tee = tee_name,
                    measurement = accepted.measurement,
                    simulated = accepted.simulated,
                    "attested with the key broker"
                );
                // A fresh token: the keys of the previous one are forgotten.
                if let Ok(mut keys) = self.keys.lock() {
                    keys.clear();
                }
                Ok(Token {
                    bearer: accepted.token,
                    expires_at: i64::try_from(accepted.expires_at).unwrap_or(i64::MAX),
                })
            }
            Err(ConfidentialError::Refused { reason, message }) => {
                self.metrics.attestation(tee_name, "refused", &reason);
                Err(ConfidentialError::Refused { reason, message })
            }
            Err(other) => Err(other),
        }
    }

    /// The current token, after re-attesting if it expires (within a margin).
    async fn bearer(&self, renew: bool) -> Result<String, ConfidentialError> {
        let mut token = self.token.lock().await;
        let fresh = token
            .as_ref()
            .is_some_and(|t| t.expires_at - TOKEN_MARGIN > unix_now());
        if renew || !fresh {
            *token = Some(self.attest().await?);
        }
        token
            .as_ref()
            .map(|t| t.bearer.clone())
            .ok_or_else(|| ConfidentialError::Unavailable(anyhow::anyhow!("no token")))
    }

    /// The household key `id`: from the cache, or released by the broker to this worker.
    pub async fn key(&self, id: &KeyId) -> Result<DataKey, ConfidentialError> {
        self.released(id, household_key_path(id.as_str())).await
    }

    /// The dataset key `id` (a data set of no household, e.g. a DEBS stream run), likewise.
    pub async fn dataset_key(&self, id: &KeyId) -> Result<DataKey, ConfidentialError> {
        self.released(id, dataset_key_path(id.as_str())).await
    }

    /// Key `id` from the cache, or released at `path` by the broker to this worker.
    async fn released(&self, id: &KeyId, path: String) -> Result<DataKey, ConfidentialError> {
        let fresh = self
            .token
            .lock()
            .await
            .as_ref()
            .is_some_and(|t| t.expires_at - TOKEN_MARGIN > unix_now());
        if fresh && let Some(key) = self.keys.lock().ok().and_then(|k| k.get(id).cloned()) {
            self.metrics.cache("hit");
            return Ok(key);
        }
        self.metrics.cache("miss");
        let started = Instant::now();
        let mut renew = false;
        let released: Released = loop {
            let bearer = self.bearer(renew).await?;
            let authorization = format!("Bearer {bearer}");
            let (status, body) = self
                .broker
                .send("GET", &path, None, &[("authorization", &authorization)])
                .await
                .map_err(|e| ConfidentialError::Unavailable(e.into()))?;
            match status {
                200 => {
                    break serde_json::from_value(body)
                        .context("unreadable key release")
                        .map_err(ConfidentialError::Unavailable)?;
                }
                401 if !renew => renew = true,
                404 => return Err(ConfidentialError::KeyNotFound(id.to_string())),
                _ => {
                    return Err(ConfidentialError::Unavailable(anyhow::anyhow!(
                        "GET {path}: HTTP {status} {body}"
                    )));
                }
            }
        };
        let key = self
            .recipient
            .open(id, &released)
            .context("the released key does not open with this worker's key")
            .map_err(ConfidentialError::Unavailable)?;
        self.metrics
            .key_release_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(id.clone(), key.clone());
        }
        Ok(key)
    }

    /// A POST to the broker; a 403 is [`ConfidentialError::Refused`] with its reason.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ConfidentialError> {
        let (status, answer) = self
            .broker
            .send("POST", path, Some(body), &[])
            .await
            .map_err(|e| ConfidentialError::Unavailable(e.into()))?;
        match status {
            200..=299 => serde_json::from_value(answer)
                .with_context(|| format!("unreadable answer of POST {path}"))
                .map_err(ConfidentialError::Unavailable),
            400..=499 => {
                let error = &answer["error"];
                let code = error["code"].as_str().unwrap_or("refused");
                let reason = error["reason"].as_str().unwrap_or(code).to_owned();
                let message = error["message"].as_str().unwrap_or_default().to_owned();
                Err(ConfidentialError::Refused {
                    reason,
                    message: format!("POST {path}: HTTP {status} {code}: {message}"),
                })
            }
            _ => Err(ConfidentialError::Unavailable(anyhow::anyhow!(
                "POST {path}: HTTP {status} {answer}"
            ))),
        }
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> ConfidentialError {
    ConfidentialError::Unavailable(e.into())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestationLabels {
    tee: String,
    outcome: &'static str,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `auth`, `evidence`, `attest`, `open_item`, `seal_result`.
    operation: &'static str,
}

type HistogramFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 10 µs … ~40 s.
    Histogram::new(exponential_buckets(0.00001, 2.0, 22))
}

/// The confidential-function metrics of a worker (`wattlet_worker_…`): key cache hits and
/// misses, attestation outcomes, key release latency, latency per confidential operation.
#[derive(Clone)]
pub struct ConfidentialMetrics {
    key_cache: Family<CacheLabels, Counter>,
    attestations: Family<AttestationLabels, Counter>,
    key_release_seconds: Histogram,
    operation_seconds: HistogramFamily,
}

impl Default for ConfidentialMetrics {
    fn default() -> Self {
        ConfidentialMetrics {
            key_cache: Family::default(),
            attestations: Family::default(),
            key_release_seconds: latency_histogram(),
            operation_seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl ConfidentialMetrics {
    /// Registers the metrics in `registry` (prefix `wattlet_worker`).
    pub fn register(&self, registry: &mut Registry) {
        self.init();
        registry.register(
            "key_cache",
            "Household keys looked up in the worker's cache, by outcome (hit, miss)",
            self.key_cache.clone(),
        );
        registry.register(
            "attestations",
            "Attestations with the key broker, by TEE, outcome (accepted, refused) and reason",
            self.attestations.clone(),
        );
        registry.register(
            "key_release_seconds",
            "Time from a key cache miss to the released key (including a re-attestation)",
            self.key_release_seconds.clone(),
        );
        registry.register(
            "confidential_operation_seconds",
            "Latency of the confidential steps (auth, evidence, attest, open_item, seal_result)",
            self.operation_seconds.clone(),
        );
    }

    /// Both outcomes from 0, so the family is scraped before the first lookup.
    fn init(&self) {
        for outcome in ["hit", "miss"] {
            let _ = self.key_cache.get_or_create(&CacheLabels { outcome });
        }
    }

    fn cache(&self, outcome: &'static str) {
        self.key_cache.get_or_create(&CacheLabels { outcome }).inc();
    }

    fn attestation(&self, tee: &str, outcome: &'static str, reason: &str) {
        self.attestations
            .get_or_create(&AttestationLabels {
                tee: tee.to_owned(),
                outcome,
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records the time since `started` for `operation`.
    pub fn observe(&self, operation: &'static str, started: Instant) {
        self.observe_duration(operation, started.elapsed());
    }

    pub fn observe_duration(&self, operation: &'static str, took: Duration) {
        self.operation_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }
}
