//! Forecast items through the stream component equal the native `Pipeline` on the same events,
//! and a constant load forecasts itself.

use wattlet_runtime::stream::StreamComponent;
use wattlet_workers::forecast::{compute, compute_natively};
use wattlet_workers::item::ForecastItem;

fn component() -> StreamComponent {
    let path = wattlet_runtime::locate::locate("wattlet-stream-analytics", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let engine = wattlet_runtime::engine::engine().expect("engine");
    StreamComponent::load(&engine, &path).expect("the stream component")
}

fn item(minutes: usize, watts: impl Fn(usize) -> f32) -> ForecastItem {
    ForecastItem {
        meter: "6f1c2a4e-0000-4000-8000-000000000001".into(),
        // Not on an hour: slices of every length are cut part-way.
        at: 1_796_000_000 - 1_796_000_000 % 60 - 17 * 60,
        series: (0..minutes).map(watts).collect(),
    }
}

#[test]
fn the_component_computes_what_the_native_pipeline_does() {
    let mut instance = component().instantiate().expect("instance");
    // A week of a daily profile with noise, two days, and the shortest item (an hour).
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1000) as f32 / 10.0
    };
    let week: Vec<f32> = (0..7 * 1440)
        .map(|i| 300.0 + 200.0 * ((i % 1440) as f32 / 229.0).sin() + noise())
        .collect();
    let items = [
        item(week.len(), |i| week[i]),
        item(2 * 1440, |i| (i % 97) as f32 * 10.25),
        item(60, |i| i as f32),
    ];
    for it in &items {
        it.validate().expect("a valid item");
        let native = compute_natively(it);
        assert_eq!(native.len(), 5, "{native:?}");
        assert_eq!(compute(&mut instance, it).expect("no trap"), native);
    }
    // The instance is reused: each item starts a fresh pipeline.
    assert_eq!(
        compute(&mut instance, &items[2]).expect("no trap"),
        compute_natively(&items[2])
    );
}

#[test]
fn a_constant_500_w_over_two_days_forecasts_500_w_for_every_slice_length() {
    let mut instance = component().instantiate().expect("instance");
    let forecasts = compute(&mut instance, &item(2 * 1440, |_| 500.0)).expect("no trap");
    assert_eq!(
        forecasts
            .iter()
            .map(|f| f.slice_seconds)
            .collect::<Vec<_>>(),
        [60, 300, 900, 3600, 7200]
    );
    assert!(forecasts.iter().all(|f| f.load_w == 500.0), "{forecasts:?}");
}
