//! Who is calling.
//!
//! **Devices and participants** authenticate with X.509 client certificates (mutual TLS). TLS
//! terminates in the host (or an ingress in front of Spin), which verifies the certificate and
//! passes the identity in the headers of [`wattlet_survey::identity`] (device id, email and
//! certificate serial; the serial is not used here). The host
//! always strips these headers from incoming requests first, so the component may trust them.
//! A request is authenticated when the device exists, is not revoked and its household's user
//! has the certificate's email (an anonymized household has no user: then the device alone);
//! revocation is checked on every request, not only at handshake. Without a certificate, a
//! participant's token (`role=participant`, one household; `POST /api/household/token`) reaches
//! the household's endpoints, but never uploads or status reports.
//!
//! **Administrators and researchers** send `authorization: Bearer <token>`: the Spin variable
//! `admin_token` itself (compared in constant time), or an attenuable access token
//! (`wattlet-access-token`) minted by `POST /api/management/token`.
//!
//! **Workers** (the NIALM manager and workers) send an access token of role `worker`, which
//! reaches `/api/worker/...` and nothing else; no other role reaches those ([`worker`]).

use wattlet_access_token::{Denied, Grant, Operation, Role, Scope, Token, TokenError, root_key};
use wattlet_survey::RefusalCode;
use wattlet_survey::identity;

use crate::db::{Db, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::http::Request;
use crate::services::Env;
use crate::timestamp;

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
        return device(req, db).map(|d| Participant {
            household: d.household,
        });
    }
    let Some(token) = bearer(req) else {
        return Err(ApiError::refused(
            RefusalCode::NotAuthenticated,
            "a client certificate (mutual TLS) or a participant's token is required",
        ));
    };
    let root = token_root_key(env)?;
    let grant = Token::decode(token)
        .and_then(|t| t.verify(&root, unix_now()))
        .map_err(|e| ApiError::refused(RefusalCode::InvalidToken, format!("invalid token: {e}")))?;
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

/// Authenticates a device by its client certificate and records its activity.
pub fn device(req: &Request, db: &Db) -> ApiResult<Device> {
    let (Some(device), Some(email)) = (header(req, identity::DEVICE), header(req, identity::EMAIL))
    else {
        return Err(ApiError::refused(
            RefusalCode::NotAuthenticated,
            "a client certificate is required (mutual TLS)",
        ));
    };
    let result = db.query(
        r#"SELECT d.household, d.revoked_at, u.email
           FROM measurement_device d
           JOIN household h ON h.id = d.household
           LEFT JOIN "user" u ON u.id = h.user
           WHERE d.id = ?"#,
        &[text(device)],
    )?;
    let Some(row) = result.rows.first() else {
        return Err(ApiError::refused(
            RefusalCode::UnknownDevice,
            "unknown device",
        ));
    };
    let household =
        col_text(row, 0).ok_or_else(|| ApiError::Database("device without household".into()))?;
    if col_text(row, 1).is_some() {
        return Err(ApiError::refused(
            RefusalCode::DeviceRevoked,
            "device revoked",
        ));
    }
    // An anonymized household has no contact left to compare with: its device, identified by
    // its certificate, still learns that the consent is revoked and is refused uploads.
    let stored = col_text(row, 2);
    if stored.is_some() && stored.as_deref() != Some(normalize_email(email).as_str()) {
        // Not this device as registered: unknown, as far as the caller can learn.
        return Err(ApiError::refused(
            RefusalCode::UnknownDevice,
            "the certificate's email does not match the device's participant",
        ));
    }
    db.exec(
        "UPDATE measurement_device SET last_activity = ? WHERE id = ?",
        &[text(timestamp::to_db(timestamp::now())), text(device)],
    )?;
    Ok(Device {
        device: device.to_owned(),
        household,
    })
}

/// Authenticates a participant and resolves `meter` (a path segment) to one of their own
/// household's meters, as stored (lower-case hyphenated). Any other meter, malformed or not,
/// is 404, so other households' meters do not leak.
pub fn own_meter(req: &Request, env: &Env, meter: &str) -> ApiResult<String> {
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
    Ok(meter)
}

/// Authenticates a request to `/api/management/...`: `authorization: Bearer <admin_token>` (an
/// administrator without restrictions) or `Bearer wt1.…`, an access token signed with the key
/// derived from `admin_token` ([`wattlet_access_token`]). Says nothing yet about what the
/// request may do: see [`allow`].
pub fn management(req: &Request, env: &Env) -> ApiResult<Grant> {
    bearer_grant(req, env, "an administrator's or researcher's")
}

/// Authenticates a request to `/api/worker/...` and authorizes `write` (a change) on `scope`:
/// only a `worker` access token may (401 `invalid_token` without a valid one, 403
/// `role_forbidden` for every other role, the administrator's secret included).
pub fn worker(req: &Request, env: &Env, write: bool, scope: Scope<'_>) -> ApiResult<Grant> {
    let grant = bearer_grant(req, env, "a worker's")?;
    allow(
        &grant,
        &Operation {
            write,
            needs: Role::Worker,
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
    let invalid = |e: TokenError| {
        ApiError::refused(
            RefusalCode::InvalidToken,
            format!("invalid bearer token: {e}"),
        )
    };
    Token::decode(token)
        .and_then(|t| t.verify(&root_key(secret.as_bytes()), unix_now()))
        .map_err(invalid)
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

/// The key access tokens are signed with, derived from `admin_token`.
pub fn token_root_key(env: &Env) -> ApiResult<[u8; 32]> {
    Ok(root_key(admin_secret(env)?.as_bytes()))
}

/// Seconds since the Unix epoch, as token expiries count.
pub fn unix_now() -> u64 {
    u64::try_from(timestamp::now().unix_timestamp()).unwrap_or(0)
}

fn admin_secret(env: &Env) -> ApiResult<String> {
    let secret = env
        .secrets
        .admin_token()
        .map_err(|e| ApiError::Internal(format!("the admin_token variable is unavailable: {e}")))?;
    if secret.is_empty() {
        return Err(ApiError::Internal(
            "the admin_token variable is empty".into(),
        ));
    }
    Ok(secret)
}

/// Whether the authenticated holder may do `operation` (403 naming the restriction otherwise).
pub fn allow(grant: &Grant, operation: &Operation<'_>) -> ApiResult<()> {
    grant.permits(operation).map_err(refusal)
}

/// A valid token that does not allow the request: its role (`role_forbidden`) or one of its
/// restrictions (`token_restricted`).
pub fn refusal(denied: Denied) -> ApiError {
    let code = match denied {
        Denied::ReadOnly | Denied::Household => RefusalCode::TokenRestricted,
        Denied::Role
        | Denied::Participant
        | Denied::NotParticipant
        | Denied::Worker
        | Denied::NotWorker => RefusalCode::RoleForbidden,
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
