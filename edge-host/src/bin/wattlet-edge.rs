//! `wattlet-edge`: the binary a measurement device (a Raspberry Pi) runs. It links only the
//! edge: no queue client, no certificate authority, no Spin host.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wattlet_edge::cli::{self, EdgeArgs, EnrolCommand, UnlockArgs, UpdateArgs};
use wattlet_edge::config::ConfigError;

/// wattlet's measurement device: reads meters through optical probes and uploads their
/// readings to the survey's Data API while the household consents.
#[derive(Debug, Parser)]
#[command(name = "wattlet-edge", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the measurement device: read meters, buffer, upload (needs consent).
    Run(EdgeArgs),
    /// Enter a locked meter's PIN by light pulses through the probe's LED (PIN on stdin).
    ///
    /// Stop the daemon first: the probe serves one program at a time.
    Unlock(UnlockArgs),
    /// Check, apply or show signed component updates (parser, upload).
    Update(UpdateArgs),
    /// Get this device its certificate: `request` makes the key and a signing request,
    /// `install` puts the certificate the administrator signed in place.
    #[command(subcommand)]
    Enrol(EnrolCommand),
}

fn main() -> ExitCode {
    cli::init_logging();
    let result = match Cli::parse().command {
        Command::Run(args) => cli::run(args, "wattlet-edge"),
        Command::Unlock(args) => cli::unlock(args),
        Command::Update(args) => cli::update(args),
        Command::Enrol(command) => cli::enrol(command),
    };
    result.unwrap_or_else(|error| {
        eprintln!("wattlet-edge: {error:#}");
        // A configuration it refuses is not worth restarting for (the unit's
        // RestartPreventExitStatus).
        if error.downcast_ref::<ConfigError>().is_some() {
            ExitCode::from(ConfigError::EXIT_STATUS)
        } else {
            ExitCode::from(2)
        }
    })
}
