//! Anonymization on revocation (DESIGN "Anonymization on revocation"), through the
//! [`Anonymizer`](crate::Anonymizer): in the component the anonymizer component's WIT interface
//! `wattlet:anonymizer/anonymize`, which the Data API imports; `./dev` composes the anonymizer
//! component into the Data API's `.wasm`, and a confidential host can provide the same
//! interface later.
//!
//! Revoking the consent makes an `anonymization` row in the same statement (a trigger), so every
//! revocation has one; another trigger of that statement deletes the household's data key
//! (crypto-shredding, `crate::keys`). [`anonymize_household`] then runs these steps, each idempotent on its own,
//! and marks the row complete; a request that finds an incomplete row (a crash part-way)
//! finishes it ([`complete_pending`]):
//! 1. draw the displacement once from the CSPRNG and store it (a retry reuses it);
//! 2. call the anonymizer with the stored details and the draw;
//! 3. store the rounded PV systems, then the displaced location together with its displacement
//!    (only while the stored point is still the true one: it moves once);
//! 4. delete the postal address, the contact (`household.user` → NULL; a trigger deletes the
//!    user row) and the household's NIALM results and load forecasts, which came from
//!    personalised processing, and its devices' health history and diagnostics bundles;
//!    replace its devices' ids (`pi-ada`) by pseudonyms (`auth::device_pseudonym`), under
//!    which their certificates still find them; delete its data key if it is still there;
//! 5. checkpoint the WAL into the database file and truncate it.
//!
//! `PRAGMA secure_delete` (set for every request, `crate::route`) makes SQLite overwrite deleted
//! content with zeros, so no name, email, street, device id or true coordinate stays behind in
//! free space (nor the wrapped data key), also from earlier changes of the registration, and the truncating checkpoint
//! removes the older page images from the WAL. While another connection reads an older
//! snapshot the WAL cannot be truncated: the checkpoint is then owed (`wal_scrub`) and tried
//! again by a request at most every [`SCRUB_RETRY_SECONDS`] until it succeeds (each try may wait
//! for the busy timeout).

use serde_json::json;

use crate::anonymizer;
use crate::auth;
use crate::db::{Db, Value as Sql, col_required, col_text, text};
use crate::error::{ApiError, ApiResult};
use crate::services::Env;
use crate::timestamp;

/// Finishes every anonymization a crash left incomplete. One indexed query when there is none.
/// A household that fails is logged and left for the next request; the request goes on.
pub fn complete_pending(env: &Env) -> ApiResult<()> {
    let pending = env.db.query(
        "SELECT household FROM anonymization WHERE completed_at IS NULL",
        &[],
    )?;
    for row in &pending.rows {
        let household = col_required(row, 0)?;
        if let Err(e) = anonymize_household(env, &household) {
            eprintln!("wattlet-data-api: anonymizing household {household}: {e}");
        }
    }
    retry_owed_checkpoint(&env.db)
}

/// An owed WAL checkpoint is tried again at most this often: each try waits up to the
/// connection's busy timeout while the reader that blocked it is still there.
pub const SCRUB_RETRY_SECONDS: i64 = 10;

/// Tries an owed checkpoint again when the last try is [`SCRUB_RETRY_SECONDS`] old (one
/// indexed read when none is owed).
fn retry_owed_checkpoint(db: &Db) -> ApiResult<()> {
    let owed = db.query("SELECT tried_at FROM wal_scrub", &[])?;
    let Some(row) = owed.rows.first() else {
        return Ok(());
    };
    let now = timestamp::now();
    let due = timestamp::to_db(now - time::Duration::seconds(SCRUB_RETRY_SECONDS));
    if col_text(row, 0).is_some_and(|tried| tried > due) {
        return Ok(());
    }
    // Claims the try, so concurrent requests do not all wait on the same reader.
    let claimed = db.query(
        "UPDATE wal_scrub SET tried_at = ? WHERE tried_at <= ? RETURNING id",
        &[text(timestamp::to_db(now)), text(due)],
    )?;
    if !claimed.rows.is_empty() && truncate_wal(db)? {
        db.exec("DELETE FROM wal_scrub", &[])?;
    }
    Ok(())
}

/// Checkpoints the WAL into the database file and truncates it; `false` when a reader of an
/// older snapshot kept it from finishing.
fn truncate_wal(db: &Db) -> ApiResult<bool> {
    let checkpoint = db.query("PRAGMA wal_checkpoint(TRUNCATE)", &[])?;
    Ok(checkpoint
        .rows
        .first()
        .and_then(|r| r.get::<i64>(0))
        .is_none_or(|busy| busy == 0))
}

