//! Reading the Data API's database: which meters have data, and their 60 s aggregate series.
//!
//! Only electricity meters of households whose consent is `granted` are planned: disaggregation
//! per meter is personal processing, which DESIGN.md allows only while consent is granted.
//!
//! A meter's series has one value per minute: the mean of the power readings measured in that
//! minute, or, for a minute without one, the latest reading before it (a device measuring every
//! 15 min gives a step function). The value of a minute depends only on readings up to its end,
//! so a series cut into pieces at any point equals the series read at once.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::item::{CONTEXT, INPUT_SAMPLES, STEP_SECONDS, WINDOW_SECONDS, WorkItem};

/// A meter with data: its uuid and the times of its first and last measurement (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterSpan {
    pub meter: String,
    pub first: i64,
    pub last: i64,
}

impl MeterSpan {
    /// The first window: the hour the first measurement falls in.
    pub fn first_window(&self) -> i64 {
        self.first.div_euclid(WINDOW_SECONDS) * WINDOW_SECONDS
    }

    /// The end (exclusive) of the windows whose input is complete: the measurement at `last`
    /// must lie at or after the end of a window's last context minute.
    pub fn ready_end(&self) -> i64 {
        // The last output minute's context ends CONTEXT minutes after the window.
        let needed_after = CONTEXT as i64 * STEP_SECONDS;
        (self.last - needed_after - WINDOW_SECONDS).div_euclid(WINDOW_SECONDS) * WINDOW_SECONDS
            + WINDOW_SECONDS
    }
}

/// Behind a mutex so that a manager's future holding it may move between threads.
pub struct Planner {
    db: std::sync::Mutex<Connection>,
}

