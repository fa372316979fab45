//! The HTTP server: one component instance per request, made from a pre-instantiated component.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p3;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::host::{self, Grants, SpinState};
use crate::manifest::Manifest;
use crate::metrics::{ComponentLabels, Metrics, RequestLabels};
use crate::outbound::OutboundPolicy;
use crate::router::Router;
use crate::storage::{RuntimeConfig, Storage};
use crate::tls::TlsState;
pub use crate::tls::{ClientAuth, TlsOptions};
use crate::variables::ResolvedVariables;
use wattlet_survey::identity::{
    DEVICE as DEVICE_HEADER, EMAIL as EMAIL_HEADER, PREFIX as IDENTITY_HEADER_PREFIX,
    SERIAL as SERIAL_HEADER,
};
use wattlet_tls::ClientIdentity;

type Body = UnsyncBoxBody<Bytes, anyhow::Error>;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub manifest: PathBuf,
    /// Where `.spin`-style state (default database and store) lives; default: next to the manifest.
    pub state_dir: Option<PathBuf>,
    pub runtime_config: Option<PathBuf>,
    /// Larger request bodies get 413 before any component runs.
    pub max_request_bytes: usize,
    /// Mutual TLS 1.3: when set, the listener speaks only TLS 1.3, every client must present a
    /// certificate issued by `client_ca`, and its identity reaches components in the
    /// `x-wattlet-client-*` headers (see [`IDENTITY_HEADER_PREFIX`]).
    pub tls: Option<TlsOptions>,
}

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

struct LoadedComponent {
    handler: Handler,
    grants: Arc<Grants>,
}

/// The HTTP world a component exports, found when it is loaded.
enum Handler {
    /// `wasi:http/incoming-handler@0.2.x` (what spin-sdk 5 builds).
    P2(ProxyPre<SpinState>),
    /// `wasi:http/handler@0.3.0` (WASIp3): async, its response body may stream after `handle`
    /// has returned.
    P3(ServicePre<SpinState>),
}

impl Handler {
    fn new(pre: wasmtime::component::InstancePre<SpinState>) -> anyhow::Result<Self> {
        if let Ok(p2) = ProxyPre::new(pre.clone()) {
            return Ok(Handler::P2(p2));
        }
        ServicePre::new(pre).map(Handler::P3).map_err(|e| {
            anyhow!(e).context(
                "it exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3.0",
            )
        })
    }

    fn engine(&self) -> &Engine {
        match self {
            Handler::P2(pre) => pre.engine(),
            Handler::P3(pre) => pre.engine(),
        }
    }
}

/// A loaded application: everything checked, compiled and opened before the first request.
pub struct App {
    router: Router,
    components: BTreeMap<String, LoadedComponent>,
    pub metrics: Arc<Metrics>,
    max_request_bytes: usize,
    pub name: String,
    tls: Option<Arc<TlsState>>,
}

/// The pooling allocator reserves address space for every slot up front; kernels with 39-bit
/// user address space (some aarch64 builds) cannot give it, so fall back to on-demand allocation.
fn engine() -> anyhow::Result<Engine> {
    let mut pooled = Config::new();
    pooled
        .wasm_component_model(true)
        .wasm_component_model_async(true);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(256)
        .total_core_instances(512)
        .total_memories(256)
        .max_memory_size(256 << 20);
    // After each request, copy back only the pages the instance dirtied (found with Linux's
    // PAGEMAP_SCAN, kernel ≥ 6.7) instead of madvise-ing the whole memory away: no TLB-shootdown
    // IPIs and no page faults on the next request (3× requests/s for a trivial handler: see
    // BENCHMARKS.md, "Spin host").
    // Without PAGEMAP_SCAN, keep-resident would memset a fixed prefix on every request, so keep
    // wasmtime's default there.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
    }
    pooled
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true);
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(error) => {
            tracing::warn!(%error, "pooling allocator unavailable, falling back to on-demand instances");
            let mut config = Config::new();
            config
                .wasm_component_model(true)
                .wasm_component_model_async(true);
            Engine::new(&config).map_err(anyhow::Error::from)
        }
    }
}

impl App {
    /// Loads with variables from the process environment (`SPIN_VARIABLE_*`).
    pub fn load(options: &ServeOptions) -> anyhow::Result<Self> {
        Self::load_with_env(options, |k| std::env::var(k).ok())
    }

