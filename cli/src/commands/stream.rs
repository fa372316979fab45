//! `wattlet stream …` and `wattlet worker stream`: the DEBS 2014 queries on NATS JetStream.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::nats::NatsArgs;
use anyhow::Context;
use clap::{Args, Subcommand};
use wattlet_runtime::stream::StreamComponent;
use wattlet_stream_analytics::Event;
use wattlet_stream_analytics::event::EventReader;
use wattlet_stream_analytics::generate::{GenConfig, Generator, write_csv};
use wattlet_stream_analytics::refit::{RefitConfig, RefitReader};
use wattlet_workers::api::ApiOptions;
use wattlet_workers::confidential::ConfidentialOptions;
use wattlet_workers::stream::operator::{Operators, run_tasks};
use wattlet_workers::stream::sealed::{Payloads, RunKey};
use wattlet_workers::stream::task::{RunKeys, StreamWorkerOptions};
use wattlet_workers::stream::{self as debs, StreamMeta};

use super::queue::TeeArg;

pub const STREAM_HELP: &str = "\
The DEBS 2014 Grand Challenge queries (Q1: load forecast per house and plug; Q2: outliers) over
smart-plug events, on NATS JetStream, exactly once and elastic.

A run: `wattlet stream generate -o events.csv.gz` (or `convert-refit` a REFIT house), start
workers (`wattlet worker stream --id w1`, as many as wanted, any time), `wattlet stream replay
events.csv.gz`, then `wattlet stream results --wait 10m -o results.csv`. `wattlet stream
reference events.csv.gz -o want.csv` computes the same file in process, for comparison.

Streams: DEBS_EVENTS (input, subjects debs.events.<house % P>, a message a batch of up to 1,024
events of at most one second, one CSV line each; P and the lateness bound are fixed by the first
replay and kept in the stream's description), DEBS_OUT (rows, subject debs.out.<task>, up to 256
rows a message, one CSV line each; Nats-Msg-Id <task>-<index> and header Debs-Index name the
first row's index, Debs-Rows their count), DEBS_STATE (checkpoints), DEBS_COORD (leases
debs.lease.<task>, members debs.member.<id>), DEBS_DEAD (input messages that are not batches of events, reason in
Wattlet-Dead-Reason). Tasks: q1-<p> (Q1 of the houses of partition p, one pipeline per house)
and outliers (Q2 over all events in arrival order).

