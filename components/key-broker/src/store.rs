//! What the broker keeps: sessions, grants (tokens), its counters, and the Data API's wrapped
//! household keys (read only). [`Store`] is what the decision logic needs; [`SqlStore`] is it
//! over one SQLite database ([`Sql`]: one statement with parameters in, rows out), which the
//! component implements with Spin's `default` database and the native tests with rusqlite.
//!
//! Every write that must be atomic is one statement: a session is consumed by
//! `DELETE … RETURNING` (two concurrent attestations with one nonce: one gets the row), a counter
//! grows by `INSERT … ON CONFLICT DO UPDATE`.

use crate::protocol::{Grant, Session, Tee};

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Text(String),
    Blob(Vec<u8>),
    Real(f64),
    Null,
}

/// Why a statement failed (anything SQLite or the host says).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// One SQLite database.
pub trait Sql {
    /// Runs one statement with `?` parameters bound in order; the rows it returned.
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, StoreError>;
}

/// What the broker keeps.
pub trait Store {
    fn put_session(&self, session: &Session) -> Result<(), StoreError>;
    /// Removes and returns the session (single use); `None` when unknown or already taken.
    fn take_session(&self, session: &str) -> Result<Option<Session>, StoreError>;
    fn put_grant(&self, token_hash: &str, grant: &Grant) -> Result<(), StoreError>;
    fn grant(&self, token_hash: &str) -> Result<Option<Grant>, StoreError>;
    /// The wrapped household key `key_id` (`None`: shredded, never made, or no key table yet).
    fn wrapped_key(&self, key_id: &str) -> Result<Option<String>, StoreError>;
    /// Keeps a new dataset key (wrapped) under `key_id`.
    fn put_dataset_key(
        &self,
        key_id: &str,
        name: &str,
        wrapped: &str,
        now: u64,
    ) -> Result<(), StoreError>;
    /// The wrapped dataset key `key_id` (`None`: deleted or never made).
    fn wrapped_dataset_key(&self, key_id: &str) -> Result<Option<String>, StoreError>;
    /// Destroys dataset key `key_id`; whether there was one.
    fn delete_dataset_key(&self, key_id: &str) -> Result<bool, StoreError>;
    /// Adds one to counter `metric{labels}` (labels as written in the exposition).
    fn count(&self, metric: &str, labels: &str) -> Result<(), StoreError>;
    /// Every counter: (metric, labels, value), sorted.
    fn counters(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// Grants still valid at `now`.
    fn live_grants(&self, now: u64) -> Result<i64, StoreError>;
    /// Forgets sessions and grants expired before `now`.
    fn purge(&self, now: u64) -> Result<(), StoreError>;
}

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS kbs_session (session TEXT PRIMARY KEY, nonce TEXT NOT NULL, \
     tee TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kbs_token (token_sha256 TEXT PRIMARY KEY, public_key TEXT NOT NULL, \
     tee TEXT NOT NULL, measurement TEXT NOT NULL, simulated INTEGER NOT NULL, \
     expires_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS kbs_counter (metric TEXT NOT NULL, labels TEXT NOT NULL, \
     value INTEGER NOT NULL, PRIMARY KEY (metric, labels))",
    "CREATE TABLE IF NOT EXISTS kbs_dataset_key (key_id TEXT PRIMARY KEY, name TEXT NOT NULL, \
     wrapped TEXT NOT NULL, created_at INTEGER NOT NULL)",
];

/// [`Store`] over one SQLite database.
pub struct SqlStore<'a> {
    sql: &'a dyn Sql,
}

impl<'a> SqlStore<'a> {
    /// The store on `sql`, its tables made if missing.
    pub fn open(sql: &'a dyn Sql) -> Result<SqlStore<'a>, StoreError> {
        for statement in SCHEMA {
            sql.execute(statement, &[])?;
        }
        Ok(SqlStore { sql })
    }
}

fn int(value: u64) -> Value {
    Value::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

fn text(value: impl Into<String>) -> Value {
    Value::Text(value.into())
}

fn get_text(row: &[Value], i: usize) -> Result<String, StoreError> {
    match row.get(i) {
        Some(Value::Text(s)) => Ok(s.clone()),
        Some(Value::Blob(b)) => {
            String::from_utf8(b.clone()).map_err(|_| StoreError(format!("column {i} is not UTF-8")))
        }
        other => Err(StoreError(format!(
            "column {i}: expected text, got {other:?}"
        ))),
    }
}

fn get_int(row: &[Value], i: usize) -> Result<i64, StoreError> {
    match row.get(i) {
        Some(Value::Integer(v)) => Ok(*v),
        other => Err(StoreError(format!(
            "column {i}: expected an integer, got {other:?}"
        ))),
    }
}

fn get_u64(row: &[Value], i: usize) -> Result<u64, StoreError> {
    u64::try_from(get_int(row, i)?).map_err(|_| StoreError(format!("column {i} is negative")))
}

fn parse_tee(name: &str) -> Result<Tee, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError(format!("unknown tee {name:?} stored")))
}

fn unb64(text: &str) -> Result<Vec<u8>, StoreError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| StoreError(format!("stored base64: {e}")))
}

