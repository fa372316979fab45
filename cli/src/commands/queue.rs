//! `wattlet manager nialm` and `wattlet worker nialm`: NIALM on NATS JetStream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use wattlet_runtime::sandbox::Limits;
use wattlet_workers::QueueSettings;
use wattlet_workers::api::ApiOptions;
use wattlet_workers::item::DEFAULT_MODELS;
use wattlet_workers::manager::{self, ManagerOptions};
use wattlet_workers::worker::{self, ConfidentialOptions, WorkerOptions};

const QUEUE_HELP: &str = "\
Items: one meter, one hour of 60 s output, one appliance model (kettle, fridge, washing_machine,
dishwasher, microwave), carrying the 158 minutes of aggregate power the model needs. They go to
the JetStream WorkQueue stream NIALM (subjects nialm.work.<model>) with Nats-Msg-Id = the item's
id, sealed under the household's data key (XChaCha20-Poly1305, bound to key id, item id and
purpose): NATS and its disks never hold readings. The manager reads meters, power readings and
household keys with a manager access token; workers store results, sealed with the same key,
with a worker access token (results only). Mint them as an administrator with
`POST /api/management/token {\"role\":\"manager\"}` (or \"worker\") and keep each in a file
(--token-file) or in WATTLET_API_TOKEN.

A worker attests with the key broker (/kbs/v0, --key-broker, default the --api URL) before it
fetches any item: its TEE's evidence (--tee auto: SEV-SNP or TDX; --tee simulated only where the
broker's attestation_policy allows simulated evidence) binds a fresh nonce, its ephemeral public
key and the SHA-256 of its executable and the nialm and stream components. Refused, it exits
with the reason and the items stay queued; accepted, the broker releases household keys to it
only (HPKE). Items that are not authentic (forged or altered on NATS, or sealed under a key the
broker no longer has: the household revoked consent) are dead-lettered. --plaintext (manager
and workers, and plaintext_results = allowed in the Data API) runs the queue in the clear, for
measurements and controls only.

The same queue carries load forecast items (subject nialm.work.forecast): per meter, whenever
the end of its last complete minute of data moved on by 5 minutes, its 60 s series of up to the
7 days before it, which a worker runs through Q1 of the stream component (DEBS 2014 load
forecast, slices of 1, 5, 15, 60 and 120 minutes); the latest forecast per meter is read with
GET /api/household/meter/:uuid/forecast. --models \"\" plans forecasts only, --no-forecast none.

Only households whose consent permits personal processing are planned, and a result is stored
only while it still does. Results are read through the Data API
(GET /api/household/meter/:uuid/disaggregation). Items that cannot be computed go to the stream
NIALM_DEAD (subject nialm.dead) with the reason in the Wattlet-Dead-Reason header.

The NATS server must have JetStream enabled (nats-server -js). Set WATTLET_LOG=info to see
every pass and item.";

#[derive(Debug, Subcommand)]
pub enum ManagerCommand {
    /// Publish NIALM and load forecast work items for every consenting meter with unprocessed
    /// data.
    #[command(after_help = QUEUE_HELP)]
    Nialm(ManagerArgs),
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Compute NIALM work items with the nialm component (load forecast items with the stream
    /// component) and store the results.
    #[command(after_help = QUEUE_HELP)]
    Nialm(WorkerArgs),
    /// Run the DEBS stream query tasks (wattlet stream): take a fair share, checkpoint, hand
    /// over.
    #[command(after_help = super::stream::STREAM_HELP)]
    Stream(super::stream::WorkerArgs),
}

#[derive(Debug, Args)]
struct Connection {
    #[command(flatten)]
    nats: super::nats::NatsArgs,
    /// The Data API: https://host[:port] (with --ca), or http://host[:port] where TLS ends in
    /// front of it (a local `spin up`).
    #[arg(long, value_name = "URL")]
    api: String,
    /// The CA of the Data API's server certificate (PEM); needed for https.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// A file holding the access token: role manager for the manager, worker for workers
    /// [default: the WATTLET_API_TOKEN variable].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl Connection {
    fn api(&self) -> anyhow::Result<ApiOptions> {
        let token = match &self.token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
            None => std::env::var("WATTLET_API_TOKEN").map_err(|_| {
                anyhow::anyhow!(
                    "no access token: give --token-file FILE or set WATTLET_API_TOKEN \
                     (an administrator mints one with POST /api/management/token \
                     {{\"role\":\"manager\"}} for the manager, {{\"role\":\"worker\"}} \
                     for workers)"
                )
            })?,
        };
        let token = token.trim();
        if token.is_empty() {
            anyhow::bail!("the access token is empty");
        }
        Ok(ApiOptions {
            url: self.api.clone(),
            ca: self.ca.clone(),
            token: token.to_owned(),
        })
    }
}

#[derive(Debug, Args)]
struct Queue {
    /// An item not acknowledged (and without progress signal) this long is redelivered.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    ack_wait: Duration,
    /// Deliveries of an item before it goes to the dead-letter stream.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_attempts: u32,
}

impl Queue {
    fn settings(&self) -> QueueSettings {
        QueueSettings {
            ack_wait: self.ack_wait,
            max_attempts: self.max_attempts,
            ..QueueSettings::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct ManagerArgs {
    #[command(flatten)]
    connection: Connection,
    /// Models to plan for (comma-separated; "" plans load forecasts only).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_MODELS.map(String::from))]
    models: Vec<String>,
    /// Time between passes.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Run one pass and exit.
    #[arg(long)]
    once: bool,
    /// Publish items in the clear instead of sealed under each household's data key. For
    /// measurements and controls only: NATS and its disks then hold the readings.
    #[arg(long)]
    plaintext: bool,
    /// Plan no load forecast items (by default each meter gets one whenever its data moved on
    /// by 5 minutes).
    #[arg(long)]
    no_forecast: bool,
    /// Copies of the NIALM work and dead-letter streams on a JetStream cluster (3 survives the
    /// loss of a server) [default: an existing stream keeps its count, a new one has 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: Option<u8>,
}

/// Which TEE the worker attests with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TeeArg {
    /// The machine's TEE: AMD SEV-SNP (/dev/sev-guest) or Intel TDX (configfs-tsm).
    Auto,
    /// A simulated TEE, for development and tests: its evidence proves nothing, and a key
    /// broker on its default policy refuses it.
    Simulated,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    queue: Queue,
    /// Items computed at once, each by its own component instance [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: Option<u16>,
    /// Items fetched and stored together.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch: u16,
    /// Directory holding the built components [default: $WATTLET_COMPONENTS, then the build's
    /// target/wasm32-wasip2/component].
    #[arg(long, value_name = "DIR")]
    components: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Longest one item may run in the component. An item stopped there is delivered again
    /// later and dead-lettered after --max-attempts deliveries; the worker goes on.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    item_time_limit: Duration,
    /// Most memory one component instance may use, in MiB (past it, as past the time limit).
    #[arg(long, value_name = "MIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=65536))]
    item_memory_limit: u32,
    /// The key broker (its /kbs/v0 endpoints; the same --ca as the Data API): the worker
    /// attests there before it fetches any item and gets household keys to open sealed items
    /// [default: the --api URL].
    #[arg(long, value_name = "URL")]
    key_broker: Option<String>,
    /// The TEE the worker attests with.
    #[arg(long, value_enum, default_value = "auto")]
    tee: TeeArg,
    /// Also compute plaintext items (published by `wattlet manager nialm --plaintext`; for
    /// measurements and controls only). Without --key-broker the worker does not attest and
    /// computes plaintext items only.
    #[arg(long)]
    plaintext: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run_manager(command: ManagerCommand) -> anyhow::Result<ExitCode> {
    let ManagerCommand::Nialm(args) = command;
    let options = ManagerOptions {
        api: args.connection.api()?,
        nats: args.connection.nats.connection(),
        models: args.models.into_iter().filter(|m| !m.is_empty()).collect(),
        settings: QueueSettings {
            replicas: args.replicas.map(usize::from),
            ..QueueSettings::default()
        },
        interval: (!args.once).then_some(args.interval),
        plaintext: args.plaintext,
        forecast: !args.no_forecast,
    };
    runtime()?.block_on(manager::run(options, super::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_worker(command: WorkerCommand) -> anyhow::Result<ExitCode> {
    let args = match command {
        WorkerCommand::Nialm(args) => args,
        WorkerCommand::Stream(args) => return super::stream::run_worker(args),
    };
    if args.queue.ack_wait < Duration::from_millis(100) {
        anyhow::bail!("--ack-wait must be at least 100ms");
    }
    // Armed only by the crash tests (FAILPOINTS=nialm::after-persist=5%return, …).
    let _failpoints = fail::FailScenario::setup();
    let component = wattlet_runtime::locate::locate("wattlet-nialm", args.components.as_deref())?;
    let stream_component =
        wattlet_runtime::locate::locate("wattlet-stream-analytics", args.components.as_deref())?;
    let measured = wattlet_workers::tee::Measured::NialmWorker {
        nialm: &component,
        stream: &stream_component,
    };
    let concurrency = args.concurrency.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let api = args.connection.api()?;
    let confidential = if args.plaintext && args.key_broker.is_none() {
        None
    } else {
        let attester = match args.tee {
            TeeArg::Auto => wattlet_workers::tee::detect(measured)?,
            TeeArg::Simulated => {
                tracing::warn!(
                    "SIMULATED TEE: --tee simulated attests with evidence that proves nothing; \
                     only a key broker whose policy allows `simulated` releases keys to it"
                );
                wattlet_workers::tee::simulated(measured)?
            }
        };
        Some(ConfidentialOptions {
            broker: ApiOptions {
                url: args.key_broker.clone().unwrap_or_else(|| api.url.clone()),
                ..api.clone()
            },
            attester,
        })
    };
    let options = WorkerOptions {
        api,
        confidential,
        plaintext: args.plaintext,
        nats: args.connection.nats.connection(),
        component,
        stream_component,
        limits: Limits {
            call: args.item_time_limit,
            memory: (args.item_memory_limit as usize) << 20,
        },
        settings: args.queue.settings(),
        batch: usize::from(args.batch),
        concurrency,
        metrics_listen: args.metrics_listen,
    };
    runtime()?.block_on(worker::run(options, super::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}
