//! Who is calling.
//!
//! **Devices and participants** authenticate with X.509 client certificates (mutual TLS). TLS
//! terminates in the host (or an ingress in front of Spin), which verifies the certificate and
//! passes the identity in the headers of [`wattlet_survey::identity`] (device id, email and
//! certificate serial) with a proof: an HMAC over them, the method, the path and the time, keyed
//! with the Spin variable `client_identity_key`. The terminator strips client copies of these
//! headers, but a client that reaches the component some other way (plain HTTP to `spin up`)
//! could set them: so the identity counts only with a proof that verifies, is fresh
//! (`MAX_SKEW_SECONDS`) and was not used before (its nonce is kept in `identity_proof` while it
//! could verify); otherwise 401 `identity_unverified`.
//! A request is authenticated when the device exists, is not revoked and its household's user
//! has the certificate's email (an anonymized household has no user: then the device alone,
//! found under its pseudonym, [`device_pseudonym`]); revocation is checked on every request,
//! not only at handshake. Without a certificate, a participant's token (`role=participant`, one
//! household; `POST /api/household/token`) reaches the household's endpoints, but never uploads
//! or status reports.
//!
//! **Administrators and researchers** send `authorization: Bearer <token>`: the Spin variable
//! `admin_token` itself (compared in constant time), or an attenuable access token
//! (`wattlet-access-token`) minted by `POST /api/management/token`. Every access token must
//! expire within [`MAX_TOKEN_SECONDS`] (a token without expiry, or with a later one, is
//! refused) and must not have been revoked (`revoked_token`, 401 `token_revoked`).
//!
//! **Secrets**: `admin_token`, `client_identity_key` and `key_encryption_key` must pass
//! [`wattlet_access_token::check_secret`]; while one does not, every request but the health
//! check is answered 500 with a log line ([`check_secrets`]).
//!
//! **The NIALM work manager** sends an access token of role `manager`, which reaches
//! `GET /api/worker/meters` and `GET /api/worker/meter/:uuid/power` (readings and the
//! household's data key) and nothing else. **Workers** (untrusted hosts) send one of role
//! `worker`, which reaches `POST /api/worker/disaggregation`,
//! `GET /api/worker/disaggregation/:item` and `POST /api/worker/forecast` and nothing else: never plaintext readings. No other
//! role reaches those ([`worker`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use wattlet_access_token::{
    DataClass, Denied, Grant, Operation, Role, Scope, Token, check_secret, root_key,
};
use wattlet_survey::RefusalCode;
use wattlet_survey::identity::{self, Bound, Identity, MAX_SKEW_SECONDS, ProofError};

use crate::db::{Db, Value as Sql, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::http::Request;
use crate::services::{Env, Secrets};
use crate::timestamp;

/// Access tokens minted without `expires_at` expire after this long (7 days).
pub const DEFAULT_TOKEN_SECONDS: u64 = 7 * 24 * 3600;
/// No access token lives longer (90 days): minting refuses a later `expires_at`, and a token
/// whose expiry lies further ahead, or that has none, is refused.
pub const MAX_TOKEN_SECONDS: u64 = 90 * 24 * 3600;
/// How far the clocks of the instance that minted a token and the one that checks it may
/// differ.
const CLOCK_SLACK_SECONDS: u64 = 300;
/// A revoked id is remembered this long: every token of it has expired by then.
pub const REVOCATION_KEPT_SECONDS: i64 = (MAX_TOKEN_SECONDS + CLOCK_SLACK_SECONDS) as i64;
/// Pseudonyms of devices start with this; device ids cannot contain `:`.
pub const PSEUDONYM_PREFIX: &str = "anon:";

/// An authenticated device (mutual TLS), acting for its household.
#[derive(Debug, Clone)]
pub struct Device {
    pub device: String,
    pub household: String,
}

/// Who acts for a household: its device, or the participant with a token the device obtained.
#[derive(Debug, Clone)]
pub struct Participant {
    pub household: String,
}

/// Emails are compared and stored trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).map(str::trim).filter(|v| !v.is_empty())
}

