//! Population densities per NUTS-3 region, for the displacement on anonymization: imported by an
//! administrator from a CSV file (no dataset of them can be had offline from a package registry).

use serde::Deserialize;
use serde_json::json;
use wattlet_access_token::{Operation, Role, Scope};

use crate::auth;
use crate::db::{Value as Sql, placeholders, text};
use crate::error::ApiResult;
use crate::http::{Request, Response, json_response};
use crate::registration::nuts3_code;
use crate::services::Env;
use crate::validate::bad;

/// More rows than the EU has NUTS-3 regions (1,165 in NUTS 2021), with room for other sources.
const MAX_REGIONS: usize = 5000;

#[derive(Deserialize)]
struct Row {
    code: String,
    population_density_per_km2: f64,
}

/// `PUT /api/management/nuts3_region`: a CSV body with the header
/// `code,population_density_per_km2` (other columns are ignored), one region per line, inhabitants
/// per km². All rows are stored, replacing earlier values of the same codes, or none (400 naming
/// the line). 200 `{"imported": n}`.
pub fn import(req: &Request, env: &Env) -> ApiResult<Response> {
    let db = &env.db;
    auth::management_for(
        req,
        env,
        &Operation {
            write: true,
            needs: Role::Administrator,
            scope: Scope::Global,
        },
    )?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(req.body());
    let mut regions: Vec<(String, f64)> = Vec::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        // Line 1 is the header.
        let line = i + 2;
        let row = row.map_err(|e| bad(format!("line {line}: {e}")))?;
        let code = nuts3_code(&format!("line {line}: code"), &row.code)?;
        let density = row.population_density_per_km2;
        if !(density.is_finite() && density >= 0.0) {
            return Err(bad(format!(
                "line {line}: population_density_per_km2 must be a number ≥ 0, got {density}"
            )));
        }
        if regions.len() == MAX_REGIONS {
            return Err(bad(format!("at most {MAX_REGIONS} regions per import")));
        }
        regions.push((code, density));
    }
    if regions.is_empty() {
        return Err(bad(
            "no regions: a CSV body with the header code,population_density_per_km2 is required",
        ));
    }
    let params: Vec<Sql> = regions
        .iter()
        .flat_map(|(code, density)| [text(code), Sql::Real(*density)])
        .collect();
    let rows = vec![format!("({})", placeholders(2)); regions.len()].join(", ");
    // One statement: all rows or none. A code listed twice keeps its last value.
    db.exec(
        &format!(
            "INSERT INTO nuts3_region (code, population_density_per_km2) VALUES {rows}
             ON CONFLICT (code) DO UPDATE SET population_density_per_km2 = excluded.population_density_per_km2"
        ),
        &params,
    )?;
    Ok(json_response(200, &json!({ "imported": regions.len() })))
}
