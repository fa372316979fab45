//! One SQLite file behind a `fermyon:spin/sqlite` database or a `fermyon:spin/key-value` store,
//! and the connections requests lease from it.
//!
//! - Every guest `open` gets a connection of its own (Spin opens one per `open` too), so a
//!   transaction one request leaves open is neither seen nor ended by another, and it is rolled
//!   back when the request ends: the lease is dropped with the instance, and a connection still
//!   in a transaction is closed rather than reused.
//! - Connections are pooled. One whose lease changed its own state (see [`super::authorizer`])
//!   is closed as well.
//! - Statements run on tokio's blocking threads, never on the executor's; no lock is held
//!   across an await.
//! - A statement still running at the request's deadline is interrupted (a progress handler),
//!   and waits for another writer's lock end there too.
//! - Every connection has `secure_delete` on (the files hold personal data: deleted rows are
//!   overwritten), SQLite's defensive mode, the authorizer, and a cap on the size of one value
//!   and of one result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::config::DbConfig;
use rusqlite::hooks::AuthContext;
use rusqlite::limits::Limit;

use super::authorizer;

/// How long a statement waits for another connection's write lock (at most until the deadline).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite virtual-machine steps between two looks at the clock (about a few microseconds of
/// work; the look costs tens of nanoseconds).
const PROGRESS_STEPS: i32 = 1000;
/// Idle connections kept per file; more are closed when their request ends.
const MAX_IDLE: usize = 32;
/// The largest string or blob one statement may make, and the largest result a statement may
/// return (rows are copied into the guest's memory, which is smaller still).
pub const MAX_RESULT_BYTES: usize = 64 << 20;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Why a statement gave no result.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the result is larger than {MAX_RESULT_BYTES} bytes")]
    TooLarge,
    #[error("the statement's thread failed: {0}")]
    Thread(String),
}

/// A SQLite file and its idle connections.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    idle: Mutex<Vec<Pooled>>,
    /// Writes outside an explicit transaction take turns here (a futex wakes the next at once)
    /// rather than in SQLite's busy handler, which sleeps in steps of milliseconds.
    writer: Mutex<()>,
}

#[derive(Debug)]
struct Pooled {
    connection: Connection,
    /// Set by the authorizer when a statement changed the connection's own state.
    tainted: Arc<AtomicBool>,
}

impl Database {
    /// Opens (creating) the file in WAL mode and runs `schema`.
    pub fn open(path: &Path, schema: &str) -> rusqlite::Result<Arc<Database>> {
        let first = Connection::open(path)?;
        // WAL: readers do not block the writer, and a crash loses no committed transaction.
        // Stored in the file: set once, by the host, before any component's SQL.
        first.pragma_update(None, "journal_mode", "WAL")?;
        first.execute_batch(schema)?;
        Ok(Arc::new(Database {
            path: path.to_path_buf(),
            idle: Mutex::new(vec![confine(first)?]),
            writer: Mutex::new(()),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection for one guest `open`, bound by `deadline`; opened (or taken from the pool)
    /// on its first statement.
    pub fn lease(self: &Arc<Self>, deadline: Option<Instant>) -> Lease {
        Lease {
            database: self.clone(),
            connection: None,
            deadline,
        }
    }

    /// Waits for the turn of a write outside an explicit transaction (hold it while writing).
    pub fn write_turn(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Pooled>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocking: a pooled or new connection, armed with `deadline`.
    fn checkout(&self, deadline: Option<Instant>) -> rusqlite::Result<Pooled> {
        let pooled = self.idle().pop();
        let pooled = match pooled {
            Some(pooled) => pooled,
            None => confine(Connection::open(&self.path)?)?,
        };
        arm(&pooled.connection, deadline)?;
        Ok(pooled)
    }

    /// Back to the pool, unless the lease left state behind (closed off the executor then).
    fn checkin(&self, pooled: Pooled) {
        if !pooled.tainted.load(Ordering::Relaxed) && pooled.connection.is_autocommit() {
            let mut idle = self.idle();
            if idle.len() < MAX_IDLE {
                idle.push(pooled);
                return;
            }
        }
        // Closing rolls back an open transaction; it may touch the file, so not on the
        // executor when there is one.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(pooled))),
            Err(_) => drop(pooled),
        }
    }
}

/// `connection` with every setting a component's SQL must not change, and the authorizer.
fn confine(connection: Connection) -> rusqlite::Result<Pooled> {
    connection.pragma_update(None, "secure_delete", "ON")?;
    // No writes to the schema table or other ways to corrupt the file on purpose.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    connection.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_RESULT_BYTES as i32)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let tainted = Arc::new(AtomicBool::new(false));
    let flag = tainted.clone();
    connection.authorizer(Some(move |context: AuthContext<'_>| {
        authorizer::authorize(&context, &flag)
    }));
    Ok(Pooled {
        connection,
        tainted,
    })
}

/// Interrupts statements at `deadline` and waits for a lock no longer than until then.
fn arm(connection: &Connection, deadline: Option<Instant>) -> rusqlite::Result<()> {
    match deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            connection.busy_timeout(left.min(BUSY_TIMEOUT))?;
            connection.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline));
        }
        None => {
            connection.busy_timeout(BUSY_TIMEOUT)?;
            connection.progress_handler(0, None::<fn() -> bool>);
        }
    }
    Ok(())
}

