//! Policy attachments (`crate::policy`) and the access log.
//!
//! Administrators attach study-wide defaults (`/api/management/policies`); participants attach
//! rules to their own household (`/api/household/policies`), only rules at least as strict as
//! every study rule of the same policy (a larger aggregation step, windows covering, fewer
//! months: each policy's `at-least-as-strict` hook), and detach only their own: a participant
//! never loosens or detaches a study rule (403 `policy_not_stricter`, `policy_study_rule`).
//! Every change is appended to the household's access log (study-wide ones to `study`).

use serde::Deserialize;
use serde_json::{Value, json};
use wattlet_access_token::{Operation, Role, Scope};
use wattlet_survey::RefusalCode;

use crate::access_log;
use crate::auth;
use crate::db::{Value as Sql, text};
use crate::error::{ApiError, ApiResult};
use crate::handlers::measurement::query_pairs;
use crate::http::{Request, Response, json_response, no_content};
use crate::policy::{self, Attachment, ObjectKind};
use crate::services::Env;
use crate::timestamp;
use crate::validate::{self, bad, json_body};

/// At most this many attachments per household (and study-wide).
const MAX_ATTACHMENTS: usize = 32;
/// Parameters larger than this are refused before any policy sees them.
const MAX_PARAMETERS: usize = 8 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attach {
    policy: String,
    parameters: Value,
    #[serde(default)]
    object: Option<String>,
    /// The content digest the attacher expects to run (`sha256:<hex>`): refused when this
    /// build's code of the policy has another.
    #[serde(default)]
    digest: Option<String>,
}

/// Checks an attachment request: a shipped policy the principal may attach, an object it
/// applies to, parameters the policy accepts. Returns (policy, object, parameters as text).
fn checked(env: &Env, req: &Request, study: bool) -> ApiResult<(String, ObjectKind, String)> {
    let attach: Attach = json_body(req.body())?;
    let shipped = policy::shipped(&attach.policy).ok_or_else(|| {
        let names: Vec<&str> = policy::SHIPPED.iter().map(|s| s.name).collect();
        bad(format!(
            "policy: unknown policy {:?} (one of {})",
            attach.policy,
            names.join(", ")
        ))
    })?;
    if study && !shipped.study {
        return Err(bad(format!(
            "policy: {} is the participant's to attach, not study-wide",
            shipped.name
        )));
    }
    if !study && !shipped.participant {
        return Err(bad(format!(
            "policy: {} is attached study-wide only",
            shipped.name
        )));
    }
    let object = match attach.object.as_deref() {
        None | Some("measurements") => ObjectKind::Measurements,
        Some(other) => {
            return Err(bad(format!(
                "object: {other:?}; policies attach to \"measurements\" so far"
            )));
        }
    };
    let running = policy::digest(shipped.name);
    if let Some(expected) = &attach.digest
        && running != Some(expected.as_str())
    {
        return Err(ApiError::refused(
            RefusalCode::Conflict,
            format!(
                "digest: this build's {} is {}, not {expected}",
                shipped.name,
                running.unwrap_or("of unknown digest")
            ),
        ));
    }
    if !attach.parameters.is_object() {
        return Err(bad("parameters: must be a JSON object"));
    }
    let parameters = attach.parameters.to_string();
    if parameters.len() > MAX_PARAMETERS {
        return Err(bad(format!("parameters: at most {MAX_PARAMETERS} bytes")));
    }
    env.policies
        .validate(shipped.name, &parameters)
        .map_err(|e| bad(format!("parameters of {}: {e}", shipped.name)))?;
    Ok((shipped.name.to_owned(), object, parameters))
}

