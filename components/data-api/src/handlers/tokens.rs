//! Minting access tokens: `POST /api/management/token` (administrators, for researchers,
//! administrators, participants and workers) and `POST /api/household/token` (a device, for its
//! participant's device UI); revoking them by id: `POST /api/management/token/:id/revoke`.
//! Holders restrict them further on their own (`wattlet token attenuate`). Every token expires
//! (see `auth::MAX_TOKEN_SECONDS`).

use serde::Deserialize;
use serde_json::json;
use wattlet_access_token::{Caveat, Operation, Role, Scope, Token};

use crate::auth;
use crate::db::{col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::http::{Request, Response, json_response};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad, json_body};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    role: String,
    /// RFC 3339; the token is refused from then on.
    #[serde(default)]
    expires_at: Option<String>,
    /// A household id: the token reaches only that household.
    #[serde(default)]
    household: Option<String>,
    #[serde(default)]
    read_only: bool,
}

/// Body `{"role":"researcher"|"administrator"|"participant"|"worker"|"manager","expires_at"?,"household"?,
/// "read_only"?}` → 201 `{"token","id","expires_at","caveats":[…]}`. The token expires at
/// `expires_at` (at most [`auth::MAX_TOKEN_SECONDS`] ahead; default
/// [`auth::DEFAULT_TOKEN_SECONDS`]), and never after the caller's own token.
pub fn mint(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let grant = auth::management_for(
        req,
        env,
        &Operation {
            write: true,
            needs: Role::Administrator,
            scope: Scope::Global,
        },
    )?;
    let body: MintRequest = json_body(req.body())?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        bad(format!(
            "role: {:?} is not administrator, researcher, participant, worker or manager",
            body.role
        ))
    })?;
    if role == Role::Participant && body.household.is_none() {
        return Err(bad("household: a participant's token needs its household"));
    }
    let now = auth::unix_now();
    let requested = match &body.expires_at {
        Some(expires_at) => {
            let at = timestamp::parse(expires_at).map_err(|e| e.at("expires_at"))?;
            let at = u64::try_from(at.unix_timestamp())
                .ok()
                .filter(|t| *t > now)
                .ok_or_else(|| bad("expires_at: must be in the future"))?;
            if at > now + auth::MAX_TOKEN_SECONDS {
                return Err(bad(format!(
                    "expires_at: at most {} days ahead, until {}",
                    auth::MAX_TOKEN_SECONDS / 86_400,
                    api_time(now + auth::MAX_TOKEN_SECONDS)?
                )));
            }
            at
        }
        None => now + auth::DEFAULT_TOKEN_SECONDS,
    };
    let expires = grant
        .expires_at()
        .map_or(requested, |own| own.min(requested));
    let mut token = new_token(env, role)?.attenuate(Caveat::ExpiresAt(expires));
    if let Some(household) = &body.household {
        let household = validate::uuid("household", household)?;
        let known = db.query("SELECT 1 FROM household WHERE id = ?", &[text(&household)])?;
        if known.rows.is_empty() {
            return Err(bad(format!("household: no household {household}")));
        }
        token = token.attenuate(Caveat::Household(household));
    }
    if body.read_only {
        token = token.attenuate(Caveat::ReadOnly);
    }
    let caveats: Vec<String> = token.caveats().iter().map(Caveat::encode).collect();
    Ok(json_response(
        201,
        &json!({ "token": token.encode(), "id": token.id(), "expires_at": api_time(expires)?,
                 "caveats": caveats }),
    ))
}

/// `POST /api/management/token/:id/revoke` (administrators): every token with this id, and every
/// token restricted from one, is refused from now on (401 `token_revoked`). 200
/// `{"id","revoked_at"}`, again (with the first time) on a repeated call. Ids are listed in a
/// mint's answer and by `wattlet token inspect`.
pub fn revoke(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    auth::management_for(
        req,
        env,
        &Operation {
            write: true,
            needs: Role::Administrator,
            scope: Scope::Global,
        },
    )?;
    let valid = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(bad(format!(
            "id: {:?} is not a token id (1–128 of A–Z, a–z, 0–9, '.', '_', '-')",
            id.chars().take(140).collect::<String>()
        )));
    }
    let now = timestamp::now();
    // A token of an id revoked this long ago has expired anyway: its row can go.
    let forgotten = now - time::Duration::seconds(auth::REVOCATION_KEPT_SECONDS);
    let db = &env.db;
    db.exec(
        "DELETE FROM revoked_token WHERE revoked_at < ?",
        &[text(timestamp::to_db(forgotten))],
    )?;
    db.exec(
        "INSERT OR IGNORE INTO revoked_token (id, revoked_at) VALUES (?, ?)",
        &[text(id), text(timestamp::to_db(now))],
    )?;
    let revoked_at = db
        .query(
            "SELECT revoked_at FROM revoked_token WHERE id = ?",
            &[text(id)],
        )?
        .rows
        .first()
        .and_then(|row| col_text(row, 0));
    Ok(json_response(
        200,
        &json!({ "id": id, "revoked_at": timestamp::db_to_api(revoked_at) }),
    ))
}

/// Seconds since 1970 as the API writes times.
fn api_time(seconds: u64) -> ApiResult<String> {
    i64::try_from(seconds)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(timestamp::to_api)
        .ok_or_else(|| ApiError::Internal("a time out of range".into()))
}

/// How long the token a device obtains for its participant lasts.
const PARTICIPANT_TOKEN_SECONDS: u64 = 12 * 3600;

/// `POST /api/household/token` (device, mutual TLS): a participant's token for the device's
/// household, valid 12 h → 201 `{"token","expires_at","ui":"/ui/device/#token=…"}`. The device
/// shows the link to its participant; the token stays in the URL fragment, which browsers do
/// not send to servers.
pub fn mint_participant(req: &Request, env: &Env) -> ApiResult<Response> {
    let device = auth::device(req, env)?;
    let expires = auth::unix_now() + PARTICIPANT_TOKEN_SECONDS;
    let token = new_token(env, Role::Participant)?
        .attenuate(Caveat::Household(device.household))
        .attenuate(Caveat::ExpiresAt(expires));
    let expires_at = api_time(expires)?;
    let token = token.encode();
    Ok(json_response(
        201,
        &json!({ "token": token, "expires_at": expires_at, "ui": format!("/ui/device/#token={token}") }),
    ))
}

/// A token for `role` with a random id, signed with the key derived from `admin_token`.
fn new_token(env: &Env, role: Role) -> ApiResult<Token> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| ApiError::Internal(format!("no secure random source: {e}")))?;
    Ok(Token::mint(
        &auth::token_root_key(env)?,
        &hex::encode(id),
        role,
    ))
}
