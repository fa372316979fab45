//! Household data keys (DESIGN.md "Confidential functions"; the primitives are
//! `wattlet_sealing`'s).
//!
//! Every household whose data is processed has one random 256-bit data key, named by a random
//! key id, in table `household_key`. At rest the key is stored only wrapped
//! (`Kek::wrap(key_id, key)`) by the key-encryption key derived from the Spin variable
//! `key_encryption_key`, so the database file and its backups alone reveal no key.
//!
//! - A key is made lazily, when the work manager first reads the household's power readings,
//!   and atomically: one `INSERT … SELECT … WHERE <consent permits personal processing> ON
//!   CONFLICT DO NOTHING`, then a `SELECT` (two concurrent requests end with the same key, and
//!   no key is ever made for a household whose consent does not permit processing).
//! - Revoking consent deletes the row in the very statement that revokes it (trigger
//!   `consent_revoked_shred_key`, next to the one that requests the anonymization), with
//!   `secure_delete` on, and the anonymization truncates the WAL: crypto-shredding, every
//!   sealed item and result of the household wherever it was copied (the queue, its disks)
//!   can no longer be opened.

use base64::Engine as _;
use serde_json::{Value, json};
use wattlet_sealing::{DataKey, Kek, KeyId};
use wattlet_survey::Use;

use crate::auth::{self, Secret};
use crate::db::{col_required, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::consent;
use crate::services::Env;
use crate::timestamp;

/// The Spin variable the key-encryption key is derived from.
pub const KEK_VARIABLE: &str = "key_encryption_key";
/// The Spin variable that allows plaintext results (`"allowed"`).
pub const PLAINTEXT_VARIABLE: &str = "plaintext_results";

/// A household's data key and its id.
pub struct HouseholdKey {
    pub id: KeyId,
    pub key: DataKey,
}

impl HouseholdKey {
    /// `{"id": "<32 hex>", "key": "<base64 of 32 bytes>"}`, as the work manager receives it.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id.as_str(),
            "key": base64::engine::general_purpose::STANDARD.encode(self.key.as_bytes()),
        })
    }
}

fn kek(env: &Env) -> ApiResult<Kek> {
    let secret = auth::secret(env.secrets, Secret::KeyEncryptionKey)?;
    Kek::from_secret(&secret).map_err(|e| ApiError::Internal(format!("{KEK_VARIABLE}: {e}")))
}

fn unwrap(kek: &Kek, id: &str, wrapped: &str) -> ApiResult<(KeyId, DataKey)> {
    let id = KeyId::parse(id).map_err(|e| ApiError::Database(format!("household_key: {e}")))?;
    let key = kek.unwrap(&id, wrapped).map_err(|e| {
        ApiError::Internal(format!(
            "household key {id} does not unwrap ({e}): was the {KEK_VARIABLE} variable changed?"
        ))
    })?;
    Ok((id, key))
}

fn stored(env: &Env, kek: &Kek, household: &str) -> ApiResult<Option<HouseholdKey>> {
    let rows = env.db.query(
        "SELECT key_id, wrapped FROM household_key WHERE household = ?",
        &[text(household)],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let (id, key) = unwrap(kek, &col_required(row, 0)?, &col_required(row, 1)?)?;
    Ok(Some(HouseholdKey { id, key }))
}

/// The household's key, made now when it has none. Refused (`consent_not_granted`,
/// `consent_revoked`) when the household's consent does not permit personal processing: no key
/// is made then.
pub fn for_household(env: &Env, household: &str) -> ApiResult<HouseholdKey> {
    let kek = kek(env)?;
    if let Some(key) = stored(env, &kek, household)? {
        return Ok(key);
    }
    let internal = |e: wattlet_sealing::SealError| ApiError::Internal(format!("new data key: {e}"));
    let id = KeyId::generate().map_err(internal)?;
    let key = DataKey::generate().map_err(internal)?;
    let wrapped = kek.wrap(&id, &key).map_err(internal)?;
    let (permitting, states) = consent::permitting("c.state", Use::ProcessPersonal);
    let mut params = vec![
        text(household),
        text(id.as_str()),
        text(wrapped),
        text(timestamp::to_db(timestamp::now())),
        text(household),
    ];
    params.extend(states);
    env.db.exec(
        &format!(
            "INSERT INTO household_key (household, key_id, wrapped, created_at)
             SELECT ?, ?, ?, ? FROM consent c WHERE c.household = ? AND {permitting}
             ON CONFLICT DO NOTHING"
        ),
        &params,
    )?;
    if let Some(key) = stored(env, &kek, household)? {
        return Ok(key);
    }
    consent::require(
        consent::load(&env.db, household)?.state,
        Use::ProcessPersonal,
    )?;
    Err(ApiError::conflict(
        "the household's consent changed concurrently; retry",
    ))
}

/// The key named `id` and its household; `None` when there is none (never made, or shredded
/// when the household revoked its consent).
pub fn by_id(env: &Env, id: &KeyId) -> ApiResult<Option<(String, DataKey)>> {
    let rows = env.db.query(
        "SELECT household, key_id, wrapped FROM household_key WHERE key_id = ?",
        &[text(id.as_str())],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok(None);
    };
    let kek = kek(env)?;
    let (_, key) = unwrap(&kek, &col_required(row, 1)?, &col_required(row, 2)?)?;
    Ok(Some((col_required(row, 0)?, key)))
}

/// Deletes the household's key (crypto-shredding; the revocation's trigger did it already, this
/// covers households revoked before keys existed and crash recovery).
pub fn shred(env: &Env, household: &str) -> ApiResult<()> {
    env.db.exec(
        "DELETE FROM household_key WHERE household = ?",
        &[text(household)],
    )
}

/// Whether the deployment accepts plaintext results (`plaintext_results = "allowed"`).
pub fn plaintext_allowed(env: &Env) -> bool {
    env.secrets.plaintext_results().as_deref() == Some("allowed")
}