/// Authenticates a household request: a device's client certificate (its activity is
/// recorded), or else a participant's token (`role=participant`, one household), which the
/// device obtains with `POST /api/household/token` for the participant's device UI.
pub fn participant(req: &Request, env: &Env) -> ApiResult<Participant> {
    let db = &env.db;
    if header(req, identity::DEVICE).is_some() {
        return device(req, env).map(|d| Participant {
            household: d.household,
        });
    }
    let Some(token) = bearer(req) else {
        return Err(ApiError::refused(
            RefusalCode::NotAuthenticated,
            "a client certificate (mutual TLS) or a participant's token is required",
        ));
    };
    let grant = verify_token(env, token)?;
    let household = grant.participant_household().map_err(refusal)?.to_owned();
    if grant.read_only() && *req.method() != crate::http::Method::Get {
        return Err(refusal(Denied::ReadOnly));
    }
    let known = db.query("SELECT 1 FROM household WHERE id = ?", &[text(&household)])?;
    if known.rows.is_empty() {
        return Err(ApiError::refused(
            RefusalCode::UnknownHousehold,
            "unknown household",
        ));
    }
    Ok(Participant { household })
}

/// Authenticates a device by its client certificate (the identity headers and their proof)
/// and records its activity. [`Device::device`] is the id the device is stored under: its
/// pseudonym once its household is anonymized.
pub fn device(req: &Request, env: &Env) -> ApiResult<Device> {
    let db = &env.db;
    let (Some(device), Some(email)) = (header(req, identity::DEVICE), header(req, identity::EMAIL))
    else {
        return Err(ApiError::refused(
            RefusalCode::NotAuthenticated,
            "a client certificate is required (mutual TLS)",
        ));
    };
    verify_identity(req, env, device, email)?;
    let email_normalized = normalize_email(email);
    // A new device may have the id an anonymized one had: the row whose participant has the
    // certificate's email first, then an anonymized one (no participant left).
    let result = db.query(
        r#"SELECT d.id, d.household, d.revoked_at, u.email
           FROM measurement_device d
           JOIN household h ON h.id = d.household
           LEFT JOIN "user" u ON u.id = h.user
           WHERE d.id IN (?, ?)
           ORDER BY CASE WHEN u.email = ? THEN 0 WHEN u.email IS NULL THEN 1 ELSE 2 END
           LIMIT 1"#,
        &[
            text(device),
            text(device_pseudonym(env, device)?),
            text(&email_normalized),
        ],
    )?;
    let Some(row) = result.rows.first() else {
        return Err(ApiError::refused(
            RefusalCode::UnknownDevice,
            "unknown device",
        ));
    };
    let stored_id =
        col_text(row, 0).ok_or_else(|| ApiError::Database("device without id".into()))?;
    let household =
        col_text(row, 1).ok_or_else(|| ApiError::Database("device without household".into()))?;
    if col_text(row, 2).is_some() {
        return Err(ApiError::refused(
            RefusalCode::DeviceRevoked,
            "device revoked",
        ));
    }
    // An anonymized household has no contact left to compare with: its device, identified by
    // its certificate, still learns that the consent is revoked and is refused uploads.
    let stored = col_text(row, 3);
    if stored.is_some() && stored.as_deref() != Some(email_normalized.as_str()) {
        // Not this device as registered: unknown, as far as the caller can learn.
        return Err(ApiError::refused(
            RefusalCode::UnknownDevice,
            "the certificate's email does not match the device's participant",
        ));
    }
    db.exec(
        "UPDATE measurement_device SET last_activity = ? WHERE id = ?",
        &[text(timestamp::to_db(timestamp::now())), text(&stored_id)],
    )?;
    Ok(Device {
        device: stored_id,
        household,
    })
}

