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
//!
//! Planning is bounded whatever the stored times say: a pass plans no window that ends after
//! the present and at most [`MAX_WINDOWS_PER_PASS`] windows per meter (a meter with a long
//! backlog catches up over several passes), and a meter whose data cannot be read is skipped,
//! not the pass.

use std::ops::Range;

pub use crate::api::MeterSpan;
use crate::api::{DataApi, HouseholdKey, MAX_POWER_SPAN, PowerReadings};
use crate::item::{
    CONTEXT, FORECAST_EVERY_SECONDS, FORECAST_HISTORY_DAYS, FORECAST_MIN_SECONDS, ForecastItem,
    INPUT_SAMPLES, STEP_SECONDS, WINDOW_SECONDS, WorkItem,
};

impl MeterSpan {
    /// The first window: the hour the first measurement falls in.
    pub fn first_window(&self) -> i64 {
        self.first
            .div_euclid(WINDOW_SECONDS)
            .saturating_mul(WINDOW_SECONDS)
    }

    /// The end (exclusive) of the windows whose input is complete: the measurement at `last`
    /// must lie at or after the end of a window's last context minute.
    pub fn ready_end(&self) -> i64 {
        // The last output minute's context ends CONTEXT minutes after the window.
        let needed_after = CONTEXT as i64 * STEP_SECONDS;
        // A `last` too early to complete any window (the start of time) ends before them all.
        match self.last.checked_sub(needed_after + WINDOW_SECONDS) {
            Some(start) => start
                .div_euclid(WINDOW_SECONDS)
                .saturating_mul(WINDOW_SECONDS)
                .saturating_add(WINDOW_SECONDS),
            None => i64::MIN,
        }
    }

    /// The windows (their starts) one pass plans from `cursor`, the next window start, at
    /// `now` (Unix seconds): up to [`MeterSpan::ready_end`] as if no measurement were later than
    /// `now` (a later one is not plausible, and a window is only complete once it has passed),
    /// at most [`MAX_WINDOWS_PER_PASS`].
    pub fn pass_range(&self, cursor: i64, now: i64) -> Range<i64> {
        let present = MeterSpan {
            last: self.last.min(now),
            ..self.clone()
        };
        let end = present
            .ready_end()
            .min(cursor.saturating_add(MAX_WINDOWS_PER_PASS * WINDOW_SECONDS));
        cursor..end.max(cursor)
    }
}

impl MeterSpan {
    /// The span of a forecast item planned at `now` after the last one published for `at` =
    /// `cursor`: `at` is the end of the last complete minute (the minute before the one holding
    /// the latest measurement, at most `now`), the history the [`FORECAST_HISTORY_DAYS`] before
    /// it from the meter's first minute on. `None`: `at` moved on less than
    /// [`FORECAST_EVERY_SECONDS`] since `cursor`, or the meter has less than
    /// [`FORECAST_MIN_SECONDS`] of data.
    pub fn forecast_range(&self, cursor: Option<i64>, now: i64) -> Option<Range<i64>> {
        let at = self.last.min(now).div_euclid(STEP_SECONDS) * STEP_SECONDS;
        if cursor.is_some_and(|c| at < c.saturating_add(FORECAST_EVERY_SECONDS)) {
            return None;
        }
        let first = self.first.div_euclid(STEP_SECONDS) * STEP_SECONDS;
        let start = first.max(at.saturating_sub(FORECAST_HISTORY_DAYS * 86_400));
        (at.saturating_sub(start) >= FORECAST_MIN_SECONDS).then_some(start..at)
    }
}

