//! How strong a server secret must be: the `admin_token` keys every access token, the
//! `client_identity_key` every identity proof; a guessable one gives both away.

/// The fewest characters a server secret (`admin_token`, `client_identity_key`) may have.
pub const MIN_SECRET_CHARS: usize = 32;
/// The least estimated strength of a server secret, in bits: its length times the Shannon
/// entropy of its characters. 32 random hex digits estimate at about 117, `openssl rand -hex 32`
/// at about 240; repetitive or placeholder values fall far short.
pub const MIN_SECRET_BITS: u32 = 100;

/// Why a server secret is too weak to key tokens or proofs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    #[error(
        "it has {chars} characters, at least {MIN_SECRET_CHARS} are required (generate one: `openssl rand -hex 32`)"
    )]
    TooShort { chars: usize },
    #[error(
        "its characters carry about {bits} bits, at least {MIN_SECRET_BITS} are required (generate one: `openssl rand -hex 32`)"
    )]
    Repetitive { bits: u32 },
}

/// Checks that a server secret is long and varied enough ([`MIN_SECRET_CHARS`],
/// [`MIN_SECRET_BITS`]). An estimate from the secret alone: it catches short, placeholder and
/// repetitive values, it cannot prove a secret random.
pub fn check_secret(secret: &str) -> Result<(), WeakSecret> {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < MIN_SECRET_CHARS {
        return Err(WeakSecret::TooShort { chars: chars.len() });
    }
    let mut counts = std::collections::BTreeMap::new();
    for c in &chars {
        *counts.entry(*c).or_insert(0u32) += 1;
    }
    let n = chars.len() as f64;
    let per_char: f64 = counts
        .values()
        .map(|&k| {
            let p = f64::from(k) / n;
            -p * p.log2()
        })
        .sum();
    let bits = (per_char * n).floor();
    if bits < f64::from(MIN_SECRET_BITS) {
        // Below MIN_SECRET_BITS, so it fits a u32.
        return Err(WeakSecret::Repetitive { bits: bits as u32 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_server_secrets_are_refused() {
        // What `openssl rand -hex 32` and `-base64 32` make, and 32 hex digits (128 bits).
        for strong in [
            "3f9c2a7d81e04b6a9c5d2f1e07b8a4c6d3e9f0a1b2c4d5e6f7a8b9c0d1e2f3a4",
            "q1Z8v0pY3kLm9XcR2tBn7WsA4eHd6Gj5Uf0oIy8TrQw=",
            "9b1f4e7a2c8d3f60e5a7b9c1d2e4f608",
        ] {
            assert_eq!(check_secret(strong), Ok(()), "{strong}");
        }
        assert_eq!(
            check_secret("admin-token-for-tests"),
            Err(WeakSecret::TooShort { chars: 21 })
        );
        assert_eq!(check_secret(""), Err(WeakSecret::TooShort { chars: 0 }));
        assert_eq!(
            check_secret(&"a".repeat(64)),
            Err(WeakSecret::Repetitive { bits: 0 })
        );
        assert_eq!(
            check_secret(&"ab".repeat(20)),
            Err(WeakSecret::Repetitive { bits: 40 })
        );
        let message = check_secret("changeme").unwrap_err().to_string();
        assert!(message.contains("openssl rand -hex 32"), "{message}");
    }
}
