//! Key release: a data key encrypted to an attested host's ephemeral public key (HPKE base mode,
//! RFC 9180, X25519-HKDF-SHA256 / HKDF-SHA256 / ChaCha20-Poly1305). The host generates the key
//! pair when it starts, puts the hash of the public key in its attestation evidence, and keeps
//! the private key in its (encrypted) memory only.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{DataKey, KeyId, SealError, b64, unb64};

type Kem = X25519HkdfSha256;
const INFO: &[u8] = b"wattlet key release v1";

/// A released data key (JSON), for the holder of the private key only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub key_id: String,
    /// base64 of the HPKE encapsulated key.
    pub enc: String,
    /// base64 of the sealed data key (bound to `key_id`).
    pub ciphertext: String,
}

/// Encrypts `key` to `public_key` (32 bytes, X25519).
pub fn release_to(public_key: &[u8], id: &KeyId, key: &DataKey) -> Result<Released, SealError> {
    let public = <Kem as hpke::Kem>::PublicKey::from_bytes(public_key).map_err(|e| {
        SealError::Malformed {
            what: "public key",
            detail: e.to_string(),
        }
    })?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &public,
        INFO,
        key.as_bytes(),
        id.as_str().as_bytes(),
    )
    .map_err(|e| SealError::Random(e.to_string()))?;
    Ok(Released {
        key_id: id.to_string(),
        enc: b64(&enc.to_bytes()),
        ciphertext: b64(&ciphertext),
    })
}

/// A host's ephemeral key pair for key releases.
pub struct Recipient {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: <Kem as hpke::Kem>::PublicKey,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient")
            .field("public", &b64(&self.public_key()))
            .finish_non_exhaustive()
    }
}

impl Recipient {
    pub fn generate() -> Recipient {
        let (private, public) = Kem::gen_keypair();
        Recipient { private, public }
    }

    /// The public key the attestation evidence binds (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.public.to_bytes().to_vec()
    }

    /// Opens a release made for this key pair; the key id must be the one released.
    pub fn open(&self, id: &KeyId, released: &Released) -> Result<DataKey, SealError> {
        if released.key_id != id.as_str() {
            return Err(SealError::NotAuthentic);
        }
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&unb64("enc", &released.enc)?)
            .map_err(|e| SealError::Malformed {
                what: "enc",
                detail: e.to_string(),
            })?;
        let ciphertext = unb64("ciphertext", &released.ciphertext)?;
        let mut plain = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.private,
            &enc,
            INFO,
            &ciphertext,
            id.as_str().as_bytes(),
        )
        .map_err(|_| SealError::NotAuthentic)?;
        let key = DataKey::from_bytes(&plain);
        plain.zeroize();
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_a_release_for_its_key_id() {
        let host = Recipient::generate();
        let id = KeyId::generate().unwrap();
        let key = DataKey::generate().unwrap();
        let released = release_to(&host.public_key(), &id, &key).unwrap();
        assert_eq!(host.open(&id, &released).unwrap(), key);
        assert_eq!(
            Recipient::generate().open(&id, &released),
            Err(SealError::NotAuthentic),
            "another host's private key"
        );
        let other_id = KeyId::generate().unwrap();
        let relabelled = Released {
            key_id: other_id.to_string(),
            ..released.clone()
        };
        assert_eq!(
            host.open(&other_id, &relabelled),
            Err(SealError::NotAuthentic),
            "the key id is bound"
        );
        assert!(matches!(
            release_to(&[1; 5], &id, &key),
            Err(SealError::Malformed {
                what: "public key",
                ..
            })
        ));
    }
}
