//! The DEBS queries on NATS JetStream end to end, all real: `nats-server -js`, the `wattlet
//! stream replay` and `wattlet worker stream` binaries as child processes, results read back
//! with `wattlet stream results` and compared with the in-process run (`wattlet stream
//! reference`) and with the crate's from-scratch `reference::run`.
//!
//! - equality: two workers; rows per task equal the in-process run row for row (and, on a
//!   smaller file, the from-scratch reference per house for Q1 and globally for Q2);
//! - crashes: `WATTLET_STREAM_KILLS` (default 100) SIGKILLs of workers at random instants while
//!   the input arrives, each restarted; a third worker joins and leaves (SIGTERM) mid-run; every
//!   task's rows are indexes 0..n each once and equal the uninterrupted run;
//! - hostile input: malformed input messages are dead-lettered with their reason and counted;
//!   a corrupted checkpoint chunk makes the task replay from the start, still exactly once;
//! - a sealed run: a dataset key from the real key broker (`wattlet serve`), workers attesting
//!   with the simulated TEE; no reading on NATS, the same rows, forged, moved and replayed
//!   messages dead-lettered, refused workers and a deleted key stop with their reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use wattlet_stream_analytics::event::EventReader;
use wattlet_stream_analytics::{Event, reference};
use wattlet_testkit::{Rng, env_or, nats, run, terminate, wait_for};
use wattlet_workers::server::LocalNats;
use wattlet_workers::stream::operator::Row;

fn wattlet(args: &[&str]) -> String {
    run(wattlet_testkit::binary!("wattlet").args(args), None)
        .expect_success(&format!("wattlet {}", args.join(" ")))
}

fn generate(dir: &Path, name: &str, houses: u32, plugs: u32, minutes: u32) -> PathBuf {
    let file = dir.join(name);
    wattlet(&[
        "stream",
        "generate",
        "--houses",
        &houses.to_string(),
        "--plugs",
        &plugs.to_string(),
        "--minutes",
        &minutes.to_string(),
        "--seed",
        "7",
        "-o",
        file.to_str().unwrap(),
    ]);
    file
}

/// `wattlet stream reference` into `<file>.want.csv`.
fn in_process(file: &Path, partitions: u32) -> String {
    let out = file.with_extension("want.csv");
    wattlet(&[
        "stream",
        "reference",
        file.to_str().unwrap(),
        "--partitions",
        &partitions.to_string(),
        "-o",
        out.to_str().unwrap(),
    ]);
    std::fs::read_to_string(out).unwrap()
}

/// A worker with frequent checkpoints (every 500 input messages or 300 ms: many restarts land
/// between two), its log appended to `log`.
fn spawn_worker(nats: &LocalNats, id: &str, log: &Path) -> Child {
    spawn_worker_with(nats, id, log, WORKER_ARGS)
}

const WORKER_ARGS: &[&str] = &[
    "--checkpoint-every",
    "500",
    "--checkpoint-interval",
    "300ms",
];

fn spawn_worker_with(nats: &LocalNats, id: &str, log: &Path, args: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("worker log");
    wattlet_testkit::binary!("wattlet")
        .args(["worker", "stream", "--nats", &nats.url, "--id", id])
        .args(args)
        .env("WATTLET_LOG", "wattlet=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn wattlet worker stream")
}

fn replay_args<'a>(nats: &'a LocalNats, file: &'a Path, partitions: &'a str) -> Vec<&'a str> {
    vec![
        "stream",
        "replay",
        file.to_str().unwrap(),
        "--nats",
        &nats.url,
        "--partitions",
        partitions,
    ]
}

/// `wattlet stream replay` in the background, event time `rate` times wall time.
fn spawn_replay(nats: &LocalNats, file: &Path, partitions: &str, rate: &str) -> Child {
    let mut args = replay_args(nats, file, partitions);
    args.extend(["--rate", rate]);
    wattlet_testkit::binary!("wattlet")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn replay")
}

/// `wattlet stream results --wait` into `dir/<name>`: the file and the command's stderr.
fn results(nats: &LocalNats, dir: &Path, name: &str) -> (String, String) {
    results_with(nats, dir, name, &[])
}

