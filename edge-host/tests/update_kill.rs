//! `kill -9` during every phase of an update: the real `wattlet-edge update apply` moves a
//! device from parser 1.0.0 to 1.1.0 (a real signed repository on disk) and is killed at a
//! random instant of a randomly chosen phase (check, staging, precompile, write, link, switch
//! and health check, commit). Two trials run at a time. After each kill the resolver — what the daemon runs at start — must
//! yield a component whose files verify and that loads and reads a real telegram: 1.0.0 or
//! 1.1.0, never neither; 1.0.0 if killed before the switch, 1.1.0 once committed.
//!
//! `WATTLET_KILL_TRIALS` sets the number of trials (default 200); `WATTLET_SEED` the seed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wattlet_edge::update::health::{self, GOLDEN};
use wattlet_edge::update::slots::Source;
use wattlet_edge::update::{Agent, Kind};
use wattlet_runtime::meter::ParserComponent;
use wattlet_testkit::updates::{PARSER_WORLD, UpdateRepo, clone_state, component, device_config};
use wattlet_testkit::{Rng, binary, env_or};

/// What `apply` logs, in order ("switched" lasts through the health check).
const PHASES: [&str; 7] = [
    "check",
    "staging",
    "precompiled",
    "written",
    "linked",
    "switched",
    "committed",
];

/// The phase a log line announces, if any.
fn phase_of(line: &str) -> Option<usize> {
    if !line.contains("update phase") {
        return None;
    }
    PHASES
        .iter()
        .position(|p| line.contains(&format!("\"{p}\"")) || line.contains(&format!("={p} ")))
}

