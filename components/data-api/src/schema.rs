//! The database schema and its migrations.
//!
//! `schema_version` holds one row per applied migration. At the start of each request
//! [`migrate`] reads the highest applied version (one indexed `SELECT`) and, only when it is
//! behind [`CURRENT_VERSION`], applies the missing ones. Each migration is a list of statements that
//! are idempotent on their own (`CREATE … IF NOT EXISTS`), so two requests migrating at the same
//! time, or a migration interrupted half-way, converge on the same schema; the version row is
//! written after the statements (`INSERT OR IGNORE`).
//!
//! Timestamps are UTC text in one fixed-width format (`crate::timestamp::to_db`), so text order
//! is time order. JSON columns hold serialised JSON text. Consent states are stored by their
//! `wattlet_survey::ConsentState::as_str` names, which the statements below take from there.

use wattlet_survey::ConsentState;

use crate::db::Db;
use crate::error::ApiResult;
use crate::timestamp;

/// A migration: its version and its statements, applied in order.
pub struct Migration {
    pub version: i64,
    pub statements: Vec<String>,
}

/// The version the code expects.
pub const CURRENT_VERSION: i64 = 11;

/// `'name'` of a consent state, for SQL text.
fn quoted(state: ConsentState) -> String {
    format!("'{}'", state.as_str())
}