A sealed run (the way to run real data): an administrator makes the run's dataset key at the key
broker (`wattlet stream key create --key-broker URL --ca CA --name NAME -o run.key`, the key is
shown this once: keep the file private), `replay --key run.key` seals every batch under it
(XChaCha20-Poly1305, bound to the batch), workers started with `--key-broker URL --ca CA` attest
(--tee auto: SEV-SNP or TDX; --tee simulated only where the broker's policy allows it) and get
the key released to them only, and seal rows and checkpoints under it; `results --key run.key`
opens the rows. NATS and its disks then hold no reading. A payload that is not sealed under the
run's key for its place (forged, moved, or a batch published again) is dead-lettered.
`wattlet stream key delete run.key` destroys the key at the broker: every copy of the run is
unreadable from then on, and running workers stop within a token's lifetime (10 min).

Every row is published once: a task's rows are a deterministic function of its input; a task
restarts from its checkpoint and skips the rows already in DEBS_OUT. Workers hold tasks through
leases (3 s, renewed every second) and share them fairly; kill one and the others (or its
restart with the same --id) take its tasks over. For a new run delete the DEBS_* streams
(e.g. `nats stream rm`) or use a fresh server. The NATS server needs JetStream (nats-server -js).
Results CSV: task,index,kind,... with kind house (at,ts,house,slice_len,load_w), plug
(at,ts,house,household,plug,slice_len,load_w) or outlier (ts,window,house,above,plugs,percent).";

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Write challenge-shaped events (CSV; gzip when FILE ends in .gz).
    #[command(after_help = STREAM_HELP)]
    Generate(GenerateArgs),
    /// Convert a REFIT house file (CSV, .gz allowed) to challenge events.
    #[command(after_help = STREAM_HELP)]
    ConvertRefit(ConvertArgs),
    /// Publish an event file onto the input stream, in order, then the end markers.
    #[command(after_help = STREAM_HELP)]
    Replay(ReplayArgs),
    /// Write every task's rows from the output stream, sorted per task by index.
    #[command(after_help = STREAM_HELP)]
    Results(ResultsArgs),
    /// Compute the rows the workers must publish, in this process (same CSV as `results`).
    #[command(after_help = STREAM_HELP)]
    Reference(ReferenceArgs),
    /// Make or destroy a sealed run's dataset key at the key broker (administrators).
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make a dataset key and write it to a new file (mode 0600): the broker shows it this
    /// once.
    #[command(after_help = STREAM_HELP)]
    Create(KeyCreateArgs),
    /// Destroy a dataset key at the broker: the run it sealed becomes unreadable.
    #[command(after_help = STREAM_HELP)]
    Delete(KeyDeleteArgs),
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// The key broker (the Data API's host: https://host[:port]).
    #[arg(long, value_name = "URL")]
    key_broker: String,
    /// The CA of the broker's server certificate (PEM); needed for https.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// A file holding the administrators' token [default: the WATTLET_API_TOKEN variable].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl BrokerArgs {
    fn options(&self) -> anyhow::Result<ApiOptions> {
        let token = match &self.token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
            None => std::env::var("WATTLET_API_TOKEN").map_err(|_| {
                anyhow::anyhow!(
                    "no administrators' token: give --token-file FILE or set WATTLET_API_TOKEN"
                )
            })?,
        };
        anyhow::ensure!(
            !token.trim().is_empty(),
            "the administrators' token is empty"
        );
        Ok(ApiOptions {
            url: self.key_broker.clone(),
            ca: self.ca.clone(),
            token: token.trim().to_owned(),
        })
    }
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// What the data set is (shown to administrators).
    #[arg(long)]
    name: String,
    /// The key file to write (must not exist).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeyDeleteArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// The run's key file.
    key: PathBuf,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 40)]
    houses: u32,
    /// Plugs in all, spread over the houses.
    #[arg(long, default_value_t = 2125)]
    plugs: u32,
    /// Minutes of data.
    #[arg(long, default_value_t = 60)]
    minutes: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file (gzip when it ends in .gz).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A REFIT house file: `timestamp_utc,mains_w,<appliance>...` (gzip when it ends in .gz).
    input: PathBuf,
    /// The house id the events get.
    #[arg(long, default_value_t = 0)]
    house: u32,
    /// The first event id.
    #[arg(long, default_value_t = 0)]
    first_id: u64,
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Event file (challenge CSV, gzip when it ends in .gz), in arrival order.
    input: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// Event time runs X times faster than wall time [default: as fast as NATS takes them].
    #[arg(long, value_name = "X")]
    rate: Option<f64>,
    /// Input partitions P (Q1 tasks); fixed when the input stream is created.
    #[arg(long, value_name = "P", default_value_t = debs::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// Seconds an event may be older than the newest (of its house, for Q1).
    #[arg(long, value_name = "S", default_value_t = wattlet_stream_analytics::reorder::DEFAULT_LATENESS)]
    lateness: u32,
    /// Seal every batch under this dataset key (`wattlet stream key create`): a sealed run.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// The run's dataset key file: needed to read a sealed run's rows.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Wait up to this long for every task to complete.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    wait: Option<Duration>,
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// Event file (challenge CSV, gzip when it ends in .gz).
    input: PathBuf,
    #[arg(long, value_name = "P", default_value_t = debs::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    #[arg(long, value_name = "S", default_value_t = wattlet_stream_analytics::reorder::DEFAULT_LATENESS)]
    lateness: u32,
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// This worker's id, unique among live workers (a NATS subject token); a restart with the
    /// same id takes its tasks back at once [default: host name and process id].
    #[arg(long)]
    id: Option<String>,
    /// Checkpoint a task after this many input messages …
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: u64,
    /// … or after this long, whichever first.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    checkpoint_interval: Duration,
    /// Run the operators as the WIT component (wasmtime) or compiled into this binary. Both
    /// give the same rows and checkpoints, so workers of either kind can share a run.
    #[arg(long, value_enum, default_value = "component")]
    operators: OperatorsArg,
    /// Directory holding the built components [default: $WATTLET_COMPONENTS, then the build's
    /// target/wasm32-wasip2/component].
    #[arg(long, value_name = "DIR")]
    components: Option<PathBuf>,
    /// The key broker (https://host[:port], its /kbs/v0 endpoints): needed for a sealed run.
    /// The worker attests there before it reads any event and gets the run's dataset key.
    #[arg(long, value_name = "URL")]
    key_broker: Option<String>,
    /// The CA of the key broker's server certificate (PEM); needed for https.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The TEE the worker attests with.
    #[arg(long, value_enum, default_value = "auto")]
    tee: TeeArg,
    /// Serve Prometheus metrics (`wattlet_stream_worker_…`) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OperatorsArg {
    Component,
    Native,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(if is_gz(path) {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

fn create(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(if is_gz(path) {
        Box::new(BufWriter::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        )))
    } else {
        Box::new(BufWriter::new(file))
    })
}

