//! What TLS with client certificates costs the queue: JetStream publishes (each awaiting its
//! acknowledgement, pipelined as the manager does) and an ordered consumer reading them back, on
//! a plain `nats-server -js` and on one that requires TLS and a client certificate
//! (`tls { verify: true }`, as the operations stage runs NATS), in the same run, rounds
//! alternating.
//!
//! `BENCH_MESSAGES` messages (default 50,000) of `BENCH_BYTES` bytes (default 1,024: a sealed
//! NIALM item is a few KiB), 3 rounds each; the median round is reported.
//!
//! Run: `cargo bench -p wattlet-workers --bench nats_tls`

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use futures::StreamExt as _;
use wattlet_testkit::{env_or, pki::tls_nats, process::nats};

const STREAM: &str = "BENCH";

/// Publishes `messages` payloads, at most 1,024 awaiting their acknowledgement at once.
async fn publish(js: &Context, messages: usize, payload: &bytes::Bytes) -> Duration {
    let start = Instant::now();
    let mut pending = Vec::with_capacity(1024);
    for _ in 0..messages {
        pending.push(
            js.publish("bench.items", payload.clone())
                .await
                .expect("publish"),
        );
        if pending.len() == 1024 {
            for ack in pending.drain(..) {
                ack.await.expect("acknowledged");
            }
        }
    }
    for ack in pending {
        ack.await.expect("acknowledged");
    }
    start.elapsed()
}

/// Reads the whole stream back with an ordered consumer.
async fn consume(js: &Context, messages: usize) -> Duration {
    let stream = js.get_stream(STREAM).await.expect("stream");
    let start = Instant::now();
    let mut read = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("consumer")
        .messages()
        .await
        .expect("messages");
    for _ in 0..messages {
        read.next().await.expect("a message").expect("no error");
    }
    start.elapsed()
}

/// One round on `js`: a fresh stream, the publishes, the read-back.
async fn round(js: &Context, messages: usize, payload: &bytes::Bytes) -> (Duration, Duration) {
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["bench.>".into()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("stream");
    let published = publish(js, messages, payload).await;
    (published, consume(js, messages).await)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let messages: usize = env_or("BENCH_MESSAGES", 50_000);
    let bytes: usize = env_or("BENCH_BYTES", 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("plain")).expect("dir");
    std::fs::create_dir_all(dir.path().join("tls")).expect("dir");
    let plain_server = nats(&dir.path().join("plain"));
    let tls_server = tls_nats(&dir.path().join("tls"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let plain = runtime
        .block_on(wattlet_workers::connect(&plain_server.url))
        .expect("plain NATS");
    let tls = runtime
        .block_on(wattlet_workers::connect(tls_server.client_connection()))
        .expect("NATS over TLS");
    let payload = bytes::Bytes::from(vec![0x5a; bytes]);
    let (mut plain_runs, mut tls_runs) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain_runs.push(runtime.block_on(round(&plain, messages, &payload)));
        tls_runs.push(runtime.block_on(round(&tls, messages, &payload)));
    }
    let rate = |d: Duration| messages as f64 / d.as_secs_f64();
    println!("{messages} messages of {bytes} B, median of 3 rounds:");
    let mut rows = Vec::new();
    for (what, runs) in [
        ("plain", &plain_runs),
        ("TLS + client certificate", &tls_runs),
    ] {
        let publish = median(runs.iter().map(|r| r.0).collect());
        let read = median(runs.iter().map(|r| r.1).collect());
        println!(
            "{what:<26} publish {:>9.0} msg/s   read back {:>9.0} msg/s",
            rate(publish),
            rate(read)
        );
        rows.push((rate(publish), rate(read)));
    }
    println!(
        "TLS / plain: publish {:.2}, read back {:.2}",
        rows[1].0 / rows[0].0,
        rows[1].1 / rows[0].1
    );
}
