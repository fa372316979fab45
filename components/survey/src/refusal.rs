//! Why the Data API refused a request, as a machine-readable code.
//!
//! Every error answer of the Data API is `{"error": "<message for people>", "code": "<code>"}`.
//! Clients (the upload component, the workers, the web UIs) branch on the code, never on the
//! message, which may change wording at any time. `openapi.yaml` lists the same codes.

use serde::{Deserialize, Serialize};

use crate::consent::TransitionError;

/// Calls `$callback! { [$args] <every code> }` with the one list of codes, so that everything
/// generated from it (the enum below, the WIT conversions of each side) stays in step.
#[doc(hidden)]
#[macro_export]
macro_rules! for_each_refusal_code {
    ($callback:path; $($args:tt)*) => {
        $callback! { [$($args)*]
    /// The request is malformed; the message names the field.
    InvalidRequest = "invalid_request", 400;
    /// No client identity: the endpoint needs a device certificate (mutual TLS) or a
    /// participant token.
    NotAuthenticated = "not_authenticated", 401;
    /// The bearer token is missing, malformed, forged or expired, or lives longer than the
    /// maximum.
    InvalidToken = "invalid_token", 401;
    /// The bearer token's id was revoked by an administrator.
    TokenRevoked = "token_revoked", 401;
    /// Client identity headers without a valid proof from the TLS terminator: forged, stale or
    /// replayed.
    IdentityUnverified = "identity_unverified", 401;
    /// A restriction of the token (read-only, one household, a date range) forbids this.
    TokenRestricted = "token_restricted", 403;
    /// The caller's role may not do this.
    RoleForbidden = "role_forbidden", 403;
    /// The client certificate names a device the Data API does not know.
    UnknownDevice = "unknown_device", 403;
    /// The device has been revoked.
    DeviceRevoked = "device_revoked", 403;
    /// The household is unknown (or not the caller's).
    UnknownHousehold = "unknown_household", 403;
    /// The household has not granted consent: nothing is measured, stored or processed.
    ConsentNotGranted = "consent_not_granted", 403;
    /// The household revoked its consent: for good.
    ConsentRevoked = "consent_revoked", 403;
    /// The meter is not wired to the calling device (or not in the caller's household).
    MeterNotWired = "meter_not_wired", 403;
    /// A measurement's time lies outside what the Data API accepts.
    TimeOutOfRange = "time_out_of_range", 400;
    /// No such resource, or one the caller may not know exists.
    NotFound = "not_found", 404;
    /// The path exists, the method does not (the `allow` header lists the methods).
    MethodNotAllowed = "method_not_allowed", 405;
    /// A policy attached to the data (its chain) denies this access; the message says why.
    PolicyDenied = "policy_denied", 403;
    /// A participant's policy would be looser than the study's rule of the same policy.
    PolicyNotStricter = "policy_not_stricter", 403;
    /// A participant tried to detach a study-wide policy.
    PolicyStudyRule = "policy_study_rule", 403;
    /// Consent is already granted.
    ConsentAlreadyGranted = "consent_already_granted", 409;
    /// The request conflicts with the stored state (a duplicate, a concurrent change).
    Conflict = "conflict", 409;
    /// The household is anonymized: its registration can no longer change.
    Anonymized = "anonymized", 409;
    /// The request body is larger than the Data API accepts.
    PayloadTooLarge = "payload_too_large", 413;
    /// The Data API failed; retry later.
    Internal = "internal", 500;
        }
    };
}

macro_rules! codes {
    ([] $($(#[doc = $doc:literal])* $variant:ident = $name:literal, $status:literal;)*) => {
        /// A refusal's code, its name on the wire (`snake_case`) and its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum RefusalCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl RefusalCode {
            pub const ALL: &'static [RefusalCode] = &[$(RefusalCode::$variant,)*];

            /// The code as the Data API sends it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(RefusalCode::$variant => $name,)*
                }
            }

            /// The HTTP status the Data API answers this refusal with.
            pub fn status(self) -> u16 {
                match self {
                    $(RefusalCode::$variant => $status,)*
                }
            }
        }
    };
}

for_each_refusal_code!(codes;);