/// One guest connection: a SQLite connection of its own for as long as the guest keeps it
/// (at most the request). Dropping it ends any transaction it left open.
#[derive(Debug)]
pub struct Lease {
    database: Arc<Database>,
    connection: Option<Pooled>,
    deadline: Option<Instant>,
}

impl Lease {
    /// Runs `work` on the lease's connection on a blocking thread. If the caller stops
    /// waiting, the connection is closed when `work` ends (a transaction in it rolled back).
    pub async fn run<T, F>(&mut self, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &Connection) -> Result<T, QueryError> + Send + 'static,
    {
        let database = self.database.clone();
        let pooled = self.connection.take();
        let deadline = self.deadline;
        let (pooled, result) = tokio::task::spawn_blocking(move || {
            let pooled = match pooled {
                Some(pooled) => pooled,
                None => match database.checkout(deadline) {
                    Ok(pooled) => pooled,
                    Err(error) => return (None, Err(QueryError::from(error))),
                },
            };
            let result = work(&database, &pooled.connection);
            (Some(pooled), result)
        })
        .await
        .map_err(|join| QueryError::Thread(join.to_string()))?;
        self.connection = pooled;
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pooled) = self.connection.take() {
            self.database.checkin(pooled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(database: &Arc<Database>) -> i64 {
        let connection = Connection::open(database.path()).unwrap();
        connection
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_transaction_left_open_is_rolled_back_and_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(&dir.path().join("a.db"), "CREATE TABLE t (x)").unwrap();
        let mut first = database.lease(None);
        first
            .run(|_, c| Ok(c.execute_batch("BEGIN; INSERT INTO t VALUES (1)")?))
            .await
            .unwrap();
        let mut second = database.lease(None);
        let (seen, commit) = second
            .run(|_, c| {
                let seen: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
                Ok((seen, c.execute_batch("COMMIT").map_err(|e| e.to_string())))
            })
            .await
            .unwrap();
        assert_eq!(seen, 0, "another lease does not see the open transaction");
        assert!(commit.unwrap_err().contains("no transaction is active"));
        drop(second);
        drop(first);
        assert_eq!(count(&database), 0, "rolled back when the lease ended");
        // What comes back from the pool is not in a transaction.
        for _ in 0..3 {
            let mut again = database.lease(None);
            let autocommit = again.run(|_, c| Ok(c.is_autocommit())).await.unwrap();
            assert!(autocommit);
        }
    }

    #[tokio::test]
    async fn a_statement_is_interrupted_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(&dir.path().join("a.db"), "").unwrap();
        let started = Instant::now();
        let mut lease = database.lease(Some(started + Duration::from_millis(200)));
        let result = lease
            .run(|_, c| {
                Ok(c.query_row(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                     SELECT count(*) FROM n",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await;
        let elapsed = started.elapsed();
        let error = result.unwrap_err().to_string();
        assert!(error.contains("interrupted"), "{error}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        // A later lease without a deadline is not interrupted by the old one's.
        drop(lease);
        let mut lease = database.lease(None);
        let n: i64 = lease
            .run(|_, c| {
                Ok(c.query_row(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
                     SELECT count(*) FROM n",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(n, 100_000);
    }

    #[tokio::test]
    async fn tainted_connections_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(&dir.path().join("a.db"), "").unwrap();
        let mut lease = database.lease(None);
        lease
            .run(|_, c| {
                Ok(c.execute_batch("CREATE TEMP TABLE mine (x); PRAGMA foreign_keys = OFF")?)
            })
            .await
            .unwrap();
        drop(lease);
        for _ in 0..3 {
            let mut lease = database.lease(None);
            let (temp, foreign_keys) = lease
                .run(|_, c| {
                    let temp: i64 =
                        c.query_row("SELECT count(*) FROM sqlite_temp_schema", [], |r| r.get(0))?;
                    let fk: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                    Ok((temp, fk))
                })
                .await
                .unwrap();
            assert_eq!((temp, foreign_keys), (0, 1));
        }
    }

    #[tokio::test]
    async fn every_connection_deletes_securely() {
        let dir = tempfile::tempdir().unwrap();
        let database = Database::open(&dir.path().join("a.db"), "").unwrap();
        let mut leases: Vec<_> = (0..3).map(|_| database.lease(None)).collect();
        for lease in &mut leases {
            let on: i64 = lease
                .run(|_, c| Ok(c.query_row("PRAGMA secure_delete", [], |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(on, 1);
        }
    }
}
