//! The device's measurement buffer: a SQLite file in WAL mode.
//!
//! A measurement is written in one transaction and deleted only after the cloud acknowledged
//! it, so a power cut at any instant neither loses nor duplicates one: before the commit it was
//! never taken, after it it is on disk until the cloud has it. `synchronous = FULL` makes a
//! commit survive a power cut, not only a crash of the process.
//!
//! A measurement the cloud refused on its own (its meter is not wired to the device, its time
//! is out of range, …) would be refused again at every attempt and hold back the rest: it is
//! moved to the `set_aside` table with the refusal, in the same transaction that deletes what
//! the cloud acknowledged. Set-aside rows are kept (counted, reported in the device's status
//! and metrics), never sent again, and deleted only with everything else after revocation.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use wattlet_survey::{ConsentState, Measurement, RefusalCode};
use wattlet_upload::{MeasurementRefusal, SetAside};

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("measurement buffer {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("measurement buffer: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("measurement buffer: stored values of {uuid} are unreadable: {source}")]
    Corrupt {
        uuid: String,
        source: serde_json::Error,
    },
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE measurement (
        uuid TEXT PRIMARY KEY,
        meter TEXT NOT NULL,
        measured_at TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX measurement_by_time ON measurement (measured_at, uuid);
    CREATE TABLE journal (
        uuid TEXT PRIMARY KEY,
        meter TEXT NOT NULL,
        measured_at TEXT NOT NULL
    );
    CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // code: the refusal code's name, `unknown` for one this build does not know.
    "CREATE TABLE set_aside (
        uuid TEXT PRIMARY KEY,
        meter TEXT NOT NULL,
        measured_at TEXT NOT NULL,
        data TEXT NOT NULL,
        code TEXT NOT NULL,
        message TEXT NOT NULL,
        set_aside_at TEXT NOT NULL
    );",
];

/// The code a set-aside row stores when the refusal carried none this build knows.
const UNKNOWN_CODE: &str = "unknown";

/// What [`Buffer::settle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Acknowledged rows deleted.
    pub deleted: usize,
    /// Refused rows moved aside.
    pub set_aside: usize,
}

pub struct Buffer {
    connection: Connection,
    journal: bool,
}

impl Buffer {
    /// Opens (creating if needed) the buffer at `path`. With `journal`, every measurement also
    /// leaves a permanent (uuid, meter, time) record, written in the same transaction.
    pub fn open(path: &Path, journal: bool) -> Result<Self, BufferError> {
        let open_error = |source| BufferError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut connection = Connection::open(path).map_err(open_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA secure_delete = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(open_error)?;
        let applied: usize = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(open_error)?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = connection.transaction().map_err(open_error)?;
            tx.execute_batch(migration).map_err(open_error)?;
            tx.pragma_update(None, "user_version", i + 1)
                .map_err(open_error)?;
            tx.commit().map_err(open_error)?;
        }
        Ok(Buffer {
            connection,
            journal,
        })
    }

