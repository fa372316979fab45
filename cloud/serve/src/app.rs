//! A loaded application: the manifest checked, every component compiled and pre-instantiated,
//! its grants resolved, before the first request; and how one request is answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wattlet_tls::ClientIdentity;

use crate::body::{self, BodyError, BodyFailure, RequestBody};
use crate::engine::{self, PoolSize};
use crate::executor::{ExecuteError, Executor, Guest};
use crate::files;
use crate::headers::{self, Connection, HeaderError};
use crate::host::{Grants, SpinState};
use crate::limits::Limits;
use crate::manifest::{ComponentDecl, Manifest};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
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
    /// Mutual TLS 1.3: when set, the listener speaks only TLS 1.3, every client must present a
    /// certificate issued by `client_ca`, and its identity reaches components in the
    /// `x-wattlet-client-*` headers (see [`crate::headers`]).
    pub tls: Option<TlsOptions>,
    /// Connections, concurrent requests, timeouts and instance memory (see [`Limits`]).
    pub limits: Limits,
}

struct LoadedComponent {
    executor: Executor,
    grants: Arc<Grants>,
    id: Arc<str>,
    request_timeout: Duration,
    max_memory: usize,
}

/// A loaded application: everything checked, compiled and opened before the first request.
pub struct App {
    router: Router,
    components: BTreeMap<String, LoadedComponent>,
    pub metrics: Arc<Metrics>,
    max_request_bytes: usize,
    pub name: String,
    tls: Option<Arc<TlsState>>,
    limits: Limits,
    /// One permit per request that may run a component at once.
    running: Arc<Semaphore>,
    /// The key of the identity proofs: the application variable `client_identity_key`
    /// (`wattlet_survey::identity`), when the manifest declares it.
    identity_key: Option<Arc<[u8]>>,
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
    #[error("{0} requests are running already; none finished within {1:?}")]
    Busy(usize, Duration),
    #[error("no random numbers for the identity proof")]
    NoRandom,
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
        let identity_key = identity_key(&variables, options.tls.is_some())?;
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
        let limits = &options.limits;
        let overridden = (limits.request_timeout.components.keys())
            .map(|id| ("--request-timeout", id))
            .chain(
                (limits.max_instance_memory.components.keys())
                    .map(|id| ("--max-instance-memory", id)),
            );
        for (kind, unknown) in overridden {
            if !manifest.component.contains_key(unknown) {
                return Err(anyhow!(
                    "{kind} names component {unknown:?}, which the manifest does not have"
                ));
            }
        }
        let max_concurrent = limits.max_concurrent_requests.max(1);
        let engine = engine::new(PoolSize {
            max_memory: limits
                .max_instance_memory
                .values()
                .max()
                .unwrap_or(usize::MAX),
            // A few more than may run: an instance's slot is given back as it is dropped.
            instances: u32::try_from(max_concurrent + 8).unwrap_or(u32::MAX),
        })?;
        let linker = engine::linker(&engine)?;
        let mut components = BTreeMap::new();
        for (id, decl) in &manifest.component {
            let executor = compile(&manifest, id, &engine, &linker)?;
            let mut grants = grants(id, decl, &storage, &variables)?;
            grants.mounts = files::mounts(id, &decl.files, &manifest.dir, &state_dir)?;
            components.insert(
                id.clone(),
                LoadedComponent {
                    executor,
                    grants: Arc::new(grants),
                    id: id.as_str().into(),
                    request_timeout: limits.request_timeout.get(id),
                    max_memory: limits.max_instance_memory.get(id),
                },
            );
        }
        let mut metrics = Metrics::new();
        if let Some(tls) = &tls {
            tls.register(&mut metrics.registry);
        }
        Ok(App {
            router,
            components,
            metrics: Arc::new(metrics),
            max_request_bytes: options.max_request_bytes,
            name: manifest.application.name.clone(),
            tls,
            limits: limits.clone(),
            running: Arc::new(Semaphore::new(max_concurrent)),
            identity_key,
        })
    }

    /// The limits the application is served with.
    pub fn limits(&self) -> &Limits {
        &self.limits
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
    /// `x-wattlet-client-*` headers, with their proof when the application has an identity key.
    pub async fn handle_with_identity(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
        identity: Option<&ClientIdentity>,
    ) -> Response<Body> {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        if let Some(refused) = crate::listener::admit(
            request.headers_mut(),
            self.tls.as_deref(),
            identity,
            client,
            &path,
        ) {
            return refused;
        }
        let Some(matched) = self.router.route(&path) else {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        };
        let connection = Connection {
            client,
            local,
            scheme: self.scheme(),
        };
        let response = match self
            .run(request, &matched, &connection, &path, identity)
            .await
        {
            Ok(response) => response,
            Err(RequestError::Body(BodyError::TooLarge { .. })) => too_large(),
            Err(RequestError::Body(BodyError::TimedOut(_))) => body_timed_out(),
            Err(error @ (RequestError::Body(_) | RequestError::Header(_))) => {
                plain(StatusCode::BAD_REQUEST, &format!("{error}\n"))
            }
            Err(error @ RequestError::Busy(..)) => {
                tracing::warn!(component = %matched.component, path = %path, %error, "request refused: server busy");
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server busy, try again later\n",
                )
            }
            Err(RequestError::Execute(error)) => {
                if !error.logged_by_task() {
                    tracing::error!(component = %matched.component, path = %path, %error, "component failed");
                }
                match error {
                    ExecuteError::Deadline => plain(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the component did not answer in time\n",
                    ),
                    _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n"),
                }
            }
            Err(error @ (RequestError::Unloaded(_) | RequestError::NoRandom)) => {
                tracing::error!(component = %matched.component, path = %path, %error, "component failed");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
            }
        };
        self.record(&matched, started, response.status());
        response
    }

    /// Sets Spin's headers and runs the matched component in a slot among the concurrent
    /// requests, with its deadline and memory limit, the body streaming in within its limits.
    /// When the body failed (too large, stalled) before the component answered, the host
    /// answers for it. The identity proof covers headers, method and path, not the body, so it
    /// is made before the body streams in.
    async fn run(
        &self,
        request: Request<Incoming>,
        matched: &RouteMatch<'_>,
        connection: &Connection<'_>,
        path: &str,
        identity: Option<&ClientIdentity>,
    ) -> Result<Response<Body>, RequestError> {
        let loaded = self
            .components
            .get(matched.component)
            .ok_or_else(|| RequestError::Unloaded(matched.component.to_owned()))?;
        let (mut parts, body) = request.into_parts();
        body::check_declared_length(&parts.headers, self.max_request_bytes)?;
        if let (Some(identity), Some(key)) = (identity, &self.identity_key) {
            headers::prove_identity(
                &mut parts,
                identity,
                key,
                headers::unix_now(),
                &headers::nonce().ok_or(RequestError::NoRandom)?,
            )?;
        }
        headers::set_spin_headers(&mut parts, matched, connection)?;
        let permit = match self.running.clone().try_acquire_owned() {
            Ok(permit) => permit,
            // Wait for a slot, as long as the request could have run.
            Err(_) => {
                tokio::time::timeout(loaded.request_timeout, self.running.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or(RequestError::Busy(
                        self.limits.max_concurrent_requests,
                        loaded.request_timeout,
                    ))?
            }
        };
        let (body, body_status) =
            RequestBody::new(body, self.max_request_bytes, self.limits.body_timeout);
        let deadline = Instant::now() + loaded.request_timeout;
        let state = SpinState::new(loaded.grants.clone()).limited(deadline, loaded.max_memory);
        let metrics = self.metrics.instances(matched.component);
        let guest = Guest {
            permit,
            component: loaded.id.clone(),
            path: path.into(),
        };
        let request = Request::from_parts(parts, body);
        let result = loaded
            .executor
            .execute(state, request, &metrics, guest)
            .await;
        match body_status.failure() {
            Some(BodyFailure::TooLarge) => Ok(too_large()),
            Some(BodyFailure::TimedOut) => Ok(body_timed_out()),
            Some(BodyFailure::Broken) | None => Ok(result?),
        }
    }

    fn record(&self, matched: &RouteMatch<'_>, started: Instant, status: StatusCode) {
        self.metrics
            .duration
            .get_or_create(&RouteLabels {
                component: matched.component.to_owned(),
                route: matched.raw.to_owned(),
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

fn too_large() -> Response<Body> {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
}

fn body_timed_out() -> Response<Body> {
    plain(
        StatusCode::REQUEST_TIMEOUT,
        "request body stalled: send it without long pauses\n",
    )
}

/// The key of the identity proofs, from the application variable
/// `wattlet_survey::identity::KEY_VARIABLE`; a weak one is a start-up error. Without one, a
/// mutual-TLS server passes identities unproven (a warning: the Data API refuses them).
fn identity_key(variables: &ResolvedVariables, tls: bool) -> anyhow::Result<Option<Arc<[u8]>>> {
    let name = wattlet_survey::identity::KEY_VARIABLE;
    match variables.application(name) {
        Some(key) => {
            wattlet_access_token::check_secret(key)
                .map_err(|weak| anyhow!("variable {name:?} is too weak: {weak}"))?;
            Ok(Some(Arc::from(key.as_bytes())))
        }
        None => {
            if tls {
                tracing::warn!(
                    "the manifest declares no variable {name:?}: client identities reach components without proof"
                );
            }
            Ok(None)
        }
    }
}

/// Compiles a component and finds its executor from what it exports.
fn compile(
    manifest: &Manifest,
    id: &str,
    engine: &Engine,
    linker: &Linker<SpinState>,
) -> anyhow::Result<Executor> {
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
    // The copy-on-write images of its memories (a memfd each) are made now rather than at the
    // first request, which might come when a flood holds every file descriptor.
    component
        .initialize_copy_on_write_image()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component {id:?}: cannot prepare its memory image"))?;
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
        mounts: Vec::new(),
    })
}
