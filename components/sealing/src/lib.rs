//! The keys of confidential functions (DESIGN.md "Confidential functions"), defined once for the
//! Data API, the key broker, the work manager and the workers.
//!
//! - Every household has one random [`DataKey`], named by a random [`KeyId`]. At rest it is
//!   stored only wrapped by the key-encryption key ([`Kek`], from a secret the control plane
//!   holds), so a copy of the key store alone reveals nothing; destroying the wrapped key shreds
//!   every ciphertext of that household wherever it was copied.
//! - Work items and results cross the queue [`Sealed`] under the household's key
//!   (XChaCha20-Poly1305, random 192-bit nonces): the queue can neither read nor forge them, and
//!   the associated data binds key id, item id and purpose, so a sealed result cannot be
//!   replayed as an item nor one item's ciphertext passed off as another's.
//! - The key broker hands a data key to an attested host only [`released`](release::release_to)
//!   to the host's ephemeral public key (HPKE, RFC 9180: X25519, HKDF-SHA256,
//!   ChaCha20-Poly1305), whose hash the host's attestation evidence carries.
//!
//! The algorithms are the field's (RustCrypto, `hpke`); what is written here is only the
//! product's framing: which bytes are bound to which.

mod envelope;
mod keys;
pub mod release;

pub use envelope::{Purpose, Sealed};
pub use keys::{DataKey, Kek, KeyId, MIN_SECRET_LEN};

use base64::Engine as _;

/// Why sealing, opening, wrapping or releasing failed. Opening never says more than that the
/// bytes were not authentic: a forged or corrupted envelope and a wrong key look the same.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not authentic: wrong key, or the ciphertext or its associated data was changed")]
    NotAuthentic,
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the key-encryption secret must have at least {MIN_SECRET_LEN} characters")]
    WeakSecret,
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

pub(crate) fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| SealError::Random(e.to_string()))?;
    Ok(bytes)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn unb64(what: &'static str, text: &str) -> Result<Vec<u8>, SealError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| SealError::Malformed {
            what,
            detail: e.to_string(),
        })
}
