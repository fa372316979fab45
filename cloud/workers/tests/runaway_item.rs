//! A work item the NIALM component never finishes is stopped at the worker's time limit,
//! delivered again, and dead-lettered after its attempts (reported in the logs, the metrics and
//! the dead-letter stream with the reason), while the other items of its batch are computed and
//! stored. All real: the Data API (`spin.toml`) over mutual TLS, a `nats-server -js`, the
//! worker with the real NIALM component behind `tests/components/runaway-nialm` (composed by
//! `./dev`), which loops for ever on an aggregate that starts with its marker.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use wattlet_runtime::sandbox::Limits;
use wattlet_testkit::{Cloud, free_port, metric, scrape, uuid4, wait_for};
use wattlet_workers::api::ApiOptions;
use wattlet_workers::item::{INPUT_SAMPLES, WINDOW_SECONDS, WorkItem, subject};
use wattlet_workers::worker::{self, WorkerOptions};
use wattlet_workers::{DEAD_REASON_HEADER, DEAD_STREAM, QueueSettings};

/// The runaway component's marker: an aggregate starting with it makes `run` loop for ever
/// (tests/components/runaway-nialm).
const LOOP_W: f32 = -1.0;
/// Generous for a real item (the first use of a model optimizes it), short for a test.
const CALL_LIMIT: Duration = Duration::from_secs(4);
const ATTEMPTS: u32 = 2;

fn component() -> std::path::PathBuf {
    wattlet_runtime::locate::locate("wattlet-runaway-nialm-composed", None).unwrap_or_else(|e| {
        panic!("{e} (./dev test composes it with the real NIALM component: see build_components)")
    })
}

fn item(meter: &str, hour: i64, first: f32) -> WorkItem {
    let mut aggregate: Vec<f32> = (0..INPUT_SAMPLES)
        .map(|i| 150.0 + if i % 40 < 3 { 2000.0 } else { 0.0 })
        .collect();
    aggregate[0] = first;
    WorkItem {
        meter: meter.to_owned(),
        model: "kettle".to_owned(),
        window_start: 1_793_491_200 + hour * WINDOW_SECONDS,
        aggregate,
    }
}

fn stored_items(db: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open database");
    let mut statement = db
        .prepare("SELECT item FROM disaggregation")
        .expect("query");
    statement
        .query_map([], |row| row.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("items")
}

#[test]
fn a_hung_item_is_stopped_retried_and_dead_lettered_while_others_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Plaintext items and results: this test is about the time limit, not the sealing (which
    // cli/tests/nialm_queue.rs covers with attested workers).
    let cloud = Cloud::start_with(dir.path(), &[("plaintext_results", "allowed")]);
    let nats = wattlet_testkit::nats(dir.path());
    let meter = uuid4();
    let device = cloud.register("Runaway", "runaway@example.org", "dev-runaway", &meter);
    cloud.grant(&device);
    let api = ApiOptions {
        url: cloud.url(),
        ca: Some(cloud.ca.ca_cert_path()),
        token: cloud.mint("worker"),
    };
    let settings = QueueSettings {
        ack_wait: Duration::from_secs(2),
        max_attempts: ATTEMPTS,
        ..QueueSettings::default()
    };

    // The hung item first in its batch, two real ones behind it.
    let hung = item(&meter, 0, LOOP_W);
    let real = [item(&meter, 1, 150.0), item(&meter, 2, 150.0)];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let js = runtime.block_on(async {
        let js = wattlet_workers::connect(&nats.url).await.expect("NATS");
        wattlet_workers::ensure_streams(&js, &settings)
            .await
            .expect("streams");
        for item in std::iter::once(&hung).chain(&real) {
            js.publish(
                subject(&item.model),
                serde_json::to_vec(item).expect("json").into(),
            )
            .await
            .expect("publish")
            .await
            .expect("ack");
        }
        js
    });

    let metrics = free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = WorkerOptions {
        nats: (&nats.url).into(),
        api,
        component: component(),
        stream_component: wattlet_runtime::locate::locate("wattlet-stream-analytics", None)
            .expect("the stream component"),
        limits: Limits {
            call: CALL_LIMIT,
            ..Limits::NIALM
        },
        settings,
        batch: 8,
        concurrency: 1,
        metrics_listen: Some(metrics),
        confidential: None,
        plaintext: true,
    };
    let started = Instant::now();
    let worker = runtime.spawn(worker::run(options, async {
        let _ = stopped.await;
    }));

    let db = cloud.database();
    let mut stored = Vec::new();
    wait_for(Duration::from_secs(120), "the real items' results", || {
        stored = stored_items(&db);
        stored.len() >= real.len()
    });
    let mut expected: Vec<String> = real.iter().map(WorkItem::id).collect();
    expected.sort();
    stored.sort();
    assert_eq!(
        stored, expected,
        "the real items, and only they, are stored"
    );

    let dead = |js: &jetstream::Context| {
        runtime.block_on(async {
            let mut stream = js
                .get_stream(DEAD_STREAM)
                .await
                .expect("dead-letter stream");
            let count = stream.info().await.expect("info").state.messages;
            let first = match count {
                0 => None,
                _ => Some(stream.get_raw_message(1).await.expect("dead letter")),
            };
            (count, first)
        })
    };
    let mut dead_letter = None;
    wait_for(
        CALL_LIMIT * (ATTEMPTS + 2) + Duration::from_secs(60),
        "the hung item in the dead-letter stream",
        || {
            let (count, first) = dead(&js);
            assert!(count <= 1, "only the hung item is dead-lettered");
            dead_letter = first;
            dead_letter.is_some()
        },
    );
    let elapsed = started.elapsed();
    let dead_letter = dead_letter.expect("dead letter");
    let dead_item: WorkItem = serde_json::from_slice(&dead_letter.payload).expect("an item");
    assert_eq!(dead_item.id(), hung.id());
    let reason = dead_letter
        .headers
        .get(DEAD_REASON_HEADER)
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(
        reason.contains(&format!("failed {ATTEMPTS} deliveries")),
        "{reason}"
    );
    // Each attempt was stopped at the limit, not earlier.
    assert!(elapsed >= CALL_LIMIT * ATTEMPTS, "{elapsed:?}");

    let page = scrape(metrics);
    let count = |outcome: &str| {
        metric(
            &page,
            &format!("wattlet_nialm_worker_items_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(count("failed"), f64::from(ATTEMPTS), "{page}");
    assert_eq!(count("dead_lettered"), 1.0, "{page}");
    assert_eq!(count("stored"), real.len() as f64, "{page}");

    let _ = stop.send(());
    runtime
        .block_on(worker)
        .expect("worker task")
        .expect("the worker ends cleanly");
    assert_eq!(stored_items(&db).len(), real.len());
    runtime.shutdown_background();
}
