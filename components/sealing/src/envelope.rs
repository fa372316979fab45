//! Items and results on the queue: sealed under the household's data key.

use chacha20poly1305::aead::{Aead, Payload};
use serde::{Deserialize, Serialize};

use crate::{DataKey, KeyId, SealError, b64, random, unb64};

const NONCE_LEN: usize = 24;

/// What a sealed payload is; part of the associated data, so one cannot pass for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A work item, sealed by the manager for a confidential function.
    Item,
    /// A result, sealed by the confidential function for the Data API (or the data set's owner).
    Result,
    /// A confidential function's own state (a checkpoint), sealed for its successor.
    State,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Item => "item",
            Purpose::Result => "result",
            Purpose::State => "state",
        }
    }
}

/// A sealed payload as it travels (JSON): which key, which item, what for, and the ciphertext.
/// Everything but the ciphertext is in the clear and authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub key_id: String,
    pub item: String,
    pub purpose: Purpose,
    /// base64 of the 24-byte nonce.
    pub nonce: String,
    /// base64 of the ciphertext and its 16-byte tag.
    pub ciphertext: String,
}

impl Sealed {
    /// Seals `plaintext` for `item` under the household's key.
    pub fn seal(
        key: &DataKey,
        key_id: &KeyId,
        item: &str,
        purpose: Purpose,
        plaintext: &[u8],
    ) -> Result<Sealed, SealError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let ciphertext = key
            .cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &aad(key_id.as_str(), item, purpose),
                },
            )
            .map_err(|_| SealError::NotAuthentic)?;
        Ok(Sealed {
            key_id: key_id.to_string(),
            item: item.to_owned(),
            purpose,
            nonce: b64(&nonce),
            ciphertext: b64(&ciphertext),
        })
    }

    /// The key id to fetch before [`Sealed::open`].
    pub fn key_id(&self) -> Result<KeyId, SealError> {
        KeyId::parse(&self.key_id)
    }

    /// Opens the payload, which must be sealed for `purpose` (the item id and key id are those
    /// in the envelope, authenticated by the tag).
    pub fn open(&self, key: &DataKey, purpose: Purpose) -> Result<Vec<u8>, SealError> {
        if self.purpose != purpose {
            return Err(SealError::NotAuthentic);
        }
        let nonce: [u8; NONCE_LEN] =
            unb64("nonce", &self.nonce)?
                .try_into()
                .map_err(|_| SealError::Malformed {
                    what: "nonce",
                    detail: format!("a nonce has {NONCE_LEN} bytes"),
                })?;
        let ciphertext = unb64("ciphertext", &self.ciphertext)?;
        key.cipher()
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &ciphertext,
                    aad: &aad(&self.key_id, &self.item, self.purpose),
                },
            )
            .map_err(|_| SealError::NotAuthentic)
    }
}

fn aad(key_id: &str, item: &str, purpose: Purpose) -> Vec<u8> {
    format!("wattlet/sealed/v1\n{}\n{key_id}\n{item}", purpose.as_str()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> (DataKey, Sealed) {
        let key = DataKey::generate().unwrap();
        let id = KeyId::generate().unwrap();
        let sealed = Sealed::seal(&key, &id, "item-1", Purpose::Item, b"1234.5 W").unwrap();
        (key, sealed)
    }

    #[test]
    fn opens_with_its_key_and_purpose() {
        let (key, sealed) = sealed();
        assert_eq!(sealed.open(&key, Purpose::Item).unwrap(), b"1234.5 W");
        assert!(!sealed.ciphertext.contains("1234"));
        let json = serde_json::to_string(&sealed).unwrap();
        let back: Sealed = serde_json::from_str(&json).unwrap();
        assert_eq!(back.open(&key, Purpose::Item).unwrap(), b"1234.5 W");
    }

    /// Every field is bound: changing any of them, or the key, makes the envelope not authentic.
    #[test]
    fn any_change_is_refused() {
        let (key, sealed) = sealed();
        let other_key = DataKey::generate().unwrap();
        assert_eq!(
            sealed.open(&other_key, Purpose::Item),
            Err(SealError::NotAuthentic)
        );
        assert_eq!(
            sealed.open(&key, Purpose::Result),
            Err(SealError::NotAuthentic)
        );
        let forged = [
            Sealed {
                item: "item-2".into(),
                ..sealed.clone()
            },
            Sealed {
                key_id: KeyId::generate().unwrap().to_string(),
                ..sealed.clone()
            },
            Sealed {
                purpose: Purpose::Result,
                ..sealed.clone()
            },
            Sealed {
                nonce: b64(&[0; NONCE_LEN]),
                ..sealed.clone()
            },
        ];
        for forged in forged {
            let purpose = forged.purpose;
            assert_eq!(
                forged.open(&key, purpose),
                Err(SealError::NotAuthentic),
                "{forged:?}"
            );
        }
        let mut bytes = unb64("ciphertext", &sealed.ciphertext).unwrap();
        bytes[0] ^= 1;
        let flipped = Sealed {
            ciphertext: b64(&bytes),
            ..sealed.clone()
        };
        assert_eq!(
            flipped.open(&key, Purpose::Item),
            Err(SealError::NotAuthentic)
        );
        let short_nonce = Sealed {
            nonce: b64(&[0; 12]),
            ..sealed
        };
        assert!(matches!(
            short_nonce.open(&key, Purpose::Item),
            Err(SealError::Malformed { what: "nonce", .. })
        ));
    }
}
