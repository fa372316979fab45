//! Where workers persist results: the `disaggregation` table of the Data API's database (created
//! by the Data API's migrations, read through its API). The item id is the primary key, so a
//! result stored twice is one row.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, params};

use crate::plan::db_time;

/// One computed item.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedResult {
    pub item: String,
    pub meter: String,
    pub model: String,
    pub model_sha256: String,
    pub window_start: i64,
    /// The appliance's power in W, one value per minute of the window.
    pub power_w: Vec<f32>,
}

pub struct ResultStore {
    db: Connection,
}

impl ResultStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        crate::require_database(path)?;
        let db =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        db.busy_timeout(Duration::from_secs(30))?;
        // A committed result must survive a power cut: the acknowledgement that follows removes
        // the item from the queue for good.
        db.pragma_update(None, "synchronous", "FULL")?;
        let has_table: bool = db.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'disaggregation')",
            [],
            |row| row.get(0),
        )?;
        if !has_table {
            anyhow::bail!(
                "{} has no disaggregation table: it is not the Data API's database, or the Data \
                 API has not migrated it yet (any API request does)",
                path.display()
            );
        }
        Ok(ResultStore { db })
    }

    /// Whether the item's result is stored already (a redelivered item is then only acked).
    pub fn contains(&self, item: &str) -> anyhow::Result<bool> {
        let mut statement = self
            .db
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM disaggregation WHERE item = ?1)")?;
        Ok(statement.query_row(params![item], |row| row.get(0))?)
    }

    /// Stores the results in one transaction; `true` for each result that was new (`false`: stored
    /// before, or the household's consent is no longer granted). `before_commit`
    /// runs after the rows are written and before the commit (the crash tests kill there).
    pub fn persist(
        &mut self,
        results: &[ComputedResult],
        before_commit: impl FnOnce(),
    ) -> anyhow::Result<Vec<bool>> {
        let computed_at = db_time(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        let transaction = self.db.transaction()?;
        let mut fresh = Vec::with_capacity(results.len());
        {
            let mut insert = transaction.prepare_cached(
                // Only while the household's consent is granted: an item computed while its
                // household revoked must not outlive the anonymization (which deletes results).
                "INSERT OR IGNORE INTO disaggregation
                 (item, meter, model, model_sha256, window_start, step_seconds, power_w, computed_at)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                 WHERE EXISTS (SELECT 1 FROM meter m JOIN consent c ON c.household = m.household
                               WHERE m.uuid = ?2 AND c.state = 'granted')",
            )?;
            for result in results {
                let power = serde_json::to_string(&result.power_w)?;
                let inserted = insert.execute(params![
                    result.item,
                    result.meter,
                    result.model,
                    result.model_sha256,
                    db_time(result.window_start),
                    crate::item::STEP_SECONDS,
                    power,
                    computed_at,
                ])?;
                fresh.push(inserted == 1);
            }
        }
        before_commit();
        transaction.commit().context("cannot commit the results")?;
        Ok(fresh)
    }
}
