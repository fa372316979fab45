//! Command-line interface: one module per command group.

mod audit;
mod ca;
mod gateway;
mod meter;
mod nats;
mod queue;
mod release;
mod serve;
mod stream;
mod token;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// wattlet: privacy-preserving smart-meter data, from the optical probe to the analysis.
#[derive(Debug, Parser)]
#[command(name = "wattlet", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate authority for device identities and servers (mutual TLS).
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Run the measurement device: read meters, buffer, upload (needs consent).
    Edge(wattlet_edge::cli::EdgeArgs),
    /// Work with meters and their telegrams.
    #[command(subcommand)]
    Meter(meter::MeterCommand),
    /// Run the whole system locally: cloud, two simulated households with devices and meters.
    Up(up::UpArgs),
    /// Serve a Spin application (spin.toml) the way `spin up` does.
    Serve(serve::ServeArgs),
    /// The mutual-TLS front of a Data API behind plain HTTP (SpinKube, `spin up`): checks
    /// device certificates, signs their identity proofs, forwards.
    Gateway(gateway::GatewayArgs),
    /// Publish analysis work items to NATS JetStream.
    #[command(subcommand)]
    Manager(queue::ManagerCommand),
    /// Take analysis work items from NATS JetStream and compute them.
    #[command(subcommand)]
    Worker(queue::WorkerCommand),
    /// The DEBS 2014 stream queries on NATS JetStream: data, replay, results.
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Access tokens of researchers and administrators: restrict or inspect them.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Signed component updates (TUF): create the repository, publish, refresh, check.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Access logs: verify a household's hash-chained log against its head.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ca(command) => ca::run(command),
        Command::Edge(args) => wattlet_edge::cli::run(args, "wattlet edge"),
        Command::Meter(command) => meter::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Up(args) => up::run(args),
        Command::Manager(command) => queue::run_manager(command),
        Command::Worker(command) => queue::run_worker(command),
        Command::Stream(command) => stream::run(command),
        Command::Token(command) => token::run(command),
        Command::Release(command) => release::run(command),
        Command::Audit(command) => audit::run(command),
    }
}

pub(crate) use wattlet_edge::cli::shutdown_signal;
