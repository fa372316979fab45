//! The shipped NIALM models on a real home they never saw: the component under wasmtime, fed a
//! slice of a REFIT house the way the product feeds it (60 s means), must beat predicting 0 W.
//!
//! The kettle, dishwasher, washing machine and microwave models were each trained on one REFIT
//! house (`models/README.md`); their JSON names the other, unseen house
//! (`metrics_unseen_house.house`), and the test scores each model on a slice of that house. The
//! fridge model has no real ground truth here (the REFIT subset has no fridge channel), so it is
//! not part of this test.
//!
//! Data: `$WATTLET_TESTDATA/nialm/refit/house<N>.csv.gz` (else `shared/testdata` beside the
//! checkout), 30 s means; `../shared/testdata/nialm/refit/SOURCES.md` has its provenance.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use wattlet_meter_parser::capture::testdata_dir;
use wattlet_runtime::nialm::NialmComponent;
use wattlet_runtime::{engine as runtime, locate as components};

/// The models trained on REFIT, and their column in the CSVs.
const MODELS: [(&str, &str); 4] = [
    ("kettle", "kettle_w"),
    ("dishwasher", "dishwasher_w"),
    ("washing_machine", "washing_machine_w"),
    ("microwave", "microwave_w"),
];

/// Models that do not beat predicting 0 W on their unseen house (`models/README.md`): the washing
/// machine model, trained on house 2, is 0.8 % better than 0 W over all of house 20 (other seeds
/// are worse than 0 W) and worse on this slice. For it the test only guards against a
/// regression: at most `TOLERANCE` × the MAE of 0 W.
const NOT_BEATING_ZERO: [&str; 1] = ["washing_machine"];
const TOLERANCE: f64 = 1.05;

/// The slice of each house: 13 days without a gap in the data, in which all four appliances
/// run, chosen before the models were scored on them.
fn slice(house: &str) -> (&'static str, &'static str) {
    match house {
        "2" => ("2013-10-01T00:00:00Z", "2013-10-14T00:00:00Z"),
        "20" => ("2014-10-02T00:00:00Z", "2014-10-15T00:00:00Z"),
        other => panic!("no slice of REFIT house {other:?}"),
    }
}

/// The model's JSON in `models/`: its sha256 and the house it never saw.
fn unseen_house(id: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../models/{id}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let house = json["metrics_unseen_house"]["house"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no metrics_unseen_house.house", path.display()));
    let sha256 = json["sha256"].as_str().unwrap_or_default();
    (house.to_owned(), sha256.to_owned())
}

fn unix(rfc3339: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339(rfc3339).map_err(|e| format!("{rfc3339:?}: {e}"))?;
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("{rfc3339:?}: {e}"))?
        .as_secs();
    i64::try_from(secs).map_err(|e| format!("{rfc3339:?}: {e}"))
}

/// One 60 s mean per minute of `[from, to)`: the whole house and every model's appliance.
struct Minutes {
    mains: Vec<f32>,
    appliances: Vec<Vec<f32>>,
}

/// Reads a house's CSV up to `to` and averages the 30 s rows of every minute; fails if a minute
/// of the slice has no row (the component takes a gap-free series).
fn read_slice(path: &PathBuf, from: i64, to: i64) -> Result<Minutes, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let header = lines
        .next()
        .ok_or("empty CSV")?
        .map_err(|e| e.to_string())?;
    let columns: Vec<&str> = header.split(',').collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("no column {name} in {header:?}"))
    };
    let mains_col = column("mains_w")?;
    let cols: Vec<usize> = MODELS
        .iter()
        .map(|(_, c)| column(c))
        .collect::<Result<_, _>>()?;
    let n = usize::try_from((to - from) / 60).map_err(|e| e.to_string())?;
    let mut sums = vec![vec![0.0f64; n]; 1 + cols.len()];
    let mut counts = vec![0u32; n];
    for (row, line) in lines.enumerate() {
        let line = line.map_err(|e| format!("row {row}: {e}"))?;
        let fields: Vec<&str> = line.split(',').collect();
        let t = unix(fields.first().ok_or("empty row")?)?;
        if t >= to {
            break;
        }
        if t < from {
            continue;
        }
        let minute = usize::try_from((t - from) / 60).map_err(|e| e.to_string())?;
        for (k, &c) in std::iter::once(&mains_col).chain(&cols).enumerate() {
            let value: f64 = fields
                .get(c)
                .ok_or_else(|| format!("row {row}: no column {c}"))?
                .parse()
                .map_err(|e| format!("row {row}: {e}"))?;
            sums[k][minute] += value;
        }
        counts[minute] += 1;
    }
    if let Some(gap) = counts.iter().position(|&c| c == 0) {
        return Err(format!("minute {gap} of the slice has no data"));
    }
    let mut means = sums.into_iter().map(|s| {
        s.iter()
            .zip(&counts)
            .map(|(s, &c)| (s / f64::from(c)) as f32)
            .collect::<Vec<f32>>()
    });
    let mains = means.next().ok_or("no mains")?;
    Ok(Minutes {
        mains,
        appliances: means.collect(),
    })
}

