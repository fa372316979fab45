//! Consent, per household: `not_granted` → `granted` → `revoked`, each step once, never back.
//!
//! Each transition is one conditional `UPDATE … WHERE state = <from> RETURNING …`, so two
//! concurrent requests cannot both make the same step.

use serde_json::{Value, json};
use spin_sdk::http::{Request, Response};

use crate::anonymization;
use crate::auth;
use crate::db::{Db, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::json_response;
use crate::timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotGranted,
    Granted,
    Revoked,
}

impl State {
    fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "not_granted" => Ok(State::NotGranted),
            "granted" => Ok(State::Granted),
            "revoked" => Ok(State::Revoked),
            other => Err(ApiError::Database(format!(
                "unknown consent state {other:?}"
            ))),
        }
    }
}

pub struct Consent {
    pub state: State,
    state_text: String,
    granted_at: Option<String>,
    revoked_at: Option<String>,
}

impl Consent {
    pub fn json(&self) -> Value {
        consent_json(
            self.state_text.clone(),
            self.granted_at.clone(),
            self.revoked_at.clone(),
        )
    }
}

/// `{"state","granted_at","revoked_at"}` from database values.
pub fn consent_json(
    state: String,
    granted_at: Option<String>,
    revoked_at: Option<String>,
) -> Value {
    json!({
        "state": state,
        "granted_at": timestamp::db_to_api(granted_at),
        "revoked_at": timestamp::db_to_api(revoked_at),
    })
}

fn from_rows(result: &spin_sdk::sqlite::QueryResult) -> ApiResult<Option<Consent>> {
    let Some(row) = result.rows.first() else {
        return Ok(None);
    };
    let state_text = col_text(row, 0).unwrap_or_else(|| "not_granted".into());
    Ok(Some(Consent {
        state: State::parse(&state_text)?,
        state_text,
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
        state: State::NotGranted,
        state_text: "not_granted".into(),
        granted_at: None,
        revoked_at: None,
    }))
}

/// `GET /api/household/consent`: `{"state","granted_at","revoked_at"}`.
pub fn get(req: &Request, db: &Db) -> ApiResult<Response> {
    let participant = auth::participant(req, db)?;
    Ok(json_response(
        200,
        &load(db, &participant.household)?.json(),
    ))
}

/// `POST /api/household/consent` \[3\]: not granted → granted. 409 in any other state.
pub fn grant(req: &Request, db: &Db) -> ApiResult<Response> {
    let participant = auth::participant(req, db)?;
    let now = text(timestamp::to_db(timestamp::now()));
    // The INSERT covers a household without a consent row (registration always makes one).
    db.exec(
        "INSERT OR IGNORE INTO consent (household, state) VALUES (?, 'not_granted')",
        &[text(&participant.household)],
    )?;
    let result = db.query(
        "UPDATE consent SET state = 'granted', granted_at = ?
         WHERE household = ? AND state = 'not_granted'
         RETURNING state, granted_at, revoked_at",
        &[now, text(&participant.household)],
    )?;
    if let Some(consent) = from_rows(&result)? {
        return Ok(json_response(200, &consent.json()));
    }
    let current = load(db, &participant.household)?;
    Err(ApiError::Conflict(match current.state {
        State::Granted => "consent is already granted".into(),
        State::Revoked => "consent was revoked and cannot be granted again".into(),
        State::NotGranted => "consent changed concurrently; retry".into(),
    }))
}

/// `DELETE /api/household/consent` \[4\]: granted → revoked. 409 in any other state.
pub fn revoke(req: &Request, db: &Db) -> ApiResult<Response> {
    let participant = auth::participant(req, db)?;
    let now = text(timestamp::to_db(timestamp::now()));
    let result = db.query(
        "UPDATE consent SET state = 'revoked', revoked_at = ?
         WHERE household = ? AND state = 'granted'
         RETURNING state, granted_at, revoked_at",
        &[now, text(&participant.household)],
    )?;
    if let Some(consent) = from_rows(&result)? {
        on_consent_revoked(db, &participant.household);
        return Ok(json_response(200, &consent.json()));
    }
    let current = load(db, &participant.household)?;
    Err(ApiError::Conflict(match current.state {
        State::NotGranted => "consent was never granted".into(),
        State::Revoked => "consent is already revoked".into(),
        State::Granted => "consent changed concurrently; retry".into(),
    }))
}

/// Runs right after the household's consent became `revoked`: anonymizes it at once. The
/// revocation stands either way; a failure is logged and the anonymization is finished by a
/// later request (`anonymization::complete_pending`).
fn on_consent_revoked(db: &Db, household: &str) {
    if let Err(e) = anonymization::anonymize_household(db, household) {
        eprintln!("wattlet-data-api: anonymizing household {household} on revocation: {e}");
    }
}
