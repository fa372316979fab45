//! The request headers in which a TLS terminator (the `wattlet serve` host, or an ingress in
//! front of Spin) passes a client's verified certificate identity to the Data API, and the proof
//! that the terminator set them.
//!
//! The terminator removes every incoming header with [`PREFIX`] before it sets them, so a client
//! of the terminator can never set them itself. Anyone who reaches the component some other way
//! (plain HTTP to `spin up`, an ingress that does not strip them) could, so the terminator also
//! sets [`PROOF`]: an HMAC-SHA-256 over the identity headers, the request's method and path, a
//! timestamp and a nonce, keyed with a secret it shares with the Data API (the Spin variable
//! [`KEY_VARIABLE`]). The Data API accepts the identity only with a proof that verifies, is at
//! most [`MAX_SKEW_SECONDS`] from its clock and whose nonce it has not seen before.
//!
//! The proof header's value: `v1;t=<unix seconds>;n=<nonce>;s=<64 hex digits>`. The MAC is over
//! `wattlet-client-identity/v1` and then, each preceded by its length as 4 big-endian bytes: the
//! time (decimal), the nonce, the method (upper case), the path (no query), the device, the
//! email and the serial (empty when absent). An ingress computes the same.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Every identity header starts with this prefix.
pub const PREFIX: &str = "x-wattlet-client-";
/// The device id of the verified client certificate.
pub const DEVICE: &str = "x-wattlet-client-device";
/// The participant's email from the verified client certificate.
pub const EMAIL: &str = "x-wattlet-client-email";
/// The serial number of the verified client certificate (lowercase hex).
pub const SERIAL: &str = "x-wattlet-client-serial";
/// The terminator's proof that it set the identity headers of this request.
pub const PROOF: &str = "x-wattlet-client-proof";
/// Every header of the identity, the proof included: each may appear at most once.
pub const HEADERS: [&str; 4] = [DEVICE, EMAIL, SERIAL, PROOF];

/// The Spin variable (application and component) that holds the key of the proofs.
pub const KEY_VARIABLE: &str = "client_identity_key";

/// How far a proof's time may lie from the verifier's clock, either way (the proof is made when
/// the request's head has been read, just before the component runs).
pub const MAX_SKEW_SECONDS: u64 = 60;

const DOMAIN: &[u8] = b"wattlet-client-identity/v1";
const VERSION: &str = "v1";
/// Nonces are short printable tokens (the terminator uses 32 hex digits).
const MAX_NONCE_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// What the identity headers say (the serial may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub device: &'a str,
    pub email: &'a str,
    pub serial: &'a str,
}

/// The request the proof is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path without the query, e.g. `/api/household/consent`.
    pub path: &'a str,
}

/// A proof that verified: when it was made and its nonce (to refuse it a second time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    pub at: u64,
    pub nonce: String,
}

/// Why a proof does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error(
        "the identity headers carry no proof ({PROOF}); they were not set by the TLS terminator"
    )]
    Missing,
    #[error("the identity proof is malformed (expected v1;t=…;n=…;s=…)")]
    Malformed,
    #[error(
        "the identity proof does not verify: the identity headers were not set by the TLS terminator"
    )]
    Forged,
    #[error(
        "the identity proof is stale: made at {at}, {off} s from this server's clock (at most {MAX_SKEW_SECONDS} s)"
    )]
    Stale { at: u64, off: u64 },
}

fn mac(key: &[u8], at: u64, nonce: &str, request: Bound<'_>, identity: Identity<'_>) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(DOMAIN);
    let at = at.to_string();
    let method = request.method.to_ascii_uppercase();
    for field in [
        at.as_str(),
        nonce,
        method.as_str(),
        request.path,
        identity.device,
        identity.email,
        identity.serial,
    ] {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(field.as_bytes());
    }
    mac
}