/// [`results`] with more arguments (`--key FILE`).
fn results_with(nats: &LocalNats, dir: &Path, name: &str, more: &[&str]) -> (String, String) {
    let out = dir.join(name);
    let ran = run(
        wattlet_testkit::binary!("wattlet")
            .args([
                "stream",
                "results",
                "--nats",
                &nats.url,
                "--wait",
                "240s",
                "-o",
                out.to_str().unwrap(),
            ])
            .args(more),
        None,
    );
    let stderr = ran.stderr.clone();
    ran.expect_success("wattlet stream results (every index once)");
    (std::fs::read_to_string(out).unwrap(), stderr)
}

/// Line by line, naming the first difference.
fn assert_same_rows(got: &str, want: &str, what: &str) {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    if let Some(i) = g.iter().zip(&w).position(|(a, b)| a != b) {
        panic!("{what}: line {i} differs:\n got: {}\nwant: {}", g[i], w[i]);
    }
    assert_eq!(g.len(), w.len(), "{what}: row counts differ");
    assert!(!g.is_empty(), "{what}: no rows");
}

fn read_events(file: &Path) -> Vec<Event> {
    let gz = std::fs::File::open(file).unwrap();
    let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(gz));
    EventReader::new(reader).map(|e| e.unwrap()).collect()
}

fn subdir(dir: &Path, name: &str) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    sub
}

/// Two workers checkpointing at the default pace (nobody is killed).
fn two_workers(nats: &LocalNats, log: &Path) -> [Child; 2] {
    let args = ["--checkpoint-every", "10000", "--checkpoint-interval", "5s"];
    [
        spawn_worker_with(nats, "w1", log, &args),
        spawn_worker_with(nats, "w2", log, &args),
    ]
}

fn stop(workers: impl IntoIterator<Item = Child>) {
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
}

