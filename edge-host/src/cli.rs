//! The device's command line: `wattlet-edge run` and `wattlet-edge unlock` on a Pi, the same
//! arguments as `wattlet edge` and `wattlet meter unlock` in the full `wattlet` CLI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use wattlet_runtime::metrics::serve_admin;

use crate::config::EdgeConfig;
use crate::daemon::{Daemon, EdgeComponents, Stopped};
use crate::metrics::EdgeMetrics;
use crate::unlock;

#[derive(Debug, Args)]
#[command(after_help = "\
The daemon reads every configured meter through its probe, stores one measurement per meter
and measurement cycle in a SQLite buffer (WAL) in the state directory, and uploads the buffer
to the cloud's Data API every report cycle over mutual TLS, deleting exactly what the cloud
acknowledged. Nothing is read or measured until the household's consent is granted; after
revocation the daemon discards what it had not sent and exits for good.

Set WATTLET_LOG=debug for more detail. See the README, \"The edge device\", for the
configuration.")]
pub struct EdgeArgs {
    /// The device configuration (TOML): cloud URL, identity, cycles, meters.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Directory holding the built components [default: $WATTLET_COMPONENTS, then the build's
    /// target/wasm32-wasip2/component].
    #[arg(long, value_name = "DIR")]
    components: Option<PathBuf>,
}

/// Runs the daemon until Ctrl-C, SIGTERM or the household's revocation.
pub fn run(args: EdgeArgs, program: &str) -> anyhow::Result<ExitCode> {
    // With the update verifier (tough) linked, rustls sees two crypto providers: pick one.
    wattlet_tls::install_default_provider();
    let config = EdgeConfig::load(&args.config)?;
    let engine = wattlet_runtime::engine::engine()?;
    let components = EdgeComponents::load(&engine, &config, args.components.as_deref())?;
    let metrics = Arc::new(EdgeMetrics::new());
    let metrics_listen = config.metrics_listen;
    let daemon = Daemon::new(config, components, metrics.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let stopped = runtime.block_on(async move {
        if let Some(address) = metrics_listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (metrics_listen)"))?;
            tokio::spawn(serve_admin(metrics, listener));
        }
        daemon.run(shutdown_signal()).await
    })?;
    if stopped == Stopped::ConsentRevoked {
        eprintln!("{program}: consent is revoked; this device measures nothing any more");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The probe's serial device.
    #[arg(long, value_name = "PATH")]
    device: PathBuf,
    /// The meter model (MT681, MT175).
    #[arg(long, value_name = "MODEL")]
    model: String,
    /// The probe's line speed.
    #[arg(long, default_value_t = 9600, value_name = "BAUD")]
    baud: u32,
}

/// Reads the PIN from standard input and flashes it into the meter through the probe's LED.
pub fn unlock(args: UnlockArgs) -> anyhow::Result<ExitCode> {
    let entry = unlock::for_model(&args.model)?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the PIN from standard input")?;
    let pin: unlock::Pin = line.trim().parse()?;
    let pulses = entry.pulses(&pin);
    let seconds: f64 = pulses.iter().map(|p| (p.on + p.off).as_secs_f64()).sum();
    let port = wattlet_serial::open(&args.device, args.baud, wattlet_serial::Framing::EightN1)?;
    eprintln!(
        "entering the PIN of the {} on {}: {} pulses, about {seconds:.0} s",
        entry.model(),
        args.device.display(),
        pulses.len()
    );
    unlock::send(&port, args.baud, &pulses)
        .with_context(|| format!("cannot write to {}", args.device.display()))?;
    eprintln!("done; the meter now checks the PIN (watch its display)");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Subcommand)]
