//! The NIALM queue's throughput and latency, against the native baseline in the same run.
//!
//! Set-up: the Data API (`spin.toml`, served in-process without TLS) migrates a fresh database;
//! `BENCH_METERS` consenting households (default 20) get `BENCH_DAYS` days (default 7) of one
//! power reading per minute, written straight into the database (the set-up is not measured).
//! A real `nats-server -js` runs on loopback.
//!
//! Measured:
//! 1. the work manager: one pass over all meters (plan from SQLite, publish every item with its
//!    `Nats-Msg-Id`, await every JetStream acknowledgement, advance the cursors): items/s;
//! 2. the same items computed without a queue in one thread: native tract (the `wattlet-nialm`
//!    library) and the nialm component in wasmtime: items/s and the wasm/native ratio;
//! 3. `wattlet worker nialm` (in-process, `--concurrency 1` and then one per core) draining the
//!    queue: fetch, compute, store through the Data API, double ack: items/s and per core, with
//!    plaintext items and with sealed ones (an attested worker, simulated TEE, opening items and
//!    sealing results; the Data API opening them): the sealed/plaintext ratio;
//! 4. end-to-end latency of single items with idle workers: publish → result committed;
//! 5. workers draining `BENCH_CLUSTER_ITEMS` items (default 3,000) from a three-server JetStream
//!    cluster with R3 streams and from the single server, with 1, 2 and 4 workers: the ratio.
//!
//! `BENCH_ONLY=manager` stops after the manager.
//!
//! Run (after `./dev test` or `./dev run` built the components):
//!       `cargo bench -p wattlet-workers --bench nialm_queue`

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use rusqlite::{Connection, params};
use wattlet_api_client::ApiClient;
use wattlet_runtime::nialm::NialmComponent;
use wattlet_serve::server::ServeOptions;
use wattlet_testkit::cloud::mint;
use wattlet_testkit::serve::{self, Served};
use wattlet_testkit::{ADMIN_TOKEN, env_or};
use wattlet_workers::QueueSettings;
use wattlet_workers::api::{ApiOptions, DataApi, HouseholdKey};
use wattlet_workers::item::{self, DEFAULT_MODELS, WorkItem};
use wattlet_workers::manager::{self, Sealing};
use wattlet_workers::plan::{MAX_WINDOWS_PER_STEP, Planner};
use wattlet_workers::worker::{self, ConfidentialOptions, WorkerOptions};

/// Midnight UTC, 1 November 2026.
const START: i64 = 1_793_491_200;

/// The Data API's fixed-width UTC form of a Unix time (its `timestamp` module), for rows the
/// set-up writes straight into its database.
fn db_time(unix: i64) -> String {
    humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + Duration::from_secs(unix as u64))
        .to_string()
}

/// Serves the Data API on `runtime` for the whole run (dropping it stops it), asks it something
/// so that it creates and migrates its database, and mints a manager and a worker token. The
/// queue runs in the clear here (`--plaintext`: the key broker needs attestation); the cost of
/// sealing is measured per item in step 2.
fn serve_data_api(
    state: &Path,
    runtime: &tokio::runtime::Runtime,
) -> (Served, ApiOptions, ApiOptions) {
    let options = ServeOptions {
        max_request_bytes: 1 << 20,
        ..serve::app_options(state)
    };
    let variables: Vec<(&str, &str)> = wattlet_testkit::APP_VARIABLES
        .iter()
        .copied()
        .chain([
            ("plaintext_results", "allowed"),
            // The sealed drains attest with the simulated TEE (no TEE on a bench machine).
            ("attestation_policy", wattlet_testkit::kbs::SIMULATED_POLICY),
        ])
        .collect();
    let served = serve::start_on(runtime.handle(), &options, &variables);
    let url = served.url();
    let admin = ApiClient::new(&url, None)
        .expect("client")
        .with_bearer(ADMIN_TOKEN);
    let manager = ApiOptions {
        url: url.clone(),
        ca: None,
        token: runtime.block_on(mint(&admin, "manager")),
    };
    let api = ApiOptions {
        url,
        ca: None,
        token: runtime.block_on(mint(&admin, "worker")),
    };
    (served, manager, api)
}