/// The value of [`PROOF`] for `identity` on `request`, made at `at` (seconds since the epoch)
/// with `nonce` (unique per request: random).
pub fn prove(
    key: &[u8],
    request: Bound<'_>,
    identity: Identity<'_>,
    at: u64,
    nonce: &str,
) -> String {
    let tag = mac(key, at, nonce, request, identity)
        .finalize()
        .into_bytes();
    let mut hex = String::with_capacity(64);
    for byte in tag {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("{VERSION};t={at};n={nonce};s={hex}")
}

/// Checks `proof` (the value of [`PROOF`]) for `identity` on `request` at `now` (seconds since
/// the epoch). Whether its nonce was seen before is the caller's to check.
pub fn verify(
    key: &[u8],
    request: Bound<'_>,
    identity: Identity<'_>,
    proof: &str,
    now: u64,
) -> Result<Proven, ProofError> {
    let (at, nonce, tag) = parse(proof).ok_or(ProofError::Malformed)?;
    // Constant time: `verify_slice` compares the tags so.
    mac(key, at, nonce, request, identity)
        .verify_slice(&tag)
        .map_err(|_| ProofError::Forged)?;
    let off = now.abs_diff(at);
    if off > MAX_SKEW_SECONDS {
        return Err(ProofError::Stale { at, off });
    }
    Ok(Proven {
        at,
        nonce: nonce.to_owned(),
    })
}

fn parse(proof: &str) -> Option<(u64, &str, Vec<u8>)> {
    let mut parts = proof.trim().split(';');
    if parts.next()? != VERSION {
        return None;
    }
    let at = parts.next()?.strip_prefix("t=")?;
    let nonce = parts.next()?.strip_prefix("n=")?;
    let tag = parts.next()?.strip_prefix("s=")?;
    if parts.next().is_some()
        || !at.bytes().all(|b| b.is_ascii_digit())
        || nonce.is_empty()
        || nonce.len() > MAX_NONCE_LEN
        || !nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || tag.len() != 64
    {
        return None;
    }
    let tag = (0..32)
        .map(|i| u8::from_str_radix(tag.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((at.parse().ok()?, nonce, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a key shared by terminator and Data API";
    const NOW: u64 = 1_764_600_000;
    const ADA: Identity<'static> = Identity {
        device: "pi-ada",
        email: "ada@example.org",
        serial: "5f3a",
    };
    const GRANT: Bound<'static> = Bound {
        method: "POST",
        path: "/api/household/consent",
    };

    #[test]
    fn a_proof_verifies_for_its_request_and_identity_only() {
        let proof = prove(KEY, GRANT, ADA, NOW, "n0nce");
        assert!(proof.starts_with("v1;t=1764600000;n=n0nce;s="), "{proof}");
        let proven = verify(KEY, GRANT, ADA, &proof, NOW + 5).expect("verifies");
        assert_eq!(
            proven,
            Proven {
                at: NOW,
                nonce: "n0nce".into()
            }
        );
        let lowercase = Bound {
            method: "post",
            ..GRANT
        };
        assert!(verify(KEY, lowercase, ADA, &proof, NOW).is_ok());
        let revoke = Bound {
            method: "DELETE",
            ..GRANT
        };
        let elsewhere = Bound {
            path: "/api/household",
            ..GRANT
        };
        let grace = Identity {
            device: "pi-grace",
            ..ADA
        };
        let other_email = Identity {
            email: "mallory@example.org",
            ..ADA
        };
        let no_serial = Identity { serial: "", ..ADA };
        for (request, identity) in [
            (revoke, ADA),
            (elsewhere, ADA),
            (GRANT, grace),
            (GRANT, other_email),
            (GRANT, no_serial),
        ] {
            assert_eq!(
                verify(KEY, request, identity, &proof, NOW),
                Err(ProofError::Forged),
                "{request:?} {identity:?}"
            );
        }
        assert_eq!(
            verify(b"another key", GRANT, ADA, &proof, NOW),
            Err(ProofError::Forged)
        );
        // Fields cannot be shifted from one into the next.
        let shifted = Identity {
            device: "pi-adaada@example.org",
            email: "",
            ..ADA
        };
        assert_eq!(
            verify(KEY, GRANT, shifted, &proof, NOW),
            Err(ProofError::Forged)
        );
    }

    #[test]
    fn old_future_and_altered_proofs_are_refused() {
        let proof = prove(KEY, GRANT, ADA, NOW, "n0nce");
        assert_eq!(
            verify(KEY, GRANT, ADA, &proof, NOW + MAX_SKEW_SECONDS + 1),
            Err(ProofError::Stale {
                at: NOW,
                off: MAX_SKEW_SECONDS + 1
            })
        );
        assert!(verify(KEY, GRANT, ADA, &proof, NOW - MAX_SKEW_SECONDS - 1).is_err());
        assert!(verify(KEY, GRANT, ADA, &proof, NOW + MAX_SKEW_SECONDS).is_ok());
        // A later time in an old proof: the tag no longer verifies.
        let moved = proof.replace("t=1764600000", "t=1764600600");
        assert_eq!(
            verify(KEY, GRANT, ADA, &moved, NOW + 600),
            Err(ProofError::Forged)
        );
        let renonced = proof.replace("n=n0nce", "n=other");
        assert_eq!(
            verify(KEY, GRANT, ADA, &renonced, NOW),
            Err(ProofError::Forged)
        );
        let tag = &proof[proof.len() - 64..];
        for bad in [
            String::new(),
            "v1".to_owned(),
            "v2;t=1;n=x;s=00".to_owned(),
            format!("v1;t=-1;n=x;s={tag}"),
            format!("v1;t=1;n=;s={tag}"),
            format!("v1;t=1;n=a b;s={tag}"),
            format!("v1;t=1;n=x;s={}", &tag[..62]),
            format!("v1;t=1;n=x;s={}zz", &tag[..62]),
            format!("v1;t=1;n=x;s={tag};extra"),
            format!("v1;n=x;t=1;s={tag}"),
            format!("v1;t=99999999999999999999999;n=x;s={tag}"),
        ] {
            assert_eq!(
                verify(KEY, GRANT, ADA, &bad, NOW),
                Err(ProofError::Malformed),
                "{bad}"
            );
        }
    }
}
