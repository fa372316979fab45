//! NIALM: the models run by tract natively vs the same library as a wasm component under
//! wasmtime, in the same run, on the same input. One work item is what a worker gets per
//! appliance and household: 158 samples (2 h 38 min at 60 s) in, 60 estimates out.
//!
//! Run: `cargo build --profile component --target wasm32-wasip2 -p wattlet-nialm &&
//!       cargo bench -p wattlet-runtime --bench nialm`
//!
//! `NIALM_BENCH_BASELINE=other/wattlet_nialm.wasm` (e.g. the component of an earlier commit,
//! with other models embedded) also times that component in the same run, on the same input, and
//! prints both rates and their ratio: what a change of models costs in items/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wattlet_nialm::{Disaggregator, synthetic_aggregate};
use wattlet_runtime::nialm::{NialmComponent, NialmInstance};
use wattlet_runtime::{engine as runtime, locate as components};

const SAMPLES: usize = 158;
const OUTPUTS: usize = 60;
const MODELS: [&str; 5] = [
    "kettle",
    "fridge",
    "washing_machine",
    "dishwasher",
    "microwave",
];

fn native_item(nialm: &Disaggregator, model: &str, aggregate: &[f32]) -> Vec<f32> {
    nialm.run(model, aggregate).expect("native run")
}

fn wasm_item(instance: &mut NialmInstance, model: &str, aggregate: &[f32]) -> Vec<f32> {
    instance
        .run(model, aggregate)
        .expect("component did not trap")
        .expect("component run")
}

/// Items per second of `f` (which does `items` work items per call): the median of five
/// ~0.6 s rounds, for the summary line.
fn rate(items: usize, mut f: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0;
            while start.elapsed() < Duration::from_millis(600) {
                f();
                calls += 1;
            }
            (calls * items) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn bench(c: &mut Criterion) {
    let aggregate = synthetic_aggregate(SAMPLES);
    let path = components::locate("wattlet-nialm", None).unwrap_or_else(|e| panic!("{e}"));
    let engine = runtime::engine().expect("engine");

    // Compiling the component without wasmtime's cache (what a first start pays), then through
    // the process engine (cached on disk after the first run).
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let uncached = wasmtime::Engine::new(&config).expect("engine without cache");
    let started = Instant::now();
    NialmComponent::load(&uncached, &path).expect("component");
    let compile = started.elapsed();
    let started = Instant::now();
    let component = NialmComponent::load(&engine, &path).expect("component");
    let load = started.elapsed();

    // First calls: parse and optimize the model (natively, and inside the fresh instance).
    let started = Instant::now();
    let native = Disaggregator::new();
    native_item(&native, "kettle", &aggregate);
    let native_first = started.elapsed();
    let started = Instant::now();
    let mut wasm = component.instantiate().expect("instance");
    wasm_item(&mut wasm, "kettle", &aggregate);
    let wasm_first = started.elapsed();

    // Equal work: the same estimates from both, for every model.
    for model in MODELS {
        let n = native_item(&native, model, &aggregate);
        let w = wasm_item(&mut wasm, model, &aggregate);
        assert_eq!((n.len(), w.len()), (OUTPUTS, OUTPUTS), "{model}");
        let diff = n
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff <= 1e-3,
            "{model}: native and component differ by {diff} W"
        );
    }

    let mut group = c.benchmark_group("nialm/kettle-158");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("native", |b| {
        b.iter(|| black_box(native_item(&native, "kettle", black_box(&aggregate))))
    });
    group.bench_function("wasm-component", |b| {
        b.iter(|| black_box(wasm_item(&mut wasm, "kettle", black_box(&aggregate))))
    });
    group.finish();

    let mut group = c.benchmark_group("nialm/all-five-158");
    group.throughput(Throughput::Elements(MODELS.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("native", |b| {
        b.iter(|| {
            for model in MODELS {
                black_box(native_item(&native, model, black_box(&aggregate)));
            }
        })
    });
    group.bench_function("wasm-component", |b| {
        b.iter(|| {
            for model in MODELS {
                black_box(wasm_item(&mut wasm, model, black_box(&aggregate)));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("nialm/instantiate");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("wasm-component", |b| {
        b.iter(|| black_box(component.instantiate().expect("instance")))
    });
    group.finish();

    // One line a reader can copy: criterion's figures are per group, this puts them side by side.
    let kettle_native = rate(1, || {
        black_box(native_item(&native, "kettle", &aggregate));
    });
    let kettle_wasm = rate(1, || {
        black_box(wasm_item(&mut wasm, "kettle", &aggregate));
    });
    let five_native = rate(MODELS.len(), || {
        for model in MODELS {
            black_box(native_item(&native, model, &aggregate));
        }
    });
    let five_wasm = rate(MODELS.len(), || {
        for model in MODELS {
            black_box(wasm_item(&mut wasm, model, &aggregate));
        }
    });
    if let Some(baseline) = std::env::var_os("NIALM_BENCH_BASELINE") {
        let baseline = NialmComponent::load(&engine, std::path::Path::new(&baseline))
            .unwrap_or_else(|e| panic!("NIALM_BENCH_BASELINE {baseline:?}: {e:#}"));
        let mut old = baseline.instantiate().expect("baseline instance");
        let digests = |instance: &mut NialmInstance| -> Vec<String> {
            let models = instance.models().expect("models");
            models
                .into_iter()
                .map(|m| format!("{} {}", m.id, &m.sha256[..12]))
                .collect()
        };
        println!("this component's models: {:?}", digests(&mut wasm));
        println!("baseline's models:       {:?}", digests(&mut old));
        // Alternate the two, three rounds each, so that a neighbour's load hits both alike.
        let (mut new_rates, mut old_rates) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            new_rates.push(rate(MODELS.len(), || {
                for model in MODELS {
                    black_box(wasm_item(&mut wasm, model, &aggregate));
                }
            }));
            old_rates.push(rate(MODELS.len(), || {
                for model in MODELS {
                    black_box(wasm_item(&mut old, model, &aggregate));
                }
            }));
        }
        new_rates.sort_by(f64::total_cmp);
        old_rates.sort_by(f64::total_cmp);
        println!(
            "models: all five, wasm component: this build {:.0} items/s, baseline {:.0} items/s, \
             ratio {:.2} (medians of 3 alternating rounds; rounds this {:?}, baseline {:?})",
            new_rates[1],
            old_rates[1],
            new_rates[1] / old_rates[1],
            new_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
            old_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        );
    }
    println!(
        "summary: kettle {kettle_native:.0} items/s native, {kettle_wasm:.0} items/s wasm, \
         ratio {:.2}; all five {five_native:.0} items/s native, {five_wasm:.0} items/s wasm, \
         ratio {:.2}; component compile {compile:.2?} (cached load {load:.2?}), first kettle call (parse + optimize) \
         {native_first:.2?} native, {wasm_first:.2?} wasm (incl. instantiation)",
        kettle_wasm / kettle_native,
        five_wasm / five_native,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