fn insert(
    env: &Env,
    household: Option<&str>,
    (policy, object, parameters): (&str, ObjectKind, &str),
    principal: &str,
) -> ApiResult<Attachment> {
    let existing = policy::chain(&env.db, household, object)?
        .into_iter()
        .filter(|a| a.household.as_deref() == household)
        .count();
    if existing >= MAX_ATTACHMENTS {
        return Err(bad(format!(
            "at most {MAX_ATTACHMENTS} attachments per object"
        )));
    }
    let rows = env.db.query(
        "INSERT INTO policy_attachment
         (household, object, policy, parameters, principal, attached_at, digest)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        &[
            household.map_or(Sql::Null, text),
            text(object.name()),
            text(policy),
            text(parameters),
            text(principal),
            text(timestamp::to_db(timestamp::now())),
            policy::digest(policy).map_or(Sql::Null, text),
        ],
    )?;
    let id = rows
        .rows
        .first()
        .and_then(|r| r.get::<i64>(0))
        .ok_or_else(|| ApiError::Database("attachment not stored".into()))?;
    policy::find(&env.db, id)?.ok_or_else(|| ApiError::Database("attachment not stored".into()))
}

/// Removes an attachment and logs the change on `chain` (the household's, or the study's).
fn detach(req: &Request, env: &Env, chain: &str, attached: &Attachment) -> ApiResult<Response> {
    env.db.exec(
        "DELETE FROM policy_attachment WHERE id = ?",
        &[Sql::Integer(attached.id)],
    )?;
    let actor = auth::actor(req, env)?;
    access_log::append(&env.db, chain, change_entry(&actor, "detach", attached))?;
    Ok(no_content())
}

fn change_entry(actor: &str, operation: &str, a: &Attachment) -> Value {
    json!({
        "actor": actor,
        "object": format!("policies:{}", a.object),
        "operation": operation,
        "policies": [{
            "attachment": a.id,
            "policy": a.policy,
            "digest": a.digest,
            "parameters_sha256": wattlet_policy::log::sha256_hex(&a.parameters),
            "principal": a.principal,
        }],
        "decision": "allow",
    })
}

fn attachment_id(id: &str) -> ApiResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::not_found("no such attachment"))
}