impl Store for SqlStore<'_> {
    fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.sql.execute(
            "INSERT INTO kbs_session (session, nonce, tee, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
            &[
                text(&session.session),
                text(crate::protocol::b64(&session.nonce)),
                text(session.tee.name()),
                int(session.created_at),
                int(session.expires_at),
            ],
        )?;
        Ok(())
    }

    fn take_session(&self, session: &str) -> Result<Option<Session>, StoreError> {
        let rows = self.sql.execute(
            "DELETE FROM kbs_session WHERE session = ? \
             RETURNING session, nonce, tee, created_at, expires_at",
            &[text(session)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Session {
            session: get_text(row, 0)?,
            nonce: unb64(&get_text(row, 1)?)?,
            tee: parse_tee(&get_text(row, 2)?)?,
            created_at: get_u64(row, 3)?,
            expires_at: get_u64(row, 4)?,
        }))
    }

    fn put_grant(&self, token_hash: &str, grant: &Grant) -> Result<(), StoreError> {
        self.sql.execute(
            "INSERT INTO kbs_token (token_sha256, public_key, tee, measurement, simulated, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            &[
                text(token_hash),
                text(crate::protocol::b64(&grant.public_key)),
                text(grant.tee.name()),
                text(&grant.measurement),
                Value::Integer(i64::from(grant.simulated)),
                int(grant.expires_at),
            ],
        )?;
        Ok(())
    }

    fn grant(&self, token_hash: &str) -> Result<Option<Grant>, StoreError> {
        let rows = self.sql.execute(
            "SELECT public_key, tee, measurement, simulated, expires_at FROM kbs_token \
             WHERE token_sha256 = ?",
            &[text(token_hash)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(Grant {
            public_key: unb64(&get_text(row, 0)?)?,
            tee: parse_tee(&get_text(row, 1)?)?,
            measurement: get_text(row, 2)?,
            simulated: get_int(row, 3)? != 0,
            expires_at: get_u64(row, 4)?,
        }))
    }

    fn wrapped_key(&self, key_id: &str) -> Result<Option<String>, StoreError> {
        match self.sql.execute(
            "SELECT wrapped FROM household_key WHERE key_id = ?",
            &[text(key_id)],
        ) {
            Ok(rows) => rows.first().map(|row| get_text(row, 0)).transpose(),
            // The Data API makes the table with the first household key.
            Err(StoreError(message)) if message.contains("no such table") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_dataset_key(
        &self,
        key_id: &str,
        name: &str,
        wrapped: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.sql.execute(
            "INSERT INTO kbs_dataset_key (key_id, name, wrapped, created_at) VALUES (?, ?, ?, ?)",
            &[text(key_id), text(name), text(wrapped), int(now)],
        )?;
        Ok(())
    }

    fn wrapped_dataset_key(&self, key_id: &str) -> Result<Option<String>, StoreError> {
        self.sql
            .execute(
                "SELECT wrapped FROM kbs_dataset_key WHERE key_id = ?",
                &[text(key_id)],
            )?
            .first()
            .map(|row| get_text(row, 0))
            .transpose()
    }

    fn delete_dataset_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let rows = self.sql.execute(
            "DELETE FROM kbs_dataset_key WHERE key_id = ? RETURNING key_id",
            &[text(key_id)],
        )?;
        Ok(!rows.is_empty())
    }

    fn count(&self, metric: &str, labels: &str) -> Result<(), StoreError> {
        self.sql.execute(
            "INSERT INTO kbs_counter (metric, labels, value) VALUES (?, ?, 1) \
             ON CONFLICT (metric, labels) DO UPDATE SET value = value + 1",
            &[text(metric), text(labels)],
        )?;
        Ok(())
    }

    fn counters(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.sql
            .execute(
                "SELECT metric, labels, value FROM kbs_counter ORDER BY metric, labels",
                &[],
            )?
            .iter()
            .map(|row| Ok((get_text(row, 0)?, get_text(row, 1)?, get_int(row, 2)?)))
            .collect()
    }

    fn live_grants(&self, now: u64) -> Result<i64, StoreError> {
        let rows = self.sql.execute(
            "SELECT count(*) FROM kbs_token WHERE expires_at > ?",
            &[int(now)],
        )?;
        rows.first().map_or(Ok(0), |row| get_int(row, 0))
    }

    fn purge(&self, now: u64) -> Result<(), StoreError> {
        self.sql
            .execute("DELETE FROM kbs_session WHERE expires_at <= ?", &[int(now)])?;
        self.sql
            .execute("DELETE FROM kbs_token WHERE expires_at <= ?", &[int(now)])?;
        Ok(())
    }
}

/// rusqlite for the native tests (and any native host of the broker's logic).
#[cfg(all(test, not(target_family = "wasm")))]
pub(crate) mod sqlite {
    use super::{Sql, StoreError, Value};

    pub struct Sqlite(pub rusqlite::Connection);

    impl Sqlite {
        pub fn memory() -> Sqlite {
            Sqlite(rusqlite::Connection::open_in_memory().expect("in-memory SQLite"))
        }
    }

    impl Sql for Sqlite {
        fn execute(&self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, StoreError> {
            use rusqlite::types::{Value as V, ValueRef};
            let error = |e: rusqlite::Error| StoreError(e.to_string());
            let mut statement = self.0.prepare(sql).map_err(error)?;
            let params: Vec<V> = params
                .iter()
                .map(|p| match p {
                    Value::Integer(i) => V::Integer(*i),
                    Value::Text(s) => V::Text(s.clone()),
                    Value::Blob(b) => V::Blob(b.clone()),
                    Value::Real(f) => V::Real(*f),
                    Value::Null => V::Null,
                })
                .collect();
            let columns = statement.column_count();
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .map_err(error)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(error)? {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    values.push(match row.get_ref(i).map_err(error)? {
                        ValueRef::Integer(v) => Value::Integer(v),
                        ValueRef::Real(v) => Value::Real(v),
                        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        ValueRef::Null => Value::Null,
                    });
                }
                out.push(values);
            }
            Ok(out)
        }
    }
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::sqlite::Sqlite;
    use super::*;

    #[test]
    fn a_session_is_taken_once() {
        let db = Sqlite::memory();
        let store = SqlStore::open(&db).unwrap();
        SqlStore::open(&db).expect("the schema is made idempotently");
        let session = Session::open(Tee::Simulated, 10, [9; 16], [4; 32]);
        store.put_session(&session).unwrap();
        assert_eq!(
            store.take_session(&session.session).unwrap(),
            Some(session.clone())
        );
        assert_eq!(store.take_session(&session.session).unwrap(), None);
        assert_eq!(store.take_session("nope").unwrap(), None);
    }

    #[test]
    fn grants_counters_and_purge() {
        let db = Sqlite::memory();
        let store = SqlStore::open(&db).unwrap();
        let grant = Grant {
            public_key: vec![5; 32],
            tee: Tee::Snp,
            measurement: "ab".into(),
            simulated: false,
            expires_at: 100,
        };
        store.put_grant("h1", &grant).unwrap();
        store
            .put_grant(
                "h2",
                &Grant {
                    expires_at: 50,
                    simulated: true,
                    ..grant.clone()
                },
            )
            .unwrap();
        assert_eq!(store.grant("h1").unwrap(), Some(grant));
        assert!(store.grant("h2").unwrap().unwrap().simulated);
        assert_eq!(store.live_grants(10).unwrap(), 2);
        assert_eq!(store.live_grants(60).unwrap(), 1);
        store.purge(60).unwrap();
        assert_eq!(store.grant("h2").unwrap(), None);
        store.count("m", "a=\"1\"").unwrap();
        store.count("m", "a=\"1\"").unwrap();
        store.count("m", "a=\"2\"").unwrap();
        assert_eq!(
            store.counters().unwrap(),
            vec![
                ("m".into(), "a=\"1\"".into(), 2),
                ("m".into(), "a=\"2\"".into(), 1)
            ]
        );
    }

    #[test]
    fn a_missing_key_table_is_no_key() {
        let db = Sqlite::memory();
        let store = SqlStore::open(&db).unwrap();
        assert_eq!(store.wrapped_key("00").unwrap(), None);
        db.execute(
            "CREATE TABLE household_key (household TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, \
             wrapped TEXT NOT NULL, created_at TEXT NOT NULL)",
            &[],
        )
        .unwrap();
        db.execute(
            "INSERT INTO household_key VALUES ('h', 'k1', 'wrapped', 'now')",
            &[],
        )
        .unwrap();
        assert_eq!(store.wrapped_key("k1").unwrap(), Some("wrapped".into()));
        assert_eq!(store.wrapped_key("k2").unwrap(), None);
    }

    #[test]
    fn dataset_keys_are_kept_read_and_destroyed() {
        let db = Sqlite::memory();
        let store = SqlStore::open(&db).unwrap();
        assert_eq!(store.wrapped_dataset_key("d1").unwrap(), None);
        store.put_dataset_key("d1", "debs", "wrapped-1", 7).unwrap();
        assert!(
            store
                .put_dataset_key("d1", "again", "wrapped-2", 8)
                .is_err(),
            "a key id is never reused"
        );
        assert_eq!(
            store.wrapped_dataset_key("d1").unwrap(),
            Some("wrapped-1".into())
        );
        assert_eq!(
            store.wrapped_key("d1").unwrap(),
            None,
            "a dataset key is not a household key"
        );
        assert!(store.delete_dataset_key("d1").unwrap());
        assert!(!store.delete_dataset_key("d1").unwrap());
        assert_eq!(store.wrapped_dataset_key("d1").unwrap(), None);
    }
}