    /// Loads with variables from `env` instead of the process environment.
    pub fn load_with_env(
        options: &ServeOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let manifest = Manifest::load(&options.manifest)?;
        let router = Router::new(&manifest)?;
        let variables = ResolvedVariables::resolve(&manifest, env)?;
        let config = match &options.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| manifest.dir.join(".spin"));
        let config_dir = options
            .runtime_config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| manifest.dir.clone());
        let tls = match &options.tls {
            Some(tls) => Some(Arc::new(TlsState::load(tls).context("cannot set up TLS")?)),
            None => None,
        };
        let storage = Storage::open(&manifest, &config, &state_dir, &config_dir)?;
        let engine = engine()?;
        let mut linker = Linker::<SpinState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        host::add_to_linker(&mut linker)?;
        let mut components = BTreeMap::new();
        for (id, decl) in &manifest.component {
            if !decl.files.is_empty() {
                return Err(anyhow!(
                    "component {id:?} mounts `files`, which wattlet serve does not support yet; \
                     embed the data in the component or serve it from a database"
                ));
            }
            let path = manifest.source_path(id).map_err(|e| anyhow!(e))?;
            if !path.is_file() {
                return Err(anyhow!(
                    "component {id:?}: source {} does not exist (build it first: see `[component.{id}.build]` or the README)",
                    path.display()
                ));
            }
            let component = Component::from_file(&engine, &path)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("component {id:?}: cannot compile {}", path.display()))?;
            let handler = linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .and_then(Handler::new)
                .with_context(|| {
                    format!("component {id:?} is not a wasi:http component this host can run")
                })?;
            let grants = Grants {
                databases: decl
                    .sqlite_databases
                    .iter()
                    .filter_map(|l| storage.databases.get(l).map(|c| (l.clone(), c.clone())))
                    .collect(),
                stores: decl
                    .key_value_stores
                    .iter()
                    .filter_map(|l| storage.stores.get(l).map(|c| (l.clone(), c.clone())))
                    .collect(),
                variables: variables.for_component(id),
                outbound: OutboundPolicy::new(&decl.allowed_outbound_hosts)
                    .with_context(|| format!("component {id:?}"))?,
                environment: decl.environment.clone().into_iter().collect(),
            };
            components.insert(
                id.clone(),
                LoadedComponent {
                    handler,
                    grants: Arc::new(grants),
                },
            );
        }
        Ok(App {
            router,
            components,
            metrics: Arc::new(Metrics::new()),
            max_request_bytes: options.max_request_bytes,
            name: manifest.application.name.clone(),
            tls,
        })
    }

    /// `https` when the app serves mutual TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Whether [`serve`] speaks (mutual) TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.router
            .routes()
            .iter()
            .map(|r| (r.raw.as_str(), r.component.as_str()))
    }

    /// Serves one request without a client identity; never fails: errors become 4xx/5xx
    /// responses and a log line.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        self.handle_with_identity(request, client, local, None)
            .await
    }

    /// Serves one request from a client that presented `identity` (a verified certificate).
    /// Incoming `x-wattlet-client-*` headers are always removed first; a revoked certificate
    /// gets 403 before routing; otherwise the identity is passed on in
    /// [`DEVICE_HEADER`], [`EMAIL_HEADER`] and [`SERIAL_HEADER`].
    pub async fn handle_with_identity(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
        identity: Option<&ClientIdentity>,
    ) -> Response<Body> {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        strip_identity_headers(request.headers_mut());
        if let Some(identity) = identity {
            if self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.is_revoked(&identity.serial_hex))
            {
                tracing::warn!(%client, device = %identity.device_id, serial = %identity.serial_hex, path = %path, "refused a request: the client certificate is revoked");
                return plain(StatusCode::FORBIDDEN, "client certificate revoked\n");
            }
            if let Err(error) = set_identity_headers(request.headers_mut(), identity) {
                return plain(StatusCode::BAD_REQUEST, &format!("{error}\n"));
            }
        }
        let Some(matched) = self.router.route(&path) else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let component = matched.component.to_owned();
        let route = matched.raw.to_owned();
        let response = match self.run_component(request, &matched, client, local).await {
            Ok(response) => response,
            Err(HandleError::TooLarge) => {
                plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            }
            Err(HandleError::BadRequest(e)) => plain(StatusCode::BAD_REQUEST, &format!("{e}\n")),
            Err(HandleError::Component(e)) => {
                tracing::error!(component = %component, path = %path, error = format!("{e:#}"), "component failed");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
            }
        };
        let labels = ComponentLabels {
            component: component.clone(),
        };
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                component,
                route,
                status: response.status().as_u16(),
            })
            .inc();
        response
    }

    async fn run_component(
        &self,
        request: Request<Incoming>,
        matched: &crate::router::RouteMatch<'_>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Result<Response<Body>, HandleError> {
        let loaded = self
            .components
            .get(matched.component)
            .ok_or_else(|| HandleError::Component(anyhow!("route names an unloaded component")))?;
        let (mut parts, body) = request.into_parts();
        if parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|len| len > self.max_request_bytes)
        {
            return Err(HandleError::TooLarge);
        }
        let body = Limited::new(body, self.max_request_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    HandleError::TooLarge
                } else {
                    HandleError::BadRequest(anyhow!("cannot read request body: {e}"))
                }
            })?
            .to_bytes();
        spin_headers(&mut parts, matched, client, local, self.scheme())
            .map_err(HandleError::BadRequest)?;
        let labels = ComponentLabels {
            component: matched.component.to_owned(),
        };
        let instantiating = Instant::now();
        let mut store = Store::new(
            loaded.handler.engine(),
            SpinState::new(loaded.grants.clone()),
        );
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let to_guest = |e: wasmtime::Error| HandleError::Component(anyhow::Error::from(e));
        let live = self.metrics.live_instances.get_or_create(&labels).clone();
        // The guest may keep streaming the body after sending the head, so it runs in its own task.
        let task = match &loaded.handler {
            Handler::P2(pre) => {
                let body =
                    Full::new(body).map_err(|never: Infallible| -> ErrorCode { match never {} });
                let request = Request::from_parts(parts, body);
                let incoming = store
                    .data_mut()
                    .http()
                    .new_incoming_request(
                        if self.tls.is_some() {
                            Scheme::Https
                        } else {
                            Scheme::Http
                        },
                        request,
                    )
                    .map_err(to_guest)?;
                let outparam = store
                    .data_mut()
                    .http()
                    .new_response_outparam(sender)
                    .map_err(to_guest)?;
                let proxy = pre.instantiate_async(&mut store).await.map_err(to_guest)?;
                self.instantiated(&labels, instantiating, &live);
                tokio::task::spawn(async move {
                    let result = proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, incoming, outparam)
                        .await
                        .map(|()| None);
                    live.dec();
                    result
                })
            }
            Handler::P3(pre) => {
                let service = pre.instantiate_async(&mut store).await.map_err(to_guest)?;
                self.instantiated(&labels, instantiating, &live);
                tokio::task::spawn(async move {
                    let result = store
                        .run_concurrent(async move |accessor| {
                            serve_p3(accessor, &service, parts, body, sender).await
                        })
                        .await
                        .and_then(|served| served);
                    live.dec();
                    result
                })
            }
        };
        match receiver.await {
            Ok(Ok(response)) => {
                Ok(response.map(|body| body.map_err(anyhow::Error::from).boxed_unsync()))
            }
            Ok(Err(code)) => Err(HandleError::Component(anyhow!(
                "component returned error code {code:?}"
            ))),
            Err(_) => {
                let error = match task.await {
                    Ok(Ok(Some(code))) => anyhow!("component returned error code {code:?}"),
                    Ok(Ok(None)) => anyhow!("component returned without setting a response"),
                    Ok(Err(trap)) => anyhow::Error::from(trap),
                    Err(join) => anyhow!("component task failed: {join}"),
                };
                Err(HandleError::Component(error))
            }
        }
    }

    fn instantiated(
        &self,
        labels: &ComponentLabels,
        started: Instant,
        live: &prometheus_client::metrics::gauge::Gauge,
    ) {
        self.metrics
            .instantiation
            .get_or_create(labels)
            .observe(started.elapsed().as_secs_f64());
        live.inc();
    }
}