/// Every migration, oldest first.
pub fn migrations() -> Vec<Migration> {
    let not_granted = quoted(ConsentState::NotGranted);
    let revoked = quoted(ConsentState::Revoked);
    let every_state = ConsentState::ALL.map(quoted).join(", ");
    vec![
        Migration {
            version: 1,
            statements: vec![
                // Participants' contact details; removed on anonymization (household.user → NULL).
                r#"CREATE TABLE IF NOT EXISTS "user" (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT NOT NULL UNIQUE
            )"#.to_owned(),
                r#"CREATE TABLE IF NOT EXISTS household (
                id TEXT PRIMARY KEY,
                user INTEGER UNIQUE REFERENCES "user"(id) ON DELETE SET NULL,
                created_at TEXT NOT NULL
            )"#.to_owned(),
                // One row per household; one-way: not_granted → granted → revoked.
                format!(r#"CREATE TABLE IF NOT EXISTS consent (
                household TEXT PRIMARY KEY REFERENCES household(id),
                state TEXT NOT NULL DEFAULT {not_granted}
                    CHECK (state IN ({every_state})),
                granted_at TEXT,
                revoked_at TEXT
            )"#),
                // id: the device id of its client certificate.
                r#"CREATE TABLE IF NOT EXISTS measurement_device (
                id TEXT PRIMARY KEY,
                household TEXT NOT NULL REFERENCES household(id),
                component_versions TEXT NOT NULL DEFAULT '{}',
                last_measurement TEXT,
                last_activity TEXT,
                revoked_at TEXT
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS measurement_device_household ON measurement_device(household)".to_owned(),
                // status: the device's last report (`{"locked": bool, "missing": [obis], "reported_at"}`).
                r#"CREATE TABLE IF NOT EXISTS meter (
                uuid TEXT PRIMARY KEY,
                household TEXT NOT NULL REFERENCES household(id),
                device TEXT REFERENCES measurement_device(id),
                type TEXT NOT NULL CHECK (type IN ('ELECTRICITY', 'PV-GENERATION')),
                model TEXT NOT NULL CHECK (model IN ('MT681', 'MT175', 'EHZ', 'DD3', 'EASY')),
                status TEXT NOT NULL DEFAULT '{}'
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS meter_household ON meter(household)".to_owned(),
                // data: JSON array of {"<obis hex>": value}.
                r#"CREATE TABLE IF NOT EXISTS measurement (
                uuid TEXT PRIMARY KEY,
                meter TEXT NOT NULL REFERENCES meter(uuid),
                measured_at TEXT NOT NULL,
                data TEXT NOT NULL,
                received_at TEXT NOT NULL
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS measurement_meter_time ON measurement(meter, measured_at, uuid)".to_owned(),
            ],
        },
        Migration {
            version: 2,
            statements: vec![
                // NIALM results, written by the queue workers (`wattlet worker nialm`), one row per work
                // item (meter, model, hour); item: the item's deterministic id, so a result stored twice
                // is one row. power_w: JSON array of the appliance's power in W, one value per step.
                r#"CREATE TABLE IF NOT EXISTS disaggregation (
                item TEXT PRIMARY KEY,
                meter TEXT NOT NULL REFERENCES meter(uuid),
                model TEXT NOT NULL,
                model_sha256 TEXT NOT NULL,
                window_start TEXT NOT NULL,
                step_seconds INTEGER NOT NULL,
                power_w TEXT NOT NULL,
                computed_at TEXT NOT NULL
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS disaggregation_meter_time
                ON disaggregation(meter, window_start, model)".to_owned(),
            ],
        },
        Migration {
            version: 3,
            statements: vec![
                // Registration details beyond the contact (DESIGN "Data model"). The postal address
                // is deleted on anonymization; the location outlives it, displaced.
                r#"CREATE TABLE IF NOT EXISTS address (
                household TEXT PRIMARY KEY REFERENCES household(id),
                street TEXT NOT NULL,
                house_number TEXT NOT NULL,
                postal_code TEXT NOT NULL,
                city TEXT NOT NULL,
                country TEXT NOT NULL
            )"#.to_owned(),
                // nuts3: the household's NUTS-3 region, for the population density of the displacement.
                // displacement: NULL while the point is the true one; set, as JSON, in the same UPDATE
                // that moves the point, so a point is displaced at most once.
                r#"CREATE TABLE IF NOT EXISTS location (
                household TEXT PRIMARY KEY REFERENCES household(id),
                latitude REAL NOT NULL,
                longitude REAL NOT NULL,
                nuts3 TEXT,
                displacement TEXT
            )"#.to_owned(),
                r#"CREATE TABLE IF NOT EXISTS household_metadata (
                household TEXT PRIMARY KEY REFERENCES household(id),
                children INTEGER NOT NULL,
                adults INTEGER NOT NULL,
                employed_adults INTEGER NOT NULL,
                ev_charger INTEGER NOT NULL,
                heat_pump INTEGER NOT NULL,
                home_battery INTEGER NOT NULL
            )"#.to_owned(),
                r#"CREATE TABLE IF NOT EXISTS pv_system (
                uuid TEXT PRIMARY KEY,
                household TEXT NOT NULL REFERENCES household(id),
                nominal_power_kwp REAL NOT NULL,
                azimuth REAL NOT NULL,
                tilt REAL NOT NULL,
                installation_date TEXT NOT NULL
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS pv_system_household ON pv_system(household)".to_owned(),
                // Population density per NUTS-3 region (inhabitants per km²); a region missing here
                // counts as ρ = 0 when its households are anonymized, and that is recorded.
                r#"CREATE TABLE IF NOT EXISTS nuts3_region (
                code TEXT PRIMARY KEY,
                population_density_per_km2 REAL NOT NULL
            )"#.to_owned(),
                // One row per revoked household, made by the trigger below in the same statement that
                // revokes the consent, so no revocation can miss its anonymization. The draw is made
                // once (UPDATE … WHERE distance_uniform IS NULL) and kept: a retry after a crash
                // reuses it. completed_at: NULL until every step is done (crash recovery picks up
                // the rows with NULL, see `anonymization::complete_pending`).
                r#"CREATE TABLE IF NOT EXISTS anonymization (
                household TEXT PRIMARY KEY REFERENCES household(id),
                requested_at TEXT NOT NULL,
                distance_uniform REAL,
                bearing_uniform REAL,
                completed_at TEXT
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS anonymization_pending ON anonymization(household)
                WHERE completed_at IS NULL".to_owned(),
                format!(r#"CREATE TRIGGER IF NOT EXISTS consent_revoked_anonymize
                AFTER UPDATE OF state ON consent WHEN NEW.state = {revoked}
                BEGIN
                    INSERT OR IGNORE INTO anonymization (household, requested_at)
                    VALUES (NEW.household, NEW.revoked_at);
                END"#),
                // Clearing a household's user deletes the user row in the same statement: the id
                // is never left dangling (INTEGER PRIMARY KEYs are reused).
                r#"CREATE TRIGGER IF NOT EXISTS household_user_cleared
                AFTER UPDATE OF user ON household WHEN OLD.user IS NOT NULL AND NEW.user IS NULL
                BEGIN
                    DELETE FROM "user" WHERE id = OLD.user;
                END"#.to_owned(),
                // Households revoked before this migration are anonymized too.
                format!("INSERT OR IGNORE INTO anonymization (household, requested_at)
                SELECT household, revoked_at FROM consent WHERE state = {revoked}"),
            ],
        },
        Migration {
            version: 4,
            statements: vec![
                // Which PV systems a meter measures (a PV-generation meter, or a two-way meter).
                r#"CREATE TABLE IF NOT EXISTS meter_pv_system (
                meter TEXT NOT NULL REFERENCES meter(uuid),
                pv_system TEXT NOT NULL REFERENCES pv_system(uuid),
                PRIMARY KEY (meter, pv_system)
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS meter_pv_system_pv ON meter_pv_system(pv_system)".to_owned(),
            ],
        },
        Migration {
            version: 5,
            statements: vec![
                // The nonces of identity proofs, each accepted once (`auth`); kept while a proof
                // made at made_at (seconds since 1970) could still verify.
                r#"CREATE TABLE IF NOT EXISTS identity_proof (
                nonce TEXT PRIMARY KEY,
                made_at INTEGER NOT NULL
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS identity_proof_made_at ON identity_proof(made_at)".to_owned(),
                // Revoked access-token ids; kept while a token of the id could still be valid.
                r#"CREATE TABLE IF NOT EXISTS revoked_token (
                id TEXT PRIMARY KEY,
                revoked_at TEXT NOT NULL
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS revoked_token_at ON revoked_token(revoked_at)".to_owned(),
                // One row while an anonymization's WAL checkpoint is owed: another connection
                // was reading, so old page images (personal data) stayed in the WAL; requests
                // try again (tried_at: the last try) until the WAL is truncated (`anonymization`).
                r#"CREATE TABLE IF NOT EXISTS wal_scrub (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                tried_at TEXT NOT NULL
            )"#.to_owned(),
                // When the device was registered: its measurements are plausible from shortly
                // before then (`timestamp::plausible`). Devices registered before this migration
                // count from their household's registration.
                "ALTER TABLE measurement_device ADD COLUMN registered_at TEXT".to_owned(),
                "UPDATE measurement_device SET registered_at =
                    (SELECT created_at FROM household h WHERE h.id = measurement_device.household)
                 WHERE registered_at IS NULL".to_owned(),
                // The device's last status report beyond its meters (JSON: the measurements it
                // set aside because the Data API refused them, whether its clock is set).
                "ALTER TABLE measurement_device ADD COLUMN status TEXT NOT NULL DEFAULT '{}'".to_owned(),
            ],
        },
        Migration {
            version: 6,
            statements: vec![
                // Each household's data key (`keys`): key_id random (it says nothing about the
                // household), wrapped = Kek::wrap(key_id, key) under the key-encryption key.
                r#"CREATE TABLE IF NOT EXISTS household_key (
                household TEXT PRIMARY KEY REFERENCES household(id),
                key_id TEXT NOT NULL UNIQUE,
                wrapped TEXT NOT NULL,
                created_at TEXT NOT NULL
            )"#.to_owned(),
                // Crypto-shredding: the statement that revokes a household's consent deletes its
                // key, in the same transaction as it requests the anonymization.
                format!(r#"CREATE TRIGGER IF NOT EXISTS consent_revoked_shred_key
                AFTER UPDATE OF state ON consent WHEN NEW.state = {revoked}
                BEGIN
                    DELETE FROM household_key WHERE household = NEW.household;
                END"#),
            ],
        },
        Migration {
            version: 7,
            statements: vec![
                // The latest load forecast of each meter (`handlers::forecast`): one row per
                // slice length, all of a meter's rows from one work item (`item`) made from the
                // data up to `at`; ts: the forecast slice's start. Deleted on anonymization.
                r#"CREATE TABLE IF NOT EXISTS forecasts (
                meter TEXT NOT NULL REFERENCES meter(uuid),
                slice_len INTEGER NOT NULL,
                at TEXT NOT NULL,
                ts TEXT NOT NULL,
                load_w REAL NOT NULL,
                item TEXT NOT NULL,
                computed_at TEXT NOT NULL,
                PRIMARY KEY (meter, slice_len)
            )"#.to_owned(),
            ],
        },
        Migration {
            version: 8,
            statements: vec![
                // Staged rollouts (`handlers::rollouts`, `crate::rollout`): the plan and the
                // state the state machine returned; `stage` is NULL once cancelled.
                r#"CREATE TABLE IF NOT EXISTS rollout (
                id TEXT PRIMARY KEY,
                component TEXT NOT NULL,
                version TEXT NOT NULL,
                stages TEXT NOT NULL,
                max_failure_rate REAL NOT NULL,
                min_reports INTEGER NOT NULL,
                state TEXT NOT NULL,
                stage INTEGER,
                reason TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                UNIQUE (component, version)
            )"#.to_owned(),
                // Each device's latest outcome of a rollout, with the stage whose cohort it is
                // in. Devices are renamed to their pseudonyms on anonymization.
                r#"CREATE TABLE IF NOT EXISTS rollout_outcome (
                rollout TEXT NOT NULL REFERENCES rollout(id),
                device TEXT NOT NULL,
                stage INTEGER NOT NULL,
                outcome TEXT NOT NULL,
                reason TEXT,
                reported_at TEXT NOT NULL,
                PRIMARY KEY (rollout, device)
            )"#.to_owned(),
            ],
        },
        Migration {
            version: 9,
            statements: vec![
                // Policies attached to a data object (`policy`): household NULL for study-wide
                // defaults (principal 'study'), else the participant's (principal
                // 'participant'). The chain runs study-wide first, then by id.
                r#"CREATE TABLE IF NOT EXISTS policy_attachment (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                household TEXT REFERENCES household(id),
                object TEXT NOT NULL,
                policy TEXT NOT NULL,
                parameters TEXT NOT NULL,
                principal TEXT NOT NULL CHECK (principal IN ('study', 'participant')),
                attached_at TEXT NOT NULL
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS policy_attachment_object
                 ON policy_attachment (object, household, id)".to_owned(),
                // The access log (`access_log`): one hash chain per household (chain = its id)
                // and `study`; entry is the canonical JSON that was hashed.
                r#"CREATE TABLE IF NOT EXISTS access_log (
                chain TEXT NOT NULL,
                seq INTEGER NOT NULL,
                entry TEXT NOT NULL,
                hash TEXT NOT NULL,
                PRIMARY KEY (chain, seq)
            )"#.to_owned(),
            ],
        },
        Migration {
            version: 10,
            statements: vec![
                // Each status report's health (`handlers::health`), bounded per device;
                // update_state: the update agent's state, for rollouts' failure rates.
                // Deleted on anonymization.
                r#"CREATE TABLE IF NOT EXISTS device_health (
                device TEXT NOT NULL REFERENCES measurement_device(id),
                reported_at TEXT NOT NULL,
                update_state TEXT,
                health TEXT NOT NULL,
                PRIMARY KEY (device, reported_at)
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS device_health_update ON device_health(update_state, reported_at)".to_owned(),
                // Diagnostics requests and the bundles devices uploaded for them; deleted once
                // expired and on anonymization.
                r#"CREATE TABLE IF NOT EXISTS device_diagnostics (
                id TEXT PRIMARY KEY,
                device TEXT NOT NULL REFERENCES measurement_device(id),
                requested_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                uploaded_at TEXT,
                bundle TEXT
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS device_diagnostics_device ON device_diagnostics(device)".to_owned(),
            ],
        },
        Migration {
            version: 11,
            statements: vec![
                // The participant's export copy (policy `export-copy`): measurements copied as
                // they were stored, kept for the participant's download whatever the study's
                // rules purge; deleted by the participant and on anonymization.
                r#"CREATE TABLE IF NOT EXISTS export_copy (
                household TEXT NOT NULL REFERENCES household(id),
                uuid TEXT NOT NULL,
                meter TEXT NOT NULL,
                measured_at TEXT NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (household, uuid)
            )"#.to_owned(),
                "CREATE INDEX IF NOT EXISTS export_copy_time ON export_copy(household, measured_at, uuid)".to_owned(),
                // The content digest of the policy's code when it was attached
                // (`policy::digest`); NULL for attachments made before.
                "ALTER TABLE policy_attachment ADD COLUMN digest TEXT".to_owned(),
            ],
        },
    ]
}

