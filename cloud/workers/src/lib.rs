//! NIALM at scale on NATS JetStream: a work manager publishes work items, stateless workers
//! compute them with the `nialm` component and persist the results (DESIGN.md "Work queues").
//!
//! - [`api`] is the Data API as the manager and workers use it: its `/api/worker/...`
//!   endpoints, with a `worker` access token. Nothing here opens the Data API's database.
//! - [`plan`] reads each meter's power readings through it and cuts the 60 s aggregate series
//!   into items: one meter, one hour of output minutes, one appliance model; and a meter's load
//!   forecast item, up to a week of the same series ([`item::ForecastItem`]).
//! - [`manager`] publishes the items not yet published with `Nats-Msg-Id` = the item's id and
//!   keeps a cursor per meter and model in JetStream ([`Cursors`]).
//! - [`worker`] fetches items, runs the component (nialm, or the stream operators' Q1 for a
//!   forecast item: [`forecast`]), stores the result keyed by the item through the Data API
//!   and only then acknowledges (double ack); after
//!   [`QueueSettings::max_attempts`] deliveries an item goes to the dead-letter stream instead.
//!
//! Nothing is lost or duplicated whenever a process dies: an item is removed from the WorkQueue
//! stream only by an acknowledgement, which comes after the result is committed; a redelivered
//! item whose result is already stored is acknowledged without a second row (the item id is the
//! key of the Data API's results).

pub mod api;
pub mod confidential;
pub mod forecast;
pub mod item;
pub mod manager;
pub mod plan;
pub mod server;
pub mod stream;
pub mod tee;
pub mod worker;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, Context, consumer};

/// The WorkQueue stream of NIALM items and the subject its items are published on: one subject
/// per model, `nialm.work.<model>`, and `nialm.work.forecast` for load forecast items (both
/// kinds share the stream, the consumer and the workers; [`item::Job`] tells them apart).
pub const STREAM: &str = "NIALM";
pub const WORK_SUBJECT: &str = "nialm.work";
/// Items that could not be processed, with the reason in [`DEAD_REASON_HEADER`].
pub const DEAD_STREAM: &str = "NIALM_DEAD";
pub const DEAD_SUBJECT: &str = "nialm.dead";
pub const DEAD_REASON_HEADER: &str = "Wattlet-Dead-Reason";
/// The durable pull consumer every worker shares: JetStream hands each item to one of them.
pub const CONSUMER: &str = "nialm-workers";
/// The manager's cursors ([`Cursors`]).
pub const CURSOR_STREAM: &str = "NIALM_CURSORS";
pub const CURSOR_SUBJECT: &str = "nialm.cursor";

/// How the queue behaves; the same for the manager (which creates the stream) and the workers
/// (which create the consumer).
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Without an acknowledgement or progress signal for this long, an item is redelivered.
    pub ack_wait: Duration,
    /// Deliveries before an item is dead-lettered.
    pub max_attempts: u32,
    /// A re-published item with the same id within this window is dropped by JetStream.
    pub duplicate_window: Duration,
    /// Copies of the work and dead-letter streams on a JetStream cluster (`--replicas`, the
    /// manager's): `None` keeps what an existing stream has (1 for a new one).
    pub replicas: Option<usize>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            ack_wait: Duration::from_secs(30),
            max_attempts: 5,
            duplicate_window: Duration::from_secs(600),
            replicas: None,
        }
    }
}

/// Where NATS is and how to reach it: its URL (a cluster's servers separated by commas) and, for
/// servers that require it, TLS with a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nats {
    pub url: String,
    pub tls: Option<NatsTls>,
}

/// TLS to NATS: the CA that signed the servers' certificates, and the client's certificate and
/// key (PEM files) for servers that authenticate clients by certificate (`tls { verify: true }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTls {
    pub ca: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Nats {
    /// `url` without TLS (a local `nats-server`).
    pub fn plain(url: impl Into<String>) -> Nats {
        Nats {
            url: url.into(),
            tls: None,
        }
    }
}

impl From<&str> for Nats {
    fn from(url: &str) -> Nats {
        Nats::plain(url)
    }
}

impl From<&String> for Nats {
    fn from(url: &String) -> Nats {
        Nats::plain(url.as_str())
    }
}

/// Connects to NATS and returns the JetStream context.
pub async fn connect(nats: impl Into<Nats>) -> anyhow::Result<Context> {
    // Up to this many publishes await their acknowledgement at once: the manager pipelines.
    connect_with_inflight(&nats.into(), 16_384).await
}

