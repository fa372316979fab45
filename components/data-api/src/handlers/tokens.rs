//! Minting access tokens: `POST /api/management/token` (administrators, for researchers,
//! administrators, participants and workers) and `POST /api/household/token` (a device, for its
//! participant's device UI). Holders restrict them further on their own
//! (`wattlet token attenuate`).

use serde::Deserialize;
use serde_json::json;
use wattlet_access_token::{Caveat, Operation, Role, Scope, Token};

use crate::auth;
use crate::db::text;
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

/// Body `{"role":"researcher"|"administrator"|"participant"|"worker","expires_at"?,"household"?,
/// "read_only"?}` →
/// 201 `{"token","caveats":[…]}`. The new token keeps the caller's own expiry, so minting never
/// outlives the caller's token.
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
            "role: {:?} is not administrator, researcher, participant or worker",
            body.role
        ))
    })?;
    if role == Role::Participant && body.household.is_none() {
        return Err(bad("household: a participant's token needs its household"));
    }
    let mut token = new_token(env, role)?;
    for caveat in grant.caveats() {
        if let Caveat::ExpiresAt(_) = caveat {
            token = token.attenuate(caveat.clone());
        }
    }
    if let Some(expires_at) = &body.expires_at {
        let at = timestamp::parse(expires_at).map_err(|e| e.at("expires_at"))?;
        let at = u64::try_from(at.unix_timestamp())
            .ok()
            .filter(|t| *t > auth::unix_now())
            .ok_or_else(|| bad("expires_at: must be in the future"))?;
        token = token.attenuate(Caveat::ExpiresAt(at));
    }
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
        &json!({ "token": token.encode(), "caveats": caveats }),
    ))
}

/// How long the token a device obtains for its participant lasts.
const PARTICIPANT_TOKEN_SECONDS: u64 = 12 * 3600;

/// `POST /api/household/token` (device, mutual TLS): a participant's token for the device's
/// household, valid 12 h → 201 `{"token","expires_at","ui":"/ui/device/#token=…"}`. The device
/// shows the link to its participant; the token stays in the URL fragment, which browsers do
/// not send to servers.
pub fn mint_participant(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let device = auth::device(req, db)?;
    let expires = auth::unix_now() + PARTICIPANT_TOKEN_SECONDS;
    let token = new_token(env, Role::Participant)?
        .attenuate(Caveat::Household(device.household))
        .attenuate(Caveat::ExpiresAt(expires));
    let expires_at = i64::try_from(expires)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(timestamp::to_api)
        .ok_or_else(|| ApiError::Internal("expiry out of range".into()))?;
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
