//! The DEBS 2014 queries end to end through JetStream: throughput with 1 and 2 workers (the
//! operators as the WIT component and natively, in the same run), the latency from an event's
//! publication to the forecast it made possible, and the memory a house's state takes.
//!
//! Set-up: `BENCH_HOUSES` houses (default 40) with `BENCH_PLUGS` plugs (default 2,125) and
//! `BENCH_MINUTES` minutes (default 15) of generated events; a real `nats-server -js` on loopback;
//! `BENCH_PARTITIONS` partitions (default 8).
//!
//! Measured:
//! 1. `replay` at full speed into `DEBS_EVENTS`: events/s (publish, await every acknowledgement);
//! 2. workers (`wattlet worker stream`'s loop, in this process) draining the whole input from a
//!    fresh start, until every task is complete: events/s, this process's CPU seconds and the
//!    nats-server's; 1 and 2 workers, the component and native operators. Every event goes to two
//!    tasks (its house's Q1 task and Q2), so it is read twice from the stream;
//!    Then the same input sealed under a dataset key (a sealed run: batches, rows and
//!    checkpoints encrypted; the workers hold the key as if the broker had released it):
//!    replay and drains with the component, 1 and 2 workers;
//! 3. latency: 2 component workers running while `replay` paces the events at
//!    `BENCH_LATENCY_LOAD` (default 0.5) of the 2-worker throughput. Per house forecast row, the
//!    time from the publication of the house's first event with `ts ≥ at + lateness` (the event
//!    that lets the output point `at` through the reordering; its message's JetStream timestamp)
//!    to the publication of the message holding the row (one server clock): p50, p99, max;
//! 4. memory: the heap (a counting allocator) the native operators hold for one house of
//!    `plugs / houses` plugs after 24 h and 48 h of its events (Q1), and after 25 h (Q2: the
//!    24 h window full), plus the snapshot sizes.
//!
//! Run (after `./dev test` or `./dev run` built the components):
//!       `cargo bench -p wattlet-workers --bench stream_queue`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt as _;
use wattlet_runtime::stream::StreamComponent;
use wattlet_sealing::{DataKey, KeyId};
use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::reorder::DEFAULT_LATENESS;
use wattlet_stream_analytics::{Config, Event, Pipeline, Queries};
use wattlet_testkit::env_or;
use wattlet_testkit::heap::{self, Counting};
use wattlet_workers::stream::operator::Operators;
use wattlet_workers::stream::replay::replay;
use wattlet_workers::stream::sealed::{Payloads, RunKey};
use wattlet_workers::stream::task::{self, RunKeys, StreamWorkerOptions};
use wattlet_workers::stream::{
    COORD_STREAM, DEAD_STREAM, EVENTS_STREAM, OUT_STREAM, OUT_SUBJECT, STATE_STREAM, StreamMeta,
    ensure_events_stream, results,
};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// CPU seconds (user + system) of a process from /proc, `self` or a pid.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn generate(houses: u32, plugs: u32, minutes: u32, seed: u64) -> Vec<Event> {
    Generator::new(GenConfig {
        seed,
        houses,
        plugs,
        duration: minutes * 60,
        ..GenConfig::default()
    })
    .collect()
}

/// Every message of `stream`: (subject, payload, JetStream timestamp in ns).
async fn read_all(js: &Context, stream: &str) -> Vec<(String, Vec<u8>, i128)> {
    let mut stream = js.get_stream(stream).await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut all = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.expect("message");
        let info = message.info().expect("info");
        let (seq, published) = (info.stream_sequence, info.published.unix_timestamp_nanos());
        all.push((
            message.subject.to_string(),
            message.payload.to_vec(),
            published,
        ));
        if seq >= last {
            break;
        }
    }
    all
}

/// Removes a run's outputs, checkpoints and leases (the input stays).
async fn reset(js: &Context) {
    for name in [OUT_STREAM, STATE_STREAM, COORD_STREAM, DEAD_STREAM] {
        let _ = js.delete_stream(name).await;
    }
}

async fn all_done(js: &Context) -> bool {
    let status = results::status(js).await.expect("status");
    !status.is_empty()
        && status
            .iter()
            .all(|(_, m)| m.as_ref().is_some_and(|m| m.done))
}

/// Starts `n` workers on `operators`; returns their shutdown senders and handles.
fn start_workers(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    n: usize,
    operators: &Operators,
    key: Option<&(KeyId, DataKey)>,
    tag: &str,
) -> Vec<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    (0..n)
        .map(|i| {
            let options = StreamWorkerOptions {
                operators: operators.clone(),
                ..StreamWorkerOptions::new(url, &format!("{tag}{i}"))
            };
            let keys = match key {
                Some((id, key)) => RunKeys::Held(RunKey::new(id.clone(), key.clone())),
                None => RunKeys::None,
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let handle = runtime.spawn(async move {
                task::run(options, keys, async {
                    let _ = stopped.await;
                })
                .await
                .expect("stream worker");
            });
            (stop, handle)
        })
        .collect()
}