/// [`connect`], at most `max_ack_inflight` publishes awaiting their acknowledgement at once
/// (past it, a publish waits for one). The URL may list several servers of a cluster, separated
/// by commas: the client takes any that answers, and moves to another when it fails (it also
/// learns the cluster's other servers from the one it reached).
pub async fn connect_with_inflight(
    nats: &Nats,
    max_ack_inflight: usize,
) -> anyhow::Result<Context> {
    let url = &nats.url;
    let servers = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{url} is not a NATS URL (or a comma-separated list of them)"))?;
    // async-nats builds its rustls configuration with the process-wide provider, also when a
    // server asks a client that was given no TLS options to use TLS.
    wattlet_tls::install_default_provider();
    let mut options = async_nats::ConnectOptions::new().name("wattlet");
    if let Some(tls) = &nats.tls {
        for file in std::iter::once(&tls.ca).chain(tls.client.iter().flat_map(|(c, k)| [c, k])) {
            std::fs::metadata(file)
                .with_context(|| format!("cannot read the NATS TLS file {}", file.display()))?;
        }
        options = options
            .require_tls(true)
            .add_root_certificates(tls.ca.clone());
        if let Some((cert, key)) = &tls.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    let client = options
        .connect(servers.as_slice())
        .await
        .with_context(|| match &nats.tls {
            None => format!("cannot connect to NATS at {url} (is nats-server -js running?)"),
            Some(_) => format!(
                "cannot connect to NATS at {url} over TLS (is the CA the servers' and the \
                 client certificate one they accept?)"
            ),
        })?;
    Ok(jetstream::ContextBuilder::new()
        .max_ack_inflight(max_ack_inflight)
        .build(client))
}

/// `create_or_update_stream`, tried again (up to 5 times, 100 ms doubling): workers starting
/// together on a fresh server, and `wattlet stream results` polling beside them, race to create
/// the same streams, and a loser's create fails although the stream now exists; a cluster whose
/// servers have just (re)started answers JetStream requests only once it has elected leaders.
pub(crate) async fn create_or_update_stream(
    js: &Context,
    config: jetstream::stream::Config,
) -> anyhow::Result<()> {
    let mut wait = Duration::from_millis(100);
    for _ in 1..5 {
        if js.create_or_update_stream(config.clone()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    js.create_or_update_stream(config)
        .await
        .map_err(|e| anyhow::anyhow!("{e} ({:?})", e.kind()))?;
    Ok(())
}

/// Creates (or updates) the work and dead-letter streams. Idempotent.
pub async fn ensure_streams(js: &Context, settings: &QueueSettings) -> anyhow::Result<()> {
    let work = jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![format!("{WORK_SUBJECT}.>")],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    };
    let dead = jetstream::stream::Config {
        name: DEAD_STREAM.to_owned(),
        subjects: vec![DEAD_SUBJECT.to_owned()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    };
    for (config, what) in [(work, "work"), (dead, "dead-letter")] {
        let replicas = replicas(js, &config.name, settings.replicas).await?;
        create_or_update_stream(
            js,
            jetstream::stream::Config {
                num_replicas: replicas,
                ..config
            },
        )
        .await
        .with_context(|| {
            format!(
                "cannot create the NIALM {what} stream with {replicas} replica(s) (does the \
                 server have JetStream enabled, and as many servers in its cluster?)"
            )
        })?;
    }
    Ok(())
}

/// The shared durable consumer. JetStream itself would stop redelivering after `max_deliver`
/// and leave the item stuck in the stream; it is set one above the workers' budget so the last
/// delivery reaches a worker, which dead-letters it.
pub async fn ensure_consumer(
    js: &Context,
    settings: &QueueSettings,
) -> anyhow::Result<consumer::PullConsumer> {
    let stream = js
        .get_stream(STREAM)
        .await
        .context("the NIALM work stream does not exist yet")?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: i64::from(settings.max_attempts) + 1,
            // Every worker may hold a batch; bounded so one stalled worker cannot hoard the queue.
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .context("cannot create the NIALM consumer")
}

/// The copies a stream gets: `wanted`, or else whatever the stream has (1 for a new one), so
/// that a worker does not scale down what the manager set up.
async fn replicas(js: &Context, stream: &str, wanted: Option<usize>) -> anyhow::Result<usize> {
    Ok(match wanted {
        Some(n) => n,
        None => match js.get_stream(stream).await {
            Ok(mut stream) => stream.info().await?.config.num_replicas,
            Err(_) => 1,
        },
    })
}

/// The manager's cursors, one per meter and model: the next window start (Unix seconds) as the
/// last message of subject `nialm.cursor.<meter>.<model>` in a stream keeping one per subject;
/// for forecasts (`<model>` = `forecast`) the `at` of the last item published.
/// (What a JetStream key-value bucket is; Debian's nats-server 2.9 and async-nats 0.46 disagree
/// on the bucket API's replies, the stream API they agree on.)
pub struct Cursors {
    js: Context,
    stream: jetstream::stream::Stream,
}

impl Cursors {
    /// Opens (creating) the cursor stream, with as many copies as the work stream
    /// ([`QueueSettings::replicas`]).
    pub async fn open(js: &Context, settings: &QueueSettings) -> anyhow::Result<Self> {
        let replicas = replicas(js, CURSOR_STREAM, settings.replicas).await?;
        create_or_update_stream(
            js,
            jetstream::stream::Config {
                name: CURSOR_STREAM.to_owned(),
                subjects: vec![format!("{CURSOR_SUBJECT}.>")],
                max_messages_per_subject: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await
        .with_context(|| {
            format!("cannot create the manager's cursor stream with {replicas} replica(s)")
        })?;
        let stream = js.get_stream(CURSOR_STREAM).await?;
        Ok(Cursors {
            js: js.clone(),
            stream,
        })
    }

    pub async fn get(&self, meter: &str, model: &str) -> anyhow::Result<Option<i64>> {
        let subject = cursor_subject(meter, model);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Some)
                .with_context(|| format!("cursor {subject} holds no Unix time")),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read cursor {subject}")),
        }
    }

    pub async fn set(&self, meter: &str, model: &str, next: i64) -> anyhow::Result<()> {
        self.js
            .publish(cursor_subject(meter, model), next.to_string().into())
            .await?
            .await
            .context("cannot advance the manager's cursor")?;
        Ok(())
    }
}

fn cursor_subject(meter: &str, model: &str) -> String {
    format!("{CURSOR_SUBJECT}.{meter}.{model}")
}
