//! `wattlet up`: the whole system locally.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::local::{UpOptions, run as run_local};
use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
#[command(after_help = "\
Serves the cloud application (spin.toml) over mutual TLS, creates a local CA with a server
certificate and one certificate per device, registers two simulated households, each with a
measurement device and a simulated SML meter on a pseudo-terminal, grants consent for the first
and prints readings as they reach the cloud. The second household never granted consent, so
nothing of it is measured. A local nats-server (JetStream) carries the NIALM work queue, with a
work manager and one worker: hourly appliance estimates of consenting meters appear in the Data
API once 1 h 49 min of a meter's data are in, and its load forecast once 1 h is. State (CA, certificates, databases, buffers) stays in --state-dir,
so running it again continues where it stopped.")]
pub struct UpArgs {
    /// The cloud application's Spin manifest.
    #[arg(long, short = 'f', default_value = "spin.toml", value_name = "FILE")]
    manifest: PathBuf,
    /// Where the local CA, certificates, databases and device buffers live.
    #[arg(long, default_value = ".wattlet", value_name = "DIR")]
    state_dir: PathBuf,
    /// Address of the cloud's HTTPS listener.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    listen: SocketAddr,
    /// Address of the admin listener serving Prometheus /metrics.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    admin_listen: SocketAddr,
    /// Where the devices' edge daemons serve Prometheus /metrics: the first device at ADDR, the
    /// next one port higher; port 0 gives each a port of its own (printed).
    #[arg(long, default_value = "127.0.0.1:9465", value_name = "ADDR")]
    edge_metrics_listen: SocketAddr,
    /// Where the NIALM worker serves Prometheus /metrics.
    #[arg(long, default_value = "127.0.0.1:9467", value_name = "ADDR")]
    worker_metrics_listen: SocketAddr,
    /// Directory holding the built components.
    #[arg(long, value_name = "DIR")]
    components: Option<PathBuf>,
    /// Measurement cycle of the devices (the survey uses 15m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    measure: Duration,
    /// Report (upload) cycle of the devices, at most 60m.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    report: Duration,
    /// How often the devices ask the cloud for the household's consent.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    consent: Duration,
    /// Address of the local NATS server (JetStream) for the NIALM work queue.
    #[arg(long, default_value = "127.0.0.1:4222", value_name = "ADDR")]
    nats_listen: SocketAddr,
    /// Run no NATS server, work manager or worker.
    #[arg(long)]
    no_nialm: bool,
    /// How often the devices poll the update repository (updates/ beside the manifest, once
    /// `wattlet release init` wrote it) for what the cloud's rollouts admit them to.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    update_poll: Duration,
}

pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    if args.measure.is_zero()
        || args.report.is_zero()
        || args.consent.is_zero()
        || args.update_poll.is_zero()
    {
        anyhow::bail!("--measure, --report, --consent and --update-poll must be longer than zero");
    }
    if !args.no_nialm && args.nats_listen.port() == 0 {
        anyhow::bail!("--nats-listen needs a fixed port (the workers connect to it)");
    }
    if !args.no_nialm && args.worker_metrics_listen.port() == 0 {
        anyhow::bail!(
            "--worker-metrics-listen needs a fixed port (it is printed before it listens)"
        );
    }
    if args.report > Duration::from_secs(3600) {
        anyhow::bail!("--report is at most 60m: the survey reports at least hourly");
    }
    let options = UpOptions {
        manifest: args.manifest,
        state_dir: args.state_dir,
        listen: args.listen,
        admin_listen: args.admin_listen,
        edge_metrics_listen: args.edge_metrics_listen,
        worker_metrics_listen: args.worker_metrics_listen,
        components: args.components,
        measure_every: args.measure,
        report_every: args.report,
        consent_every: args.consent,
        nats_listen: (!args.no_nialm).then_some(args.nats_listen),
        update_poll: args.update_poll,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    println!("wattlet up: state in {}", options.state_dir.display());
    let mut out = std::io::stdout();
    runtime.block_on(run_local(options, &mut out, super::shutdown_signal()))?;
    println!("wattlet up: stopped");
    Ok(ExitCode::SUCCESS)
}
