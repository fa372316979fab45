//! A forecast item through Q1 (`wattlet_stream_analytics`, the DEBS 2014 load forecast) in the
//! stream component.
//!
//! The series becomes DEBS events: house 0, household 0, plug 0, property load, one per minute at
//! the minute's start, the value in mW, ids in order. A Q1-only pipeline without lateness takes
//! them all and finishes; the result is the house's rows of the greatest output point at or
//! before the item's `at`: per slice length (1, 5, 15, 60, 120 min) the forecast slice's start
//! and load. Q1's median over "all previous days" is then over the previous days of the item's
//! history (at most [`crate::item::FORECAST_HISTORY_DAYS`]).

use wattlet_runtime::stream::StreamInstance;
use wattlet_stream_analytics::{Config, Event, HouseForecast, Outputs, Property, Queries};

use crate::item::{ForecastItem, STEP_SECONDS};

/// The pipeline's configuration: Q1 only, the events in order (no lateness).
pub const CONFIG: Config = Config {
    lateness: 0,
    queries: Queries {
        forecast: true,
        outliers: false,
    },
    per_house: false,
};

/// Slice lengths per forecast (Q1's 1, 5, 15, 60 and 120 minutes).
pub const SLICES: usize = wattlet_stream_analytics::forecast::SLICE_LENGTHS.len();

/// One slice length's forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceForecast {
    pub slice_seconds: i64,
    /// Unix seconds of the forecast slice's start.
    pub slice_start: i64,
    pub load_w: f64,
}

/// The item's series as DEBS events (module documentation). The item must be valid
/// ([`ForecastItem::validate`]: its times fit u32).
pub fn events(item: &ForecastItem) -> Vec<Event> {
    let start = item.start();
    item.series
        .iter()
        .enumerate()
        .map(|(i, &watts)| Event {
            id: i as u64,
            ts: u32::try_from(start + i as i64 * STEP_SECONDS).unwrap_or(u32::MAX),
            value_mw: (f64::from(watts) * 1000.0).round() as i64,
            property: Property::Load,
            plug: 0,
            household: 0,
            house: 0,
        })
        .collect()
}

/// The house rows of the greatest output point at or before `at`, by slice length.
pub fn select(rows: &[HouseForecast], at: i64) -> Vec<SliceForecast> {
    let point = rows
        .iter()
        .map(|r| r.at)
        .filter(|&p| i64::try_from(p).is_ok_and(|p| p <= at))
        .max();
    let mut chosen: Vec<SliceForecast> = rows
        .iter()
        .filter(|r| Some(r.at) == point && r.house == 0)
        .map(|r| SliceForecast {
            slice_seconds: i64::from(r.slice_len),
            slice_start: i64::try_from(r.ts).unwrap_or(i64::MAX),
            load_w: r.load_w,
        })
        .collect();
    chosen.sort_by_key(|s| s.slice_seconds);
    chosen
}

/// The item through a fresh pipeline of `instance` (the stream component). Errors are the
/// component's (a trap: the instance must then be replaced).
pub fn compute(
    instance: &mut StreamInstance,
    item: &ForecastItem,
) -> anyhow::Result<Vec<SliceForecast>> {
    instance.new_pipeline(CONFIG)?;
    let mut out: Outputs = instance.push(&events(item))?;
    out.append(&mut instance.finish()?);
    Ok(select(&out.houses, item.at))
}

/// The same with the native library: what the component must equal.
pub fn compute_natively(item: &ForecastItem) -> Vec<SliceForecast> {
    let mut pipeline = wattlet_stream_analytics::Pipeline::new(CONFIG);
    let mut out = Outputs::default();
    for event in events(item) {
        pipeline.push_into(&event, &mut out);
    }
    out.append(&mut pipeline.finish());
    select(&out.houses, item.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(minutes: usize, watts: impl Fn(usize) -> f32) -> ForecastItem {
        ForecastItem {
            meter: "m".into(),
            at: 1_796_000_000 - 1_796_000_000 % 86_400,
            series: (0..minutes).map(watts).collect(),
        }
    }

    #[test]
    fn events_are_one_load_per_minute_in_mw() {
        let it = item(3, |i| [0.5, 1.0004, 2.0][i]);
        let events = events(&it);
        assert_eq!(events.len(), 3);
        assert_eq!(
            events.iter().map(|e| e.value_mw).collect::<Vec<_>>(),
            [500, 1000, 2000]
        );
        assert_eq!(events[0].ts as i64, it.at - 180);
        assert_eq!(events[2].ts as i64, it.at - 60);
        assert!(events.iter().enumerate().all(|(i, e)| e.id == i as u64
            && e.property == Property::Load
            && (e.house, e.household, e.plug) == (0, 0, 0)));
    }

    #[test]
    fn a_constant_load_forecasts_itself_for_every_slice_length() {
        let it = item(2 * 1440, |_| 500.0);
        let forecasts = compute_natively(&it);
        let lengths: Vec<i64> = forecasts.iter().map(|f| f.slice_seconds).collect();
        assert_eq!(lengths, [60, 300, 900, 3600, 7200]);
        for f in &forecasts {
            assert_eq!(f.load_w, 500.0, "{f:?}");
            // The point is 30 s before `at` (the last one the events reach): slice i holds it,
            // the forecast is for slice i + 2.
            let i = (it.at - 31) / f.slice_seconds;
            assert_eq!(f.slice_start, (i + 2) * f.slice_seconds, "{f:?}");
        }
    }

    #[test]
    fn the_forecast_is_the_mean_of_the_last_slice_and_the_median_of_earlier_days() {
        // Three days at 100, 200 and 300 W, ending at midnight: the 1-min forecast is for the
        // first minute after the next, whose time of day had 100, 200 and 300 W on the three
        // days (median 200 W), and the last minute had 300 W: (300 + 200) / 2.
        let day = 1440;
        let it = item(3 * day, |i| [100.0, 200.0, 300.0][i / day]);
        let one_minute = compute_natively(&it)
            .into_iter()
            .find(|f| f.slice_seconds == 60)
            .expect("a 1-min forecast");
        assert_eq!(one_minute.load_w, 250.0);
    }
}