/// Accepts the identity headers only with the terminator's proof (module documentation): one
/// of each header, a proof that verifies for this request and is fresh, and a nonce not seen
/// before, which is then kept while a proof could still carry it.
fn verify_identity(req: &Request, env: &Env, device: &str, email: &str) -> ApiResult<()> {
    let unverified = |message: String| ApiError::refused(RefusalCode::IdentityUnverified, message);
    if let Some(name) = identity::HEADERS
        .iter()
        .find(|name| req.header_count(name) > 1)
    {
        return Err(unverified(format!("header {name} appears more than once")));
    }
    let key = secret(env.secrets, Secret::IdentityKey)?;
    let proof =
        header(req, identity::PROOF).ok_or_else(|| unverified(ProofError::Missing.to_string()))?;
    let now = unix_now();
    let request = Bound {
        method: req.method().as_str(),
        path: req.path(),
    };
    let claimed = Identity {
        device,
        email,
        serial: header(req, identity::SERIAL).unwrap_or_default(),
    };
    let proven = identity::verify(key.as_bytes(), request, claimed, proof, now)
        .map_err(|e| unverified(e.to_string()))?;
    let db = &env.db;
    let oldest = i64::try_from(now.saturating_sub(MAX_SKEW_SECONDS)).unwrap_or(i64::MAX);
    db.exec(
        "DELETE FROM identity_proof WHERE made_at < ?",
        &[Sql::Integer(oldest)],
    )?;
    let made_at = i64::try_from(proven.at).unwrap_or(i64::MAX);
    match db.try_query(
        "INSERT INTO identity_proof (nonce, made_at) VALUES (?, ?)",
        &[text(&proven.nonce), Sql::Integer(made_at)],
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.is_unique_violation() => Err(unverified(
            "the identity proof was used before: a replayed request".to_owned(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The id an anonymized household's device is kept under: `anon:` and a keyed hash of its id
/// (HMAC-SHA-256 with a key derived from `admin_token`). The device's certificate still finds
/// it; the id itself is gone from the database. Rotating `admin_token` changes every pseudonym,
/// after which such devices are unknown (403 `unknown_device`).
pub fn device_pseudonym(env: &Env, device: &str) -> ApiResult<String> {
    let secret = admin_secret(env)?;
    let key = keyed(secret.as_bytes(), b"wattlet-device-pseudonym/v1");
    let tag = keyed(&key, device.as_bytes());
    Ok(format!("{PSEUDONYM_PREFIX}{}", hex::encode(&tag[..16])))
}

/// The id device `device` is stored under (itself, or its pseudonym once anonymized).
pub fn stored_device_id(env: &Env, device: &str) -> ApiResult<Option<String>> {
    let rows = env.db.query(
        "SELECT id FROM measurement_device WHERE id IN (?, ?) ORDER BY id = ? DESC LIMIT 1",
        &[
            text(device),
            text(device_pseudonym(env, device)?),
            text(device),
        ],
    )?;
    Ok(rows.rows.first().and_then(|row| col_text(row, 0)))
}

fn keyed(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Authenticates a participant and resolves `meter` (a path segment) to one of their own
/// household's meters, as stored (lower-case hyphenated). Any other meter, malformed or not,
/// is 404, so other households' meters do not leak.
pub fn own_meter(req: &Request, env: &Env, meter: &str) -> ApiResult<String> {
    own_meter_of(req, env, meter).map(|(meter, _)| meter)
}

/// [`own_meter`], with the participant it authenticated.
pub fn own_meter_of(req: &Request, env: &Env, meter: &str) -> ApiResult<(String, Participant)> {
    let participant = participant(req, env)?;
    let db = &env.db;
    let not_found = || ApiError::not_found("no such meter");
    let meter = crate::validate::uuid("meter", meter).map_err(|_| not_found())?;
    let own = db.query(
        "SELECT 1 FROM meter WHERE uuid = ? AND household = ?",
        &[text(&meter), text(&participant.household)],
    )?;
    if own.rows.is_empty() {
        return Err(not_found());
    }
    Ok((meter, participant))
}

/// Authenticates a researcher or an administrator and resolves `meter` (a path segment) to a
/// meter they may read: any meter, or one of the token's household when it is restricted to
/// one. A malformed or unknown meter is 404.
pub fn readable_meter(req: &Request, env: &Env, meter: &str) -> ApiResult<String> {
    let grant = management(req, env)?;
    let meter =
        crate::validate::uuid("meter", meter).map_err(|_| ApiError::not_found("no such meter"))?;
    allow_household_of(
        &grant,
        &env.db,
        (
            "SELECT household FROM meter WHERE uuid = ?",
            &meter,
            "no such meter",
        ),
        false,
        Role::Researcher,
    )?;
    Ok(meter)
}

/// Authenticates a request to `/api/management/...`: `authorization: Bearer <admin_token>` (an
/// administrator without restrictions) or `Bearer wt1.…`, an access token signed with the key
/// derived from `admin_token` ([`wattlet_access_token`]). Says nothing yet about what the
/// request may do: see [`allow`].
pub fn management(req: &Request, env: &Env) -> ApiResult<Grant> {
    bearer_grant(req, env, "an administrator's or researcher's")
}

/// Authenticates a request to `/api/worker/...` and authorizes `write` (a change) on `scope`
/// for `needs` ([`Role::Manager`] or [`Role::Worker`]): only an access token of that role may
/// (401 `invalid_token` without a valid one, 403 `role_forbidden` for every other role, the
/// administrator's secret included).
pub fn worker(
    req: &Request,
    env: &Env,
    needs: Role,
    write: bool,
    scope: Scope<'_>,
) -> ApiResult<Grant> {
    let whose = match needs {
        Role::Manager => "the work manager's",
        _ => "a worker's",
    };
    let grant = bearer_grant(req, env, whose)?;
    allow(
        &grant,
        &Operation {
            write,
            needs,
            scope,
        },
    )?;
    Ok(grant)
}

/// The grant of the bearer token; `whose` names the token the endpoint needs.
fn bearer_grant(req: &Request, env: &Env, whose: &str) -> ApiResult<Grant> {
    let token = bearer(req).ok_or_else(|| {
        ApiError::refused(
            RefusalCode::InvalidToken,
            format!("{whose} bearer token is required"),
        )
    })?;
    let secret = admin_secret(env)?;
    if constant_time_eq(token.as_bytes(), secret.as_bytes()) {
        return Ok(Grant::unrestricted(Role::Administrator));
    }
    verify_token(env, token)
}

/// An access token's grant: its signature and expiry verified, its lifetime within
/// [`MAX_TOKEN_SECONDS`], its id not revoked.
fn verify_token(env: &Env, token: &str) -> ApiResult<Grant> {
    let invalid = |message: String| {
        ApiError::refused(
            RefusalCode::InvalidToken,
            format!("invalid bearer token: {message}"),
        )
    };
    let secret = admin_secret(env)?;
    let token = Token::decode(token).map_err(|e| invalid(e.to_string()))?;
    let now = unix_now();
    let grant = token
        .verify(&root_key(secret.as_bytes()), now)
        .map_err(|e| invalid(e.to_string()))?;
    let days = MAX_TOKEN_SECONDS / 86_400;
    match grant.expires_at() {
        None => {
            return Err(invalid(format!(
                "it never expires; tokens live at most {days} days (mint a new one)"
            )));
        }
        Some(at) if at > now + MAX_TOKEN_SECONDS + CLOCK_SLACK_SECONDS => {
            return Err(invalid(format!(
                "it expires at {at} (seconds since 1970), further ahead than the {days} days a token may live"
            )));
        }
        Some(_) => {}
    }
    let revoked = env.db.query(
        "SELECT revoked_at FROM revoked_token WHERE id = ?",
        &[text(token.id())],
    )?;
    if let Some(row) = revoked.rows.first() {
        return Err(ApiError::refused(
            RefusalCode::TokenRevoked,
            format!(
                "the token {} was revoked at {}",
                token.id(),
                timestamp::db_to_api(col_text(row, 0)).unwrap_or_default()
            ),
        ));
    }
    Ok(grant)
}

/// The token of `authorization: Bearer <token>` (the scheme in any case).
fn bearer(req: &Request) -> Option<&str> {
    header(req, "authorization")
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
}

/// Holds a bearer token's data caveats (`class`, `range`) against the endpoint, which serves
/// `class` (`None`: no class of personal data). Every endpoint passes here before its handler,
/// so a token restricted to one class of data reaches nothing else. Tokens without data
/// caveats (and requests without a token) pass untouched: their handlers authenticate them.
pub fn data_caveats(req: &Request, env: &Env, class: Option<DataClass>) -> ApiResult<()> {
    let Some(token) = bearer(req).and_then(|t| Token::decode(t).ok()) else {
        return Ok(());
    };
    if !wattlet_access_token::has_data_caveats(token.caveats()) {
        return Ok(());
    }
    let grant = verify_token(env, bearer(req).unwrap_or_default())?;
    grant.permits_data(class).map_err(refusal)
}

/// The time range of data the bearer token allows (its `range` caveats intersected; empty,
/// `from >= to`, when they do not overlap); `None` without one. Call after the request is
/// authenticated.
pub fn token_data_range(req: &Request) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let token = Token::decode(bearer(req)?).ok()?;
    let (from, to) = wattlet_access_token::data_range(token.caveats())?;
    // Beyond what a timestamp holds, the range is cut to the years 1970–9999.
    let at = |seconds: i64| {
        OffsetDateTime::from_unix_timestamp(seconds.clamp(0, 253_402_300_799))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    Some((at(from), at(to)))
}

/// The key access tokens are signed with, derived from `admin_token`.
pub fn token_root_key(env: &Env) -> ApiResult<[u8; 32]> {
    Ok(root_key(admin_secret(env)?.as_bytes()))
}

/// Seconds since the Unix epoch, as token expiries count.
pub fn unix_now() -> u64 {
    u64::try_from(timestamp::now().unix_timestamp()).unwrap_or(0)
}

fn admin_secret(env: &Env) -> ApiResult<String> {
    secret(env.secrets, Secret::AdminToken)
}

/// The Data API's secrets (Spin variables).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Secret {
    AdminToken,
    IdentityKey,
    KeyEncryptionKey,
}

impl Secret {
    fn name(self) -> &'static str {
        match self {
            Secret::AdminToken => "admin_token",
            Secret::IdentityKey => identity::KEY_VARIABLE,
            Secret::KeyEncryptionKey => crate::keys::KEK_VARIABLE,
        }
    }
}

/// The secret's value, strong enough; 500 and a log line otherwise.
pub(crate) fn secret(secrets: &dyn Secrets, which: Secret) -> ApiResult<String> {
    let name = which.name();
    let value = match which {
        Secret::AdminToken => secrets.admin_token(),
        Secret::IdentityKey => secrets.client_identity_key(),
        Secret::KeyEncryptionKey => secrets.key_encryption_key(),
    }
    .map_err(|e| ApiError::Internal(format!("the {name} variable is unavailable: {e}")))?;
    check_secret(&value).map_err(|weak| {
        ApiError::Internal(format!(
            "the {name} variable is too weak: {weak}; the Data API answers nothing until it is replaced"
        ))
    })?;
    Ok(value)
}

/// Whether every secret is available and strong: the Data API answers nothing else while one
/// is not (the message says which and why).
pub fn check_secrets(secrets: &dyn Secrets) -> ApiResult<()> {
    secret(secrets, Secret::AdminToken)?;
    secret(secrets, Secret::IdentityKey)?;
    secret(secrets, Secret::KeyEncryptionKey)?;
    Ok(())
}

/// Whether the authenticated holder may do `operation` (403 naming the restriction otherwise).
pub fn allow(grant: &Grant, operation: &Operation<'_>) -> ApiResult<()> {
    grant.permits(operation).map_err(refusal)
}

/// A valid token that does not allow the request: its role (`role_forbidden`) or one of its
/// restrictions (`token_restricted`).
pub fn refusal(denied: Denied) -> ApiError {
    let code = match denied {
        Denied::ReadOnly | Denied::Household | Denied::Class(_) | Denied::Range => {
            RefusalCode::TokenRestricted
        }
        Denied::Role
        | Denied::Participant
        | Denied::NotParticipant
        | Denied::Worker
        | Denied::NotWorker
        | Denied::Manager
        | Denied::NotManager => RefusalCode::RoleForbidden,
    };
    ApiError::refused(code, denied.to_string())
}

/// Authorizes an operation on one existing row: `lookup` selects the row's household by `key`
/// (`SELECT household FROM … WHERE … = ?`); no row is 404 with `missing`. Returns the household.
pub fn allow_household_of(
    grant: &Grant,
    db: &Db,
    (lookup, key, missing): (&str, &str, &str),
    write: bool,
    needs: Role,
) -> ApiResult<String> {
    let household = db
        .query(lookup, &[text(key)])?
        .rows
        .first()
        .and_then(|row| col_text(row, 0))
        .ok_or_else(|| ApiError::not_found(missing.to_owned()))?;
    allow(
        grant,
        &Operation {
            write,
            needs,
            scope: Scope::Household(&household),
        },
    )?;
    Ok(household)
}

/// Authenticates and authorizes in one step, for operations whose households are known up front.
pub fn management_for(req: &Request, env: &Env, operation: &Operation<'_>) -> ApiResult<Grant> {
    let grant = management(req, env)?;
    allow(&grant, operation)?;
    Ok(grant)
}

/// Authenticates an administrator for an operation on the whole study (`write`: a change).
pub fn administrator(req: &Request, env: &Env, write: bool) -> ApiResult<Grant> {
    management_for(
        req,
        env,
        &Operation {
            write,
            needs: Role::Administrator,
            scope: Scope::Global,
        },
    )
}

/// Compares in time that depends only on the lengths, not on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The caller as the access log names it, without anything anonymization would remove: a
/// device by its keyed pseudonym, a token by its random id, the admin secret as
/// `administrator`. Call after the request is authenticated.
pub fn actor(req: &Request, env: &Env) -> ApiResult<String> {
    if let Some(device) = header(req, identity::DEVICE) {
        let pseudonym = if device.starts_with(PSEUDONYM_PREFIX) {
            device.to_owned()
        } else {
            device_pseudonym(env, device)?
        };
        return Ok(format!("device:{pseudonym}"));
    }
    Ok(match bearer(req).map(Token::decode) {
        Some(Ok(token)) => format!("token:{}", token.id()),
        _ => "administrator".to_owned(),
    })
}

/// The role a policy sees for a management grant: the narrowest role caveat.
pub fn policy_role(grant: &Grant) -> wattlet_policy::Role {
    let roles: Vec<Role> = grant
        .caveats()
        .iter()
        .filter_map(|c| match c {
            wattlet_access_token::Caveat::Role(r) => Some(*r),
            _ => None,
        })
        .collect();
    if roles.contains(&Role::Participant) {
        wattlet_policy::Role::Participant
    } else if roles
        .iter()
        .any(|r| matches!(r, Role::Worker | Role::Manager))
    {
        wattlet_policy::Role::Service
    } else if roles.contains(&Role::Researcher) {
        wattlet_policy::Role::Researcher
    } else {
        wattlet_policy::Role::Administrator
    }
}

/// The caveats as encoded, for a policy's context.
pub fn encoded_caveats(grant: &Grant) -> Vec<String> {
    grant
        .caveats()
        .iter()
        .map(wattlet_access_token::Caveat::encode)
        .collect()
}

/// The participant's token's caveats (empty for a device's certificate).
pub fn participant_caveats(req: &Request, env: &Env) -> Vec<String> {
    if header(req, identity::DEVICE).is_some() {
        return Vec::new();
    }
    bearer(req)
        .and_then(|t| verify_token(env, t).ok())
        .map(|g| encoded_caveats(&g))
        .unwrap_or_default()
}
