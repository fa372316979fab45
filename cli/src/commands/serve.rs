//! `wattlet serve`: run a Spin application.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use wattlet_runtime::accept;
use wattlet_runtime::metrics::{AdminLimits, serve_admin_with};
use wattlet_serve::limits::{ByteSize, Setting, Timeout};
use wattlet_serve::server::{App, ClientAuth, Limits, ServeOptions, TlsOptions, serve};

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
    #[command(flatten)]
    tls: MutualTlsArgs,
    /// Connections open at once. At the cap the server stops accepting and further clients
    /// wait in the kernel's backlog. [default: 1024, lowered to fit the open-file limit]
    #[arg(long, value_name = "N", help_heading = "Limits")]
    max_connections: Option<usize>,
    /// Requests running a component at once; more wait for a slot (503 when none frees up
    /// within their request timeout). Each running request holds one instance's memory.
    #[arg(long, default_value_t = 128, value_name = "N", help_heading = "Limits")]
    max_concurrent_requests: usize,
    /// How long a client may take to send a request's headers; also how long a kept-alive
    /// connection may stay idle between requests. Units: s (default), ms, us, ns.
    #[arg(
        long,
        default_value = "10s",
        value_name = "DURATION",
        help_heading = "Limits"
    )]
    header_timeout: Timeout,
    /// The longest pause while a request body arrives; a body that stalls longer gets 408.
    #[arg(
        long,
        default_value = "10s",
        value_name = "DURATION",
        help_heading = "Limits"
    )]
    body_timeout: Timeout,
    /// How long a component may take to answer and stream its response; then it is stopped
    /// and, unless it had answered, the request gets 504. As in Spin (`spin up
    /// --request-timeout`), but for every component, not only WASIp3 ones. `ID=DURATION` sets
    /// it for one component; repeat the option for several.
    #[arg(
        long,
        default_value = "30s",
        value_name = "[ID=]DURATION",
        help_heading = "Limits"
    )]
    request_timeout: Vec<Setting<Timeout>>,
    /// The most memory an instance may grow to, in bytes (or with K, M, G); growing further
    /// fails, and a component that traps for it gets 500. As in Spin (`spin up
    /// --max-instance-memory`). `ID=BYTES` sets it for one component; repeat the option for
    /// several.
    #[arg(
        long,
        default_value = "128M",
        value_name = "[ID=]BYTES",
        env = "SPIN_MAX_INSTANCE_MEMORY",
        help_heading = "Limits"
    )]
    max_instance_memory: Vec<Setting<ByteSize>>,
    /// After SIGTERM or Ctrl-C the server stops accepting and waits this long for requests
    /// in flight to finish.
    #[arg(
        long,
        default_value = "30s",
        value_name = "DURATION",
        help_heading = "Limits"
    )]
    shutdown_timeout: Timeout,
}

