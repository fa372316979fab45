//! Staged rollouts ([`crate::rollout`]): administrators start, advance, resume and cancel them;
//! devices ask which versions they may install and report what became of an update.
//!
//! `rollout` holds each rollout's plan and the state [`Rollout::advance`] returned;
//! `rollout_outcome` each device's latest outcome for a rollout, with the stage whose cohort the
//! device belongs to. A device's report and the pause it may trigger are two statements: a
//! crash between them leaves the report stored, and the next report of that cohort pauses.

use serde::Deserialize;
use serde_json::{Value, json};
use wattlet_survey::RefusalCode;

use crate::auth;
use crate::db::{Db, Row, Value as Sql, col_required, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::http::{Request, Response, json_response, no_content};
use crate::rollout::{self, Event, Plan, Rollout, RolloutError, State, Tally};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{bad, json_body};

/// The default plan: 5 %, then half, then everyone; pause when over 10 % of at least 5
/// reports of a stage's cohort rolled back.
const DEFAULT_STAGES: [u32; 3] = [5, 50, 100];
const DEFAULT_MAX_FAILURE_RATE: f64 = 0.1;
const DEFAULT_MIN_REPORTS: u32 = 5;
const MAX_STAGES: usize = 10;
const MAX_REASON: usize = 512;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRollout {
    component: String,
    version: String,
    stages: Option<Vec<u32>>,
    max_failure_rate: Option<f64>,
    min_reports: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    component: String,
    version: String,
    outcome: String,
    reason: Option<String>,
}

const COLUMNS: &str = "id, component, version, stages, max_failure_rate, min_reports, state, \
                       stage, reason, created_at, updated_at";

/// A stored rollout, read back.
struct Stored {
    id: String,
    component: String,
    version: String,
    rollout: Rollout,
    created_at: String,
    updated_at: String,
}

/// A component name as the update repository has it (`wattlet_updates::validate_name`).
fn component_name(name: &str) -> ApiResult<String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(bad(format!(
            "component: {name:?} is not a component name (1 to 64 of a-z, 0-9 and -)"
        )));
    }
    Ok(name.to_owned())
}

fn version(field: &str, version: &str) -> ApiResult<semver::Version> {
    semver::Version::parse(version).map_err(|e| {
        bad(format!(
            "{field}: {version:?} is not a semantic version: {e}"
        ))
    })
}

fn plan_error(e: RolloutError) -> ApiError {
    bad(e.to_string())
}

fn state_from(name: &str, stage: Option<i64>, reason: Option<String>) -> ApiResult<State> {
    let stage = || {
        stage
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| ApiError::Internal(format!("rollout state {name} without a stage")))
    };
    Ok(match name {
        "active" => State::Active { stage: stage()? },
        "paused" => State::Paused {
            stage: stage()?,
            reason: reason.unwrap_or_default(),
        },
        "complete" => State::Complete,
        "cancelled" => State::Cancelled,
        other => {
            return Err(ApiError::Internal(format!(
                "unknown rollout state {other:?}"
            )));
        }
    })
}

fn stored(row: &Row) -> ApiResult<Stored> {
    let stages: Vec<u32> = serde_json::from_str(&col_required(row, 3)?)
        .map_err(|e| ApiError::Internal(format!("rollout stages: {e}")))?;
    let max_failure_rate = row.get::<f64>(4).unwrap_or_default();
    let min_reports = row
        .get::<i64>(5)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(DEFAULT_MIN_REPORTS);
    let plan = Plan::new(&stages, max_failure_rate, min_reports)
        .map_err(|e| ApiError::Internal(format!("stored rollout plan: {e}")))?;
    let state = state_from(&col_required(row, 6)?, row.get::<i64>(7), col_text(row, 8))?;
    Ok(Stored {
        id: col_required(row, 0)?,
        component: col_required(row, 1)?,
        version: col_required(row, 2)?,
        rollout: Rollout { plan, state },
        created_at: col_required(row, 9)?,
        updated_at: col_required(row, 10)?,
    })
}

fn load(db: &Db, id: &str) -> ApiResult<Stored> {
    let rows = db.query(
        &format!("SELECT {COLUMNS} FROM rollout WHERE id = ?"),
        &[text(id)],
    )?;
    stored(
        rows.rows
            .first()
            .ok_or_else(|| ApiError::not_found("no such rollout"))?,
    )
}