/// The version the code expects.
pub fn current_version() -> i64 {
    CURRENT_VERSION
}

/// Applies pending migrations. Cheap when the schema is current: one `SELECT`.
pub fn migrate(db: &Db) -> ApiResult<()> {
    let applied = match db.try_query("SELECT MAX(version) FROM schema_version", &[]) {
        Ok(result) => result
            .rows
            .first()
            .and_then(|row| row.get::<i64>(0))
            .unwrap_or(0),
        // No schema_version table yet: a fresh database.
        Err(_) => {
            db.exec(
                "CREATE TABLE IF NOT EXISTS schema_version (
                    version INTEGER PRIMARY KEY,
                    applied_at TEXT NOT NULL
                )",
                &[],
            )?;
            0
        }
    };
    if applied >= current_version() {
        return Ok(());
    }
    for migration in migrations().into_iter().filter(|m| m.version > applied) {
        for statement in &migration.statements {
            match db.try_query(statement, &[]) {
                Ok(_) => {}
                // `ADD COLUMN` is the one statement SQLite cannot make idempotent: a column that
                // exists was added by a concurrent or interrupted run of this migration.
                Err(e) if is_duplicate_column(statement, &e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        db.exec(
            "INSERT OR IGNORE INTO schema_version (version, applied_at) VALUES (?, ?)",
            &[
                crate::db::Value::Integer(migration.version),
                crate::db::text(timestamp::to_db(timestamp::now())),
            ],
        )?;
    }
    Ok(())
}

fn is_duplicate_column(statement: &str, error: &crate::db::StorageError) -> bool {
    statement.contains("ADD COLUMN")
        && matches!(error, crate::db::StorageError::Io(m) if m.contains("duplicate column name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_version_is_the_last_migration() {
        let migrations = migrations();
        assert_eq!(migrations.last().map(|m| m.version), Some(CURRENT_VERSION));
        assert!(migrations.windows(2).all(|w| w[0].version < w[1].version));
    }

    #[test]
    fn consent_states_in_the_schema_are_the_state_machines() {
        let statements: Vec<String> = migrations()
            .into_iter()
            .flat_map(|m| m.statements)
            .collect();
        let consent = statements
            .iter()
            .find(|s| s.contains("CREATE TABLE IF NOT EXISTS consent"))
            .expect("the consent table");
        assert!(consent.contains("CHECK (state IN ('not_granted', 'granted', 'revoked'))"));
        assert!(consent.contains("DEFAULT 'not_granted'"));
        let trigger = statements
            .iter()
            .find(|s| s.contains("consent_revoked_anonymize"))
            .expect("the anonymization trigger");
        assert!(trigger.contains("WHEN NEW.state = 'revoked'"));
    }
}
