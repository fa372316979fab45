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

/// Logging to standard error, filtered by `WATTLET_LOG` (default: warnings).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WATTLET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}