/// Each stage's cohort tally of a rollout.
fn tallies(db: &Db, id: &str, stages: usize) -> ApiResult<Vec<Tally>> {
    let mut tallies = vec![Tally::default(); stages];
    let rows = db.query(
        "SELECT stage, outcome, COUNT(*) FROM rollout_outcome WHERE rollout = ?
         GROUP BY stage, outcome",
        &[text(id)],
    )?;
    for row in &rows.rows {
        let stage = row.get::<i64>(0).and_then(|s| usize::try_from(s).ok());
        let count = row
            .get::<i64>(2)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let Some(tally) = stage.and_then(|s| tallies.get_mut(s)) else {
            continue;
        };
        match col_text(row, 1).as_deref() {
            Some("committed") => tally.committed += count,
            Some("rolled_back") => tally.rolled_back += count,
            _ => {}
        }
    }
    Ok(tallies)
}

fn to_json(db: &Db, s: &Stored) -> ApiResult<Value> {
    let plan = &s.rollout.plan;
    let stages = plan.stages_percent();
    let stage = s.rollout.state.stage(plan);
    let cohorts: Vec<Value> = tallies(db, &s.id, stages.len())?
        .iter()
        .zip(&stages)
        .map(|(t, percent)| {
            json!({"up_to_percent": percent, "committed": t.committed, "rolled_back": t.rolled_back})
        })
        .collect();
    let reason = match &s.rollout.state {
        State::Paused { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    Ok(json!({
        "id": s.id,
        "component": s.component,
        "version": s.version,
        "stages": stages,
        "max_failure_rate": plan.max_failure_rate(),
        "min_reports": plan.min_reports(),
        "state": s.rollout.state.name(),
        "stage_percent": stage.map(|i| stages[i]),
        "reason": reason,
        "cohorts": cohorts,
        "created_at": timestamp::db_to_api(Some(s.created_at.clone())),
        "updated_at": timestamp::db_to_api(Some(s.updated_at.clone())),
    }))
}

/// Stores `state` if the rollout still has the state it was read with (a concurrent change
/// wins; the caller reports a conflict).
fn store_state(db: &Db, s: &Stored, state: &State) -> ApiResult<bool> {
    let (stage, reason) = match state {
        State::Active { stage } => (Some(*stage), None),
        State::Paused { stage, reason } => (Some(*stage), Some(reason.clone())),
        State::Complete => (Some(s.rollout.plan.stages_percent().len() - 1), None),
        State::Cancelled => (None, None),
    };
    let stage_sql = |stage: Option<usize>| match stage {
        Some(i) => Sql::Integer(i as i64),
        None => Sql::Null,
    };
    let old_stage = s.rollout.state.stage(&s.rollout.plan);
    let updated = db.query(
        "UPDATE rollout SET state = ?, stage = ?, reason = ?, updated_at = ?
         WHERE id = ? AND state = ? AND stage IS ? RETURNING id",
        &[
            text(state.name()),
            stage_sql(stage),
            reason.map(text).unwrap_or(Sql::Null),
            text(timestamp::to_db(timestamp::now())),
            text(&s.id),
            text(s.rollout.state.name()),
            stage_sql(old_stage),
        ],
    )?;
    Ok(!updated.rows.is_empty())
}

/// `POST /api/management/rollout`: starts a rollout at its first stage. 201 with the rollout;
/// 409 when the component version has one.
pub fn create(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    auth::administrator(req, env, true)?;
    let new: NewRollout = json_body(req.body())?;
    let component = component_name(&new.component)?;
    let parsed = version("version", &new.version)?;
    let stages = new.stages.unwrap_or_else(|| DEFAULT_STAGES.to_vec());
    if stages.len() > MAX_STAGES {
        return Err(bad(format!("stages: at most {MAX_STAGES}")));
    }
    let plan = Plan::new(
        &stages,
        new.max_failure_rate.unwrap_or(DEFAULT_MAX_FAILURE_RATE),
        new.min_reports.unwrap_or(DEFAULT_MIN_REPORTS),
    )
    .map_err(plan_error)?;
    let rollout = Rollout::start(plan);
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let now = timestamp::to_db(timestamp::now());
    let inserted = db.query(
        "INSERT INTO rollout (id, component, version, stages, max_failure_rate, min_reports,
                              state, stage, reason, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?)
         ON CONFLICT (component, version) DO NOTHING RETURNING id",
        &[
            text(&id),
            text(&component),
            text(parsed.to_string()),
            text(json!(rollout.plan.stages_percent()).to_string()),
            Sql::Real(rollout.plan.max_failure_rate()),
            Sql::Integer(i64::from(rollout.plan.min_reports())),
            text(rollout.state.name()),
            text(&now),
            text(&now),
        ],
    )?;
    if inserted.rows.is_empty() {
        return Err(ApiError::conflict(format!(
            "{component} {parsed} already has a rollout"
        )));
    }
    Ok(json_response(201, &to_json(db, &load(db, &id)?)?))
}

/// `GET /api/management/rollout`: every rollout, newest first, with each stage's tally.
pub fn list(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    auth::administrator(req, env, false)?;
    let rows = db.query(
        &format!("SELECT {COLUMNS} FROM rollout ORDER BY created_at DESC, id"),
        &[],
    )?;
    let rollouts = rows
        .rows
        .iter()
        .map(|row| stored(row).and_then(|s| to_json(db, &s)))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(json_response(200, &json!({ "rollouts": rollouts })))
}

/// `POST /api/management/rollout/:id/{advance,resume,cancel}`: 200 with the rollout; 409
/// when its state does not allow it.
pub fn act(req: &Request, env: &Env, id: &str, action: &str) -> ApiResult<Response> {
    let db = &env.db;
    auth::administrator(req, env, true)?;
    let event = match action {
        "advance" => Event::Advance,
        "resume" => Event::Resume,
        "cancel" => Event::Cancel,
        _ => return Err(ApiError::not_found("not found")),
    };
    let id =
        crate::validate::uuid("rollout", id).map_err(|_| ApiError::not_found("no such rollout"))?;
    let s = load(db, &id)?;
    let next = s
        .rollout
        .advance(&event)
        .map_err(|e| ApiError::conflict(e.to_string()))?;
    if !store_state(db, &s, &next)? {
        return Err(ApiError::conflict(
            "the rollout changed meanwhile; read it again",
        ));
    }
    Ok(json_response(200, &to_json(db, &load(db, &id)?)?))
}

/// `GET /api/household/measurement_device/rollout` (device): for each component, the newest
/// version whose rollout admits the calling device now.
pub fn admitted(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let caller = auth::device(req, env)?;
    let rows = db.query(
        &format!("SELECT {COLUMNS} FROM rollout WHERE state IN ('active', 'complete')"),
        &[],
    )?;
    let mut newest: std::collections::BTreeMap<String, (semver::Version, String)> =
        Default::default();
    for row in &rows.rows {
        let s = stored(row)?;
        if !s
            .rollout
            .admits(rollout::bucket(&s.component, &caller.device))
        {
            continue;
        }
        let Ok(v) = semver::Version::parse(&s.version) else {
            continue;
        };
        match newest.get(&s.component) {
            Some((have, _)) if *have >= v => {}
            _ => {
                newest.insert(s.component.clone(), (v, s.id.clone()));
            }
        }
    }
    let components: serde_json::Map<String, Value> = newest
        .into_iter()
        .map(|(name, (v, id))| (name, json!({"version": v.to_string(), "rollout": id})))
        .collect();
    Ok(json_response(200, &json!({ "components": components })))
}

/// `POST /api/household/measurement_device/rollout` (device): the outcome of installing a
/// rolled-out version (`committed` or `rolled_back` with a reason). 204; a device's later
/// report replaces its earlier one; 404 when the version has no rollout. The stage's cohort
/// tally then decides whether the rollout pauses.
pub fn report(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    let caller = auth::device(req, env)?;
    let outcome: Outcome = json_body(req.body())?;
    let component = component_name(&outcome.component)?;
    let parsed = version("version", &outcome.version)?;
    let kind = crate::validate::one_of("outcome", &outcome.outcome, &["committed", "rolled_back"])?;
    let reason = match outcome.reason {
        Some(r) if r.len() > MAX_REASON || r.chars().any(char::is_control) => {
            return Err(bad(format!(
                "reason: at most {MAX_REASON} bytes without control characters"
            )));
        }
        r => r,
    };
    let rows = db.query(
        &format!("SELECT {COLUMNS} FROM rollout WHERE component = ? AND version = ?"),
        &[text(&component), text(parsed.to_string())],
    )?;
    let s = stored(rows.rows.first().ok_or_else(|| {
        ApiError::refused(
            RefusalCode::NotFound,
            format!("{component} {parsed} has no rollout"),
        )
    })?)?;
    let cohort = s
        .rollout
        .plan
        .stage_of(rollout::bucket(&component, &caller.device));
    db.exec(
        "INSERT INTO rollout_outcome (rollout, device, stage, outcome, reason, reported_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (rollout, device) DO UPDATE SET outcome = excluded.outcome,
             reason = excluded.reason, reported_at = excluded.reported_at",
        &[
            text(&s.id),
            text(&caller.device),
            Sql::Integer(cohort as i64),
            text(&kind),
            reason.map(text).unwrap_or(Sql::Null),
            text(timestamp::to_db(timestamp::now())),
        ],
    )?;
    if let State::Active { stage } = s.rollout.state {
        let tally = tallies(db, &s.id, s.rollout.plan.stages_percent().len())?[stage];
        let next = s
            .rollout
            .advance(&Event::Reported(tally))
            .map_err(plan_error)?;
        if next != s.rollout.state {
            // A concurrent administrator's action wins over the automatic pause.
            store_state(db, &s, &next)?;
        }
    }
    Ok(no_content())
}
