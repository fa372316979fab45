//! Consent, per household: `not_granted` → `granted` → `revoked`, each step once, never back.
//!
//! The states, the steps and what each state permits are `wattlet_survey::ConsentState`'s;
//! SQL only stores [`ConsentState::as_str`] and selects by [`ConsentState::permitting`]. Each
//! step is one conditional `UPDATE … WHERE state = <from> RETURNING …`, so two concurrent
//! requests cannot both make it.

use serde_json::{Value, json};
use wattlet_survey::consent::TransitionError;
use wattlet_survey::{ConsentState, RefusalCode, Use};

use crate::anonymization;
use crate::auth;
use crate::db::{Db, Value as Sql, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::http::{Request, Response, json_response};
use crate::services::Env;
use crate::timestamp::{self, SQL_NOW};

pub struct Consent {
    pub state: ConsentState,
    granted_at: Option<String>,
    revoked_at: Option<String>,
}

impl Consent {
    pub fn json(&self) -> Value {
        consent_json(self.state, self.granted_at.clone(), self.revoked_at.clone())
    }
}

/// `{"state","granted_at","revoked_at"}` from database values.
pub fn consent_json(
    state: ConsentState,
    granted_at: Option<String>,
    revoked_at: Option<String>,
) -> Value {
    json!({
        "state": state.as_str(),
        "granted_at": timestamp::db_to_api(granted_at),
        "revoked_at": timestamp::db_to_api(revoked_at),
    })
}

/// A stored state (`NULL`: a household without a consent row, which is `not_granted`).
pub fn parse_state(stored: Option<String>) -> ApiResult<ConsentState> {
    match stored {
        None => Ok(ConsentState::NotGranted),
        Some(s) => s.parse().map_err(|e| ApiError::Database(format!("{e}"))),
    }
}

/// `<column> IN (…)` of the states that permit `what`, with its parameters.
pub fn permitting(column: &str, what: Use) -> (String, Vec<Sql>) {
    let states: Vec<Sql> = ConsentState::permitting(what)
        .map(|s| text(s.as_str()))
        .collect();
    let condition = format!("{column} IN ({})", crate::db::placeholders(states.len()));
    (condition, states)
}

/// The refusal of `what` by a household whose consent is `state`; `Ok` when it permits it.
pub fn require(state: ConsentState, what: Use) -> ApiResult<()> {
    match state {
        _ if state.permits(what) => Ok(()),
        ConsentState::Revoked => Err(ApiError::refused(
            RefusalCode::ConsentRevoked,
            "consent revoked",
        )),
        ConsentState::NotGranted | ConsentState::Granted => Err(ApiError::refused(
            RefusalCode::ConsentNotGranted,
            "consent not granted",
        )),
    }
}

fn from_rows(result: &crate::db::Rows) -> ApiResult<Option<Consent>> {
    let Some(row) = result.rows.first() else {
        return Ok(None);
    };
    Ok(Some(Consent {
        state: parse_state(col_text(row, 0))?,
        granted_at: col_text(row, 1),
        revoked_at: col_text(row, 2),
    }))
}

/// The household's consent (`not_granted` if no row exists).
pub fn load(db: &Db, household: &str) -> ApiResult<Consent> {
    let result = db.query(
        "SELECT state, granted_at, revoked_at FROM consent WHERE household = ?",
        &[text(household)],
    )?;
    Ok(from_rows(&result)?.unwrap_or(Consent {
        state: ConsentState::NotGranted,
        granted_at: None,
        revoked_at: None,
    }))
}

/// `GET /api/household/consent`: `{"state","granted_at","revoked_at"}`.
pub fn get(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    Ok(json_response(
        200,
        &load(db, &participant.household)?.json(),
    ))
}

/// `POST /api/household/consent` \[3\]: [`ConsentState::grant`].
pub fn grant(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    // The INSERT covers a household without a consent row (registration always makes one).
    db.exec(
        "INSERT OR IGNORE INTO consent (household, state) VALUES (?, ?)",
        &[
            text(&participant.household),
            text(ConsentState::NotGranted.as_str()),
        ],
    )?;
    let consent = step(db, &participant.household, ConsentState::grant)?;
    Ok(json_response(200, &consent.json()))
}

/// `DELETE /api/household/consent` \[4\]: [`ConsentState::revoke`]; anonymizes the household
/// before it answers.
pub fn revoke(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let participant = auth::participant(req, env)?;
    let consent = step(db, &participant.household, ConsentState::revoke)?;
    on_consent_revoked(env, &participant.household);
    Ok(json_response(200, &consent.json()))
}

type Step = fn(ConsentState) -> Result<ConsentState, TransitionError>;

/// Makes `step` from the one state it starts from, in one conditional `UPDATE`. Refused with
/// the code of the state machine's refusal (`consent_already_granted`, `consent_revoked`,
/// `consent_not_granted`).
pub fn step(db: &Db, household: &str, step: Step) -> ApiResult<Consent> {
    for (from, to) in ConsentState::ALL
        .into_iter()
        .filter_map(|from| step(from).ok().map(|to| (from, to)))
    {
        // The time of the step: when it was granted, or revoked, by the database's clock, as
        // uploads stamp `received_at`: no measurement is received after the revocation.
        let stamp = match to {
            ConsentState::Granted => "granted_at",
            ConsentState::Revoked => "revoked_at",
            ConsentState::NotGranted => {
                return Err(ApiError::Internal(
                    "no consent step leads back to not_granted".into(),
                ));
            }
        };
        let result = db.query(
            &format!(
                "UPDATE consent SET state = ?, {stamp} = {SQL_NOW}
                 WHERE household = ? AND state = ?
                 RETURNING state, granted_at, revoked_at"
            ),
            &[text(to.as_str()), text(household), text(from.as_str())],
        )?;
        if let Some(consent) = from_rows(&result)? {
            return Ok(consent);
        }
    }
    match step(load(db, household)?.state) {
        Err(refused) => Err(ApiError::refused(
            RefusalCode::from(refused),
            refused.to_string(),
        )),
        // Another request moved the state between the UPDATE and this read.
        Ok(_) => Err(ApiError::conflict("consent changed concurrently; retry")),
    }
}

/// Runs right after the household's consent became `revoked`: anonymizes it at once. The
/// revocation stands either way; a failure is logged and the anonymization is finished by a
/// later request (`anonymization::complete_pending`).
fn on_consent_revoked(env: &Env, household: &str) {
    if let Err(e) = anonymization::anonymize_household(env, household) {
        eprintln!("wattlet-data-api: anonymizing household {household} on revocation: {e}");
    }
}