/// The most windows of one meter a manager pass plans: a month of hours.
pub const MAX_WINDOWS_PER_PASS: i64 = 31 * 24;

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
        Ok(self
            .planned(meter, models, from, to)
            .await?
            .map(|planned| planned.items))
    }

    /// [`Planner::items`] with the household's data key that came with the readings (a
    /// `manager` token gets it): what the manager seals the items with.
    pub async fn planned(
        &self,
        meter: &str,
        models: &[String],
        from: i64,
        to: i64,
    ) -> anyhow::Result<Option<Planned>> {
        if to <= from {
            return Ok(Some(Planned::default()));
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
        let key = readings.key.clone();
        let Some(series) = series(&readings, start, samples) else {
            return Ok(Some(Planned {
                items: Vec::new(),
                key,
            }));
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
        Ok(Some(Planned { items, key }))
    }
}

impl Planner {
    /// The forecast item of `meter` for the minutes `span` ([`MeterSpan::forecast_range`]),
    /// read in pieces of at most one power read, and the household's key. `None`: the
    /// household's consent no longer permits processing, or no reading lies in or before it.
    pub async fn forecast(
        &self,
        meter: &str,
        span: Range<i64>,
    ) -> anyhow::Result<Option<(ForecastItem, Option<HouseholdKey>)>> {
        let mut values = Vec::with_capacity(((span.end - span.start) / STEP_SECONDS) as usize);
        let mut key = None;
        let mut from = span.start;
        while from < span.end {
            // Whole minutes per read: a series cut at a minute equals the whole.
            let to = span
                .end
                .min(from + MAX_POWER_SPAN / STEP_SECONDS * STEP_SECONDS);
            let Some(readings) = self.api.power(meter, from, to).await? else {
                return Ok(None);
            };
            let Some(piece) = series(&readings, from, ((to - from) / STEP_SECONDS) as usize) else {
                return Ok(None);
            };
            values.extend(piece);
            key = key.or(readings.key);
            from = to;
        }
        Ok(Some((
            ForecastItem {
                meter: meter.to_owned(),
                at: span.end,
                series: values,
            },
            key,
        )))
    }
}

/// The items of one planning step and the household's data key, if the Data API sent it.
#[derive(Debug, Default)]
pub struct Planned {
    pub items: Vec<WorkItem>,
    pub key: Option<HouseholdKey>,
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
    fn a_pass_plans_only_the_past_and_a_bounded_number_of_windows() {
        let now = 1_796_000_000;
        let hour = now - now % WINDOW_SECONDS;
        let span = |first: i64, last: i64| MeterSpan {
            meter: "m".into(),
            first,
            last,
        };
        // A meter measuring up to now: every complete window, as ready_end says.
        let current = span(hour - 10 * WINDOW_SECONDS, now);
        let range = current.pass_range(current.first_window(), now);
        assert_eq!(range, current.first_window()..current.ready_end());
        // 53 minutes into the hour: the window before it has its 49 minutes of context.
        assert_eq!(range.end, hour, "{range:?}");
        // A measurement stamped 9999-12-31 plans nothing past the present.
        let future = span(hour - 10 * WINDOW_SECONDS, 253_402_300_799);
        assert_eq!(future.pass_range(future.first_window(), now), range);
        // A measurement stamped 1970 gives a long backlog: one pass plans a month of it.
        let ancient = span(0, now);
        let range = ancient.pass_range(ancient.first_window(), now);
        assert_eq!(range, 0..MAX_WINDOWS_PER_PASS * WINDOW_SECONDS);
        let next = ancient.pass_range(range.end, now);
        assert_eq!(next.start, range.end);
        assert_eq!(next.end - next.start, MAX_WINDOWS_PER_PASS * WINDOW_SECONDS);
        // A cursor past the end (the span shrank) plans nothing, and never backwards.
        assert!(current.pass_range(hour + WINDOW_SECONDS, now).is_empty());
        let odd = span(i64::MIN, i64::MIN);
        assert!(odd.pass_range(odd.first_window(), now).is_empty());
    }

    #[test]
    fn forecasts_are_planned_every_five_minutes_over_at_most_a_week() {
        let now = 1_796_000_000 - 1_796_000_000 % 60 + 20;
        let minute = now - 20;
        let span = |first: i64, last: i64| MeterSpan {
            meter: "m".into(),
            first,
            last,
        };
        // `at`: the end of the last complete minute (the one before the latest measurement's).
        let young = span(minute - 2 * 86_400 + 7, minute + 31);
        assert_eq!(
            young.forecast_range(None, now),
            Some(minute - 2 * 86_400..minute)
        );
        // A week of history at most.
        let old = span(minute - 30 * 86_400, minute);
        assert_eq!(
            old.forecast_range(None, now),
            Some(minute - 7 * 86_400..minute)
        );
        // Nothing after the present.
        let future = span(minute - 3600, 253_402_300_799);
        assert_eq!(
            future.forecast_range(None, now),
            Some(minute - 3600..minute)
        );
        // At least an hour of minutes (the first one counts from its start).
        assert_eq!(span(minute - 3540, minute).forecast_range(None, now), None);
        assert_eq!(
            span(minute - 3599, minute).forecast_range(None, now),
            Some(minute - 3600..minute)
        );
        assert_eq!(
            span(minute - 3600, minute).forecast_range(None, now),
            Some(minute - 3600..minute)
        );
        // The cursor: `at` must have moved on by five minutes since the last item.
        assert_eq!(old.forecast_range(Some(minute - 299), now), None);
        assert_eq!(old.forecast_range(Some(minute), now), None);
        assert_eq!(
            old.forecast_range(Some(minute - 300), now),
            Some(minute - 7 * 86_400..minute)
        );
        // A span that shrank (the cursor ahead of the data) plans nothing, never backwards.
        assert_eq!(old.forecast_range(Some(minute + 3600), now), None);
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
            key: None,
        };
        assert_eq!(
            series(&power, start, 6).unwrap(),
            [100.0, 300.0, 400.0, 400.0, 50.0, 50.0]
        );
        // Without a reading before the span, the first one stands in.
        let fresh = PowerReadings {
            before: None,
            readings: vec![(start + 120, 10.0)],
            key: None,
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
                key: None,
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
                key: None,
            };
            let part = series(&tail, cut_at, 30 - cut as usize).unwrap();
            assert_eq!(part, whole[cut as usize..], "cut at minute {cut}");
        }
    }
}