    /// Stores one measurement (and its journal record) atomically.
    pub fn insert(&mut self, m: &Measurement) -> Result<(), BufferError> {
        let data = serde_json::to_string(&m.values).map_err(|source| BufferError::Corrupt {
            uuid: m.uuid.clone(),
            source,
        })?;
        let tx = self.connection.transaction()?;
        tx.execute(
            "INSERT INTO measurement (uuid, meter, measured_at, data) VALUES (?1, ?2, ?3, ?4)",
            params![m.uuid, m.meter, m.measured_at, data],
        )?;
        if self.journal {
            tx.execute(
                "INSERT INTO journal (uuid, meter, measured_at) VALUES (?1, ?2, ?3)",
                params![m.uuid, m.meter, m.measured_at],
            )?;
        }
        tx.execute(
            "INSERT INTO state (key, value) VALUES ('last_measurement', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            params![m.measured_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The oldest `limit` measurements not yet acknowledged by the cloud.
    pub fn pending(&self, limit: usize) -> Result<Vec<Measurement>, BufferError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT uuid, meter, measured_at, data FROM measurement
             ORDER BY measured_at, uuid LIMIT ?1",
        )?;
        let rows = statement
            .query_map(params![limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(uuid, meter, measured_at, data)| {
                let values =
                    serde_json::from_str(&data).map_err(|source| BufferError::Corrupt {
                        uuid: uuid.clone(),
                        source,
                    })?;
                Ok(Measurement {
                    uuid,
                    meter,
                    measured_at,
                    values,
                })
            })
            .collect()
    }

    pub fn pending_count(&self) -> Result<u64, BufferError> {
        Ok(self
            .connection
            .query_row("SELECT count(*) FROM measurement", [], |row| row.get(0))?)
    }

    /// Deletes exactly the acknowledged measurements and moves exactly the refused ones aside
    /// (with their refusal, stamped `now`), in one transaction.
    pub fn settle(
        &mut self,
        acknowledged: &[String],
        refused: &[MeasurementRefusal],
        now: &str,
    ) -> Result<Settled, BufferError> {
        let tx = self.connection.transaction()?;
        let mut settled = Settled::default();
        {
            let mut delete = tx.prepare_cached("DELETE FROM measurement WHERE uuid = ?1")?;
            for uuid in acknowledged {
                settled.deleted += delete.execute(params![uuid])?;
            }
            let mut aside = tx.prepare_cached(
                "INSERT OR IGNORE INTO set_aside
                     (uuid, meter, measured_at, data, code, message, set_aside_at)
                 SELECT uuid, meter, measured_at, data, ?2, ?3, ?4 FROM measurement WHERE uuid = ?1",
            )?;
            for refusal in refused {
                let code = refusal.code.map_or(UNKNOWN_CODE, RefusalCode::as_str);
                if aside.execute(params![refusal.uuid, code, refusal.message, now])? > 0 {
                    settled.set_aside += delete.execute(params![refusal.uuid])?;
                }
            }
        }
        tx.commit()?;
        Ok(settled)
    }

    /// The measurements set aside, by meter and code (sorted).
    pub fn set_aside(&self) -> Result<Vec<SetAside>, BufferError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT meter, code, count(*) FROM set_aside GROUP BY meter, code ORDER BY meter, code",
        )?;
        let rows = statement
            .query_map([], |row| {
                Ok(SetAside {
                    meter: row.get(0)?,
                    code: row.get::<_, String>(1)?.parse().ok(),
                    count: row.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Drops every measurement not delivered, pending or set aside: after revocation the cloud
    /// refuses them, and a device must not keep personal data it can no longer deliver.
    /// `secure_delete` zeroes them in the database's pages; the truncating checkpoint removes
    /// the WAL's older copies.
    pub fn discard_pending(&mut self) -> Result<usize, BufferError> {
        let tx = self.connection.transaction()?;
        let discarded =
            tx.execute("DELETE FROM measurement", [])? + tx.execute("DELETE FROM set_aside", [])?;
        tx.commit()?;
        self.connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(discarded)
    }

    pub fn last_measurement(&self) -> Result<Option<String>, BufferError> {
        self.state("last_measurement")
    }

    /// The consent last fetched from the cloud; `None` before the first successful fetch.
    pub fn consent(&self) -> Result<Option<ConsentState>, BufferError> {
        Ok(self
            .state("consent")?
            .as_deref()
            .and_then(|name| name.parse().ok()))
    }

    pub fn set_consent(&mut self, consent: ConsentState) -> Result<(), BufferError> {
        self.connection.execute(
            "INSERT INTO state (key, value) VALUES ('consent', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![consent.as_str()],
        )?;
        Ok(())
    }

    /// Every measurement ever taken, when the journal is on: (uuid, meter, measured_at).
    pub fn journal(&self) -> Result<Vec<(String, String, String)>, BufferError> {
        let mut statement = self
            .connection
            .prepare("SELECT uuid, meter, measured_at FROM journal ORDER BY measured_at, uuid")?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn state(&self, key: &str) -> Result<Option<String>, BufferError> {
        Ok(self
            .connection
            .query_row(
                "SELECT value FROM state WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(uuid: &str, at: &str) -> Measurement {
        Measurement {
            uuid: uuid.into(),
            meter: "m".into(),
            measured_at: at.into(),
            values: vec![("0100010800ff".into(), 12.5)],
        }
    }

    #[test]
    fn measurements_stay_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer.sqlite");
        let mut buffer = Buffer::open(&path, true).unwrap();
        buffer
            .insert(&measurement("b", "2026-11-23T16:15:00Z"))
            .unwrap();
        buffer
            .insert(&measurement("a", "2026-11-23T16:00:00Z"))
            .unwrap();
        assert!(
            buffer
                .insert(&measurement("a", "2026-11-23T16:30:00Z"))
                .is_err()
        );
        let pending = buffer.pending(10).unwrap();
        assert_eq!(
            pending,
            [
                measurement("a", "2026-11-23T16:00:00Z"),
                measurement("b", "2026-11-23T16:15:00Z")
            ]
        );
        let settled = buffer.settle(&["a".into(), "zzz".into()], &[], "").unwrap();
        assert_eq!(settled.deleted, 1);
        drop(buffer);
        // Reopened (as after a restart): what was not acknowledged is still there, the
        // journal and the last measurement too, and migrations are not applied twice.
        let buffer = Buffer::open(&path, true).unwrap();
        assert_eq!(
            buffer.pending(10).unwrap(),
            [measurement("b", "2026-11-23T16:15:00Z")]
        );
        assert_eq!(buffer.journal().unwrap().len(), 2);
        assert_eq!(
            buffer.last_measurement().unwrap().as_deref(),
            Some("2026-11-23T16:15:00Z")
        );
    }

    #[test]
    fn refused_measurements_are_set_aside_with_their_code_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer.sqlite");
        let mut buffer = Buffer::open(&path, true).unwrap();
        let mut stuck = measurement("s", "2026-11-23T16:00:00Z");
        stuck.meter = "stuck".into();
        for m in [
            &stuck,
            &measurement("a", "2026-11-23T16:05:00Z"),
            &measurement("b", "2026-11-23T16:10:00Z"),
        ] {
            buffer.insert(m).unwrap();
        }
        let refusal = |uuid: &str, code| MeasurementRefusal {
            uuid: uuid.into(),
            code,
            message: "refused".into(),
        };
        // The cloud refused "s" (and names "zzz", which is not here); "a" was acknowledged.
        let settled = buffer
            .settle(
                &["a".into()],
                &[
                    refusal("s", Some(RefusalCode::MeterNotWired)),
                    refusal("zzz", None),
                ],
                "2026-11-23T17:00:00Z",
            )
            .unwrap();
        assert_eq!(
            settled,
            Settled {
                deleted: 1,
                set_aside: 1
            }
        );
        // Settled again (a retry after a crash before the answer was applied): nothing moves.
        let again = buffer
            .settle(&["a".into()], &[refusal("s", None)], "2026-11-23T17:01:00Z")
            .unwrap();
        assert_eq!(again, Settled::default());
        drop(buffer);
        let mut buffer = Buffer::open(&path, true).unwrap();
        assert_eq!(
            buffer.pending(10).unwrap(),
            [measurement("b", "2026-11-23T16:10:00Z")]
        );
        assert_eq!(
            buffer.set_aside().unwrap(),
            [SetAside {
                meter: "stuck".into(),
                code: Some(RefusalCode::MeterNotWired),
                count: 1
            }]
        );
        assert_eq!(buffer.journal().unwrap().len(), 3);
        // Revocation discards the set-aside rows with the pending ones.
        assert_eq!(buffer.discard_pending().unwrap(), 2);
        assert!(buffer.set_aside().unwrap().is_empty());
    }

    #[test]
    fn consent_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite"), false).unwrap();
        assert_eq!(buffer.consent().unwrap(), None);
        buffer.set_consent(ConsentState::Granted).unwrap();
        assert_eq!(buffer.consent().unwrap(), Some(ConsentState::Granted));
        buffer
            .insert(&measurement("a", "2026-11-23T16:00:00Z"))
            .unwrap();
        assert!(buffer.journal().unwrap().is_empty(), "journal is off");
        assert_eq!(buffer.discard_pending().unwrap(), 1);
        assert_eq!(buffer.pending_count().unwrap(), 0);
    }
}