type GuestResponse = Result<Response<UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>>, ErrorCode>;

/// Calls a p3 handler inside the store's event loop and hands its response to `sender`. The
/// loop must keep running until the body has been sent, since a p3 guest may write the body
/// after `handle` has returned: the body holds a guard whose drop (body finished, or the client
/// gone) ends the wait. Returns the handler's error code when it answered with one.
async fn serve_p3(
    accessor: &wasmtime::component::Accessor<SpinState>,
    service: &p3::bindings::Service,
    parts: http::request::Parts,
    body: Bytes,
    sender: tokio::sync::oneshot::Sender<GuestResponse>,
) -> wasmtime::Result<Option<p3::bindings::http::types::ErrorCode>> {
    let body = Full::new(body)
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} });
    // Forbidden headers are removed as the host's hooks say, as for p2 requests.
    let headers = accessor.with(|mut store| {
        wasmtime_wasi_http::FieldMap::new_immutable(store.data_mut().http().hooks, parts.headers)
    });
    let uri = parts.uri.into_parts();
    let (request, request_io) = p3::Request::new(
        parts.method,
        uri.scheme,
        uri.authority,
        uri.path_and_query,
        headers,
        None,
        body,
    );
    let response = match service.handle(accessor, request).await? {
        Ok(response) => response,
        Err(code) => return Ok(Some(code)),
    };
    let response = accessor.with(|mut store| response.into_http(&mut store, request_io))?;
    let (body_sent, body_dropped) = tokio::sync::oneshot::channel::<()>();
    let response = response.map(|body| {
        body.map_err(move |e| {
            let _guard = &body_sent;
            e
        })
        .boxed_unsync()
    });
    if sender.send(Ok(response)).is_ok() {
        let _ = body_dropped.await;
    }
    Ok(None)
}