impl Planner {
    /// Opens the Data API's database (`sqlite_db.db` in `wattlet serve`'s state directory)
    /// for reading only.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        crate::require_database(path)?;
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        let has_measurements: bool = db
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'measurement')",
                [],
                |row| row.get(0),
            )
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !has_measurements {
            anyhow::bail!(
                "{} is not the Data API's database (no measurement table)",
                path.display()
            );
        }
        Ok(Planner {
            db: std::sync::Mutex::new(db),
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite state is per call.
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Electricity meters of consenting households that have measurements, by uuid.
    pub fn meters(&self) -> anyhow::Result<Vec<MeterSpan>> {
        let db = self.connection();
        let mut statement = db.prepare_cached(
            "SELECT x.meter, MIN(x.measured_at), MAX(x.measured_at)
             FROM measurement x
             JOIN meter m ON m.uuid = x.meter
             JOIN consent c ON c.household = m.household
             WHERE m.type = 'ELECTRICITY' AND c.state = 'granted'
             GROUP BY x.meter
             ORDER BY x.meter",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        let mut spans = Vec::new();
        for row in rows {
            let (meter, first, last) = row?;
            spans.push(MeterSpan {
                meter,
                first: unix_seconds(&first)?,
                last: unix_seconds(&last)?,
            });
        }
        Ok(spans)
    }

    /// The aggregate series in W of `samples` minutes from `start` (a minute boundary), or `None`
    /// when the meter has no power reading at or before the end of that span.
    pub fn series(
        &self,
        meter: &str,
        start: i64,
        samples: usize,
    ) -> anyhow::Result<Option<Vec<f32>>> {
        let end = start + samples as i64 * STEP_SECONDS;
        let db = self.connection();
        // The latest reading before the span carries into its first minutes.
        let mut carried: Option<f64> = None;
        let mut before = db.prepare_cached(
            "SELECT data FROM measurement WHERE meter = ?1 AND measured_at < ?2
             ORDER BY measured_at DESC, uuid DESC LIMIT 8",
        )?;
        let mut rows = before.query(params![meter, db_time(start)])?;
        while let Some(row) = rows.next()? {
            if let Some(watts) = power_watts(&row.get::<_, String>(0)?) {
                carried = Some(watts);
                break;
            }
        }

        let mut sums = vec![0.0f64; samples];
        let mut counts = vec![0u32; samples];
        let mut last_in_minute = vec![None::<f64>; samples];
        let mut within = db.prepare_cached(
            "SELECT measured_at, data FROM measurement
             WHERE meter = ?1 AND measured_at >= ?2 AND measured_at < ?3
             ORDER BY measured_at, uuid",
        )?;
        let mut rows = within.query(params![meter, db_time(start), db_time(end)])?;
        let mut first_reading = None;
        while let Some(row) = rows.next()? {
            let Some(watts) = power_watts(&row.get::<_, String>(1)?) else {
                continue;
            };
            let at = unix_seconds(&row.get::<_, String>(0)?)?;
            let minute = ((at - start) / STEP_SECONDS) as usize;
            if minute >= samples {
                continue;
            }
            sums[minute] += watts;
            counts[minute] += 1;
            last_in_minute[minute] = Some(watts);
            first_reading.get_or_insert(watts);
        }
        // Before any reading at all, the first one stands in (the meter's history starts there).
        let Some(mut current) = carried.or(first_reading) else {
            return Ok(None);
        };
        let mut series = Vec::with_capacity(samples);
        for minute in 0..samples {
            if counts[minute] > 0 {
                series.push((sums[minute] / f64::from(counts[minute])) as f32);
                current = last_in_minute[minute].unwrap_or(current);
            } else {
                series.push(current as f32);
            }
        }
        Ok(Some(series))
    }

    /// The items of `models` for the windows `from..to` (window starts, full hours) of `meter`.
    /// Windows whose input holds no reading at all are skipped.
    pub fn items(
        &self,
        meter: &str,
        models: &[String],
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<WorkItem>> {
        if to <= from {
            return Ok(Vec::new());
        }
        let windows = ((to - from) / WINDOW_SECONDS) as usize;
        let start = from - CONTEXT as i64 * STEP_SECONDS;
        let samples = windows * WINDOW_SECONDS as usize / STEP_SECONDS as usize + 2 * CONTEXT;
        let Some(series) = self.series(meter, start, samples)? else {
            return Ok(Vec::new());
        };
        let per_window = (WINDOW_SECONDS / STEP_SECONDS) as usize;
        let mut items = Vec::with_capacity(windows * models.len());
        for w in 0..windows {
            let aggregate = &series[w * per_window..w * per_window + INPUT_SAMPLES];
            for model in models {
                items.push(WorkItem {
                    meter: meter.to_owned(),
                    model: model.clone(),
                    window_start: from + w as i64 * WINDOW_SECONDS,
                    aggregate: aggregate.to_vec(),
                });
            }
        }
        Ok(items)
    }

    /// Whether the meter's household still consents (checked again right before publishing).
    pub fn consenting(&self, meter: &str) -> anyhow::Result<bool> {
        Ok(self
            .connection()
            .query_row(
                "SELECT 1 FROM meter m JOIN consent c ON c.household = m.household
                 WHERE m.uuid = ?1 AND c.state = 'granted'",
                params![meter],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

/// One `{"<obis hex>": value}` entry of a measurement's `data`, only the codes the series uses
/// (deserialising into this skips other codes without allocating: the manager reads every row).
#[derive(serde::Deserialize)]
struct PowerEntry {
    #[serde(rename = "0100010700ff")]
    import: Option<f64>,
    #[serde(rename = "0100100700ff")]
    sum: Option<f64>,
}

/// The power in W of one measurement's `data` (`[{"<obis hex>": value}, …]`, power in kW):
/// import power (1.7.0), else the signed sum power (16.7.0) floored at 0.
fn power_watts(data: &str) -> Option<f64> {
    let entries: Vec<PowerEntry> = serde_json::from_str(data).ok()?;
    let import = entries.iter().find_map(|e| e.import);
    let kilowatts = import.or_else(|| entries.iter().find_map(|e| e.sum).map(|p| p.max(0.0)))?;
    kilowatts
        .is_finite()
        .then_some(kilowatts * 1000.0)
        .filter(|w| *w >= 0.0)
}

/// The Data API's fixed-width UTC form of a Unix time (see its `timestamp` module).
pub fn db_time(unix: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_nanos(at).to_string()
}

pub fn unix_seconds(db_time: &str) -> anyhow::Result<i64> {
    let at = humantime::parse_rfc3339(db_time)
        .with_context(|| format!("unreadable time {db_time:?} in the database"))?;
    let since = at
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("time {db_time:?} is before 1970"))?;
    Ok(since.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_time_round_trips_in_the_data_api_format() {
        let t = 1_764_000_000;
        assert_eq!(db_time(t), "2025-11-24T16:00:00.000000000Z");
        assert_eq!(unix_seconds(&db_time(t)).unwrap(), t);
    }

    #[test]
    fn power_prefers_import_and_converts_kilowatts() {
        assert_eq!(
            power_watts(r#"[{"0100010800ff": 12.5}, {"0100010700ff": 0.25}]"#),
            Some(250.0)
        );
        assert_eq!(power_watts(r#"[{"0100100700ff": -0.5}]"#), Some(0.0));
        assert_eq!(power_watts(r#"[{"0100010800ff": 12.5}]"#), None);
        assert_eq!(power_watts("not json"), None);
    }

    #[test]
    fn ready_end_needs_the_right_context() {
        let hour = 1_764_000_000 - 1_764_000_000 % WINDOW_SECONDS;
        let span = |last| MeterSpan {
            meter: "m".into(),
            first: hour,
            last,
        };
        // Window [hour, hour+1h) needs minutes up to hour + 1h + 49 min, i.e. a reading at or
        // after hour + 1h + 49 min.
        let needed = hour + WINDOW_SECONDS + 49 * 60;
        assert_eq!(span(needed - 1).ready_end(), hour);
        assert_eq!(span(needed).ready_end(), hour + WINDOW_SECONDS);
        assert_eq!(
            span(needed + WINDOW_SECONDS - 1).ready_end(),
            hour + WINDOW_SECONDS
        );
        assert_eq!(span(hour).first_window(), hour);
    }
}
