//! Helpers shared by the test binaries: running the pipeline, comparing outputs, test data.
#![allow(dead_code)] // each test binary uses a different part

use std::fmt::Debug;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::{Config, Event, Outputs, Pipeline};

/// All outputs of the pipeline over `events` (arrival order), then finish.
pub fn run_pipeline(events: &[Event], lateness: u32) -> (Outputs, Pipeline) {
    let mut p = Pipeline::new(Config {
        lateness,
        ..Config::default()
    });
    let mut out = Outputs::default();
    for e in events {
        p.push_into(e, &mut out);
    }
    out.append(&mut p.finish());
    (out, p)
}

fn same_list<T: PartialEq + Debug>(what: &str, got: &[T], want: &[T]) {
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        let lo = i.saturating_sub(2);
        panic!(
            "{what}: first difference at row {i} of {}/{}\n got: {:#?}\nwant: {:#?}",
            got.len(),
            want.len(),
            &got[lo..(i + 3).min(got.len())],
            &want[lo..(i + 3).min(want.len())]
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: row counts differ (one is a prefix of the other)"
    );
}

/// Row by row, naming the first difference.
pub fn assert_same(got: &Outputs, want: &Outputs) {
    same_list("house forecasts", &got.houses, &want.houses);
    same_list("plug forecasts", &got.plugs, &want.plugs);
    same_list("outliers", &got.outliers, &want.outliers);
}

/// A small generated data set: `houses` houses, `plugs` plugs, `minutes` of data, timestamps on
/// a `tick` grid.
pub fn small(
    seed: u64,
    houses: u32,
    plugs: u32,
    minutes: u32,
    interval: (u32, u32),
    tick: u32,
) -> Vec<Event> {
    Generator::new(GenConfig {
        seed,
        houses,
        plugs,
        max_households: 3,
        duration: minutes * 60,
        interval,
        tick,
        work_every: 5,
        gaps_per_day: 6.0,
        late_within: 0.05,
        late_beyond: 0.01,
        ..GenConfig::default()
    })
    .collect()
}

/// `$WATTLET_TESTDATA`, else `shared/testdata` beside the checkout; None (the caller skips) when
/// the REFIT files are not there.
pub fn refit_file(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("WATTLET_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"),
    };
    let path = dir.join("nialm/refit").join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} not found (set WATTLET_TESTDATA to shared/testdata)",
            path.display()
        );
        None
    }
}

/// The file decompressed by the system's gzip (the crate has no gzip dependency).
pub struct Gunzip {
    child: Child,
    pub reader: BufReader<std::process::ChildStdout>,
}

impl Gunzip {
    pub fn open(path: &PathBuf) -> Option<Gunzip> {
        let mut child = match Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: cannot run gzip: {e}");
                return None;
            }
        };
        let stdout = child.stdout.take()?;
        Some(Gunzip {
            child,
            reader: BufReader::new(stdout),
        })
    }

    pub fn lines(&mut self) -> impl Iterator<Item = String> + '_ {
        (&mut self.reader).lines().map_while(Result::ok)
    }
}

impl Drop for Gunzip {
    fn drop(&mut self) {
        // We may stop reading early: end our own child, not let it block on a full pipe.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
