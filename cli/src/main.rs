//! `wattlet`: the whole platform on one command line. It composes the hosts by role (the edge
//! daemon, the Spin-compatible server, the queue workers, the certificate authority, the meter
//! simulator) and runs them all together on one machine (`wattlet up`).

mod commands;
mod local;

use clap::Parser;

fn main() -> std::process::ExitCode {
    wattlet_edge::cli::init_logging();
    wattlet_tls::install_default_provider();
    let args = commands::Cli::parse();
    match commands::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("wattlet: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