fn listing(household: Option<&str>, chain: &[Attachment]) -> Value {
    json!({
        "household": household,
        "attachments": chain.iter().map(Attachment::to_json).collect::<Vec<_>>(),
        "available": policy::SHIPPED.iter().map(|s| json!({
            "policy": s.name,
            "version": policy::VERSION,
            "digest": policy::digest(s.name),
            "study": s.study,
            "participant": s.participant,
            "summary": s.summary,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/household/policies` (participant): the household's chain for measurements, in the
/// order it runs (study-wide first), and the policies one may attach.
pub fn household_list(req: &Request, env: &Env) -> ApiResult<Response> {
    let participant = auth::participant(req, env)?;
    let chain = policy::chain(
        &env.db,
        Some(&participant.household),
        ObjectKind::Measurements,
    )?;
    Ok(json_response(
        200,
        &listing(Some(&participant.household), &chain),
    ))
}

/// `POST /api/household/policies` (participant) `{"policy","parameters":{…},"object"?,"digest"?}` → 201
/// with the attachment (its `digest`: the policy's content digest in this build); 400 for
/// unknown policies or invalid parameters; 409 `conflict` when `digest` names other code than
/// this build's; 403 `policy_not_stricter` when a study rule of the same policy is stricter.
pub fn household_attach(req: &Request, env: &Env) -> ApiResult<Response> {
    let participant = auth::participant(req, env)?;
    let household = participant.household.as_str();
    let (name, object, parameters) = checked(env, req, false)?;
    for study in policy::chain(&env.db, None, object)?
        .iter()
        .filter(|a| a.policy == name)
    {
        let stricter = env
            .policies
            .at_least_as_strict(&name, &parameters, &study.parameters)
            .map_err(|e| ApiError::Internal(format!("{name}: comparing parameters: {e}")))?;
        if !stricter {
            return Err(ApiError::refused(
                RefusalCode::PolicyNotStricter,
                format!(
                    "the study's {name} rule (attachment {}, parameters {}) is stricter; a participant may only add rules at least as strict",
                    study.id, study.parameters
                ),
            ));
        }
    }
    let attached = insert(
        env,
        Some(household),
        (&name, object, &parameters),
        "participant",
    )?;
    let actor = auth::actor(req, env)?;
    access_log::append(
        &env.db,
        household,
        change_entry(&actor, "attach", &attached),
    )?;
    Ok(json_response(201, &attached.to_json()))
}

/// `DELETE /api/household/policies/:id` (participant) → 204: only the household's own
/// attachments; a study rule is 403 `policy_study_rule`, anything else 404.
pub fn household_detach(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    let participant = auth::participant(req, env)?;
    let id = attachment_id(id)?;
    let found = policy::find(&env.db, id)?;
    let attached = match found {
        Some(a) if a.household.as_deref() == Some(participant.household.as_str()) => a,
        Some(a) if a.household.is_none() => {
            return Err(ApiError::refused(
                RefusalCode::PolicyStudyRule,
                format!(
                    "attachment {} is a study rule: a participant cannot detach it",
                    a.id
                ),
            ));
        }
        _ => return Err(ApiError::not_found("no such attachment")),
    };
    detach(req, env, &participant.household, &attached)
}

/// `GET /api/management/policies` (researcher, administrator): the study-wide attachments.
pub fn study_list(req: &Request, env: &Env) -> ApiResult<Response> {
    auth::management_for(
        req,
        env,
        &Operation {
            write: false,
            needs: Role::Researcher,
            scope: Scope::Global,
        },
    )?;
    let chain = policy::chain(&env.db, None, ObjectKind::Measurements)?;
    Ok(json_response(200, &listing(None, &chain)))
}

/// `POST /api/management/policies` (administrator) → 201: a study-wide default for every
/// household.
pub fn study_attach(req: &Request, env: &Env) -> ApiResult<Response> {
    auth::administrator(req, env, true)?;
    let (name, object, parameters) = checked(env, req, true)?;
    let attached = insert(env, None, (&name, object, &parameters), "study")?;
    let actor = auth::actor(req, env)?;
    access_log::append(
        &env.db,
        access_log::STUDY,
        change_entry(&actor, "attach", &attached),
    )?;
    Ok(json_response(201, &attached.to_json()))
}

/// `DELETE /api/management/policies/:id` (administrator) → 204 for a study-wide attachment.
pub fn study_detach(req: &Request, env: &Env, id: &str) -> ApiResult<Response> {
    auth::administrator(req, env, true)?;
    let id = attachment_id(id)?;
    let attached = match policy::find(&env.db, id)? {
        Some(a) if a.household.is_none() => a,
        _ => return Err(ApiError::not_found("no such study-wide attachment")),
    };
    detach(req, env, access_log::STUDY, &attached)
}

fn log_query(req: &Request) -> ApiResult<(i64, i64)> {
    let mut after = 0;
    let mut limit = validate::DEFAULT_LIMIT;
    for (key, value) in query_pairs(req.query())? {
        match key.as_str() {
            "after" => {
                after = value
                    .parse::<i64>()
                    .ok()
                    .filter(|a| *a >= 0)
                    .ok_or_else(|| bad("after: a sequence number (>= 0)"))?;
            }
            "limit" => limit = validate::limit(&value)?,
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (after, limit)"
                )));
            }
        }
    }
    Ok((after, limit))
}

/// `GET /api/household/access_log` (participant): the household's chain
/// (`access_log::read`), from `after` (default 0: the start), at most `limit` entries.
pub fn household_log(req: &Request, env: &Env) -> ApiResult<Response> {
    let (after, limit) = log_query(req)?;
    let participant = auth::participant(req, env)?;
    let mut log = access_log::read(&env.db, &participant.household, after, limit)?;
    log["household"] = json!(participant.household);
    Ok(json_response(200, &log))
}

/// `GET /api/management/access_log` (administrator): the study chain (policy changes).
pub fn study_log(req: &Request, env: &Env) -> ApiResult<Response> {
    let (after, limit) = log_query(req)?;
    auth::management_for(
        req,
        env,
        &Operation {
            write: false,
            needs: Role::Administrator,
            scope: Scope::Global,
        },
    )?;
    Ok(json_response(
        200,
        &access_log::read(&env.db, access_log::STUDY, after, limit)?,
    ))
}
