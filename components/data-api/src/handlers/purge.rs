//! Purging what no one may read any more (`POST /api/management/purge`, administrators).
//!
//! The policies decide, not the host: each meter's oldest measurements (in batches) go through
//! the household's read chain as its participant, the widest reader of their own data. Rows the
//! chain drops even for them (retention: older than N months) are served to no one; they are
//! deleted once the chain's delete hooks allow it, and the deletion is appended to the
//! household's access log. A chain that denies or aggregates for the participant proves
//! nothing row by row: nothing of that meter is purged then. Run it daily (a CronJob, a timer);
//! one request purges at most [`MAX_BATCHES`] batches per meter and says when more is left.

use std::collections::BTreeSet;

use serde_json::json;

use crate::auth;
use crate::db::{Value as Sql, col_required, placeholders, text};
use crate::error::ApiResult;
use crate::handlers::measurement::{
    Caller, Query, Selected, nanos, policy_rows, run_chain, select,
};
use crate::http::{Request, Response, json_response};
use crate::policy::{self, ObjectKind, Role as PolicyRole};
use crate::services::Env;
use crate::timestamp;

/// Measurements a batch looks at, oldest first.
const BATCH: i64 = 1000;
/// Batches per meter and request, so that a request ends in bounded time.
pub const MAX_BATCHES: usize = 20;
const PURPOSE: &str = "retention purge";

/// `{"meters","deleted","more"}`: meters looked at, measurements deleted, and whether a meter
/// had more to purge than one request does.
pub fn purge(req: &Request, env: &Env) -> ApiResult<Response> {
    auth::administrator(req, env, true)?;
    let db = &env.db;
    let caller = Caller {
        role: PolicyRole::Participant,
        caveats: Vec::new(),
        actor: auth::actor(req, env)?,
    };
    let q = Query::oldest(BATCH, PURPOSE);
    let meters = db.query(
        "SELECT m.uuid, m.household FROM meter m
         WHERE EXISTS (SELECT 1 FROM policy_attachment p
                       WHERE p.object = 'measurements'
                         AND (p.household IS NULL OR p.household = m.household))
         ORDER BY m.household, m.uuid",
        &[],
    )?;
    let (mut deleted, mut more) = (0usize, false);
    let mut looked_at = BTreeSet::new();
    for row in &meters.rows {
        let (meter, household) = (col_required(row, 0)?, col_required(row, 1)?);
        looked_at.insert(meter.clone());
        let chain = policy::chain(db, Some(&household), ObjectKind::Measurements)?;
        for batch in 0.. {
            if batch == MAX_BATCHES {
                more = true;
                break;
            }
            let selected = select(db, &meter, &q)?;
            let looked = selected.len();
            let Some(dropped) = dropped_for_the_participant(env, &chain, &caller, &q, &selected)
            else {
                break;
            };
            let Some((first, last)) =
                dropped
                    .iter()
                    .map(|s| s.at)
                    .fold(None, |range: Option<(i64, i64)>, at| {
                        Some(range.map_or((at, at), |(a, b)| (a.min(at), b.max(at))))
                    })
            else {
                break;
            };
            let context = policy::Context {
                role: PolicyRole::Service,
                caveats: Vec::new(),
                purpose: Some(PURPOSE.into()),
                range: policy::TimeRange {
                    from: Some(first),
                    to: Some(last.saturating_add(1)),
                },
                now: nanos(timestamp::now()),
                peers: None,
            };
            let (allowed, ran) =
                policy::run_delete(env.policies, &chain, ObjectKind::Measurements, &context);
            let ids: Vec<Sql> = dropped.iter().map(|s| text(&s.uuid)).collect();
            let removed = match &allowed {
                Ok(()) => db
                    .query(
                        &format!(
                            "DELETE FROM measurement WHERE meter = ? AND uuid IN ({}) RETURNING uuid",
                            placeholders(ids.len())
                        ),
                        &[vec![text(&meter)], ids].concat(),
                    )?
                    .rows
                    .len(),
                Err(_) => 0,
            };
            let mut entry = json!({
                "actor": caller.actor,
                "role": PolicyRole::Service.name(),
                "object": format!("measurements:{meter}"),
                "operation": "delete",
                "policies": ran,
                "selected": dropped.len(),
                "deleted": removed,
                "decision": if allowed.is_ok() { "allow" } else { "deny" },
                "purpose": PURPOSE,
            });
            if let Err(reason) = &allowed {
                entry["reason"] = json!(reason);
            }
            crate::access_log::append(db, &household, entry)?;
            deleted += removed;
            // Kept rows stay the oldest: a next batch would see them again.
            if allowed.is_err() || dropped.len() < looked {
                break;
            }
        }
    }
    Ok(json_response(
        200,
        &json!({ "meters": looked_at.len(), "deleted": deleted, "more": more }),
    ))
}

/// The measurements of `selected` that a household's read `chain` serves not even to its
/// participant; `None` when the chain denies or makes rows of its own (nothing is proven row by
/// row) or drops nothing.
fn dropped_for_the_participant<'a>(
    env: &Env,
    chain: &[policy::Attachment],
    caller: &Caller,
    q: &Query,
    selected: &'a [Selected],
) -> Option<Vec<&'a Selected>> {
    if selected.is_empty() {
        return None;
    }
    let Ok(kept) = run_chain(env, chain, caller, q, policy_rows(selected), None).rows else {
        return None;
    };
    if kept.span.iter().any(|span| *span > 0) {
        return None;
    }
    let mut served = vec![false; selected.len()];
    for origin in &kept.origin {
        // A row without an origin is one the chain made: nothing is proven row by row.
        served[(*origin)? as usize] = true;
    }
    let dropped: Vec<&Selected> = selected
        .iter()
        .zip(served)
        .filter(|(_, served)| !served)
        .map(|(s, _)| s)
        .collect();
    (!dropped.is_empty()).then_some(dropped)
}