/// Power in kW at `minute` for meter `m` (a deterministic household-like profile).
fn power_kw(m: usize, minute: i64) -> f64 {
    let phase = minute + 17 * m as i64;
    let base = 0.1 + 0.01 * m as f64 + 0.02 * ((phase as f64) / 37.0).sin();
    let fridge = if phase % 60 < 20 { 0.09 } else { 0.0 };
    let kettle = if phase % 127 < 3 { 2.0 } else { 0.0 };
    let washer = if phase % 660 < 40 { 1.8 } else { 0.0 };
    base + fridge + kettle + washer
}

/// Consenting households with one electricity meter each and a reading every minute.
fn fill(db: &Path, meters: usize, days: i64) -> Vec<String> {
    let mut db = Connection::open(db).expect("open database");
    let tx = db.transaction().expect("transaction");
    let now = db_time(START);
    let mut uuids = Vec::new();
    for m in 0..meters {
        let household = format!("bench-household-{m}");
        let meter = format!("00000000-0000-4000-8000-{m:012}");
        tx.execute(
            r#"INSERT INTO "user" (id, name, email) VALUES (?1, ?2, ?3)"#,
            params![
                m as i64 + 1,
                format!("Bench {m}"),
                format!("b{m}@example.org")
            ],
        )
        .expect("user");
        tx.execute(
            "INSERT INTO household (id, user, created_at) VALUES (?1, ?2, ?3)",
            params![household, m as i64 + 1, now],
        )
        .expect("household");
        tx.execute(
            "INSERT INTO consent (household, state, granted_at) VALUES (?1, 'granted', ?2)",
            params![household, now],
        )
        .expect("consent");
        tx.execute(
            "INSERT INTO meter (uuid, household, type, model) VALUES (?1, ?2, 'ELECTRICITY', 'MT681')",
            params![meter, household],
        )
        .expect("meter");
        let mut insert = tx
            .prepare(
                "INSERT INTO measurement (uuid, meter, measured_at, data, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?3)",
            )
            .expect("prepare");
        for minute in 0..days * 24 * 60 {
            let data = format!(
                r#"[{{"0100010800ff":{}}},{{"0100010700ff":{}}}]"#,
                1000.0 + minute as f64 / 60.0,
                power_kw(m, minute)
            );
            insert
                .execute(params![
                    format!("{m:08x}-0000-4000-8000-{minute:012}"),
                    meter,
                    db_time(START + minute * 60 + 7),
                    data,
                ])
                .expect("measurement");
        }
        uuids.push(meter);
    }
    tx.commit().expect("commit");
    uuids
}

fn result_count(db: &Path) -> usize {
    let db = Connection::open(db).expect("open");
    db.query_row("SELECT count(*) FROM disaggregation", [], |r| r.get(0))
        .expect("count")
}

