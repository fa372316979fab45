//! A loaded application: the manifest checked, every component compiled and pre-instantiated,
//! its grants resolved, before the first request; and how one request is answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wattlet_tls::ClientIdentity;

use crate::body::{self, BodyError};
use crate::engine;
use crate::executor::{ExecuteError, Executor};
use crate::headers::{self, Connection, HeaderError};
use crate::host::{Grants, SpinState};
use crate::manifest::{ComponentDecl, Manifest};
use crate::metrics::{ComponentLabels, Metrics, RequestLabels};
use crate::outbound::OutboundPolicy;
use crate::response::{Body, plain};
use crate::router::{RouteMatch, Router};
use crate::storage::{RuntimeConfig, Storage};
use crate::tls::{TlsOptions, TlsState};
use crate::variables::ResolvedVariables;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub manifest: PathBuf,
    /// Where `.spin`-style state (default database and store) lives; default: next to the manifest.
    pub state_dir: Option<PathBuf>,
    pub runtime_config: Option<PathBuf>,
    /// Larger request bodies get 413 before any component runs.
    pub max_request_bytes: usize,
    /// How long a request may take: its SQLite statements still running then are interrupted.
    /// `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Mutual TLS 1.3: when set, the listener speaks only TLS 1.3, every client must present a
    /// certificate issued by `client_ca`, and its identity reaches components in the
    /// `x-wattlet-client-*` headers (see [`crate::headers`]).
    pub tls: Option<TlsOptions>,
}

struct LoadedComponent {
    executor: Executor,
    grants: Arc<Grants>,
}

/// A loaded application: everything checked, compiled and opened before the first request.
pub struct App {
    router: Router,
    components: BTreeMap<String, LoadedComponent>,
    pub metrics: Arc<Metrics>,
    max_request_bytes: usize,
    request_timeout: Option<Duration>,
    pub name: String,
    tls: Option<Arc<TlsState>>,
}

/// Why a routed request got no answer from its component.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error("route names component {0:?}, which is not loaded")]
    Unloaded(String),
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
        // Relative paths in a runtime config are relative to its file, as in Spin.
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
        let engine = engine::new()?;
        let linker = engine::linker(&engine)?;
        let mut components = BTreeMap::new();
        for (id, decl) in &manifest.component {
            let executor = compile(&manifest, id, decl, &engine, &linker)?;
            let grants = grants(id, decl, &storage, &variables)?;
            components.insert(
                id.clone(),
                LoadedComponent {
                    executor,
                    grants: Arc::new(grants),
                },
            );
        }
        Ok(App {
            router,
            components,
            metrics: Arc::new(Metrics::new()),
            max_request_bytes: options.max_request_bytes,
            request_timeout: options.request_timeout,
            name: manifest.application.name.clone(),
            tls,
        })
    }

    /// `https` when the app serves mutual TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Whether [`crate::listener::serve`] speaks (mutual) TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn tls(&self) -> Option<&Arc<TlsState>> {
        self.tls.as_ref()
    }

    /// (route as written, component), most specific route first.
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
    /// Incoming `spin-*` and `x-wattlet-client-*` headers are always removed first; a revoked
    /// certificate gets 403 before routing; otherwise the identity is passed on in the
    /// `x-wattlet-client-*` headers.
    pub async fn handle_with_identity(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
        identity: Option<&ClientIdentity>,
    ) -> Response<Body> {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        headers::strip_reserved(request.headers_mut());
        if let Some(identity) = identity {
            if self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.is_revoked(&identity.serial_hex))
            {
                tracing::warn!(%client, device = %identity.device_id, serial = %identity.serial_hex, path = %path, "refused a request: the client certificate is revoked");
                return plain(StatusCode::FORBIDDEN, "client certificate revoked\n");
            }
            if let Err(error) = headers::set_identity(request.headers_mut(), identity) {
                return plain(StatusCode::BAD_REQUEST, &format!("{error}\n"));
            }
        }
        let Some(matched) = self.router.route(&path) else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let connection = Connection {
            client,
            local,
            scheme: self.scheme(),
        };
        let response = match self.run(request, &matched, &connection).await {
            Ok(response) => response,
            Err(RequestError::Body(BodyError::TooLarge { .. })) => {
                plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            }
            Err(error @ (RequestError::Body(_) | RequestError::Header(_))) => {
                plain(StatusCode::BAD_REQUEST, &format!("{error}\n"))
            }
            Err(error @ (RequestError::Execute(_) | RequestError::Unloaded(_))) => {
                tracing::error!(component = %matched.component, path = %path, error = %error, "component failed");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
            }
        };
        self.record(&matched, started, response.status());
        response
    }

    /// Reads the body within the limit, sets Spin's headers and runs the matched component.
    async fn run(
        &self,
        request: Request<Incoming>,
        matched: &RouteMatch<'_>,
        connection: &Connection<'_>,
    ) -> Result<Response<Body>, RequestError> {
        let deadline = self.request_timeout.map(|timeout| Instant::now() + timeout);
        let loaded = self
            .components
            .get(matched.component)
            .ok_or_else(|| RequestError::Unloaded(matched.component.to_owned()))?;
        let (mut parts, body) = request.into_parts();
        body::check_declared_length(&parts.headers, self.max_request_bytes)?;
        let body: Bytes = body::read(body, self.max_request_bytes).await?;
        headers::set_spin_headers(&mut parts, matched, connection)?;
        let state = SpinState::new(loaded.grants.clone()).with_deadline(deadline);
        let metrics = self.metrics.instances(matched.component);
        let request = Request::from_parts(parts, body);
        Ok(loaded.executor.execute(state, request, &metrics).await?)
    }

    fn record(&self, matched: &RouteMatch<'_>, started: Instant, status: StatusCode) {
        self.metrics
            .duration
            .get_or_create(&ComponentLabels {
                component: matched.component.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                component: matched.component.to_owned(),
                route: matched.raw.to_owned(),
                status: status.as_u16(),
            })
            .inc();
    }
}

/// Compiles a component and finds its executor from what it exports.
fn compile(
    manifest: &Manifest,
    id: &str,
    decl: &ComponentDecl,
    engine: &Engine,
    linker: &Linker<SpinState>,
) -> anyhow::Result<Executor> {
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
    let component = Component::from_file(engine, &path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component {id:?}: cannot compile {}", path.display()))?;
    linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .and_then(Executor::new)
        .with_context(|| format!("component {id:?} is not a wasi:http component this host can run"))
}

/// What the manifest grants one component: the databases, stores and variables it names (all
/// opened or resolved already), its outbound hosts and its environment.
fn grants(
    id: &str,
    decl: &ComponentDecl,
    storage: &Storage,
    variables: &ResolvedVariables,
) -> anyhow::Result<Grants> {
    let granted = |labels: &[String], opened: &BTreeMap<_, _>| {
        labels
            .iter()
            .filter_map(|l| opened.get(l).map(|c| (l.clone(), Arc::clone(c))))
            .collect()
    };
    Ok(Grants {
        databases: granted(&decl.sqlite_databases, &storage.databases),
        stores: granted(&decl.key_value_stores, &storage.stores),
        variables: variables.for_component(id),
        outbound: OutboundPolicy::new(&decl.allowed_outbound_hosts)
            .with_context(|| format!("component {id:?}"))?,
        environment: decl.environment.clone().into_iter().collect(),
    })
}