/// The mutual-TLS options of a listener (`wattlet serve`, `wattlet gateway`).
#[derive(Debug, Args)]
pub struct MutualTlsArgs {
    /// Serve mutual TLS 1.3 with this server certificate (PEM; e.g. from `wattlet ca server`).
    /// Needs --tls-key and --client-ca too.
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM).
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Require every client to present a certificate issued by this CA (PEM; e.g. the
    /// `ca.crt` of `wattlet ca init`). Its identity reaches components in the
    /// x-wattlet-client-device, -email and -serial headers, proven in x-wattlet-client-proof
    /// (an HMAC keyed with the application variable `client_identity_key`, e.g.
    /// SPIN_VARIABLE_CLIENT_IDENTITY_KEY=$(openssl rand -hex 32), which the Data API checks).
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    pub(crate) client_ca: Option<PathBuf>,
    /// Certificate revocation list (PEM; e.g. the CA directory's `crl.pem`). Watched: a
    /// revoked device is refused from its next request on, also on open connections.
    #[arg(long, value_name = "FILE", help_heading = "Mutual TLS")]
    pub(crate) crl: Option<PathBuf>,
    /// `required`: every client presents a certificate (devices only). `optional`: clients
    /// without one (people and services with bearer tokens) are served without an identity.
    #[arg(long, value_enum, default_value_t = ClientAuthArg::Required, help_heading = "Mutual TLS")]
    pub(crate) client_auth: ClientAuthArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ClientAuthArg {
    Required,
    Optional,
}

/// `--tls-cert`, `--tls-key` and `--client-ca` go together; `--crl` needs them.
impl MutualTlsArgs {
    /// The TLS options; `None` without any of them.
    pub(crate) fn options(&self) -> anyhow::Result<Option<TlsOptions>> {
        match (&self.tls_cert, &self.tls_key, &self.client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => Ok(Some(TlsOptions {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
                crl: self.crl.clone(),
                client_auth: match self.client_auth {
                    ClientAuthArg::Required => ClientAuth::Required,
                    ClientAuthArg::Optional => ClientAuth::Optional,
                },
            })),
            (None, None, None) => {
                if self.crl.is_some() {
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
}

/// The limits the options ask for, the connection cap within the open-file limit.
fn limits(args: &ServeArgs) -> Limits {
    let mut limits = Limits {
        max_concurrent_requests: args.max_concurrent_requests,
        header_timeout: args.header_timeout.0,
        body_timeout: args.body_timeout.0,
        shutdown_timeout: args.shutdown_timeout.0,
        ..Limits::default()
    };
    let timeouts: Vec<Setting<_>> = args
        .request_timeout
        .iter()
        .cloned()
        .map(Into::into)
        .collect();
    limits.request_timeout.apply(&timeouts);
    let memory: Vec<Setting<_>> = args
        .max_instance_memory
        .iter()
        .cloned()
        .map(Into::into)
        .collect();
    limits.max_instance_memory.apply(&memory);
    let open_files = raise_open_files();
    limits.max_connections = match args.max_connections {
        Some(max) => max,
        None => fit_open_files(limits.max_connections, open_files),
    };
    limits
}

/// Raises the soft open-file limit to the hard one (as Go programs do; systemd's soft default
/// of 1024 is meant for select(2)); returns the limit then in force (None: unlimited).
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum)
        && soft < hard
    {
        limit.current = Some(hard);
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(%error, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Lowers `wanted` connections to leave a quarter of the open-file limit (at most 256 files)
/// for databases, components and the admin listener.
fn fit_open_files(wanted: usize, open_files: Option<u64>) -> usize {
    let Some(files) = open_files else {
        return wanted;
    };
    let files = usize::try_from(files).unwrap_or(usize::MAX);
    let fits = files - (files / 4).min(256);
    if fits < wanted {
        tracing::warn!(
            open_files = files,
            max_connections = fits,
            "the open-file limit lowers the connection cap (raise `ulimit -n`, or set --max-connections)"
        );
    }
    wanted.min(fits).max(1)
}

/// Resolves at the first SIGTERM or Ctrl-C (SIGINT).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch for SIGTERM; only Ctrl-C stops the server gracefully");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tls = args.tls.options()?;
    let limits = limits(&args);
    let options = ServeOptions {
        manifest: args.manifest,
        state_dir: args.state_dir,
        runtime_config: args.runtime_config_file,
        max_request_bytes: args.max_request_bytes,
        tls,
        limits,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let app = Arc::new(App::load(&options)?);
        // A deep backlog: at the connection cap clients wait there.
        let listener = accept::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let admin = accept::bind(args.admin_listen)
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
        let admin_limits = AdminLimits {
            header_timeout: options.limits.header_timeout,
            ..AdminLimits::default()
        };
        tokio::spawn(serve_admin_with(app.metrics.clone(), admin, admin_limits));
        serve(app, listener, async {
            shutdown_signal().await;
            println!("Shutting down: finishing requests in flight");
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}