/// Anonymizes a household whose consent is revoked (steps in the module documentation).
pub fn anonymize_household(env: &Env, household: &str) -> ApiResult<()> {
    let db = &env.db;
    db.exec("PRAGMA secure_delete = ON", &[])?;
    let draw = draw_once(db, household)?;
    let location = db.query(
        "SELECT latitude, longitude, nuts3 FROM location WHERE household = ?",
        &[text(household)],
    )?;
    // Households registered before locations were recorded have neither location nor PV systems.
    if let Some(row) = location.rows.first() {
        let (latitude, longitude) = match (row.get::<f64>(0), row.get::<f64>(1)) {
            (Some(lat), Some(lon)) => (lat, lon),
            _ => return Err(ApiError::Database("location without coordinates".into())),
        };
        let density = match col_text(row, 2) {
            Some(code) => db
                .query(
                    "SELECT population_density_per_km2 FROM nuts3_region WHERE code = ?",
                    &[text(code)],
                )?
                .rows
                .first()
                .and_then(|r| r.get::<f64>(0)),
            None => None,
        };
        let pv_ids = pv_system_ids(db, household)?;
        let registration = anonymizer::Registration {
            contact: contact(db, household)?,
            address: address(db, household)?,
            location: anonymizer::Location {
                latitude,
                longitude,
            },
            pv_systems: pv_ids.iter().map(|(_, pv)| pv.clone()).collect(),
            population_density_per_km2: density,
        };
        let anonymized = env
            .anonymizer
            .anonymize(&registration, draw)
            .map_err(|e| ApiError::Internal(format!("the anonymizer refused: {e}")))?;
        for ((uuid, _), pv) in pv_ids.iter().zip(&anonymized.pv_systems) {
            db.exec(
                "UPDATE pv_system SET nominal_power_kwp = ?, installation_date = ? WHERE uuid = ?",
                &[
                    Sql::Real(pv.nominal_power_kwp.into()),
                    text(&pv.installation_date),
                    text(uuid),
                ],
            )?;
        }
        let d = &anonymized.displacement;
        let displacement = json!({
            "population_density_per_km2": d.population_density_per_km2,
            "density_unknown": d.density_unknown,
            "d_min_m": d.d_min_m,
            "d_max_m": d.d_max_m,
            "distance_m": d.distance_m,
            "bearing_deg": d.bearing_deg,
        });
        db.exec(
            "UPDATE location SET latitude = ?, longitude = ?, displacement = ?
             WHERE household = ? AND displacement IS NULL",
            &[
                Sql::Real(anonymized.location.latitude),
                Sql::Real(anonymized.location.longitude),
                text(displacement.to_string()),
                text(household),
            ],
        )?;
    }
    db.exec(
        "DELETE FROM address WHERE household = ?",
        &[text(household)],
    )?;
    db.exec(
        "UPDATE household SET user = NULL WHERE id = ?",
        &[text(household)],
    )?;
    db.exec(
        "DELETE FROM disaggregation WHERE meter IN (SELECT uuid FROM meter WHERE household = ?)",
        &[text(household)],
    )?;
    db.exec(
        "DELETE FROM forecasts WHERE meter IN (SELECT uuid FROM meter WHERE household = ?)",
        &[text(household)],
    )?;
    crate::handlers::export_copy::forget(db, household)?;
    crate::handlers::health::forget_household(db, household)?;
    pseudonymise_devices(env, household)?;
    crate::keys::shred(env, household)?;
    db.exec(
        "UPDATE anonymization SET completed_at = ? WHERE household = ?",
        &[text(timestamp::to_db(timestamp::now())), text(household)],
    )?;
    if !truncate_wal(db)? {
        // Another connection still reads old pages: owed, tried again by later requests.
        db.exec(
            "INSERT OR IGNORE INTO wal_scrub (id, tried_at) VALUES (1, ?)",
            &[text(timestamp::to_db(timestamp::now()))],
        )?;
        eprintln!(
            "wattlet-data-api: the WAL checkpoint after anonymizing {household} was busy (another connection reads); retried by later requests"
        );
    }
    Ok(())
}

