//! Household data keys and the key-encryption key that wraps them at rest.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{SealError, b64, random, unb64};

/// The shortest key-encryption secret accepted (characters), as for the Data API's other secrets.
pub const MIN_SECRET_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// A household's 256-bit data key. Zeroed when dropped; never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Result<DataKey, SealError> {
        Ok(DataKey(random()?))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<DataKey, SealError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::Malformed {
            what: "data key",
            detail: format!("{} bytes, a data key has 32", bytes.len()),
        })?;
        Ok(DataKey(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

/// A data key's name: 128 random bits, hex. Random rather than derived from the household so
/// that a key id on the queue says nothing about whose data it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn generate() -> Result<KeyId, SealError> {
        let bytes: [u8; 16] = random()?;
        Ok(KeyId(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Accepts what [`KeyId::generate`] makes: 32 lowercase hex digits.
    pub fn parse(text: &str) -> Result<KeyId, SealError> {
        if text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(KeyId(text.to_owned()))
        } else {
            Err(SealError::Malformed {
                what: "key id",
                detail: "a key id is 32 lowercase hex digits".to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key-encryption key: wraps data keys at rest. Derived from the control plane's secret
/// (a Spin variable), so the key store's file and its backups hold only wrapped keys.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// HMAC-SHA256 of a fixed label keyed with the secret: a KDF for one secret that is already
    /// high-entropy (at least [`MIN_SECRET_LEN`] random characters).
    pub fn from_secret(secret: &str) -> Result<Kek, SealError> {
        if secret.chars().count() < MIN_SECRET_LEN {
            return Err(SealError::WeakSecret);
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .map_err(|_| SealError::WeakSecret)?;
        mac.update(b"wattlet key-encryption key v1");
        Ok(Kek(mac.finalize().into_bytes().into()))
    }

    /// `base64(nonce ‖ ciphertext)` of the data key, bound to its key id (a wrapped key cannot
    /// be moved to another id).
    pub fn wrap(&self, id: &KeyId, key: &DataKey) -> Result<String, SealError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let sealed = XChaCha20Poly1305::new(&self.0.into())
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: key.as_bytes(),
                    aad: &wrap_aad(id),
                },
            )
            .map_err(|_| SealError::NotAuthentic)?;
        Ok(b64(&[&nonce[..], &sealed].concat()))
    }

    pub fn unwrap(&self, id: &KeyId, wrapped: &str) -> Result<DataKey, SealError> {
        let bytes = unb64("wrapped key", wrapped)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed {
                what: "wrapped key",
                detail: "shorter than its nonce".to_owned(),
            });
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::NotAuthentic)?;
        let mut plain = XChaCha20Poly1305::new(&self.0.into())
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: sealed,
                    aad: &wrap_aad(id),
                },
            )
            .map_err(|_| SealError::NotAuthentic)?;
        let key = DataKey::from_bytes(&plain);
        plain.zeroize();
        key
    }
}

fn wrap_aad(id: &KeyId) -> Vec<u8> {
    format!("wattlet/wrapped-key/v1\n{id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_wrapped_key_unwraps_only_under_its_kek_and_id() {
        let kek = Kek::from_secret(SECRET).unwrap();
        let id = KeyId::generate().unwrap();
        let key = DataKey::generate().unwrap();
        let wrapped = kek.wrap(&id, &key).unwrap();
        assert_eq!(kek.unwrap(&id, &wrapped).unwrap(), key);
        let other_id = KeyId::generate().unwrap();
        assert_eq!(
            kek.unwrap(&other_id, &wrapped),
            Err(SealError::NotAuthentic)
        );
        let other_kek = Kek::from_secret(&format!("{SECRET}x")).unwrap();
        assert_eq!(
            other_kek.unwrap(&id, &wrapped),
            Err(SealError::NotAuthentic)
        );
        assert!(matches!(
            kek.unwrap(&id, "AAAA"),
            Err(SealError::Malformed { .. })
        ));
        assert_ne!(
            kek.wrap(&id, &key).unwrap(),
            wrapped,
            "fresh nonce per wrap"
        );
    }

    #[test]
    fn weak_secrets_and_bad_key_ids_are_refused() {
        assert_eq!(
            Kek::from_secret("short").unwrap_err(),
            SealError::WeakSecret
        );
        let id = KeyId::generate().unwrap();
        assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
        for bad in ["", "XYZ", &id.as_str().to_uppercase(), &format!("{id}0")] {
            assert!(KeyId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_do_not_print() {
        let key = DataKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "DataKey(..)");
        assert!(DataKey::from_bytes(&[1; 31]).is_err());
    }
}
