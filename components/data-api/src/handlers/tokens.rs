//! `POST /api/management/token`: administrators mint access tokens for researchers and
//! administrators. Holders restrict them further on their own (`wattlet token attenuate`).

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Request, Response};
use wattlet_access_token::{Caveat, Operation, Role, Scope, Token};

use crate::auth;
use crate::db::{Db, text};
use crate::error::{ApiError, ApiResult};
use crate::json_response;
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

/// Body `{"role":"researcher"|"administrator","expires_at"?,"household"?,"read_only"?}` →
/// 201 `{"token","caveats":[…]}`. The new token keeps the caller's own expiry, so minting never
/// outlives the caller's token.
pub fn mint(req: &Request, db: &Db) -> ApiResult<Response> {
    let grant = auth::management_for(
        req,
        &Operation {
            write: true,
            needs: Role::Administrator,
            scope: Scope::Global,
        },
    )?;
    let body: MintRequest = json_body(req.body())?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        bad(format!(
            "role: {:?} is not administrator or researcher",
            body.role
        ))
    })?;
    let mut id = [0u8; 16];
    getrandom::fill(&mut id)
        .map_err(|e| ApiError::Internal(format!("no secure random source: {e}")))?;
    let mut token = Token::mint(&auth::token_root_key()?, &hex::encode(id), role);
    for caveat in grant.caveats() {
        if let Caveat::ExpiresAt(_) = caveat {
            token = token.attenuate(caveat.clone());
        }
    }
    if let Some(expires_at) = &body.expires_at {
        let at = timestamp::parse(expires_at).map_err(|e| bad(format!("expires_at: {e}")))?;
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
