//! `wattlet`: the whole platform on one command line. It composes the hosts by role (the edge
//! daemon, the Spin-compatible server, the queue workers, the certificate authority, the meter
//! simulator) and runs them all together on one machine (`wattlet up`).

mod commands;
mod local;

use clap::Parser;

fn main() -> std::process::ExitCode {
    wattlet_edge::cli::init_logging();
    // tough brings rustls's aws-lc-rs provider next to our ring one; with two compiled in,
    // rustls has no default and `ClientConfig::builder()` (used by dependencies) would panic.
    // Our own configurations name their provider; this only settles the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = commands::Cli::parse();
    match commands::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("wattlet: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
