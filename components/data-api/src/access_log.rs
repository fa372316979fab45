//! The access log: every access to a household's personal data (who, which object, which
//! policies ran, the decision) and every change of its policies, appended to the household's
//! own hash chain (`wattlet_policy::log`); study-wide policy changes go to the chain `study`.
//! Entries name callers only by pseudonymous ids (a device's keyed pseudonym, a token's id,
//! `administrator` for the admin secret) and objects by their uuids, so anonymization removes
//! nothing from them and every hash stays valid.

use serde_json::{Value, json};
use wattlet_policy::log::{GENESIS, entry_hash};

use crate::db::{Db, Value as Sql, col_required, text};
use crate::error::{ApiError, ApiResult};
use crate::timestamp;

/// The chain of study-wide changes.
pub const STUDY: &str = "study";

/// How often an append is tried when another request took the same sequence number.
const ATTEMPTS: usize = 8;

/// The chain's last sequence number and hash (0 and the genesis hash when empty).
fn head(db: &Db, chain: &str) -> ApiResult<(i64, [u8; 32])> {
    let rows = db.query(
        "SELECT seq, hash FROM access_log WHERE chain = ? ORDER BY seq DESC LIMIT 1",
        &[text(chain)],
    )?;
    let Some(row) = rows.rows.first() else {
        return Ok((0, GENESIS));
    };
    let seq = row.get::<i64>(0).unwrap_or(0);
    let hash = hex::decode(col_required(row, 1)?)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ApiError::Database(format!("access log {chain}: malformed hash")))?;
    Ok((seq, hash))
}

/// Appends `fields` (an object) with `seq` and `at` added; returns the new head (hex).
pub fn append(db: &Db, chain: &str, fields: Value) -> ApiResult<String> {
    for _ in 0..ATTEMPTS {
        let (seq, prev) = head(db, chain)?;
        let mut entry = fields.clone();
        entry["seq"] = json!(seq + 1);
        entry["at"] = json!(timestamp::to_api(timestamp::now()));
        let hash = hex::encode(entry_hash(&prev, &entry));
        let canonical = wattlet_policy::log::canonical(&entry);
        match db.try_query(
            "INSERT INTO access_log (chain, seq, entry, hash) VALUES (?, ?, ?, ?)",
            &[
                text(chain),
                Sql::Integer(seq + 1),
                text(canonical),
                text(&hash),
            ],
        ) {
            Ok(_) => return Ok(hash),
            // Another request appended meanwhile: chain onto its entry.
            Err(e) if e.is_unique_violation() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict("the access log is busy; retry"))
}

/// `{"chain","prev","head","entries":[{"seq","hash","entry"}]}`: entries after `after`, at most
/// `limit`; `prev` the hash before the first one returned, `head` the chain's latest hash.
pub fn read(db: &Db, chain: &str, after: i64, limit: i64) -> ApiResult<Value> {
    let prev = if after <= 0 {
        hex::encode(GENESIS)
    } else {
        db.query(
            "SELECT hash FROM access_log WHERE chain = ? AND seq = ?",
            &[text(chain), Sql::Integer(after)],
        )?
        .rows
        .first()
        .map(|r| col_required(r, 0))
        .transpose()?
        .ok_or_else(|| ApiError::not_found(format!("no access log entry {after}")))?
    };
    let rows = db.query(
        "SELECT seq, hash, entry FROM access_log WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?",
        &[text(chain), Sql::Integer(after), Sql::Integer(limit)],
    )?;
    let mut entries = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        let entry: Value = serde_json::from_str(&col_required(row, 2)?)
            .map_err(|e| ApiError::Database(format!("access log entry: {e}")))?;
        entries.push(json!({
            "seq": row.get::<i64>(0),
            "hash": col_required(row, 1)?,
            "entry": entry,
        }));
    }
    let (_, head) = head(db, chain)?;
    Ok(json!({ "chain": chain, "prev": prev, "head": hex::encode(head), "entries": entries }))
}