pub enum EnrolCommand {
    /// Make the device's private key (once; it never leaves the device) and a certificate
    /// signing request for it, printed for the administrator (`wattlet ca sign-csr`).
    Request {
        #[command(flatten)]
        dir: EnrolDir,
        /// Replace the device's key with a new one (a certificate of the old key stops fitting).
        #[arg(long)]
        new_key: bool,
        /// The group that may read the key: the daemon's.
        #[arg(long, default_value = "wattlet", value_name = "NAME")]
        group: String,
    },
    /// Install the certificate the administrator signed, with the cloud's CA certificate,
    /// after checking that it is for this device's key and chains to that CA.
    Install {
        #[command(flatten)]
        dir: EnrolDir,
        /// The signed certificate (PEM).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The cloud's CA certificate (PEM): `ca.crt` of `wattlet ca`.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct EnrolDir {
    /// Where the identity lives: device.key, device.csr, device.crt, ca.crt (the configuration's
    /// [identity] names them).
    #[arg(long, default_value = "/etc/wattlet", value_name = "DIR")]
    dir: PathBuf,
}

/// `wattlet-edge enrol request|install`.
pub fn enrol(command: EnrolCommand) -> anyhow::Result<ExitCode> {
    use crate::enrol;
    match command {
        EnrolCommand::Request {
            dir,
            new_key,
            group,
        } => {
            let gid = enrol::group_id(&group);
            if gid.is_none() {
                eprintln!(
                    "no group {group:?} here: the key will be readable by its owner only \
                     (the package creates the group)"
                );
            }
            let requested = enrol::request(&dir.dir, new_key, gid)?;
            eprintln!(
                "{} key {}; request {} (below). Give the request to the survey's \
                 administrator: wattlet ca sign-csr --dir CA --csr device.csr --id DEVICE \
                 --email EMAIL --out DEVICE.crt; then here: wattlet-edge enrol install --cert \
                 DEVICE.crt --ca ca.crt",
                if requested.new_key {
                    "made"
                } else {
                    "kept the"
                },
                requested.key.display(),
                requested.csr.display()
            );
            print!("{}", requested.csr_pem);
        }
        EnrolCommand::Install { dir, cert, ca } => {
            let installed = enrol::install(&dir.dir, &cert, &ca)?;
            println!(
                "installed {} for device {} ({}), serial {}; cloud CA {}",
                installed.cert.display(),
                installed.identity.device_id,
                installed.identity.email,
                installed.identity.serial_hex,
                installed.ca.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM (how systemd stops a service).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logging to standard error, filtered by `WATTLET_LOG` (default: warnings); the daemon's own
/// lines from `INFO` and everything's warnings also go to the ring of recent lines that
/// diagnostics bundles carry ([`crate::logring`]).
pub fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("WATTLET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    let ring = crate::logring::RingLayer.with_filter(
        Targets::new()
            .with_target("wattlet_edge", LevelFilter::INFO)
            .with_default(LevelFilter::WARN),
    );
    tracing_subscriber::registry()
        .with(stderr)
        .with(ring)
        .init();
}

#[derive(Debug, Args)]
#[command(after_help = "\
The update agent fetches new versions of the parser and upload components from the signed
repository in the configuration's [updates] section and verifies them through TUF. `apply`
stages a verified version in the inactive slot (<state_dir>/components/<name>/a or b),
precompiles it for this device's wasmtime, checks it links against this host, switches to it
and checks its health: a parser must read golden telegrams exactly as the running one does, an
upload component must have its first upload acknowledged (by the daemon) within the trial
deadline. A healthy version is committed and never gone back from; otherwise the previous one
runs again and the reason is kept (see `status`).

The daemon (`run`) polls by itself every `poll`; these commands act at once.")]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub action: UpdateAction,
    /// The device configuration (TOML) with an [updates] section.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Directory holding the shipped components [default: $WATTLET_COMPONENTS, then the
    /// build's target/wasm32-wasip2/component].
    #[arg(long, value_name = "DIR", global = true)]
    components: Option<PathBuf>,
    /// Only this component (meter-parser or upload) [default: both].
    #[arg(long, value_name = "NAME", global = true)]
    component: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum UpdateAction {
    /// Verify the repository and show the newest version each component could move to.
    Check,
    /// Install what `check` finds: stage, link check, switch, health check, commit or roll back.
    Apply,
    /// Show each component's running version, a trial in progress and the last outcome.
    Status,
}

/// `wattlet-edge update …`.
pub fn update(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    use crate::update::{Admission, Agent, Applied, Kind};
    wattlet_tls::install_default_provider();
    let path = args
        .config
        .context("--config FILE is needed (the device configuration)")?;
    let config = EdgeConfig::load(&path)?;
    let kinds = match args.component.as_deref() {
        None => Kind::ALL.to_vec(),
        Some(name) => vec![Kind::parse(name).with_context(|| {
            format!("--component {name:?}: the device updates meter-parser and upload")
        })?],
    };
    let tls = match &config.updates {
        Some(u) if u.repository.scheme() == "https" || u.rollouts => Some(Arc::new(
            wattlet_tls::client_tls_config(
                &config.identity.certificate,
                &config.identity.key,
                &config.identity.cloud_ca,
            )
            .context("cannot load the device identity")?,
        )),
        _ => None,
    };
    let engine = wattlet_runtime::engine::engine()?;
    let agent = Agent::new(
        &engine,
        &config.state_dir,
        config.updates.clone(),
        tls.clone(),
        args.components.as_deref(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Status needs no cloud; check and apply ask its rollouts what this device may install.
    let admissions = match args.action {
        UpdateAction::Status => Vec::new(),
        UpdateAction::Check | UpdateAction::Apply => {
            let settings = agent
                .settings()
                .context("the configuration has no [updates] section: no repository to check")?;
            let uplink = match &tls {
                Some(tls) if settings.rollouts => {
                    Some(crate::daemon::current_uplink(&agent, &config.cloud, tls)?)
                }
                _ => None,
            };
            match &uplink {
                Some(uplink) => {
                    runtime.block_on(crate::update::agent::admissions(uplink, settings))?
                }
                None => Kind::ALL.map(|k| (k, Admission::Any)).to_vec(),
            }
        }
    };
    let admission = |kind: Kind| {
        admissions
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(Admission::Any, |(_, a)| a.clone())
    };
    let mut failed = false;
    for kind in kinds {
        let name = kind.name();
        match args.action {
            UpdateAction::Status => {
                let state = agent.store().load(kind)?;
                println!("{name}: {}", serde_json::to_string(&state)?);
            }
            UpdateAction::Check => match runtime.block_on(agent.check(kind, &admission(kind)))? {
                None if admission(kind) == Admission::Nothing => {
                    println!("{name}: up to date (no rollout admits this device)")
                }
                None => println!("{name}: up to date"),
                Some(update) => println!(
                    "{name}: {} available ({}, {} bytes, sha256 {})",
                    update.meta.version,
                    update.meta.world,
                    update.bytes.len(),
                    update.sha256
                ),
            },
            UpdateAction::Apply => match runtime.block_on(agent.apply(kind, &admission(kind)))? {
                Applied::UpToDate if admission(kind) == Admission::Nothing => {
                    println!("{name}: up to date (no rollout admits this device)")
                }
                Applied::UpToDate => println!("{name}: up to date"),
                Applied::Committed(v) => println!("{name}: {v} committed"),
                Applied::OnTrial(v) | Applied::Waiting(v) => println!(
                    "{name}: {v} switched to; committed after the daemon's first acknowledged upload"
                ),
                Applied::Refused { version, reason } => {
                    failed = true;
                    println!("{name}: {version} refused: {reason}")
                }
                Applied::RolledBack { version, reason } => {
                    failed = true;
                    println!("{name}: {version} rolled back: {reason}")
                }
            },
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
