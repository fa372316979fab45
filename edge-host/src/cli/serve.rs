//! `wattlet serve`: run a Spin application.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use wattlet::spin::server::{App, ServeOptions, serve, serve_admin};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The Spin application manifest (version 2).
    #[arg(long, short = 'f', default_value = "spin.toml", value_name = "FILE")]
    manifest: PathBuf,
    /// Address of the HTTP listener.
    #[arg(long, default_value = "127.0.0.1:3000", value_name = "ADDR")]
    listen: SocketAddr,
    /// Address of the admin listener serving Prometheus /metrics.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    admin_listen: SocketAddr,
    /// Directory for the default SQLite database and key-value store [default: .spin next to
    /// the manifest].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Spin runtime configuration (named SQLite databases and key-value stores).
    #[arg(long, value_name = "FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    max_request_bytes: usize,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let options = ServeOptions {
        manifest: args.manifest,
        state_dir: args.state_dir,
        runtime_config: args.runtime_config_file,
        max_request_bytes: args.max_request_bytes,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let app = Arc::new(App::load(&options)?);
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let admin = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", args.admin_listen))?;
        let address = listener.local_addr()?;
        println!("Serving http://{address} ({})", app.name);
        println!("Available Routes:");
        for (route, component) in app.routes() {
            let (path, wildcard) = match route.strip_suffix("/...") {
                Some(prefix) => (if prefix.is_empty() { "/" } else { prefix }, " (wildcard)"),
                None => (route, ""),
            };
            println!("  {component}: http://{address}{path}{wildcard}");
        }
        println!("Metrics: http://{}/metrics", admin.local_addr()?);
        tokio::spawn(serve_admin(app.metrics.clone(), admin));
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(app, listener, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