/// `From` impls both ways between [`RefusalCode`] and a `bindgen!`-generated `refusal-code`
/// enum of `wattlet:survey` (host or guest side): `refusal_code_conversions!(wit::RefusalCode);`.
#[macro_export]
macro_rules! refusal_code_conversions {
    ($wit:ty) => {
        $crate::for_each_refusal_code!($crate::__refusal_code_conversions; $wit);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __refusal_code_conversions {
    ([$wit:ty] $($(#[doc = $doc:literal])* $variant:ident = $name:literal, $status:literal;)*) => {
        impl From<$wit> for $crate::RefusalCode {
            fn from(code: $wit) -> Self {
                type Wit = $wit;
                match code {
                    $(Wit::$variant => $crate::RefusalCode::$variant,)*
                }
            }
        }

        impl From<$crate::RefusalCode> for $wit {
            fn from(code: $crate::RefusalCode) -> Self {
                type Wit = $wit;
                match code {
                    $($crate::RefusalCode::$variant => Wit::$variant,)*
                }
            }
        }
    };
}

impl RefusalCode {
    /// Whether sending the same request again later may succeed.
    pub fn is_retryable(self) -> bool {
        self.status() >= 500
    }

    /// Whether the refusal is about the household's consent.
    pub fn is_consent(self) -> bool {
        matches!(
            self,
            RefusalCode::ConsentNotGranted
                | RefusalCode::ConsentRevoked
                | RefusalCode::ConsentAlreadyGranted
        )
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code no version of this crate knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown refusal code {0:?}")]
pub struct UnknownCode(pub String);

impl std::str::FromStr for RefusalCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

impl From<TransitionError> for RefusalCode {
    fn from(error: TransitionError) -> Self {
        match error {
            TransitionError::AlreadyGranted => RefusalCode::ConsentAlreadyGranted,
            TransitionError::RevokedForGood | TransitionError::AlreadyRevoked => {
                RefusalCode::ConsentRevoked
            }
            TransitionError::NeverGranted => RefusalCode::ConsentNotGranted,
        }
    }
}

/// The JSON body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// For people; wording may change.
    pub error: String,
    /// For programs. Absent only in answers of something other than the Data API (a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorBody {
    /// The code, when the answer carried one this crate knows.
    pub fn refusal_code(&self) -> Option<RefusalCode> {
        self.code.as_deref().and_then(|c| c.parse().ok())
    }
}

/// A refusal as a client of the Data API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status (4xx).
    pub status: u16,
    /// `None` when the answer carried no code this crate knows (e.g. a proxy's answer).
    pub code: Option<RefusalCode>,
    /// For people: the answer's `error` message, or the start of its body.
    pub message: String,
}

impl Refusal {
    /// Reads an error answer: `{"error", "code"}` from the Data API, or any other body.
    pub fn from_answer(status: u16, body: &[u8]) -> Refusal {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => Refusal {
                status,
                code: parsed.refusal_code(),
                message: parsed.error,
            },
            Err(_) => Refusal {
                status,
                code: None,
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            },
        }
    }

    /// Whether the refusal is `code`.
    pub fn is(&self, code: RefusalCode) -> bool {
        self.code == Some(code)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "HTTP {} ({code}): {}", self.status, self.message),
            None => write!(f, "HTTP {}: {}", self.status, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in RefusalCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(name.parse::<RefusalCode>(), Ok(*code));
            assert_eq!(serde_json::to_string(code).unwrap(), format!("\"{name}\""));
            assert!((400..600).contains(&code.status()), "{name}");
        }
        assert!("consent".parse::<RefusalCode>().is_err());
    }

    #[test]
    fn transitions_map_to_consent_codes() {
        for error in [
            TransitionError::AlreadyGranted,
            TransitionError::RevokedForGood,
            TransitionError::NeverGranted,
            TransitionError::AlreadyRevoked,
        ] {
            assert!(RefusalCode::from(error).is_consent(), "{error:?}");
        }
    }

    #[test]
    fn answers_become_refusals() {
        let refusal = Refusal::from_answer(
            403,
            br#"{"error":"consent revoked","code":"consent_revoked"}"#,
        );
        assert!(refusal.is(RefusalCode::ConsentRevoked));
        assert_eq!(
            refusal.to_string(),
            "HTTP 403 (consent_revoked): consent revoked"
        );
        let proxy = Refusal::from_answer(404, b"<html>not here</html>");
        assert_eq!(proxy.code, None);
        assert_eq!(proxy.to_string(), "HTTP 404: <html>not here</html>");
    }

    #[test]
    fn error_bodies_carry_the_code() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":"consent revoked","code":"consent_revoked"}"#)
                .unwrap();
        assert_eq!(body.refusal_code(), Some(RefusalCode::ConsentRevoked));
        let proxy: ErrorBody = serde_json::from_str(r#"{"error":"bad gateway"}"#).unwrap();
        assert_eq!(proxy.refusal_code(), None);
        let future: ErrorBody =
            serde_json::from_str(r#"{"error":"x","code":"from_a_newer_api"}"#).unwrap();
        assert_eq!(future.refusal_code(), None);
    }
}