fn stop_workers(
    runtime: &tokio::runtime::Runtime,
    workers: Vec<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
) {
    for (stop, handle) in workers {
        let _ = stop.send(());
        runtime.block_on(handle).expect("worker task");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let houses = env_or("BENCH_HOUSES", 40u32);
    let plugs = env_or("BENCH_PLUGS", 2125u32);
    let minutes = env_or("BENCH_MINUTES", 15u32);
    let partitions = env_or("BENCH_PARTITIONS", 8u32);
    let load = env_or("BENCH_LATENCY_LOAD", 0.5f64);
    let lateness = DEFAULT_LATENESS;
    let meta = StreamMeta {
        partitions,
        lateness,
        key_id: None,
    };
    let key = (
        KeyId::generate().expect("key id"),
        DataKey::generate().expect("key"),
    );
    let sealed = Payloads::sealed(RunKey::new(key.0.clone(), key.1.clone()));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = wattlet_testkit::nats(dir.path());
    let nats_pid = nats.pid().to_string();
    let js = runtime
        .block_on(wattlet_workers::connect(&nats.url))
        .expect("connect");
    let component = wattlet_runtime::locate::locate("wattlet-stream-analytics", None)
        .expect("the stream component (./dev test or ./dev run builds it)");
    let engine = wattlet_runtime::engine::engine().expect("engine");
    let component = StreamComponent::load(&engine, &component).expect("load the component");

    let started = Instant::now();
    let events = generate(houses, plugs, minutes, 1);
    let n = events.len() as f64;
    let event_span = f64::from(events.iter().map(|e| e.ts).max().unwrap_or(0) - events[0].ts);
    println!(
        "set-up: {houses} houses, {plugs} plugs, {minutes} min: {} events generated in {:.1} s; \
         {partitions} partitions, {cores} cores",
        events.len(),
        started.elapsed().as_secs_f64()
    );

    // 1. and 2. The replay, then draining the input; in the clear, then sealed.
    let mut two_worker_rate = 0.0;
    let runs = [
        ("plain", &Payloads::Plain, None),
        ("sealed", &sealed, Some(&key)),
    ];
    for (run, payloads, key) in runs {
        runtime.block_on(async {
            reset(&js).await;
            let _ = js.delete_stream(EVENTS_STREAM).await;
        });
        let started = Instant::now();
        let stats = runtime
            .block_on(replay(
                &js,
                events.iter().copied().map(Ok),
                &meta,
                payloads,
                None,
                |_| {},
            ))
            .expect("replay");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "replay, {run}: {} messages in {secs:.1} s: {:.0} events/s",
            stats.sent,
            n / secs
        );
        let operators: &[(&str, Operators)] = if key.is_some() {
            &[("component", Operators::Component(component.clone()))]
        } else {
            &[
                ("component", Operators::Component(component.clone())),
                ("native", Operators::Native),
            ]
        };
        for (label, operators) in operators {
            for workers in [1, 2] {
                runtime.block_on(reset(&js));
                let (cpu0, nats0) = (cpu_seconds("self"), cpu_seconds(&nats_pid));
                let started = Instant::now();
                let running = start_workers(&runtime, &nats.url, workers, operators, key, label);
                while !runtime.block_on(all_done(&js)) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let secs = started.elapsed().as_secs_f64();
                let (cpu, nats_cpu) = (cpu_seconds("self") - cpu0, cpu_seconds(&nats_pid) - nats0);
                stop_workers(&runtime, running);
                let rows: u64 = runtime.block_on(async {
                    let mut rows = 0;
                    for (kind, _) in results::status(&js).await.expect("status") {
                        let task = results::write_task_rows(
                            &js,
                            payloads,
                            &kind.name(),
                            &mut std::io::sink(),
                        )
                        .await
                        .expect("outputs");
                        rows += task.next;
                    }
                    rows
                });
                println!(
                    "drain, {run}, {label}, {workers} worker(s): {secs:.1} s, {:.0} events/s; worker \
                 CPU {cpu:.1} s ({:.0} events per CPU-second), nats-server CPU {nats_cpu:.1} s; \
                 {rows} rows",
                    n / secs,
                    n / cpu
                );
                if run == "plain" && *label == "component" && workers == 2 {
                    two_worker_rate = n / secs;
                }
            }
        }
    }

    // 3. Latency under a paced replay.
    runtime.block_on(async {
        reset(&js).await;
        let _ = js.delete_stream(EVENTS_STREAM).await;
    });
    // The input stream first and the tasks taken, so that no row waits for a worker to start.
    runtime
        .block_on(ensure_events_stream(&js, &meta))
        .expect("input stream");
    let running = start_workers(
        &runtime,
        &nats.url,
        2,
        &Operators::Component(component),
        None,
        "l",
    );
    std::thread::sleep(Duration::from_secs(3));
    let rate = load * two_worker_rate / (n / event_span.max(1.0));
    let started = Instant::now();
    runtime
        .block_on(replay(
            &js,
            events.iter().copied().map(Ok),
            &meta,
            &Payloads::Plain,
            Some(rate),
            |_| {},
        ))
        .expect("paced replay");
    let replay_secs = started.elapsed().as_secs_f64();
    while !runtime.block_on(all_done(&js)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_workers(&runtime, running);
    let (inputs, outputs) = runtime.block_on(async {
        (
            read_all(&js, EVENTS_STREAM).await,
            read_all(&js, OUT_STREAM).await,
        )
    });
    // Per house: the running maximum event time and when that event was published.
    let mut by_house: HashMap<u32, Vec<(u32, i128)>> = HashMap::new();
    for (_, payload, published) in &inputs {
        let text = std::str::from_utf8(payload).expect("replayed text");
        // The end markers are empty.
        for line in text.lines() {
            let e = wattlet_stream_analytics::event::parse_line(line, 0).expect("an event");
            let seen = by_house.entry(e.house).or_default();
            let max = seen.last().map_or(e.ts, |&(m, _)| m.max(e.ts));
            seen.push((max, *published));
        }
    }
    let mut latencies = Vec::new();
    let mut at_finish = 0;
    let q1_subject = format!("{OUT_SUBJECT}.q1-");
    let rows = outputs
        .iter()
        .filter(|(s, _, _)| s.starts_with(&q1_subject))
        .flat_map(|(_, payload, published)| {
            let text = String::from_utf8_lossy(payload).into_owned();
            let rows: Vec<String> = text.split('\n').map(str::to_owned).collect();
            rows.into_iter().map(move |row| (row, *published))
        });
    for (row, published) in rows {
        let fields: Vec<&str> = row.split(',').collect();
        if fields[0] != "house" {
            continue;
        }
        let at: u32 = fields[1].parse().expect("at");
        let house: u32 = fields[3].parse().expect("house");
        let seen = &by_house[&house];
        let due = at + lateness;
        let i = seen.partition_point(|&(max, _)| max < due);
        match seen.get(i) {
            Some(&(_, sent)) => latencies.push((published - sent) as f64 / 1e6),
            None => at_finish += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency, 2 component workers, replay at {rate:.0}x event time ({:.0} events/s, {:.0} % \
         of the 2-worker drain rate) for {replay_secs:.1} s: {} house forecast rows, p50 {:.1} \
         ms, p99 {:.1} ms, max {:.1} ms ({at_finish} rows emitted at the end of the input)",
        n / replay_secs,
        100.0 * load,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    drop(nats);

    // 4. Memory per house.
    let house_plugs = (plugs / houses).max(1);
    let one_house = generate(1, house_plugs, 49 * 60, 2);
    let q1 = Config {
        lateness,
        queries: Queries {
            forecast: true,
            outliers: false,
        },
        per_house: true,
    };
    let before = heap::in_use();
    let mut pipeline = Pipeline::new(q1);
    let day = one_house[0].ts + 86_400;
    let mut day_one = None;
    for e in &one_house {
        if day_one.is_none() && e.ts >= day {
            day_one = Some((heap::in_use() - before, pipeline.snapshot().len()));
        }
        pipeline.push(e);
    }
    let (day_one_heap, day_one_snapshot) = day_one.expect("two days of events");
    let (two_days_heap, two_days_snapshot) = (heap::in_use() - before, pipeline.snapshot().len());
    drop(pipeline);
    let q2 = Config {
        queries: Queries {
            forecast: false,
            outliers: true,
        },
        per_house: false,
        ..q1
    };
    let before = heap::in_use();
    let mut pipeline = Pipeline::new(q2);
    for e in one_house.iter().take_while(|e| e.ts < day + 3600) {
        pipeline.push(e);
    }
    let (q2_heap, q2_snapshot) = (heap::in_use() - before, pipeline.snapshot().len());
    let mib = |b: isize| b as f64 / (1 << 20) as f64;
    println!(
        "memory per house ({house_plugs} plugs, {} events over 49 h): Q1 {:.1} MiB after 24 h, \
         {:.1} MiB after 48 h (snapshots {:.1} / {:.1} MiB); Q2 {:.1} MiB after 25 h (snapshot \
         {:.1} MiB)",
        one_house.len(),
        mib(day_one_heap),
        mib(two_days_heap),
        mib(day_one_snapshot as isize),
        mib(two_days_snapshot as isize),
        mib(q2_heap),
        mib(q2_snapshot as isize)
    );
}