enum HandleError {
    TooLarge,
    BadRequest(anyhow::Error),
    Component(anyhow::Error),
}

/// The `spin-*` request headers Spin sets. Incoming headers of the same names are replaced, so
/// a client cannot spoof them.
fn spin_headers(
    parts: &mut http::request::Parts,
    matched: &crate::router::RouteMatch<'_>,
    client: SocketAddr,
    local: SocketAddr,
    scheme: &str,
) -> anyhow::Result<()> {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| local.to_string());
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let full_url = format!("{scheme}://{host}{path_and_query}");
    let component_route = if matched.prefix.is_empty() {
        "/"
    } else {
        matched.prefix
    };
    let values = [
        ("spin-full-url", full_url.clone()),
        ("spin-path-info", matched.path_info.clone()),
        ("spin-matched-route", matched.raw.to_owned()),
        ("spin-raw-component-route", matched.raw.to_owned()),
        ("spin-component-route", component_route.to_owned()),
        ("spin-base-path", "/".to_owned()),
        ("spin-client-addr", client.to_string()),
    ];
    let headers = &mut parts.headers;
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for key in spoofed {
        headers.remove(key);
    }
    for (name, value) in values {
        headers.insert(
            name,
            value.parse().with_context(|| format!("header {name}"))?,
        );
    }
    // wasi:http needs an absolute URI to give the guest its authority and scheme.
    parts.uri = full_url.parse().context("request URI")?;
    Ok(())
}

/// Removes every header whose name starts with [`IDENTITY_HEADER_PREFIX`]: only the host sets
/// them.
fn strip_identity_headers(headers: &mut http::HeaderMap) {
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(IDENTITY_HEADER_PREFIX))
        .cloned()
        .collect();
    for key in spoofed {
        headers.remove(key);
    }
}

fn set_identity_headers(
    headers: &mut http::HeaderMap,
    identity: &ClientIdentity,
) -> anyhow::Result<()> {
    for (name, value) in [
        (DEVICE_HEADER, &identity.device_id),
        (EMAIL_HEADER, &identity.email),
        (SERIAL_HEADER, &identity.serial_hex),
    ] {
        headers.insert(
            name,
            http::HeaderValue::from_str(value)
                .with_context(|| format!("client certificate: {name} {value:?}"))?,
        );
    }
    Ok(())
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Who is at the other end of a connection.
#[derive(Clone)]
enum Peer {
    /// Plain HTTP: no identity.
    Anonymous,
    /// A verified device certificate.
    Device(Arc<ClientIdentity>),
    /// A verified certificate that names no wattlet device: every request gets 403.
    Unidentified(Arc<str>),
}

/// Accepts connections until `shutdown` resolves; each connection is served in its own task.
/// With TLS configured (see [`ServeOptions::tls`]) each connection first completes a TLS 1.3
/// handshake with a verified client certificate; a failed handshake closes it (log line).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        // A streamed response goes out in several small writes (head, then each body chunk);
        // with Nagle's algorithm each later write would wait for the client's delayed ACK
        // (40 ms on Linux), which the p3 bench showed.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%client, %error, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        match app.tls.clone() {
            None => {
                tokio::spawn(serve_connection(
                    app,
                    stream,
                    client,
                    local,
                    Peer::Anonymous,
                ));
            }
            Some(tls) => {
                tokio::spawn(async move {
                    let acceptor = tls.acceptor();
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::info!(%client, %error, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%client, "TLS handshake timed out");
                            return;
                        }
                    };
                    let peer = match stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                    {
                        Some(cert) => match ClientIdentity::from_der(cert) {
                            Ok(identity) => Peer::Device(Arc::new(identity)),
                            Err(error) => {
                                tracing::warn!(%client, %error, "client certificate names no device");
                                Peer::Unidentified(error.to_string().into())
                            }
                        },
                        // Only reachable with ClientAuth::Optional: rustls refuses the
                        // handshake otherwise.
                        None => Peer::Anonymous,
                    };
                    serve_connection(app, stream, client, local, peer).await;
                });
            }
        }
    }
}

async fn serve_connection<S>(
    app: Arc<App>,
    stream: S,
    client: SocketAddr,
    local: SocketAddr,
    peer: Peer,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let app = app.clone();
        let peer = peer.clone();
        async move {
            let response = match &peer {
                Peer::Anonymous => app.handle(request, client, local).await,
                Peer::Device(identity) => {
                    app.handle_with_identity(request, client, local, Some(identity))
                        .await
                }
                Peer::Unidentified(why) => plain(
                    StatusCode::FORBIDDEN,
                    &format!("client certificate not accepted: {why}\n"),
                ),
            };
            Ok::<_, Infallible>(response)
        }
    });
    if let Err(error) = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%client, %error, "connection ended with an error");
    }
}
