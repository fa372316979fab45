//! The research endpoint: one NUTS-3 region's households aggregated over time. Every household's
//! series goes through its own policy chain first (the caller's role and token, the region's
//! household count as `peers`, so k-anonymity can withhold a region too small), and every
//! household's access log records the read, withheld or not.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use time::OffsetDateTime;
use wattlet_access_token::{Operation, Role, Scope};

use crate::auth;
use crate::db::{col_required, text};
use crate::error::ApiResult;
use crate::handlers::measurement::{
    Caller, Query, log_read, policy_rows, query_pairs, run_chain, select,
};
use crate::http::{Request, Response, json_response};
use crate::policy::{self, ObjectKind};
use crate::registration::nuts3_code;
use crate::services::Env;
use crate::timestamp;
use crate::validate::bad;

/// Region buckets when the request names none.
const DEFAULT_STEP_MINUTES: i64 = 60;

/// `step_minutes`: 15 to 1440 and dividing a day, as the researchers' aggregates.
fn step_minutes(value: &str) -> ApiResult<i64> {
    match value.parse::<i64>() {
        Ok(m) if (15..=1440).contains(&m) && 1440 % m == 0 => Ok(m),
        _ => Err(bad(format!(
            "step_minutes: {value:?} is not from 15 to 1440 and dividing 1440"
        ))),
    }
}

/// Per bucket start (ns) and OBIS code: a sum and how many values went into it.
type Sums = BTreeMap<i64, BTreeMap<String, (f64, f64)>>;

/// `GET /api/management/region/:nuts3/measurement` (researcher, administrator; not a token
/// restricted to one household): the region's households' measurements in `step_minutes`
/// buckets (default 60), query `from`, `to`, `limit` (per meter), `purpose` as for one meter.
/// Per bucket and OBIS code, the mean over the contributing households of each household's mean
/// in the bucket (weighted by the samples of its rows: a policy may have aggregated them).
/// `{"region","step_seconds","households","contributing","withheld","series":[{"measured_at",
/// "households","data":[{"<obis>": value}]}]}`; a household whose chain denies is withheld
/// (counted, not named).
pub fn region_measurements(req: &Request, env: &Env, code: &str) -> ApiResult<Response> {
    let grant = auth::management_for(
        req,
        env,
        &Operation {
            write: false,
            needs: Role::Researcher,
            scope: Scope::Global,
        },
    )?;
    let region = nuts3_code("region", code)?;
    let mut pairs = query_pairs(req.query())?;
    let mut step = DEFAULT_STEP_MINUTES;
    if let Some(i) = pairs.iter().position(|(k, _)| k == "step_minutes") {
        step = step_minutes(&pairs.remove(i).1)?;
    }
    let q = Query::from_pairs(pairs, ", step_minutes")?.within(auth::token_data_range(req));
    let caller = Caller {
        role: auth::policy_role(&grant),
        caveats: auth::encoded_caveats(&grant),
        actor: auth::actor(req, env)?,
    };
    let db = &env.db;
    let households: Vec<String> = db
        .query(
            "SELECT household FROM location WHERE nuts3 = ? ORDER BY household",
            &[text(&region)],
        )?
        .rows
        .iter()
        .map(|row| col_required(row, 0))
        .collect::<ApiResult<_>>()?;
    let step_ns = step * 60 * 1_000_000_000;

    // Each household's meters and selected rows, read once.
    let mut selected = Vec::with_capacity(households.len());
    for household in &households {
        let meters: Vec<String> = db
            .query(
                "SELECT uuid FROM meter WHERE household = ? ORDER BY uuid",
                &[text(household)],
            )?
            .rows
            .iter()
            .map(|row| col_required(row, 0))
            .collect::<ApiResult<_>>()?;
        let mut rows = Vec::new();
        for meter in &meters {
            rows.extend(select(db, meter, &q)?);
        }
        let series = policy_rows(&rows);
        let chain = policy::chain(db, Some(household), ObjectKind::Measurements)?;
        selected.push((household, meters, series, chain));
    }
    // `peers` is how many households the aggregate covers: every household's chain runs with
    // the count of those whose chains allowed them, until that count holds (it only falls, so
    // this ends within as many rounds as households). A household that allows only large
    // aggregates is never served inside a smaller one.
    let mut peers = u32::try_from(households.len()).unwrap_or(u32::MAX);
    let mut rounds = 0;
    let outcomes = loop {
        let mut outcomes = Vec::with_capacity(selected.len());
        for (_, _, series, chain) in &selected {
            outcomes.push(run_chain(
                env,
                chain,
                &caller,
                &q,
                series.clone(),
                Some(peers),
            ));
        }
        let allowed =
            u32::try_from(outcomes.iter().filter(|o| o.rows.is_ok()).count()).unwrap_or(u32::MAX);
        if allowed == peers || allowed == 0 {
            break outcomes;
        }
        rounds += 1;
        // A chain that allows more households when fewer are covered never settles: nothing
        // is served then (fail closed).
        if allowed > peers || rounds > selected.len() {
            break outcomes
                .into_iter()
                .map(|mut o| {
                    o.rows =
                        Err("the region's policies do not settle on a set of households".into());
                    o
                })
                .collect();
        }
        peers = allowed;
    };

    // Per bucket: the sum of the households' means and how many households.
    let mut region_sums = Sums::new();
    let mut bucket_households: BTreeMap<i64, u32> = BTreeMap::new();
    let (mut contributing, mut withheld) = (0u32, 0u32);
    for ((household, meters, series, _), outcome) in selected.iter().zip(outcomes) {
        let object = (
            format!("measurements:{}", meters.join(",")),
            json!({ "region": region }),
        );
        log_read(
            env,
            household,
            object,
            &caller,
            &q,
            (series.len(), &outcome),
        )?;
        let Ok(rows) = outcome.rows else {
            withheld += 1;
            continue;
        };
        contributing += 1;
        let mut own = Sums::new();
        for i in 0..rows.len() {
            let bucket = rows.at[i].div_euclid(step_ns) * step_ns;
            let weight = f64::from(rows.samples[i].max(1));
            for (obis, value) in rows.readings_of(i) {
                let sum = own
                    .entry(bucket)
                    .or_default()
                    .entry(obis.to_owned())
                    .or_default();
                sum.0 += value * weight;
                sum.1 += weight;
            }
        }
        for (bucket, registers) in own {
            *bucket_households.entry(bucket).or_default() += 1;
            let sums = region_sums.entry(bucket).or_default();
            for (obis, (sum, weight)) in registers {
                let mean = sums.entry(obis).or_default();
                mean.0 += sum / weight;
                mean.1 += 1.0;
            }
        }
    }
    let series: Vec<Value> = region_sums
        .into_iter()
        .map(|(bucket, registers)| {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(bucket))
                .map(timestamp::to_api)
                .ok();
            let data: Vec<Value> = registers
                .into_iter()
                .map(|(obis, (sum, n))| json!({ obis: sum / n }))
                .collect();
            json!({
                "measured_at": at,
                "households": bucket_households.get(&bucket).copied().unwrap_or(0),
                "data": data,
            })
        })
        .collect();
    Ok(json_response(
        200,
        &json!({
            "region": region,
            "step_seconds": step * 60,
            "households": households.len(),
            "contributing": contributing,
            "withheld": withheld,
            "series": series,
        }),
    ))
}
