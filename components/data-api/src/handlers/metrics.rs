//! `GET /api/management/metrics` (administrators): what only the Data API's database knows, as
//! OpenMetrics text for Prometheus. Devices in the field are rarely reachable by a scraper, so
//! whether they still reach the cloud is told here; so are revocations whose anonymization has
//! not completed, and WAL checkpoints an anonymization still owes. Counts only: no device id,
//! household or time of a person leaves through this endpoint.

use wattlet_access_token::{Operation, Role, Scope};
use wattlet_survey::ConsentState;

use crate::auth;
use crate::db::{Row, text};
use crate::error::ApiResult;
use crate::http::{Request, Response};
use crate::services::Env;
use crate::timestamp;

/// A device without a request for this long is silent: twice the longest report cycle (60 min).
pub const SILENT_AFTER_SECONDS: i64 = 2 * 3600;

/// Device activity classes of `wattlet_api_devices`.
const ACTIVITIES: [&str; 3] = ["reporting", "silent", "never"];

pub fn metrics(req: &Request, env: &Env) -> ApiResult<Response> {
    auth::management_for(
        req,
        env,
        &Operation {
            write: false,
            needs: Role::Administrator,
            scope: Scope::Global,
        },
    )?;
    let db = &env.db;
    let mut text_out = String::new();

    let consents = db.query("SELECT state, COUNT(*) FROM consent GROUP BY state", &[])?;
    gauge_family(
        &mut text_out,
        "wattlet_api_households",
        "Households by consent state.",
        "consent",
        ConsentState::ALL.iter().map(|s| s.as_str()),
        &consents.rows,
    );

    let now = timestamp::now();
    let silent_before = timestamp::to_db(now - time::Duration::seconds(SILENT_AFTER_SECONDS));
    // Devices expected to call: not revoked, their household's consent not revoked (a revoked
    // household's device stops for good). Consent polls count as activity, so a device of a
    // household that has not granted consent yet is silent only when it is really gone.
    let devices = db.query(
        "SELECT CASE WHEN d.last_activity IS NULL THEN 'never'
                     WHEN d.last_activity < ? THEN 'silent'
                     ELSE 'reporting' END,
                COUNT(*)
         FROM measurement_device d JOIN consent c ON c.household = d.household
         WHERE d.revoked_at IS NULL AND c.state != ?
         GROUP BY 1",
        &[text(silent_before), text(ConsentState::Revoked.as_str())],
    )?;
    gauge_family(
        &mut text_out,
        "wattlet_api_devices",
        "Measurement devices of households whose consent is not revoked, by activity: reporting \
         (a request within the last 2 h), silent (none for longer), never (no request yet).",
        "activity",
        ACTIVITIES.into_iter(),
        &devices.rows,
    );

    let pending = db.query(
        "SELECT COUNT(*), MIN(requested_at) FROM anonymization WHERE completed_at IS NULL",
        &[],
    )?;
    let (count, oldest) = pending
        .rows
        .first()
        .map(|row| {
            let count = row.get::<i64>(0).unwrap_or(0);
            let age = row
                .get::<&str>(1)
                .and_then(|at| timestamp::from_db(Some(at)))
                .map_or(0, |at| (now - at).whole_seconds().max(0));
            (count, age)
        })
        .unwrap_or((0, 0));
    gauge(
        &mut text_out,
        "wattlet_api_anonymizations_pending",
        "Revoked households whose anonymization has not completed (each request retries it).",
        count,
    );
    gauge(
        &mut text_out,
        "wattlet_api_anonymization_pending_seconds",
        "Age of the oldest revocation whose anonymization has not completed, 0 when none.",
        oldest,
    );

    let owed = db.query("SELECT COUNT(*) FROM wal_scrub", &[])?;
    gauge(
        &mut text_out,
        "wattlet_api_wal_scrub_owed",
        "1 while an anonymization's WAL checkpoint is owed: older page images of the database \
         remain in its WAL until a reader lets go.",
        owed.rows
            .first()
            .and_then(|r| r.get::<i64>(0))
            .unwrap_or(0)
            .min(1),
    );
    text_out.push_str("# EOF\n");
    Ok(Response {
        status: 200,
        headers: vec![(
            "content-type".to_owned(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8".to_owned(),
        )],
        body: text_out.into_bytes(),
    })
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    out.push_str(&format!(
        "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {value}\n"
    ));
}

/// A gauge with one label: a sample for every value in `values` (0 when `rows`, pairs of
/// label value and count, have none), so an alert can compare it with 0.
fn gauge_family<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = &'a str>,
    rows: &[Row],
) {
    out.push_str(&format!("# TYPE {name} gauge\n# HELP {name} {help}\n"));
    for value in values {
        let count = rows
            .iter()
            .find(|row| row.get::<&str>(0) == Some(value))
            .and_then(|row| row.get::<i64>(1))
            .unwrap_or(0);
        out.push_str(&format!("{name}{{{label}=\"{value}\"}} {count}\n"));
    }
}