fn clear_results(db: &Path) {
    let db = Connection::open(db).expect("open");
    db.execute("DELETE FROM disaggregation", [])
        .expect("clear results");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let meters = env_or("BENCH_METERS", 20usize);
    let days = env_or("BENCH_DAYS", 7i64);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (served, manager_api, api) = serve_data_api(&dir.path().join("cloud"), &runtime);
    let db = served.database();
    let started = Instant::now();
    fill(&db, meters, days);
    println!(
        "set-up: {meters} meters x {days} days of 1-minute readings ({} rows) in {:.1} s",
        meters as i64 * days * 1440,
        started.elapsed().as_secs_f64()
    );

    let nats = wattlet_testkit::nats(dir.path());
    let settings = QueueSettings::default();
    let models: Vec<String> = DEFAULT_MODELS.map(String::from).to_vec();

    // 1. The manager.
    let (published, manager_seconds) = runtime.block_on(async {
        let js = wattlet_workers::connect(&nats.url).await.expect("connect");
        wattlet_workers::ensure_streams(&js, &settings)
            .await
            .expect("streams");
        let cursors = wattlet_workers::Cursors::open(&js, &settings)
            .await
            .expect("cursors");
        let planner = Planner::new(DataApi::connect(&manager_api).expect("Data API"));
        let started = Instant::now();
        let report = manager::pass(&js, &planner, &cursors, &models, Sealing::Plaintext)
            .await
            .expect("manager pass");
        (report.published, started.elapsed().as_secs_f64())
    });
    println!(
        "manager: {published} items in {manager_seconds:.2} s = {:.0} items/s (plan + publish + acks + cursors)",
        published as f64 / manager_seconds
    );
    if std::env::var("BENCH_ONLY").as_deref() == Ok("manager") {
        return;
    }

    // 2. No queue: the same items, one thread, native tract vs the component.
    let planner = Planner::new(DataApi::connect(&manager_api).expect("Data API"));
    let (items, keys): (Vec<WorkItem>, HashMap<String, HouseholdKey>) = runtime.block_on(async {
        let mut items = Vec::new();
        let mut keys = HashMap::new();
        for span in planner.meters().await.expect("meters") {
            let mut from = span.first_window();
            while from < span.ready_end() {
                let to = (from + MAX_WINDOWS_PER_STEP as i64 * 3600).min(span.ready_end());
                let planned = planner
                    .planned(&span.meter, &models, from, to)
                    .await
                    .expect("items")
                    .expect("consent permits planning");
                items.extend(planned.items);
                if let Some(key) = planned.key {
                    keys.insert(span.meter.clone(), key);
                }
                from = to;
            }
        }
        (items, keys)
    });
    assert_eq!(items.len(), published, "the manager published the plan");
    let sample: Vec<&WorkItem> = items.iter().take(2000).collect();
    let native = wattlet_nialm::Disaggregator::new();
    for item in sample.iter().take(20) {
        native.run(&item.model, &item.aggregate).expect("warm-up");
    }
    let started = Instant::now();
    for item in &sample {
        std::hint::black_box(native.run(&item.model, &item.aggregate).expect("native"));
    }
    let native_rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    let engine = wattlet_runtime::engine::engine().expect("engine");
    let stream_path = wattlet_runtime::locate::locate("wattlet-stream-analytics", None)
        .expect("the stream component");
    let component_path = wattlet_runtime::locate::locate("wattlet-nialm", None)
        .expect("the nialm component is built");
    let component = NialmComponent::load(&engine, &component_path).expect("load component");
    let mut instance = component.instantiate().expect("instantiate");
    for item in sample.iter().take(20) {
        instance
            .run(&item.model, &item.aggregate)
            .expect("no trap")
            .expect("warm-up");
    }
    let started = Instant::now();
    for item in &sample {
        std::hint::black_box(
            instance
                .run(&item.model, &item.aggregate)
                .expect("no trap")
                .expect("component"),
        );
    }
    let wasm_rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    println!(
        "compute only, one thread, {} items: native tract {native_rate:.0} items/s, component \
         {wasm_rate:.0} items/s, wasm/native {:.2}x",
        sample.len(),
        wasm_rate / native_rate
    );
    sealing_cost(&sample, wasm_rate);

    let worker_options = |nats_url: &str, concurrency: usize, sealing: Sealing| WorkerOptions {
        confidential: (sealing == Sealing::Sealed).then(|| ConfidentialOptions {
            broker: api.clone(),
            attester: wattlet_workers::tee::simulated(
                wattlet_workers::tee::Measured::NialmWorker {
                    nialm: &component_path,
                    stream: &stream_path,
                },
            )
            .expect("simulated TEE"),
        }),
        plaintext: sealing == Sealing::Plaintext,
        nats: nats_url.into(),
        api: api.clone(),
        component: component_path.clone(),
        stream_component: stream_path.clone(),
        limits: wattlet_runtime::sandbox::Limits::NIALM,
        settings: settings.clone(),
        batch: 16,
        concurrency,
        metrics_listen: None,
    };

    // 3. Workers draining the queue: one lane, then one per core (fresh items each time), each
    // with plaintext items and then with sealed ones (the manager's sealing, an attested worker
    // that opens items and seals results, the Data API opening them), in this same run.
    let drain = |concurrency: usize, sealing: Sealing| -> f64 {
        clear_results(&db);
        let label = match sealing {
            Sealing::Sealed => "sealed",
            Sealing::Plaintext => "plaintext",
        };
        // The first drain takes the manager's (plaintext) items; the others publish them again.
        if concurrency > 1 || sealing == Sealing::Sealed {
            // Their results were cleared, so they are new work.
            publish_again(
                &runtime,
                &nats.url,
                &items,
                &keys,
                sealing,
                &format!("{concurrency}-{label}"),
            );
        }
        let seconds = run_until_stored(
            &runtime,
            vec![worker_options(&nats.url, concurrency, sealing)],
            &db,
            items.len(),
        );
        let rate = items.len() as f64 / seconds;
        println!(
            "workers ({label}), {concurrency} lane(s) on {cores} core(s): {} items in \
             {seconds:.2} s = {rate:.0} items/s, {:.0} items/s per core used",
            items.len(),
            rate / concurrency.min(cores) as f64
        );
        rate
    };
    let one_lane = drain(1, Sealing::Plaintext);
    let one_lane_sealed = drain(1, Sealing::Sealed);
    let all_lanes = drain(cores, Sealing::Plaintext);
    let all_lanes_sealed = drain(cores, Sealing::Sealed);
    println!(
        "worker (1 lane) vs compute-only component: {:.2}x; sealed vs plaintext: {:.2}x (1 lane), \
         {:.2}x ({cores} lanes)",
        one_lane / wasm_rate,
        one_lane_sealed / one_lane,
        all_lanes_sealed / all_lanes
    );

    // 4. Latency: one item at a time through an idle worker.
    clear_results(&db);
    let samples = env_or("BENCH_LATENCY_ITEMS", 100usize);
    let options = worker_options(&nats.url, 1, Sealing::Plaintext);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = runtime.spawn(worker::run(options, async {
        let _ = stopped.await;
    }));
    let js = runtime
        .block_on(wattlet_workers::connect(&nats.url))
        .expect("connect");
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::with_capacity(samples);
    for (n, item) in items.iter().take(samples).enumerate() {
        let payload = Bytes::from(serde_json::to_vec(item).expect("json"));
        let started = Instant::now();
        runtime.block_on(async {
            js.send_publish(
                item::subject(&item.model),
                PublishMessage::build()
                    .payload(payload)
                    .message_id(format!("{}-latency", item.id())),
            )
            .await
            .expect("publish")
            .await
            .expect("ack")
        });
        while result_count(&db) <= n {
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = stop.send(());
    runtime
        .block_on(handle)
        .expect("worker task")
        .expect("worker");
    latencies.sort_by(f64::total_cmp);
    println!(
        "end-to-end latency (publish -> result committed, idle worker, {samples} items): p50 \
         {:.1} ms, p99 {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // 5. The queue on a three-server JetStream cluster with R3 streams (every item and ack
    // replicated to three servers, acknowledged by a quorum) against the single server, with 1,
    // 2 and 4 workers of one lane each, the same items each time.
    let sample = &items[..env_or("BENCH_CLUSTER_ITEMS", 3000usize).min(items.len())];
    let cluster = wattlet_testkit::nats_cluster(&dir.path().join("cluster"), 3);
    runtime.block_on(async {
        let js = cluster
            .connect_when_ready(Duration::from_secs(60))
            .await
            .expect("the cluster's JetStream");
        let r3 = QueueSettings {
            replicas: Some(3),
            ..QueueSettings::default()
        };
        wattlet_workers::ensure_streams(&js, &r3)
            .await
            .expect("R3 streams");
    });
    let mut rates = HashMap::new();
    let servers = [
        ("single server, R1", "single", &nats.url),
        ("3-server cluster, R3", "cluster", &cluster.url),
    ];
    for (label, short, url) in servers {
        for workers in [1, 2, 4] {
            clear_results(&db);
            let tag = format!("{short}-{workers}");
            publish_again(&runtime, url, sample, &keys, Sealing::Plaintext, &tag);
            let options = (0..workers)
                .map(|_| worker_options(url, 1, Sealing::Plaintext))
                .collect();
            let seconds = run_until_stored(&runtime, options, &db, sample.len());
            let rate = sample.len() as f64 / seconds;
            println!(
                "{label}: {workers} worker(s) of 1 lane, {} items in {seconds:.2} s = {rate:.0} items/s",
                sample.len()
            );
            rates.insert((label, workers), rate);
        }
    }
    for workers in [1, 2, 4] {
        println!(
            "{workers} worker(s): cluster (R3) / single server (R1) = {:.2}x",
            rates[&("3-server cluster, R3", workers)] / rates[&("single server, R1", workers)]
        );
    }
    drop(cluster);
    drop(nats);
    drop(served);
}

/// Publishes `items` again with ids tagged `tag` (the first copies are still in the dedup
/// window), sealed or not, awaiting every acknowledgement.
fn publish_again(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    items: &[WorkItem],
    keys: &HashMap<String, HouseholdKey>,
    sealing: Sealing,
    tag: &str,
) {
    runtime.block_on(async {
        let js = wattlet_workers::connect(url).await.expect("connect");
        let mut acks = Vec::new();
        for item in items {
            let payload = manager::payload(item, sealing, keys.get(&item.meter)).expect("payload");
            acks.push(
                js.send_publish(
                    item::subject(&item.model),
                    PublishMessage::build()
                        .payload(payload)
                        .message_id(format!("{}-{tag}", item.id())),
                )
                .await
                .expect("publish"),
            );
            if acks.len() == 8192 {
                for ack in acks.drain(..) {
                    ack.await.expect("ack");
                }
            }
        }
        for ack in acks {
            ack.await.expect("ack");
        }
    });
}

/// Runs one in-process worker per entry of `workers` until `expected` results are stored;
/// the seconds it took.
fn run_until_stored(
    runtime: &tokio::runtime::Runtime,
    workers: Vec<WorkerOptions>,
    db: &Path,
    expected: usize,
) -> f64 {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let handles: Vec<_> = workers
        .into_iter()
        .map(|options| {
            let mut stopped = stopped.clone();
            runtime.spawn(worker::run(options, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }))
        })
        .collect();
    while result_count(db) < expected {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for handle in handles {
        runtime
            .block_on(handle)
            .expect("worker task")
            .expect("worker");
    }
    seconds
}

/// 2b. What sealing adds per item, against the component's compute in the same run: the
/// manager seals the item, the worker opens it and seals the result, the Data API opens the
/// result (XChaCha20-Poly1305 under the household key). Items/s sealed vs plaintext is
/// `1 / (compute + crypto)` vs `1 / compute` (key releases are cached per household: one per
/// household and token lifetime, not per item).
fn sealing_cost(sample: &[&WorkItem], wasm_rate: f64) {
    use wattlet_sealing::{DataKey, KeyId, Purpose, Sealed};
    let key = DataKey::generate().expect("key");
    let id = KeyId::generate().expect("key id");
    let result = wattlet_workers::api::ComputedResult {
        item: String::new(),
        meter: String::new(),
        model: String::new(),
        model_sha256: "0".repeat(64),
        window_start: START,
        power_w: vec![123.456; item::OUTPUT_SAMPLES],
    };
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for item in sample {
            let id_text = item.id();
            let json = serde_json::to_vec(item).expect("json");
            let sealed = Sealed::seal(&key, &id, &id_text, Purpose::Item, &json).expect("seal");
            let wire = serde_json::to_vec(&sealed).expect("json");
            let back: Sealed = serde_json::from_slice(&wire).expect("sealed");
            let opened = back.open(&key, Purpose::Item).expect("open");
            let item: WorkItem = serde_json::from_slice(&opened).expect("item");
            let result = wattlet_workers::api::ComputedResult {
                item: item.id(),
                meter: item.meter.clone(),
                model: item.model.clone(),
                ..result.clone()
            };
            let plaintext = serde_json::to_vec(&result.to_json()).expect("json");
            let sealed = Sealed::seal(&key, &id, &result.item, Purpose::Result, &plaintext)
                .expect("seal result");
            std::hint::black_box(sealed.open(&key, Purpose::Result).expect("open result"));
        }
    }
    let per_item = started.elapsed().as_secs_f64() / (rounds * sample.len()) as f64;
    let compute = 1.0 / wasm_rate;
    let sealed_rate = 1.0 / (compute + per_item);
    println!(
        "sealing per item (seal item, open item, seal result, open result, with their JSON): \
         {:.1} us vs compute {:.1} us: sealed {sealed_rate:.0} items/s vs plaintext \
         {wasm_rate:.0} items/s = {:.3}x",
        per_item * 1e6,
        compute * 1e6,
        sealed_rate / wasm_rate
    );
}
