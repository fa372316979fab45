//! `wattlet edge`: the measurement device's daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use wattlet::admin::serve_admin;
use wattlet::edge::config::EdgeConfig;
use wattlet::edge::daemon::{Daemon, EdgeComponents, Stopped};
use wattlet::edge::metrics::EdgeMetrics;

#[derive(Debug, Args)]
#[command(after_help = "\
The daemon reads every configured meter through its probe, stores one measurement per meter
and measurement cycle in a SQLite buffer (WAL) in the state directory, and uploads the buffer
to the cloud's Data API every report cycle over mutual TLS, deleting exactly what the cloud
acknowledged. Nothing is read or measured until the household's consent is granted; after
revocation the daemon discards what it had not sent and exits for good.

Set WATTLET_LOG=debug for more detail. See the README, \"Edge device\", for the configuration.")]
pub struct EdgeArgs {
    /// The device configuration (TOML): cloud URL, identity, cycles, meters.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Directory holding the built components [default: $WATTLET_COMPONENTS, then the build's
    /// target/wasm32-wasip2/component].
    #[arg(long, value_name = "DIR")]
    components: Option<PathBuf>,
}

pub fn run(args: EdgeArgs) -> anyhow::Result<ExitCode> {
    let config = EdgeConfig::load(&args.config)?;
    let engine = wattlet::runtime::engine()?;
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
        daemon.run(super::shutdown_signal()).await
    })?;
    if stopped == Stopped::ConsentRevoked {
        eprintln!("wattlet edge: consent is revoked; this device measures nothing any more");
    }
    Ok(ExitCode::SUCCESS)
}
