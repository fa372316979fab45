//! What the Data API needs from where it runs: its database ([`Storage`]), the `admin_token`,
//! `client_identity_key` and `key_encryption_key` secrets and the `plaintext_results` setting
//! ([`Secrets`]) and the anonymizer ([`Anonymizer`]). The component provides Spin's
//! (`component`); native tests their own.

use crate::anonymizer::Anonymizer;
use crate::db::{Db, Storage};
use crate::policy::Policies;

/// The Data API's secrets (Spin variables).
pub trait Secrets {
    /// The `admin_token` variable: the administrators' bearer token, from which the key of
    /// every access token is derived. `Err` says why it is unavailable.
    fn admin_token(&self) -> Result<String, String>;

    /// The `client_identity_key` variable: the key the TLS terminator proves the identity
    /// headers with (`wattlet_survey::identity`). `Err` says why it is unavailable.
    fn client_identity_key(&self) -> Result<String, String>;

    /// The `key_encryption_key` variable: the secret the key-encryption key that wraps the
    /// households' data keys at rest is derived from (`wattlet_sealing::Kek::from_secret`).
    /// `Err` says why it is unavailable.
    fn key_encryption_key(&self) -> Result<String, String>;

    /// The optional `plaintext_results` variable: `"allowed"` lets workers store results in
    /// the clear (measurements with encryption off, the byte-scan control); anything else,
    /// or none, refuses them.
    fn plaintext_results(&self) -> Option<String>;
}

/// Everything one request may use.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub storage: &'a dyn Storage,
    pub secrets: &'a dyn Secrets,
    pub anonymizer: &'a dyn Anonymizer,
    /// The shipped policies' hooks.
    pub policies: &'a dyn Policies,
}

/// What a handler works with: the opened database and the services.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub db: Db<'a>,
    pub secrets: &'a dyn Secrets,
    pub anonymizer: &'a dyn Anonymizer,
    /// The shipped policies' hooks.
    pub policies: &'a dyn Policies,
}