/// Renames the household's devices to their pseudonyms. Foreign keys hold at every step (the
/// row is copied under the pseudonym, the meters rewired, the old row deleted), and a retry
/// after a crash in between finishes the rename (a renamed device is left alone).
fn pseudonymise_devices(env: &Env, household: &str) -> ApiResult<()> {
    let db = &env.db;
    let devices = db.query(
        "SELECT id FROM measurement_device WHERE household = ? AND substr(id, 1, length(?)) != ?",
        &[
            text(household),
            text(auth::PSEUDONYM_PREFIX),
            text(auth::PSEUDONYM_PREFIX),
        ],
    )?;
    if devices.rows.is_empty() {
        return Ok(());
    }
    // Every column but the id, whatever later migrations add.
    let columns: Vec<String> = db
        .query(
            "SELECT name FROM pragma_table_info('measurement_device') WHERE name != 'id'",
            &[],
        )?
        .rows
        .iter()
        .map(|row| col_required(row, 0).map(|name| format!("\"{name}\"")))
        .collect::<ApiResult<_>>()?;
    let columns = columns.join(", ");
    for row in &devices.rows {
        let id = col_required(row, 0)?;
        let pseudonym = auth::device_pseudonym(env, &id)?;
        db.exec(
            &format!(
                "INSERT OR IGNORE INTO measurement_device (id, {columns})
                 SELECT ?, {columns} FROM measurement_device WHERE id = ?"
            ),
            &[text(&pseudonym), text(&id)],
        )?;
        db.exec(
            "UPDATE meter SET device = ? WHERE household = ? AND device = ?",
            &[text(&pseudonym), text(household), text(&id)],
        )?;
        db.exec(
            "UPDATE rollout_outcome SET device = ? WHERE device = ?",
            &[text(&pseudonym), text(&id)],
        )?;
        db.exec("DELETE FROM measurement_device WHERE id = ?", &[text(&id)])?;
    }
    Ok(())
}

/// The stored draw of `household`, drawn from the CSPRNG (wasi:random) the first time.
fn draw_once(db: &Db, household: &str) -> ApiResult<anonymizer::Draw> {
    let (mut distance, mut bearing) = ([0u8; 8], [0u8; 8]);
    for half in [&mut distance, &mut bearing] {
        getrandom::fill(half)
            .map_err(|e| ApiError::Internal(format!("no secure random source: {e}")))?;
    }
    // The top 53 bits, scaled to [0, 1): every value exact, 1 never reached (as the anonymizer's
    // `Draw::from_random_bytes` does natively).
    let unit = |half: [u8; 8]| (u64::from_le_bytes(half) >> 11) as f64 / (1u64 << 53) as f64;
    db.exec(
        "UPDATE anonymization SET distance_uniform = ?, bearing_uniform = ?
         WHERE household = ? AND distance_uniform IS NULL",
        &[
            Sql::Real(unit(distance)),
            Sql::Real(unit(bearing)),
            text(household),
        ],
    )?;
    let stored = db.query(
        "SELECT distance_uniform, bearing_uniform FROM anonymization WHERE household = ?",
        &[text(household)],
    )?;
    match stored
        .rows
        .first()
        .map(|r| (r.get::<f64>(0), r.get::<f64>(1)))
    {
        Some((Some(distance_uniform), Some(bearing_uniform))) => Ok(anonymizer::Draw {
            distance_uniform,
            bearing_uniform,
        }),
        _ => Err(ApiError::Database(format!(
            "no anonymization requested for household {household}"
        ))),
    }
}

/// The contact to drop; empty once a previous attempt deleted it.
fn contact(db: &Db, household: &str) -> ApiResult<anonymizer::Contact> {
    let (name, email) = crate::registration::contact(db, household)?.unwrap_or_default();
    Ok(anonymizer::Contact { name, email })
}

fn address(db: &Db, household: &str) -> ApiResult<Option<anonymizer::Address>> {
    let rows = db.query(
        "SELECT street, house_number, postal_code, city, country FROM address WHERE household = ?",
        &[text(household)],
    )?;
    rows.rows
        .first()
        .map(|row| {
            Ok(anonymizer::Address {
                street: col_required(row, 0)?,
                house_number: col_required(row, 1)?,
                postal_code: col_required(row, 2)?,
                city: col_required(row, 3)?,
                country: col_required(row, 4)?,
            })
        })
        .transpose()
}

/// The household's PV systems with their uuids, in a fixed order.
fn pv_system_ids(db: &Db, household: &str) -> ApiResult<Vec<(String, anonymizer::PvSystem)>> {
    let rows = db.query(
        "SELECT uuid, nominal_power_kwp, azimuth, tilt, installation_date FROM pv_system
         WHERE household = ? ORDER BY uuid",
        &[text(household)],
    )?;
    rows.rows
        .iter()
        .map(|row| {
            let number = |i| {
                row.get::<f64>(i).ok_or_else(|| {
                    ApiError::Database(format!("pv_system column {i} is not a number"))
                })
            };
            Ok((
                col_required(row, 0)?,
                anonymizer::PvSystem {
                    nominal_power_kwp: number(1)?,
                    azimuth: number(2)?,
                    tilt: number(3)?,
                    installation_date: col_required(row, 4)?,
                },
            ))
        })
        .collect()
}