fn events(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Event>>> {
    let name = path.display().to_string();
    Ok(EventReader::new(open(path)?).map(move |e| e.with_context(|| name.clone())))
}

pub fn run(command: StreamCommand) -> anyhow::Result<ExitCode> {
    match command {
        StreamCommand::Generate(args) => {
            let config = GenConfig {
                seed: args.seed,
                houses: args.houses,
                plugs: args.plugs,
                duration: args.minutes.saturating_mul(60),
                ..GenConfig::default()
            };
            let mut out = create(&args.output)?;
            let n = write_csv(Generator::new(config), &mut out)?;
            drop(out);
            eprintln!("{n} events written to {}", args.output.display());
        }
        StreamCommand::ConvertRefit(args) => {
            let reader = RefitReader::new(
                open(&args.input)?,
                RefitConfig {
                    house: args.house,
                    first_id: args.first_id,
                    ..RefitConfig::default()
                },
            );
            let mut out = create(&args.output)?;
            let mut n = 0u64;
            for event in reader {
                let event = event.with_context(|| args.input.display().to_string())?;
                writeln!(out, "{}", event.to_csv())?;
                n += 1;
            }
            out.flush()?;
            drop(out);
            eprintln!("{n} events written to {}", args.output.display());
        }
        StreamCommand::Replay(args) => {
            let meta = StreamMeta {
                partitions: args.partitions,
                lateness: args.lateness,
                key_id: None,
            };
            let payloads = match &args.key {
                Some(path) => Payloads::sealed(RunKey::read(path)?),
                None => Payloads::Plain,
            };
            let events = events(&args.input)?;
            let started = Instant::now();
            let stats = runtime()?.block_on(async {
                let js = wattlet_workers::connect(args.nats.connection()).await?;
                debs::replay::replay(&js, events, &meta, &payloads, args.rate, |stats| {
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    eprintln!(
                        "replay: {} events in {} messages ({} of them already there), {:.0} events/s",
                        stats.events,
                        stats.sent,
                        stats.duplicates,
                        stats.events as f64 / secs
                    );
                })
                .await
            })?;
            eprintln!(
                "replay done: {} events in {} messages in {:.1} s, {} messages new",
                stats.events,
                stats.sent,
                started.elapsed().as_secs_f64(),
                stats.sent - stats.duplicates
            );
        }
        StreamCommand::Results(args) => return results(args),
        StreamCommand::Key(command) => return key(command),
        StreamCommand::Reference(args) => {
            let events: Vec<Event> = events(&args.input)?.collect::<anyhow::Result<_>>()?;
            let rows = run_tasks(&Operators::Native, events, args.partitions, args.lateness)?;
            let mut out = create(&args.output)?;
            for (task, rows) in &rows {
                for (index, row) in rows.iter().enumerate() {
                    writeln!(out, "{task},{index},{}", row.to_csv())?;
                }
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key(command: KeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Create(args) => {
            let options = args.broker.options()?;
            // The file first: a key the broker made but nobody kept would seal nothing.
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            let mut file = file
                .open(&args.output)
                .with_context(|| format!("cannot create the key file {}", args.output.display()))?;
            let made = runtime()?.block_on(debs::sealed::create_key(&options, &args.name));
            let made = match made {
                Ok(made) => made,
                Err(e) => {
                    drop(file);
                    let _ = std::fs::remove_file(&args.output);
                    return Err(e);
                }
            };
            writeln!(file, "{}", serde_json::to_string_pretty(&made)?)?;
            file.sync_all()?;
            eprintln!(
                "dataset key {} ({:?}) written to {}: keep it private; `wattlet stream replay \
                 --key {}` seals a run under it",
                made.key_id,
                made.name,
                args.output.display(),
                args.output.display()
            );
        }
        KeyCommand::Delete(args) => {
            let key = RunKey::read(&args.key)?;
            let options = args.broker.options()?;
            runtime()?.block_on(debs::sealed::delete_key(&options, &key.id))?;
            eprintln!(
                "dataset key {} destroyed at the key broker: the run it sealed is unreadable",
                key.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn results(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let payloads = match &args.key {
        Some(path) => Payloads::sealed(RunKey::read(path)?),
        None => Payloads::Plain,
    };
    runtime()?.block_on(async {
        let js = wattlet_workers::connect(args.nats.connection()).await?;
        match (
            debs::events_meta(&js).await?.and_then(|m| m.key_id),
            payloads.key_id(),
        ) {
            (Some(run), None) => anyhow::bail!(
                "the run is sealed under dataset key {run}: give --key FILE to read its rows"
            ),
            (Some(run), Some(given)) if run != given => {
                anyhow::bail!("the run is sealed under dataset key {run}, --key holds {given}")
            }
            _ => {}
        }
        let deadline = args.wait.map(|w| Instant::now() + w);
        loop {
            let status = debs::results::status(&js).await?;
            let done = status
                .iter()
                .filter(|(_, m)| m.as_ref().is_some_and(|m| m.done))
                .count();
            let dead: u64 = status
                .iter()
                .filter_map(|(_, m)| m.as_ref())
                .map(|m| m.dead)
                .sum();
            let complete = !status.is_empty() && done == status.len();
            match deadline {
                Some(deadline) if !complete => {
                    if Instant::now() >= deadline {
                        anyhow::bail!("{done} of {} tasks complete after --wait", status.len());
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => {
                    eprintln!(
                        "{done} of {} tasks complete; {dead} input messages dead-lettered",
                        status.len()
                    );
                    break;
                }
            }
        }
        let mut names: Vec<String> = debs::results::status(&js)
            .await?
            .iter()
            .map(|(kind, _)| kind.name())
            .collect();
        names.sort();
        let mut problems = Vec::new();
        let mut out = create(&args.output)?;
        for task in &names {
            let rows = debs::results::write_task_rows(&js, &payloads, task, &mut out).await?;
            problems.extend(rows.problems(task));
            if rows.next > 0 {
                eprintln!("{task}: {} rows", rows.next);
            }
            if rows.forged > 0 {
                eprintln!(
                    "wattlet: {task}: {} output messages skipped: not sealed for their place (forged \
                     or moved on NATS)",
                    rows.forged
                );
            }
        }
        out.flush()?;
        if problems.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            for p in &problems {
                eprintln!("wattlet: {p}");
            }
            Ok(ExitCode::from(1))
        }
    })
}

pub fn run_worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let id = match args.id {
        Some(id) => id,
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_else(|_| "worker".into())
                .trim()
                .replace(['.', '*', '>', ' '], "_");
            format!("{host}-{}", std::process::id())
        }
    };
    let component = match args.operators {
        OperatorsArg::Native => None,
        OperatorsArg::Component => Some(wattlet_runtime::locate::locate(
            "wattlet-stream-analytics",
            args.components.as_deref(),
        )?),
    };
    let operators = match &component {
        None => Operators::Native,
        Some(path) => {
            let engine = wattlet_runtime::engine::engine()?;
            Operators::Component(StreamComponent::load(&engine, path)?)
        }
    };
    let keys = match &args.key_broker {
        None => RunKeys::None,
        Some(url) => {
            let measured = wattlet_workers::tee::Measured::StreamWorker {
                stream: component.as_deref(),
            };
            let attester = match args.tee {
                TeeArg::Auto => wattlet_workers::tee::detect(measured)?,
                TeeArg::Simulated => {
                    tracing::warn!(
                        "SIMULATED TEE: --tee simulated attests with evidence that proves \
                         nothing; only a key broker whose policy allows `simulated` releases \
                         keys to it"
                    );
                    wattlet_workers::tee::simulated(measured)?
                }
            };
            RunKeys::Broker(ConfidentialOptions {
                broker: ApiOptions {
                    url: url.clone(),
                    ca: args.ca.clone(),
                    token: String::new(),
                },
                attester,
            })
        }
    };
    let options = StreamWorkerOptions {
        checkpoint_every: args.checkpoint_every,
        checkpoint_interval: args.checkpoint_interval,
        operators,
        ..StreamWorkerOptions::new(args.nats.connection(), &id)
    };
    let runtime = runtime()?;
    if let Some(addr) = args.metrics_listen {
        // Bound before anything slow, so that a taken port is said at once.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let metrics: Arc<dyn wattlet_runtime::metrics::MetricsSource> = options.metrics.clone();
        runtime.spawn(wattlet_runtime::metrics::serve_admin(metrics, listener));
    }
    runtime.block_on(debs::task::run(options, keys, super::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}
