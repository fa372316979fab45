//! The snapshot format of a [`Pipeline`]: `WSA` + format byte + postcard of the state + FNV-1a 64
//! of everything before it (little-endian).
//!
//! postcard: compact (varints, no field names; about a third of the JSON), already in Cargo.lock
//! through wasmtime with the same features, no_std-friendly, and its encoding does not depend on
//! the pointer width, so a snapshot taken in the wasm32 component restores natively and back.
//! Not self-describing: the format byte changes whenever the state's types do.
//!
//! The checksum makes garbage, truncated and altered bytes an error before anything is decoded;
//! a decoded state is then checked for the invariants the operators index with
//! (`Pipeline::check`). Hash maps serialize in their iteration order, so two snapshots of the
//! same state need not be byte-identical; they restore to the same behaviour.

use crate::Pipeline;

/// The first bytes of every snapshot.
pub const MAGIC: &[u8; 3] = b"WSA";
/// The version of the encoded state's layout.
pub const FORMAT: u8 = 3;

const HEADER: usize = MAGIC.len() + 1;
const CHECKSUM: usize = 8;

/// Why bytes are not a restorable snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("not a pipeline snapshot ({0} bytes, no WSA header)")]
    NotASnapshot(usize),
    #[error("snapshot format {0}; this build reads format {FORMAT}")]
    Format(u8),
    #[error("snapshot checksum mismatch (truncated or altered)")]
    Checksum,
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    #[error("snapshot state is inconsistent: {0}")]
    Inconsistent(String),
}

/// FNV-1a, 64 bits: enough to catch accidents; a checkpoint store that must resist forgery signs
/// the bytes itself.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub(crate) fn encode(pipeline: &Pipeline) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    let mut out = postcard::to_extend(pipeline, out).expect("a Vec grows; the state serializes");
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Pipeline, RestoreError> {
    if bytes.len() < HEADER + CHECKSUM || &bytes[..MAGIC.len()] != MAGIC {
        return Err(RestoreError::NotASnapshot(bytes.len()));
    }
    if bytes[MAGIC.len()] != FORMAT {
        return Err(RestoreError::Format(bytes[MAGIC.len()]));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM);
    if fnv1a(body).to_le_bytes() != sum {
        return Err(RestoreError::Checksum);
    }
    let (pipeline, rest): (Pipeline, _) = postcard::take_from_bytes(&body[HEADER..])
        .map_err(|e| RestoreError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(RestoreError::Decode(format!(
            "{} bytes after the state",
            rest.len()
        )));
    }
    pipeline.check().map_err(RestoreError::Inconsistent)?;
    Ok(pipeline)
}
