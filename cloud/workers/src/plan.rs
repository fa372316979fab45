//! Planning: which meters have data, and their 60 s aggregate series, cut into work items.
//!
//! Only electricity meters of households whose consent permits personal processing are
//! planned (the Data API's worker endpoints decide that; DESIGN.md allows disaggregation per
//! meter only while consent is granted).
//!
//! A meter's series has one value per minute: the mean of the power readings measured in that
//! minute, or, for a minute without one, the latest reading before it (a device measuring every
//! 15 min gives a step function). The value of a minute depends only on readings up to its end,
//! so a series cut into pieces at any point equals the series read at once.

pub use crate::api::MeterSpan;
use crate::api::{DataApi, MAX_POWER_SPAN, PowerReadings};
use crate::item::{CONTEXT, INPUT_SAMPLES, STEP_SECONDS, WINDOW_SECONDS, WorkItem};

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

/// The most windows one planning step covers: their input must fit one power read.
pub const MAX_WINDOWS_PER_STEP: usize =
    ((MAX_POWER_SPAN - 2 * CONTEXT as i64 * STEP_SECONDS) / WINDOW_SECONDS) as usize;

// Checked when compiling: a step's input fits one power read, and a step is at least a day.
const _: () = assert!(
    MAX_WINDOWS_PER_STEP as i64 * WINDOW_SECONDS + 2 * CONTEXT as i64 * STEP_SECONDS
        <= MAX_POWER_SPAN
);
const _: () = assert!(MAX_WINDOWS_PER_STEP >= 24);

/// Plans through the Data API.
pub struct Planner {
    api: DataApi,
}

impl Planner {
    pub fn new(api: DataApi) -> Self {
        Planner { api }
    }

    /// Electricity meters of consenting households that have measurements, by uuid.
    pub async fn meters(&self) -> anyhow::Result<Vec<MeterSpan>> {
        self.api.meters().await
    }

    /// The items of `models` for the windows `from..to` (window starts, full hours, at most
    /// [`MAX_WINDOWS_PER_STEP`]) of `meter`. Windows whose input holds no reading at all are
    /// skipped. `None`: the household's consent no longer permits processing.
    pub async fn items(
        &self,
        meter: &str,
        models: &[String],
        from: i64,
        to: i64,
    ) -> anyhow::Result<Option<Vec<WorkItem>>> {
        if to <= from {
            return Ok(Some(Vec::new()));
        }
        let windows = ((to - from) / WINDOW_SECONDS) as usize;
        anyhow::ensure!(
            windows <= MAX_WINDOWS_PER_STEP,
            "{windows} windows in one step (at most {MAX_WINDOWS_PER_STEP})"
        );
        let start = from - CONTEXT as i64 * STEP_SECONDS;
        let samples = windows * WINDOW_SECONDS as usize / STEP_SECONDS as usize + 2 * CONTEXT;
        let end = start + samples as i64 * STEP_SECONDS;
        let Some(readings) = self.api.power(meter, start, end).await? else {
            return Ok(None);
        };
        let Some(series) = series(&readings, start, samples) else {
            return Ok(Some(Vec::new()));
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
        Ok(Some(items))
    }
}

/// The aggregate series in W of `samples` minutes from `start` (a minute boundary) from the
/// power readings of that span, or `None` when there is no reading at or before its end.
pub fn series(power: &PowerReadings, start: i64, samples: usize) -> Option<Vec<f32>> {
    let mut sums = vec![0.0f64; samples];
    let mut counts = vec![0u32; samples];
    let mut last_in_minute = vec![None::<f64>; samples];
    let mut first_reading = None;
    for &(at, watts) in &power.readings {
        let Ok(minute) = usize::try_from((at - start).div_euclid(STEP_SECONDS)) else {
            continue;
        };
        if minute >= samples {
            continue;
        }
        sums[minute] += watts;
        counts[minute] += 1;
        last_in_minute[minute] = Some(watts);
        first_reading.get_or_insert(watts);
    }
    // Before any reading at all, the first one stands in (the meter's history starts there).
    let mut current = power.before.map(|(_, watts)| watts).or(first_reading)?;
    let mut series = Vec::with_capacity(samples);
    for minute in 0..samples {
        if counts[minute] > 0 {
            series.push((sums[minute] / f64::from(counts[minute])) as f32);
            current = last_in_minute[minute].unwrap_or(current);
        } else {
            series.push(current as f32);
        }
    }
    Some(series)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn minutes_average_their_readings_and_carry_the_last_one() {
        let start = 1_764_000_000;
        let power = PowerReadings {
            before: Some((start - 900, 100.0)),
            readings: vec![
                (start + 60, 200.0),
                (start + 90, 400.0),
                (start + 250, 50.0),
            ],
        };
        assert_eq!(
            series(&power, start, 6).unwrap(),
            [100.0, 300.0, 400.0, 400.0, 50.0, 50.0]
        );
        // Without a reading before the span, the first one stands in.
        let fresh = PowerReadings {
            before: None,
            readings: vec![(start + 120, 10.0)],
        };
        assert_eq!(series(&fresh, start, 4).unwrap(), [10.0, 10.0, 10.0, 10.0]);
        assert_eq!(series(&PowerReadings::default(), start, 4), None);
    }

    #[test]
    fn a_series_cut_anywhere_equals_the_whole() {
        let start = 1_764_000_000;
        let readings: Vec<(i64, f64)> = (0..40).map(|i| (start + i * 37, (i % 7) as f64)).collect();
        let whole = series(
            &PowerReadings {
                before: None,
                readings: readings.clone(),
            },
            start,
            30,
        )
        .unwrap();
        for cut in 1..30 {
            let cut_at = start + cut * STEP_SECONDS;
            let before = readings.iter().rev().find(|(at, _)| *at < cut_at).copied();
            let tail = PowerReadings {
                before,
                readings: readings
                    .iter()
                    .filter(|(at, _)| *at >= cut_at)
                    .copied()
                    .collect(),
            };
            let part = series(&tail, cut_at, 30 - cut as usize).unwrap();
            assert_eq!(part, whole[cut as usize..], "cut at minute {cut}");
        }
    }
}
