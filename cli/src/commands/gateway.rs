//! `wattlet gateway`: the mutual-TLS front of a Data API that runs behind plain HTTP (the
//! SpinApp on Kubernetes, `spin up`): it verifies device certificates, signs the identity
//! proof the Data API checks and forwards each request ([`wattlet_serve::gateway`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use wattlet_runtime::accept;
use wattlet_runtime::metrics::{AdminLimits, MetricsSource, serve_admin_with};
use wattlet_serve::gateway::{Gateway, GatewayOptions};
use wattlet_serve::limits::Timeout;
use wattlet_serve::server::{Limits, serve};

use super::serve::{MutualTlsArgs, shutdown_signal};

/// The variable that holds the identity proofs' key, as the app reads it.
const KEY_ENV: &str = "SPIN_VARIABLE_CLIENT_IDENTITY_KEY";

#[derive(Debug, Args)]
#[command(after_help = "Example, in front of `spin up` on 127.0.0.1:3000:\n  \
    SPIN_VARIABLE_CLIENT_IDENTITY_KEY=$(cat identity-key) wattlet gateway \\\n    \
    --upstream http://127.0.0.1:3000 --listen 0.0.0.0:8443 \\\n    \
    --tls-cert server.crt --tls-key server.key --client-ca ca/ca.crt --crl ca/crl.pem \
    --client-auth optional")]
pub struct GatewayArgs {
    /// The Data API behind the gateway, plain HTTP (inside the cluster: the SpinApp's
    /// Service, e.g. http://wattlet-app.wattlet.svc:80).
    #[arg(long, value_name = "URL")]
    upstream: http::Uri,
    /// Address of the mutual-TLS listener devices connect to.
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    listen: SocketAddr,
    /// Address of the admin listener serving Prometheus /metrics.
    #[arg(long, default_value = "127.0.0.1:9469", value_name = "ADDR")]
    admin_listen: SocketAddr,
    /// A file holding the key of the identity proofs: the app's variable
    /// `client_identity_key` [default: the environment variable
    /// SPIN_VARIABLE_CLIENT_IDENTITY_KEY, as the app reads it].
    #[arg(long, value_name = "FILE")]
    identity_key_file: Option<PathBuf>,
    #[command(flatten)]
    tls: MutualTlsArgs,
    /// How long the upstream may take to answer; then the request gets 504.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    request_timeout: Timeout,
    /// After SIGTERM or Ctrl-C the gateway stops accepting and waits this long for requests
    /// in flight.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    shutdown_timeout: Timeout,
}

fn identity_key(args: &GatewayArgs) -> anyhow::Result<Vec<u8>> {
    let key = match &args.identity_key_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the identity key {}", file.display()))?,
        None => std::env::var(KEY_ENV).map_err(|_| {
            anyhow::anyhow!(
                "the identity proofs need the app's client_identity_key: --identity-key-file \
                 FILE or {KEY_ENV}"
            )
        })?,
    };
    Ok(key.trim().as_bytes().to_vec())
}

pub fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let tls = args
        .tls
        .options()?
        .context("the gateway speaks mutual TLS: give --tls-cert, --tls-key and --client-ca")?;
    let mut limits = Limits {
        shutdown_timeout: args.shutdown_timeout.0,
        ..Limits::default()
    };
    limits.request_timeout.default = args.request_timeout.0;
    let gateway = Gateway::new(GatewayOptions {
        upstream: args.upstream.clone(),
        tls,
        identity_key: identity_key(&args)?,
        limits,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = accept::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let admin = accept::bind(args.admin_listen)
            .with_context(|| format!("cannot listen on {} (admin)", args.admin_listen))?;
        println!(
            "Gateway https://{} (mutual TLS 1.3) -> {}",
            listener.local_addr()?,
            args.upstream
        );
        println!("Metrics: http://{}/metrics", admin.local_addr()?);
        let metrics: Arc<dyn MetricsSource> = gateway.metrics.clone();
        tokio::spawn(serve_admin_with(metrics, admin, AdminLimits::default()));
        serve(Arc::new(gateway), listener, async {
            shutdown_signal().await;
            println!("Shutting down: finishing requests in flight");
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}
