//! The access log's hash chain. Each household has its own chain; entry `n` has
//! `hash_n = SHA-256(hash_{n-1} ‖ canonical(entry_n))` (raw 32-byte hashes, `hash_0` all zeros),
//! where `canonical` is compact JSON with every object's keys sorted ([`canonical`]). Whoever
//! holds the head (the last hash) detects any changed, removed, reordered or inserted entry.
//!
//! Entries hold only pseudonymous ids and digests (a device's keyed pseudonym, a token's random
//! id, a meter's uuid, the SHA-256 of a policy's parameters), nothing that anonymization removes,
//! so anonymizing a household changes no entry and the chain stays valid.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// Compact JSON with every object's keys sorted (recursively): the bytes that are hashed.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `SHA-256(prev ‖ canonical(entry))`.
pub fn entry_hash(prev: &[u8; 32], entry: &Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(canonical(entry).as_bytes());
    hasher.finalize().into()
}

/// SHA-256 of text, hex: how entries name parameters.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("malformed log: {0}")]
    Malformed(String),
    #[error("entry {seq}: expected sequence number {expected}")]
    Gap { seq: u64, expected: u64 },
    #[error("entry {seq}: its hash does not match its content and the previous hash (tampered)")]
    Tampered { seq: u64 },
    #[error("the log ends at {found}, not at the head {expected}")]
    HeadMismatch { expected: String, found: String },
}

/// What a verified log covers.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub first_seq: Option<u64>,
    pub entries: usize,
    pub head: String,
}

fn hash_from_hex(field: &str, s: &str) -> Result<[u8; 32], ChainError> {
    let bytes = hex::decode(s).map_err(|_| ChainError::Malformed(format!("{field}: not hex")))?;
    bytes
        .try_into()
        .map_err(|_| ChainError::Malformed(format!("{field}: not 32 bytes")))
}

/// Verifies a log as `GET /api/household/access_log` answers it
/// (`{"prev","head","entries":[{"seq","hash","entry"}]}`): every entry's hash from the one
/// before (`prev` before the first) and the last hash equals `head` (the one the verifier got
/// on its own, not the log's own `head` field).
pub fn verify(log: &Value, head: &str) -> Result<Verified, ChainError> {
    let prev = log
        .get("prev")
        .and_then(Value::as_str)
        .ok_or_else(|| ChainError::Malformed("\"prev\" missing".into()))?;
    let mut prev = hash_from_hex("prev", prev)?;
    let entries = log
        .get("entries")
        .and_then(Value::as_array)
        .ok_or_else(|| ChainError::Malformed("\"entries\" missing".into()))?;
    let mut expected_seq = None;
    let mut first_seq = None;
    for (i, item) in entries.iter().enumerate() {
        let seq = item
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or_else(|| ChainError::Malformed(format!("entries[{i}].seq missing")))?;
        if let Some(expected) = expected_seq
            && seq != expected
        {
            return Err(ChainError::Gap { seq, expected });
        }
        first_seq.get_or_insert(seq);
        let entry = item
            .get("entry")
            .ok_or_else(|| ChainError::Malformed(format!("entries[{i}].entry missing")))?;
        let stated = item
            .get("hash")
            .and_then(Value::as_str)
            .ok_or_else(|| ChainError::Malformed(format!("entries[{i}].hash missing")))?;
        let computed = entry_hash(&prev, entry);
        if hash_from_hex(&format!("entries[{i}].hash"), stated)? != computed {
            return Err(ChainError::Tampered { seq });
        }
        prev = computed;
        expected_seq = Some(seq + 1);
    }
    let found = hex::encode(prev);
    let expected = head.trim().to_ascii_lowercase();
    if found != expected {
        return Err(ChainError::HeadMismatch { expected, found });
    }
    Ok(Verified {
        first_seq,
        entries: entries.len(),
        head: found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(entries: &[Value]) -> (Value, String) {
        let mut prev = GENESIS;
        let mut items = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            prev = entry_hash(&prev, entry);
            items.push(json!({ "seq": i + 1, "hash": hex::encode(prev), "entry": entry }));
        }
        let head = hex::encode(prev);
        (
            json!({ "prev": hex::encode(GENESIS), "head": head, "entries": items }),
            head,
        )
    }

    #[test]
    fn canonical_sorts_keys_at_every_depth() {
        let v = json!({ "b": 1, "a": { "d": [ { "z": 1, "y": "x" } ], "c": null } });
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":null,"d":[{"y":"x","z":1}]},"b":1}"#
        );
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_is_detected() {
        let entries: Vec<Value> = (0..4)
            .map(|i| json!({ "actor": format!("token:{i}"), "decision": "allow", "rows": i }))
            .collect();
        let (log, head) = chain(&entries);
        assert_eq!(verify(&log, &head).map(|v| v.entries), Ok(4));

        let mut changed = log.clone();
        changed["entries"][2]["entry"]["decision"] = json!("deny");
        assert_eq!(
            verify(&changed, &head),
            Err(ChainError::Tampered { seq: 3 })
        );

        let mut removed = log.clone();
        if let Some(items) = removed["entries"].as_array_mut() {
            items.remove(1);
        }
        assert_eq!(
            verify(&removed, &head),
            Err(ChainError::Gap {
                seq: 3,
                expected: 2
            })
        );

        // Dropping the newest entry keeps a consistent chain: only the head tells.
        let mut truncated = log.clone();
        if let Some(items) = truncated["entries"].as_array_mut() {
            items.pop();
        }
        assert!(matches!(
            verify(&truncated, &head),
            Err(ChainError::HeadMismatch { .. })
        ));

        // Recomputing every hash after a change still ends at another head.
        let mut forged_entries = entries.clone();
        forged_entries[0]["decision"] = json!("deny");
        let (forged, _) = chain(&forged_entries);
        assert!(matches!(
            verify(&forged, &head),
            Err(ChainError::HeadMismatch { .. })
        ));
    }

    #[test]
    fn malformed_logs_are_refused_with_the_field() {
        assert!(
            matches!(verify(&json!({}), "00"), Err(ChainError::Malformed(m)) if m.contains("prev"))
        );
        let log = json!({ "prev": "zz", "entries": [] });
        assert!(matches!(verify(&log, "00"), Err(ChainError::Malformed(m)) if m.contains("prev")));
    }
}
