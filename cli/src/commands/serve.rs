//! `wattlet serve`: run a Spin application.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use wattlet_runtime::metrics::serve_admin;
use wattlet_serve::server::{App, ClientAuth, ServeOptions, TlsOptions, serve};

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
    /// Serve mutual TLS 1.3 with this server certificate (PEM; e.g. from `wattlet ca server`).
    /// Needs --tls-key and --client-ca too.
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    tls_key: Option<PathBuf>,
    /// Require every client to present a certificate issued by this CA (PEM; e.g. the
    /// `ca.crt` of `wattlet ca init`). Its identity reaches components in the
    /// x-wattlet-client-device, -email and -serial headers.
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    client_ca: Option<PathBuf>,
    /// Certificate revocation list (PEM; e.g. the CA directory's `crl.pem`). Watched: a
    /// revoked device is refused from its next request on, also on open connections.
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    crl: Option<PathBuf>,
    /// `required`: every client presents a certificate (devices only). `optional`: clients
    /// without one (people and services with bearer tokens) are served without an identity.
    #[arg(long, value_enum, default_value_t = ClientAuthArg::Required, help_heading = "Mutual TLS")]
    client_auth: ClientAuthArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ClientAuthArg {
    Required,
    Optional,
}

/// `--tls-cert`, `--tls-key` and `--client-ca` go together; `--crl` needs them.
fn tls_options(args: &ServeArgs) -> anyhow::Result<Option<TlsOptions>> {
    match (&args.tls_cert, &args.tls_key, &args.client_ca) {
        (Some(cert), Some(key), Some(client_ca)) => Ok(Some(TlsOptions {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: client_ca.clone(),
            crl: args.crl.clone(),
            client_auth: match args.client_auth {
                ClientAuthArg::Required => ClientAuth::Required,
                ClientAuthArg::Optional => ClientAuth::Optional,
            },
        })),
        (None, None, None) => {
            if args.crl.is_some() {
                anyhow::bail!(
                    "--crl needs mutual TLS: give --tls-cert, --tls-key and --client-ca as well"
                );
            }
            Ok(None)
        }
        (cert, key, client_ca) => {
            let missing: Vec<_> = [
                ("--tls-cert", cert.is_none()),
                ("--tls-key", key.is_none()),
                ("--client-ca", client_ca.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            anyhow::bail!(
                "mutual TLS needs --tls-cert, --tls-key and --client-ca together; missing {}",
                missing.join(", ")
            )
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tls = tls_options(&args)?;
    let options = ServeOptions {
        manifest: args.manifest,
        state_dir: args.state_dir,
        runtime_config: args.runtime_config_file,
        max_request_bytes: args.max_request_bytes,
        request_timeout: None,
        tls,
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
        let scheme = app.scheme();
        println!("Serving {scheme}://{address} ({})", app.name);
        if app.is_tls() {
            println!("Mutual TLS 1.3: clients must present a device certificate");
        }
        println!("Available Routes:");
        for (route, component) in app.routes() {
            let (path, wildcard) = match route.strip_suffix("/...") {
                Some(prefix) => (if prefix.is_empty() { "/" } else { prefix }, " (wildcard)"),
                None => (route, ""),
            };
            println!("  {component}: {scheme}://{address}{path}{wildcard}");
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