/// Runs `apply` on `config`; kills it `delay` after `phase` is announced (never, if `None`).
/// Returns the last phase announced before the kill (or the end) and whether it ran to its end.
fn apply(config: &Path, kill: Option<(usize, Duration)>) -> (Option<usize>, bool, Vec<Duration>) {
    let started = Instant::now();
    let mut child = binary!("wattlet-edge")
        .args(["update", "apply", "--component", "meter-parser", "--config"])
        .arg(config)
        .env("WATTLET_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wattlet-edge starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send((phase_of(&line), line));
        }
    });
    let mut last = None;
    let mut times = Vec::new();
    let mut log = Vec::new();
    let mut kill_at: Option<Instant> = None;
    loop {
        let wait = kill_at.map_or(Duration::from_secs(60), |at| {
            at.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok((phase, line)) => {
                log.push(line);
                if let Some(phase) = phase {
                    last = Some(phase);
                    times.push(started.elapsed());
                    if let Some((target, delay)) = kill
                        && target == phase
                        && kill_at.is_none()
                    {
                        kill_at = Some(Instant::now() + delay);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(kill_at.is_some(), "no progress in 60 s: {log:#?}");
                child.kill().expect("SIGKILL");
                // What it wrote before it died is still in the pipe.
                for (phase, line) in rx.iter() {
                    log.push(line);
                    if phase.is_some() {
                        last = phase;
                    }
                }
                break;
            }
            // Its end: stderr closed.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    let finished = status.success();
    if kill.is_none() {
        assert!(finished, "apply failed: {log:#?}");
    }
    (last, finished, times)
}

#[test]
fn kill_9_in_every_phase_leaves_a_verified_component() {
    let started = Instant::now();
    let trials: usize = env_or("WATTLET_KILL_TRIALS", 200);
    let seed: u64 = env_or("WATTLET_SEED", 0x5eed_u64);
    let mut rng = Rng::new(seed);
    let repo = UpdateRepo::new();
    let parser = component("wattlet-meter-parser");
    let work = tempfile::tempdir().unwrap();

    // The device before: parser 1.0.0 committed (by the binary itself).
    repo.publish("meter-parser", "1.0.0", PARSER_WORLD, &parser);
    let template = work.path().join("template");
    let config = device_config(work.path(), &template.join("state"), &repo);
    let (last, _, _) = apply(&config, None);
    assert_eq!(last, Some(PHASES.len() - 1), "1.0.0 committed");
    repo.publish("meter-parser", "1.1.0", PARSER_WORLD, &parser);

    // One undisturbed update: how long each phase lasts.
    let calibration = work.path().join("calibration");
    clone_state(&template.join("state"), &calibration.join("state"));
    let config = device_config(&calibration, &calibration.join("state"), &repo);
    let (last, _, times) = apply(&config, None);
    assert_eq!(last, Some(PHASES.len() - 1));
    let spans: Vec<Duration> = (0..PHASES.len())
        .map(|i| match (times.get(i), times.get(i + 1)) {
            (Some(a), Some(b)) => (*b - *a).max(Duration::from_millis(2)),
            _ => Duration::from_millis(20),
        })
        .collect();
    eprintln!(
        "phase durations: {:?}",
        PHASES.iter().zip(&spans).collect::<Vec<_>>()
    );

    let engine = wattlet_runtime::engine::engine().unwrap();
    let plan: Vec<(usize, Duration)> = (0..trials)
        .map(|_| {
            let target = usize::try_from(rng.below(PHASES.len() as u64)).unwrap();
            let span = u64::try_from(spans[target].as_micros()).unwrap_or(u64::MAX);
            (target, Duration::from_micros(rng.below(span.max(1))))
        })
        .collect();
    let tally = std::sync::Mutex::new(([0usize; PHASES.len()], [0usize; 2]));
    let trial = |trial: usize, (target, delay): (usize, Duration)| {
        let dir = work.path().join(format!("trial-{trial}"));
        let state = dir.join("state");
        clone_state(&template.join("state"), &state);
        let config = device_config(&dir, &state, &repo);
        let (last, finished, _) = apply(&config, Some((target, delay)));

        // What the daemon would run now.
        let agent = Agent::new(&engine, &state, Some(repo.settings()), None, None).unwrap();
        let resolved = agent.resolve(Kind::MeterParser);
        let Source::Slot(installed, _) = &resolved.source else {
            panic!(
                "trial {trial} (killed after {last:?}): no installed version resolved: {resolved:?}"
            )
        };
        let version = installed.version.to_string();
        {
            let mut tally = tally.lock().unwrap();
            if !finished && let Some(last) = last {
                tally.0[last] += 1;
            }
            match version.as_str() {
                "1.0.0" => tally.1[0] += 1,
                "1.1.0" => tally.1[1] += 1,
                other => panic!("trial {trial}: version {other}"),
            }
        }
        // "linked" is logged before the staged state is saved and the switch written.
        let linked = PHASES.iter().position(|p| *p == "linked").unwrap();
        if last.is_none_or(|l| l < linked) {
            assert_eq!(version, "1.0.0", "trial {trial}: killed before the switch");
        }
        if finished || last == Some(PHASES.len() - 1) {
            assert_eq!(version, "1.1.0", "trial {trial}: committed");
        }
        let component = resolved.source.load(&engine, &parser).unwrap();
        let loaded = ParserComponent::from_component(&engine, &component).unwrap();
        let mut decoder = loaded.decoder(&health::options()).unwrap();
        let readings = health::readings(&mut decoder, GOLDEN[0].1).unwrap();
        assert!(
            readings.iter().any(|r| !r.is_empty()),
            "trial {trial}: the resolved parser reads the capture"
        );
        // Nothing half done is left to run.
        assert_eq!(
            resolved.state.phase,
            wattlet_edge::update::machine::Phase::Idle,
            "trial {trial}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    };
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let plan = &plan;
            let trial = &trial;
            scope.spawn(move || {
                for (i, step) in plan.iter().enumerate().skip(worker).step_by(2) {
                    trial(i, *step);
                }
            });
        }
    });
    let (killed_in, outcomes) = tally.into_inner().unwrap();
    eprintln!(
        "{trials} trials in {:.1} s: killed after each phase {:?}, then running 1.0.0 {} times, 1.1.0 {} times",
        started.elapsed().as_secs_f64(),
        PHASES.iter().zip(killed_in).collect::<Vec<_>>(),
        outcomes[0],
        outcomes[1]
    );
    if trials >= 100 {
        for (phase, count) in PHASES.iter().zip(killed_in).take(PHASES.len() - 1) {
            assert!(count > 0, "never killed during {phase}");
        }
    }
}