fn f1(pred: &[f32], truth: &[f32], threshold: f32) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0u32, 0u32, 0u32);
    for (&p, &t) in pred.iter().zip(truth) {
        match (p >= threshold, t >= threshold) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    if tp == 0 {
        return 0.0;
    }
    2.0 * f64::from(tp) / f64::from(2 * tp + fp + fn_)
}

#[test]
fn every_refit_model_beats_predicting_zero_on_the_unseen_house() {
    let started = Instant::now();
    let component_path = components::locate("wattlet-nialm", None)
        .expect("the component is built by the README's test command before the tests run");
    let component = NialmComponent::load(&runtime::engine().expect("engine"), &component_path)
        .expect("component loads");
    let mut instance = component.instantiate().expect("instance");
    let infos = instance.models().expect("models");

    let mut houses: Vec<(String, Minutes)> = Vec::new();
    let mut failures = Vec::new();
    for (k, (id, _)) in MODELS.iter().enumerate() {
        let info = infos
            .iter()
            .find(|m| m.id == *id)
            .unwrap_or_else(|| panic!("the component has no model {id}"));
        let (house, sha256) = unseen_house(id);
        assert_eq!(
            info.sha256, sha256,
            "{id}: models/{id}.json is not the component's model"
        );
        if !houses.iter().any(|(h, _)| *h == house) {
            let (from, to) = slice(&house);
            let path = testdata_dir().join(format!("nialm/refit/house{house}.csv.gz"));
            let data = read_slice(&path, unix(from).expect("from"), unix(to).expect("to"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            houses.push((house.clone(), data));
        }
        let (_, data) = houses.iter().find(|(h, _)| *h == house).expect("just read");
        let truth = &data.appliances[k];
        // The product's resolution is the model's own: the slice is 60 s means.
        assert_eq!(info.step_seconds, 60, "{id}");
        let estimates = instance
            .run(id, &data.mains)
            .expect("component did not trap")
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let half = info.window as usize / 2;
        assert_eq!(estimates.len(), data.mains.len() + 1 - info.window as usize);
        let truth = &truth[half..half + estimates.len()];
        let n = estimates.len() as f64;
        let mae = estimates
            .iter()
            .zip(truth)
            .map(|(&p, &t)| f64::from((p - t).abs()))
            .sum::<f64>()
            / n;
        let mae_zero = truth.iter().map(|&t| f64::from(t.abs())).sum::<f64>() / n;
        let on = truth.iter().filter(|&&t| t >= info.on_threshold_w).count();
        let (e_pred, e_true) = (
            estimates.iter().map(|&p| f64::from(p)).sum::<f64>() / 60_000.0,
            truth.iter().map(|&t| f64::from(t)).sum::<f64>() / 60_000.0,
        );
        let (from, to) = slice(&house);
        println!(
            "{id} on REFIT house {house} ({from} .. {to}): MAE {mae:.2} W vs {mae_zero:.2} W \
             predicting 0; F1 {:.3} at {} W; {on} of {} minutes on; energy {e_pred:.1} / \
             {e_true:.1} kWh",
            f1(&estimates, truth, info.on_threshold_w),
            info.on_threshold_w,
            estimates.len()
        );
        assert!(on > 0, "{id}: the slice should see the appliance on");
        if NOT_BEATING_ZERO.contains(id) {
            if mae > TOLERANCE * mae_zero {
                failures.push(format!(
                    "{id} on house {house}: MAE {mae:.2} W > {TOLERANCE} × {mae_zero:.2} W of \
                     predicting 0"
                ));
            }
        } else if mae >= mae_zero {
            failures.push(format!(
                "{id} on house {house}: MAE {mae:.2} W ≥ {mae_zero:.2} W of predicting 0"
            ));
        }
    }
    println!("total {:.1?}", started.elapsed());
    assert!(failures.is_empty(), "{failures:#?}");
}
