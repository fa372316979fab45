//! What a component update costs the device, phase by phase: the TUF check (metadata and the
//! component fetched and verified), staging (compiled for this host's wasmtime, written to
//! the inactive slot with fsync, loaded back and link-checked), the switch, and the health
//! check with the commit (the parser: the golden telegrams through old and new parser; the
//! upload: the commit its first acknowledged upload triggers, without the upload itself). In
//! the same run, the baseline: wasmtime compiling the same component alone. Bytes fetched per
//! update are counted on the verifier's transport.
//!
//! Every round publishes a new version whose bytes differ (a custom section), so that
//! neither staging nor the baseline is served from wasmtime's compilation cache: a device
//! compiles a component it never saw.
//!
//! `cargo bench -p wattlet-edge --bench update_apply` (`WATTLET_UPDATE_N` rounds per component,
//! default 10; the components that `./dev test` builds).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wattlet_edge::update::machine::Outcome;
use wattlet_edge::update::{Admission, Applied, Kind};
use wattlet_testkit::env_or;
use wattlet_testkit::updates::{PARSER_WORLD, UPLOAD_WORLD, UpdateRepo, component, run};

/// `wasm` with a custom section appended that no other build carries (components may hold
/// custom sections anywhere): new bytes, the same code.
fn unique(wasm: &[u8], tag: &str) -> Vec<u8> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = b"wattlet-bench";
    let payload = format!("{tag} {nanos}");
    let mut body = leb128(name.len());
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.extend(leb128(body.len()));
    out.extend(body);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Default)]
struct Rounds {
    check: Vec<Duration>,
    stage: Vec<Duration>,
    switch: Vec<Duration>,
    health: Vec<Duration>,
    total: Vec<Duration>,
    compile: Vec<Duration>,
    metadata_bytes: u64,
    component_bytes: u64,
}

fn bench(kind: Kind, package: &str, world: &str, n: usize) -> (u64, Rounds) {
    let repo = UpdateRepo::new();
    let device = tempfile::tempdir().expect("device directory");
    let agent = repo.agent(device.path(), repo.settings());
    let wasm = std::fs::read(component(package)).expect("component readable");
    let file = repo.dir.path().join("next.wasm");
    let mut rounds = Rounds::default();
    for round in 1..=n {
        let version = semver::Version::new(1, round as u64, 0);
        std::fs::write(&file, unique(&wasm, &format!("{package} {version}"))).expect("write");
        repo.publish(kind.name(), &version.to_string(), world, &file);
        let before = agent.fetched().unwrap_or_default();

        let started = Instant::now();
        let update = run(agent.check(kind, &Admission::Any))
            .expect("verified")
            .expect("an update");
        let checked = Instant::now();
        let state = agent.store().load(kind).expect("state");
        let state = agent.stage(kind, &state, &update).expect("staged");
        assert!(
            !matches!(state.last, Some(Outcome::Refused { .. })),
            "refused: {:?}",
            state.last
        );
        let staged = Instant::now();
        agent.switch(kind, &state).expect("switched");
        let switched = Instant::now();
        match kind {
            // The trial is decided (golden telegrams) before anything else is checked.
            Kind::MeterParser => assert_eq!(
                run(agent.apply(kind, &Admission::Nothing)).expect("health check"),
                Applied::UpToDate
            ),
            Kind::Upload => assert_eq!(
                agent.upload_acknowledged().expect("commit"),
                Some(version.clone())
            ),
        }
        let done = Instant::now();
        let state = agent.store().load(kind).expect("state");
        assert_eq!(
            state.last,
            Some(Outcome::Committed {
                version: version.clone()
            }),
            "round {round}"
        );
        let after = agent.fetched().unwrap_or_default();
        rounds.metadata_bytes += after.metadata_bytes - before.metadata_bytes;
        rounds.component_bytes += after.component_bytes - before.component_bytes;
        rounds.check.push(checked - started);
        rounds.stage.push(staged - checked);
        rounds.switch.push(switched - staged);
        rounds.health.push(done - switched);
        rounds.total.push(done - started);

        // The baseline: the same code, bytes of its own, compiled alone.
        let bytes = unique(&wasm, &format!("baseline {package} {version}"));
        let started = Instant::now();
        wasmtime::component::Component::new(agent.engine(), &bytes).expect("compiles");
        rounds.compile.push(started.elapsed());
    }
    (wasm.len() as u64, rounds)
}

fn main() {
    let n: usize = env_or("WATTLET_UPDATE_N", 10).max(1);
    println!("{n} updates per component; medians; cache misses throughout");
    println!(
        "| component | size | check (TUF, fetch) | stage (compile, write, link) | switch | health + commit | whole update | wasmtime compile alone | ratio | bytes per update (metadata + component) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (kind, package, world) in [
        (Kind::MeterParser, "wattlet-meter-parser", PARSER_WORLD),
        (Kind::Upload, "wattlet-upload", UPLOAD_WORLD),
    ] {
        let (size, rounds) = bench(kind, package, world, n);
        let total = median(rounds.total.clone());
        let compile = median(rounds.compile.clone());
        println!(
            "| {} | {size} B | {:.1} ms | {:.1} ms | {:.2} ms | {:.1} ms | **{:.1} ms** | {:.1} ms | {:.2}× | {} + {} B |",
            kind.name(),
            ms(median(rounds.check)),
            ms(median(rounds.stage)),
            ms(median(rounds.switch)),
            ms(median(rounds.health)),
            ms(total),
            ms(compile),
            total.as_secs_f64() / compile.as_secs_f64(),
            rounds.metadata_bytes / n as u64,
            rounds.component_bytes / n as u64,
        );
    }
}