#[test]
fn stream_results_equal_the_in_process_run_and_the_reference() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // The main file: 6 houses, 60 plugs, 90 min, with late events (the generator's defaults:
    // 1 % delayed within the bound, 0.05 % beyond), through two workers.
    let file = generate(dir.path(), "events.csv.gz", 6, 60, 90);
    let want = in_process(&file, 4);
    let server = nats(&subdir(dir.path(), "a"));
    let log = dir.path().join("workers.log");
    let workers = two_workers(&server, &log);
    wattlet(&replay_args(&server, &file, "4"));
    let (got, stderr) = results(&server, dir.path(), "got.csv");
    stop(workers);
    assert!(stderr.contains("5 of 5 tasks complete"), "{stderr}");
    assert_same_rows(&got, &want, "workers vs in-process run");
    // The same file again: the same batches under the same ids, all dropped by JetStream.
    let again = run(
        wattlet_testkit::binary!("wattlet").args(replay_args(&server, &file, "4")),
        None,
    );
    assert!(again.success(), "{}", again.stderr);
    assert!(
        again.stderr.contains(" messages new") && again.stderr.contains(", 0 messages new"),
        "a repeated replay publishes nothing: {}",
        again.stderr
    );
    let rows = got.lines().count();
    eprintln!(
        "main file: {rows} rows equal, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // A smaller file against the from-scratch reference: Q1 per house, Q2 over all events.
    let small = generate(dir.path(), "small.csv.gz", 3, 12, 40);
    let server = nats(&subdir(dir.path(), "b"));
    let workers = two_workers(&server, &log);
    wattlet(&replay_args(&server, &small, "2"));
    let (got, _) = results(&server, dir.path(), "small.csv");
    stop(workers);
    let events = read_events(&small);
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut push = |task: String, mut out: wattlet_stream_analytics::Outputs| {
        let mut rows = Vec::new();
        Row::extend_from(&mut rows, &mut out);
        want.entry(task)
            .or_default()
            .extend(rows.iter().map(Row::to_csv));
    };
    for house in 0..3 {
        let mine: Vec<Event> = events
            .iter()
            .filter(|e| e.house == house)
            .copied()
            .collect();
        let mut out = reference::run(&mine, 10);
        out.outliers.clear();
        push(format!("q1-{}", house % 2), out);
    }
    let mut all = reference::run(&events, 10);
    all.houses.clear();
    all.plugs.clear();
    push("outliers".into(), all);
    let mut have: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in got.lines() {
        let mut parts = line.splitn(3, ',');
        let task = parts.next().unwrap().to_owned();
        let _index = parts.next().unwrap();
        have.entry(task)
            .or_default()
            .push(parts.next().unwrap().to_owned());
    }
    // The reference lists rows in output order, a task in emission order: compare sorted.
    for rows in want.values_mut().chain(have.values_mut()) {
        rows.sort();
    }
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (task, rows) in &want {
        assert!(!rows.is_empty(), "{task}");
        assert!(
            have[task] == *rows,
            "{task}: workers differ from reference::run"
        );
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn stream_survives_killed_workers_and_a_joining_leaving_one() {
    let started = Instant::now();
    let kills: u32 = env_or("WATTLET_STREAM_KILLS", 100);
    let dir = tempfile::tempdir().unwrap();
    // 4 houses, 24 plugs, 60 min, replayed at 80× event time: ~45 s of arriving input.
    let file = generate(dir.path(), "events.csv.gz", 4, 24, 60);
    // 6 tasks: 3 a worker for two, 2 for three, so the third worker's arrival moves tasks.
    let want = in_process(&file, 5);
    let server = nats(dir.path());
    let log = dir.path().join("workers.log");
    let mut workers: Vec<(String, Child)> = vec![
        ("w1".into(), spawn_worker(&server, "w1", &log)),
        ("w2".into(), spawn_worker(&server, "w2", &log)),
    ];
    let mut replay = spawn_replay(&server, &file, "5", "80");
    let mut rng = Rng::new(16);
    let mut killed = 0;
    let mut third: Option<Child> = None;
    while killed < kills {
        std::thread::sleep(Duration::from_millis(100 + rng.below(300)));
        if killed == kills / 3 && third.is_none() {
            // The operators compiled in, beside the others' component: the two share
            // checkpoints (the same snapshot format) and give the same rows.
            third = Some(spawn_worker_with(
                &server,
                "w3",
                &log,
                &WORKER_ARGS
                    .iter()
                    .chain(&["--operators", "native"])
                    .copied()
                    .collect::<Vec<_>>(),
            ));
            // No kill for a moment: w1 and w2 see the third member and hand a task each over.
            std::thread::sleep(Duration::from_millis(2500));
        }
        if killed == 2 * kills / 3
            && let Some(mut w3) = third.take()
        {
            terminate(&w3);
            let status = w3.wait().unwrap();
            assert!(status.success(), "w3 stops gracefully on SIGTERM: {status}");
        }
        let i = rng.below(workers.len() as u64) as usize;
        let (id, worker) = &mut workers[i];
        if let Ok(Some(status)) = worker.try_wait() {
            panic!(
                "worker {id} exited by itself ({status}); see {}",
                log.display()
            );
        }
        worker.kill().unwrap();
        worker.wait().unwrap();
        killed += 1;
        *worker = spawn_worker(&server, id, &log);
    }
    let kill_time = started.elapsed();
    let status = replay.wait().unwrap();
    assert!(status.success(), "replay: {status}");
    let (got, stderr) = results(&server, dir.path(), "got.csv");
    stop(workers.into_iter().map(|(_, c)| c).chain(third));
    assert!(stderr.contains("6 of 6 tasks complete"), "{stderr}");
    // `results` checked every task's indexes are 0..n, each once (else it fails); the rows are
    // those of the uninterrupted run.
    assert_same_rows(&got, &want, "after kills vs in-process run");
    let log_text = std::fs::read_to_string(&log).unwrap();
    let released = log_text.matches("releases a task").count();
    eprintln!(
        "{killed} SIGKILLs in {:.1} s, {released} tasks handed over to a joining worker, {} rows \
         equal; total {:.1} s",
        kill_time.as_secs_f64(),
        got.lines().count(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        released > 0,
        "no worker handed a task over to the joining one"
    );
    assert!(
        log_text.contains("worker w3 took the task"),
        "the joining worker got no task"
    );
}

#[test]
fn stream_dead_letters_bad_input_and_survives_a_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let file = generate(dir.path(), "events.csv.gz", 2, 10, 30);
    let want = in_process(&file, 2);
    let server = nats(dir.path());
    let log = dir.path().join("workers.log");
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let js = tokio
        .block_on(wattlet_workers::connect(&server.url))
        .unwrap();
    // Malformed messages ahead of the events, on partition 0 (read by q1-0 and outliers).
    tokio.block_on(async {
        wattlet_workers::stream::ensure_events_stream(
            &js,
            &wattlet_workers::stream::StreamMeta {
                partitions: 2,
                lateness: 10,
                key_id: None,
            },
        )
        .await
        .unwrap();
        for payload in [&b"1,2,not-a-number,1,0,0,0"[..], &b"\xff\xfe"[..]] {
            js.publish("debs.events.0", payload.to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    });
    let mut worker = spawn_worker(&server, "w1", &log);
    let mut replay = spawn_replay(&server, &file, "2", "100");
    // Once `outliers` has a checkpoint with progress, kill the worker and corrupt its chunk 0.
    let manifest = || {
        tokio.block_on(async {
            let checkpoints = wattlet_workers::stream::checkpoint::Checkpoints::open(&js)
                .await
                .ok()?;
            checkpoints.manifest("outliers").await.ok().flatten()
        })
    };
    wait_for(Duration::from_secs(60), "a checkpoint of outliers", || {
        manifest().is_some_and(|m| m.events > 2000)
    });
    worker.kill().unwrap();
    worker.wait().unwrap();
    let m = manifest().unwrap();
    assert!(!m.done);
    // The same length, one bit flipped: only the SHA-256 can tell.
    tokio.block_on(async {
        let subject =
            wattlet_workers::stream::checkpoint::chunk_subject("outliers", &m.generation, 0);
        let state = js.get_stream("DEBS_STATE").await.unwrap();
        let chunk = state
            .get_last_raw_message_by_subject(&subject)
            .await
            .unwrap();
        let mut bytes = chunk.payload.to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        js.publish(subject, bytes.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    // The restarted worker serves its metrics: what it took in, published and set aside.
    let metrics = wattlet_testkit::free_port();
    let listen = metrics.to_string();
    let mut args = WORKER_ARGS.to_vec();
    args.extend(["--metrics-listen", &listen]);
    let worker = spawn_worker_with(&server, "w1", &log, &args);
    assert!(replay.wait().unwrap().success());
    let (got, stderr) = results(&server, dir.path(), "got.csv");
    let page = wattlet_testkit::metrics::scrape(metrics);
    stop([worker]);
    let count = |name: &str, query: &str| {
        wattlet_testkit::metrics::metric(
            &page,
            &format!("wattlet_stream_worker_{name}_total{{query=\"{query}\"}}"),
        )
    };
    // `outliers` replayed its input from the start (its checkpoint was unusable): both bad
    // messages again, and every event.
    assert_eq!(count("dead_letters", "q2"), 2.0, "{page}");
    assert!(count("events", "q2") >= 2000.0, "{page}");
    assert!(count("rows", "q1") + count("rows", "q2") > 0.0, "{page}");
    assert!(stderr.contains("3 of 3 tasks complete"), "{stderr}");
    assert!(
        stderr.contains("4 input messages dead-lettered"),
        "{stderr}"
    );
    assert_same_rows(&got, &want, "after a corrupt checkpoint vs in-process run");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("checkpoint unusable (the checkpoint's SHA-256 is"),
        "the corrupt chunk was noticed: {log_text}"
    );
    // Each malformed message once per task reading partition 0, with its reason.
    let reasons: Vec<String> = tokio.block_on(async {
        let dead = js.get_stream("DEBS_DEAD").await.unwrap();
        let mut reasons = Vec::new();
        for seq in 1..=4 {
            let m = dead.get_raw_message(seq).await.unwrap();
            reasons.push(
                m.headers
                    .get(wattlet_workers::DEAD_REASON_HEADER)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
            );
        }
        reasons
    });
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("is not an event"))
            .count(),
        2,
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("field value") || r.contains("not a decimal")),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| r.contains("not UTF-8")).count(),
        2,
        "{reasons:?}"
    );
}

/// Every payload of `stream`: (subject, headers' message id, payload).
fn payloads(
    tokio: &tokio::runtime::Runtime,
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<(String, String, Vec<u8>)> {
    tokio.block_on(async {
        let s = js.get_stream(stream).await.unwrap();
        let last = s.get_info().await.unwrap().state.last_sequence;
        let mut all = Vec::new();
        for seq in 1..=last {
            // Messages past a subject's limit (checkpoints, leases) are gone.
            if let Ok(m) = s.get_raw_message(seq).await {
                let id = m
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                all.push((m.subject.to_string(), id, m.payload.to_vec()));
            }
        }
        all
    })
}

/// `wattlet stream key <args…>` against the broker of `broker_args` as an administrator.
fn key_command(broker_args: &[&str], token_file: &str, args: &[&str]) -> wattlet_testkit::Ran {
    let (action, rest) = args.split_first().expect("an action");
    run(
        wattlet_testkit::binary!("wattlet")
            .args(["stream", "key", action])
            .args(broker_args)
            .args(["--token-file", token_file])
            .args(rest),
        None,
    )
}

/// The administrators' token in `dir/admin.token`.
fn admin_token_file(dir: &Path) -> String {
    let file = dir.join("admin.token");
    std::fs::write(&file, wattlet_testkit::ADMIN_TOKEN).unwrap();
    file.to_str().unwrap().to_owned()
}

/// After the run's key was deleted: a worker starting on the run fails, saying why.
fn a_new_worker_cannot_get_the_key(server: &LocalNats, broker_args: &[&str]) {
    let late = run(
        wattlet_testkit::binary!("wattlet")
            .args([
                "worker",
                "stream",
                "--nats",
                &server.url,
                "--tee",
                "simulated",
            ])
            .args(broker_args),
        None,
    );
    assert!(
        !late.success() && late.stderr.contains("cannot get the run's dataset key"),
        "{}",
        late.stderr
    );
}

/// A row message in the clear, as someone with NATS access could publish it.
const FORGED_ROW: &str = "house,0,0,0,1,0";

#[test]
fn stream_sealed_run_keeps_readings_off_nats_and_refuses_forgeries() {
    use wattlet_testkit::{Cloud, simulated_policy, stream_worker_measurement};
    let dir = tempfile::tempdir().unwrap();
    let wattlet_bin = Path::new(env!("CARGO_BIN_EXE_wattlet"));
    let policy = simulated_policy(&stream_worker_measurement(wattlet_bin));
    let cloud = Cloud::start_with(dir.path(), &[("attestation_policy", policy.as_str())]);
    let broker = cloud.url();
    let ca = cloud.ca.ca_cert_path();
    let ca = ca.to_str().unwrap();
    let token_file = &admin_token_file(dir.path());
    let broker_args = ["--key-broker", broker.as_str(), "--ca", ca];

    // The dataset key, shown once and kept in a private file.
    let key_file = dir.path().join("run.key");
    let key = key_file.to_str().unwrap();
    key_command(
        &broker_args,
        token_file,
        &["create", "--name", "DEBS test run", "-o", key],
    )
    .expect_success("wattlet stream key create");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = key_command(
        &broker_args,
        token_file,
        &["create", "--name", "x", "-o", key],
    );
    assert!(
        !again.success() && again.stderr.contains("cannot create the key file"),
        "{}",
        again.stderr
    );
    let run_key = wattlet_workers::stream::sealed::RunKey::read(&key_file).unwrap();

    let file = generate(dir.path(), "events.csv.gz", 2, 10, 30);
    let want = in_process(&file, 2);
    let events = read_events(&file);
    let server = nats(&subdir(dir.path(), "nats"));
    let log = dir.path().join("workers.log");
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let js = tokio
        .block_on(wattlet_workers::connect(&server.url))
        .unwrap();
    let sealed_meta = wattlet_workers::stream::StreamMeta {
        partitions: 2,
        lateness: wattlet_stream_analytics::reorder::DEFAULT_LATENESS,
        key_id: Some(run_key.id.to_string()),
    };
    // Ahead of the events on partition 0: a batch in the clear and a forged end marker.
    tokio.block_on(async {
        wattlet_workers::stream::ensure_events_stream(&js, &sealed_meta)
            .await
            .unwrap();
        let clear = format!("{}\n{}", events[0].to_csv(), events[1].to_csv());
        js.publish("debs.events.0", clear.into_bytes().into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(wattlet_workers::stream::END_HEADER, "0");
        js.publish_with_headers("debs.events.0", headers, Vec::new().into())
            .await
            .unwrap()
            .await
            .unwrap();
    });

    // A worker without the broker, and one the broker refuses (native operators: another
    // measurement), stop before reading any event.
    let plain = run(
        wattlet_testkit::binary!("wattlet").args(["worker", "stream", "--nats", &server.url]),
        None,
    );
    assert!(
        !plain.success() && plain.stderr.contains("start the worker with --key-broker"),
        "{}",
        plain.stderr
    );
    let refused = run(
        wattlet_testkit::binary!("wattlet")
            .args([
                "worker",
                "stream",
                "--nats",
                &server.url,
                "--operators",
                "native",
            ])
            .args(broker_args)
            .args(["--tee", "simulated"]),
        None,
    );
    assert!(
        !refused.success()
            && refused.stderr.contains("measurement_not_allowed")
            && refused.stderr.contains("no event was fetched"),
        "{}",
        refused.stderr
    );

    let mut worker_args = vec!["--tee", "simulated"];
    worker_args.extend(broker_args);
    worker_args.extend(WORKER_ARGS);
    let workers = [
        spawn_worker_with(&server, "w1", &log, &worker_args),
        spawn_worker_with(&server, "w2", &log, &worker_args),
    ];
    let mut replay_args = replay_args(&server, &file, "2");
    replay_args.extend(["--key", key, "--rate", "200"]);
    let mut replay = wattlet_testkit::binary!("wattlet")
        .args(&replay_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("replay.log")).unwrap())
        .spawn()
        .expect("spawn replay");
    // Mid-run: the first sealed batch again under a new message id (a replay), and under the
    // place of another partition (moved).
    let first_batch = || {
        payloads(&tokio, &js, "DEBS_EVENTS")
            .into_iter()
            .find(|(_, id, _)| id.starts_with('e'))
    };
    wait_for(Duration::from_secs(60), "the first sealed batch", || {
        first_batch().is_some()
    });
    let (subject, _, batch) = first_batch().unwrap();
    let other = if subject.ends_with(".0") {
        "debs.events.1"
    } else {
        "debs.events.0"
    };
    tokio.block_on(async {
        for to in [subject.as_str(), other] {
            js.publish(to.to_owned(), batch.clone().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        // A forged row message far ahead on q1-0's output: a task that believed its index would
        // skip every row up to it.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(wattlet_workers::stream::INDEX_HEADER, "100000000");
        js.publish_with_headers("debs.out.q1-0", headers, FORGED_ROW.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    // Every task restarts (SIGKILL, then the same ids): each reads back its last row index.
    stop(workers);
    let workers = [
        spawn_worker_with(&server, "w1", &log, &worker_args),
        spawn_worker_with(&server, "w2", &log, &worker_args),
    ];
    assert!(
        replay.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(dir.path().join("replay.log")).unwrap()
    );

    // Without the key the rows cannot be read; with it they equal the in-process run.
    let blind = run(
        wattlet_testkit::binary!("wattlet").args([
            "stream",
            "results",
            "--nats",
            &server.url,
            "-o",
            dir.path().join("blind.csv").to_str().unwrap(),
        ]),
        None,
    );
    assert!(
        !blind.success() && blind.stderr.contains("give --key FILE"),
        "{}",
        blind.stderr
    );
    let (got, stderr) = results_with(&server, dir.path(), "got.csv", &["--key", key]);
    stop(workers);
    assert!(stderr.contains("3 of 3 tasks complete"), "{stderr}");
    assert_same_rows(&got, &want, "sealed run vs in-process run");
    assert!(
        stderr.contains("q1-0: 1 output messages skipped"),
        "the forged rows are not taken: {stderr}"
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("the last output message is not authentic"),
        "q1-0 restarted past the forged rows: {log_text}"
    );

    // No reading on NATS: every batch and row message is a sealed envelope, and no event's
    // CSV line is anywhere in the run's streams.
    let mut all = Vec::new();
    for stream in ["DEBS_EVENTS", "DEBS_OUT", "DEBS_STATE", "DEBS_DEAD"] {
        all.extend(payloads(&tokio, &js, stream));
    }
    let lines: Vec<String> = events.iter().step_by(97).map(|e| e.to_csv()).collect();
    let forged_clear = format!("{}\n{}", events[0].to_csv(), events[1].to_csv());
    for (subject, id, payload) in &all {
        if payload == forged_clear.as_bytes() || payload == FORGED_ROW.as_bytes() {
            continue; // the forgeries, as they came
        }
        for line in &lines {
            assert!(
                !payload.windows(line.len()).any(|w| w == line.as_bytes()),
                "{subject} {id} holds the event {line}"
            );
        }
        if subject.starts_with("debs.events.") && !payload.is_empty()
            || subject.starts_with("debs.out.")
        {
            let sealed: wattlet_sealing::Sealed = serde_json::from_slice(payload)
                .unwrap_or_else(|e| panic!("{subject} {id} is not sealed: {e}"));
            assert_eq!(sealed.key_id, run_key.id.as_str());
        }
    }
    let checkpoint = tokio.block_on(async {
        let checkpoints = wattlet_workers::stream::checkpoint::Checkpoints::open(&js)
            .await
            .unwrap();
        checkpoints.load("outliers").await.unwrap().unwrap().1
    });
    let sealed: wattlet_sealing::Sealed =
        serde_json::from_slice(&checkpoint).expect("the checkpoint is a sealed envelope");
    assert_eq!(sealed.purpose, wattlet_sealing::Purpose::State);

    // Dead letters, each with its reason: per task reading the partition, the clear batch and
    // the forged end marker (partition 0: q1-0 and outliers), the replayed and the moved batch.
    let reasons: Vec<String> = tokio.block_on(async {
        let dead = js.get_stream("DEBS_DEAD").await.unwrap();
        let last = dead.get_info().await.unwrap().state.last_sequence;
        let mut reasons = Vec::new();
        for seq in 1..=last {
            let m = dead.get_raw_message(seq).await.unwrap();
            reasons.push(
                m.headers
                    .get(wattlet_workers::DEAD_REASON_HEADER)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
            );
        }
        reasons
    });
    let count = |needle: &str| reasons.iter().filter(|r| r.contains(needle)).count();
    assert_eq!(count("not sealed"), 2, "{reasons:?}");
    assert_eq!(count("not an authentic end marker"), 2, "{reasons:?}");
    assert_eq!(
        count("replayed"),
        3,
        "again, for both tasks; moved, for outliers: {reasons:?}"
    );
    assert_eq!(
        count("belongs to partition"),
        1,
        "moved, for its Q1 task: {reasons:?}"
    );
    assert!(
        stderr.contains("8 input messages dead-lettered"),
        "{stderr}"
    );

    // The key destroyed: a worker cannot have it any more.
    key_command(&broker_args, token_file, &["delete", key])
        .expect_success("wattlet stream key delete");
    a_new_worker_cannot_get_the_key(&server, &broker_args);
}

/// The sealed run against the app on the real Spin CLI: the key made, released to attested
/// workers and destroyed by the same `spin.toml` as on `wattlet serve`.
#[test]
fn stream_sealed_run_against_the_app_on_real_spin() {
    let Some(spin) = wattlet_testkit::spin_cli() else {
        eprintln!("{}", wattlet_testkit::NO_SPIN);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let policy = wattlet_testkit::simulated_policy(&wattlet_testkit::stream_worker_measurement(
        Path::new(env!("CARGO_BIN_EXE_wattlet")),
    ));
    let variables: Vec<(&str, &str)> = wattlet_testkit::APP_VARIABLES
        .iter()
        .copied()
        .chain([("attestation_policy", policy.as_str())])
        .collect();
    let app = wattlet_testkit::SpinUp::start(
        &spin,
        &wattlet_testkit::repo().join("spin.toml"),
        None,
        &dir.path().join("spin"),
        &variables,
    );
    let broker = app.url();
    let broker_args = ["--key-broker", broker.as_str()];
    let token_file = &admin_token_file(dir.path());
    let key_file = dir.path().join("run.key");
    let key = key_file.to_str().unwrap();
    key_command(
        &broker_args,
        token_file,
        &["create", "--name", "on Spin", "-o", key],
    )
    .expect_success("wattlet stream key create on Spin");

    let file = generate(dir.path(), "events.csv.gz", 2, 8, 20);
    let want = in_process(&file, 2);
    let server = nats(&subdir(dir.path(), "nats"));
    let log = dir.path().join("workers.log");
    let mut worker_args = vec!["--tee", "simulated"];
    worker_args.extend(broker_args);
    let worker = spawn_worker_with(&server, "w1", &log, &worker_args);
    let mut replay = replay_args(&server, &file, "2");
    replay.extend(["--key", key]);
    wattlet(&replay);
    let (got, stderr) = results_with(&server, dir.path(), "got.csv", &["--key", key]);
    stop([worker]);
    assert!(stderr.contains("3 of 3 tasks complete"), "{stderr}");
    assert_same_rows(&got, &want, "sealed run on Spin vs in-process run");

    key_command(&broker_args, token_file, &["delete", key])
        .expect_success("wattlet stream key delete on Spin");
    let again = key_command(&broker_args, token_file, &["delete", key]);
    assert!(
        !again.success() && again.stderr.contains("key_not_found"),
        "{}",
        again.stderr
    );
    a_new_worker_cannot_get_the_key(&server, &broker_args);
}
