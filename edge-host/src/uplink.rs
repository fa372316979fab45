//! The upload component (`wattlet:edge/uplink`) on wasmtime, with the device's identity.
//!
//! The component builds the Data API requests and reads the answers; its outgoing HTTP goes
//! through [`DeviceHttp`], which lets it reach only the configured cloud and only over mutual
//! TLS 1.3 with the device certificate. The private key never enters the component.
//!
//! Each call runs in a fresh instance within [`Limits`] (time and memory); a call that traps or
//! passes a limit is logged and answered as the cloud not reached ([`UplinkError::Transport`]):
//! the measurements stay buffered and the daemon goes on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use wattlet_runtime::sandbox::{self, Limits};
use wattlet_runtime::uplink::bindings::exports::wattlet::edge::uplink as wit;
use wattlet_runtime::uplink::bindings::wattlet::survey::types as wit_survey;
use wattlet_runtime::uplink::bindings::{Upload, UploadPre};
use wattlet_survey::{ConsentState, Measurement};
pub use wattlet_upload::{
    BufferDepth, DeviceStatus, DiagnosticsBundle, Error as UplinkError, MeasurementRefusal,
    MeterStatus, ProbeStats, RolloutAdmission, SetAside, SkippedRange, UpdateOutcome, UpdateState,
    UploadOutcome,
};

const WHAT: &str = "wattlet:edge upload";

/// What the host provides the upload component: WASI and outgoing HTTP through [`DeviceHttp`].
fn linker(engine: &Engine) -> anyhow::Result<Linker<LinkState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// The compiled upload component and the device's TLS identity.
pub struct Uplink {
    pre: UploadPre<LinkState>,
    cloud: String,
    http: DeviceHttp,
    limits: Limits,
}

impl Uplink {
    pub fn load(
        engine: &Engine,
        path: &Path,
        cloud: &str,
        tls: Arc<ClientConfig>,
    ) -> anyhow::Result<Self> {
        let pre = wattlet_runtime::engine::link(&linker(engine)?, path, WHAT, UploadPre::new)?;
        Self::with_pre(pre, cloud, tls)
    }

    /// The uplink from a component already compiled for `engine` (an update's precompiled
    /// file); fails if it does not link against this host.
    pub fn from_component(
        engine: &Engine,
        component: &Component,
        cloud: &str,
        tls: Arc<ClientConfig>,
    ) -> anyhow::Result<Self> {
        let pre = wattlet_runtime::engine::link_component(
            &linker(engine)?,
            component,
            WHAT,
            UploadPre::new,
        )?;
        Self::with_pre(pre, cloud, tls)
    }

    /// Links `component` with the host's real linker for the upload world, as before a switch.
    pub fn link_check(engine: &Engine, component: &Component) -> anyhow::Result<()> {
        wattlet_runtime::engine::link_component(&linker(engine)?, component, WHAT, UploadPre::new)
            .map(drop)
    }

    fn with_pre(
        pre: UploadPre<LinkState>,
        cloud: &str,
        tls: Arc<ClientConfig>,
    ) -> anyhow::Result<Self> {
        // The component checks the URL as well; the host needs the authority to allow.
        let authority = wattlet_upload::Cloud::parse(cloud)
            .with_context(|| format!("cloud URL {cloud:?}"))?
            .authority;
        Ok(Uplink {
            pre,
            cloud: cloud.to_owned(),
            http: DeviceHttp { authority, tls },
            limits: Limits::UPLOAD,
        })
    }

    /// The same uplink, each call limited by `limits` instead of [`Limits::UPLOAD`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    async fn instance(&self) -> anyhow::Result<(Store<LinkState>, Upload)> {
        let state = LinkState {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: self.http.clone(),
            limits: self.limits.store_limits(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // One deadline for instantiating and the call: the instance serves one call.
        sandbox::arm(&mut store, self.limits.call);
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok((store, bindings))
    }

    /// Awaits one call within the time limit (the epoch stops the guest, the timeout a wait
    /// on the host's side); a failure is logged and becomes [`UplinkError::Transport`].
    async fn bounded<T>(
        &self,
        call: &str,
        result: impl Future<Output = wasmtime::Result<T>>,
    ) -> Result<T, UplinkError> {
        let error = match tokio::time::timeout(self.limits.call, result).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => sandbox::describe(&error, &self.limits),
            Err(_) => format!("no answer within its limit of {:?}", self.limits.call),
        };
        tracing::error!(call, %error, "the upload component failed");
        Err(UplinkError::Transport(format!(
            "the upload component failed: {error}"
        )))
    }

    /// Sends a batch; `Ok(Ok(outcome))` lists what the cloud acknowledged and what it refused
    /// measurement by measurement.
    pub async fn upload(
        &self,
        batch: &[Measurement],
    ) -> anyhow::Result<Result<UploadOutcome, UplinkError>> {
        let (mut store, bindings) = self.instance().await?;
        let batch: Vec<_> = batch.iter().map(wit_survey::Measurement::from).collect();
        let call = bindings
            .wattlet_edge_uplink()
            .call_upload(&mut store, &self.cloud, &batch);
        Ok(self
            .bounded("upload", call)
            .await
            .and_then(|result| result.map(UploadOutcome::from).map_err(UplinkError::from)))
    }

    pub async fn fetch_consent(&self) -> anyhow::Result<Result<ConsentState, UplinkError>> {
        let (mut store, bindings) = self.instance().await?;
        let call = bindings
            .wattlet_edge_uplink()
            .call_fetch_consent(&mut store, &self.cloud);
        Ok(self
            .bounded("fetch-consent", call)
            .await
            .and_then(|result| result.map(ConsentState::from).map_err(UplinkError::from)))
    }

    /// Reports the status; `Ok(Ok(Some(id)))` when an administrator asked for a diagnostics
    /// bundle.
    pub async fn report_status(
        &self,
        status: &DeviceStatus,
    ) -> anyhow::Result<Result<Option<String>, UplinkError>> {
        let (mut store, bindings) = self.instance().await?;
        let status = wit::DeviceStatus::from(status);
        let call =
            bindings
                .wattlet_edge_uplink()
                .call_report_status(&mut store, &self.cloud, &status);
        Ok(self
            .bounded("report-status", call)
            .await
            .and_then(|result| result.map_err(UplinkError::from)))
    }

    /// Uploads the diagnostics bundle asked for as `request`.
    pub async fn upload_diagnostics(
        &self,
        request: &str,
        bundle: &DiagnosticsBundle,
    ) -> anyhow::Result<Result<(), UplinkError>> {
        let (mut store, bindings) = self.instance().await?;
        let bundle = wit::DiagnosticsBundle::from(bundle);
        let call = bindings.wattlet_edge_uplink().call_upload_diagnostics(
            &mut store,
            &self.cloud,
            request,
            &bundle,
        );
        Ok(self
            .bounded("upload-diagnostics", call)
            .await
            .and_then(|result| result.map_err(UplinkError::from)))
    }

    /// For each component, the newest version a staged rollout admits this device to.
    pub async fn fetch_rollouts(
        &self,
    ) -> anyhow::Result<Result<Vec<RolloutAdmission>, UplinkError>> {
        let (mut store, bindings) = self.instance().await?;
        let call = bindings
            .wattlet_edge_uplink()
            .call_fetch_rollouts(&mut store, &self.cloud);
        Ok(self
            .bounded("fetch-rollouts", call)
            .await
            .and_then(|result| {
                result
                    .map(|list| list.into_iter().map(RolloutAdmission::from).collect())
                    .map_err(UplinkError::from)
            }))
    }

    /// Reports how installing a rolled-out version ended.
    pub async fn report_update(
        &self,
        outcome: &UpdateOutcome,
    ) -> anyhow::Result<Result<(), UplinkError>> {
        let (mut store, bindings) = self.instance().await?;
        let outcome = wit::UpdateOutcome::from(outcome);
        let call =
            bindings
                .wattlet_edge_uplink()
                .call_report_update(&mut store, &self.cloud, &outcome);
        Ok(self
            .bounded("report-update", call)
            .await
            .and_then(|result| result.map_err(UplinkError::from)))
    }
}

struct LinkState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DeviceHttp,
    limits: wasmtime::StoreLimits,
}

impl WasiView for LinkState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for LinkState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing HTTP of the upload component: only to the cloud, only over mutual TLS.
#[derive(Clone)]
struct DeviceHttp {
    authority: String,
    tls: Arc<ClientConfig>,
}

/// Bound on every exchange with the cloud; the component's own timeouts may be shorter.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Answers larger than this are not the Data API's.
const MAX_ANSWER: usize = 8 << 20;

type Sent = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
)>;

impl WasiHttpHooks for DeviceHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let _ = (options, fut);
        let uri = request.uri();
        let to_cloud = uri.scheme_str() == Some("https")
            && uri.authority().map(|a| a.as_str()) == Some(self.authority.as_str());
        if !to_cloud {
            tracing::warn!(uri = %uri, "upload component tried to reach something other than the cloud");
            return Box::new(async { Err(ErrorCode::HttpRequestDenied.into()) });
        }
        let authority = self.authority.clone();
        let tls = self.tls.clone();
        Box::new(async move {
            let response =
                tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&authority, tls, request))
                    .await
                    .map_err(|_| ErrorCode::ConnectionTimeout)??;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// One request over a fresh mutual-TLS connection; the whole answer is read before returning.
async fn exchange(
    authority: &str,
    tls: Arc<ClientConfig>,
    request: http::Request<WasiBody>,
) -> Result<http::Response<WasiBody>, ErrorCode> {
    let (host, port) = split_authority(authority).ok_or(ErrorCode::HttpRequestUriInvalid)?;
    let server_name = match host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => ServerName::from(ip),
        Err(_) => {
            ServerName::try_from(host.to_owned()).map_err(|_| ErrorCode::HttpRequestUriInvalid)?
        }
    };
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(|c| c == '[' || c == ']'), port))
        .await
        .map_err(|e| {
            tracing::debug!(error = %e, "cannot connect to the cloud");
            ErrorCode::ConnectionRefused
        })?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "TLS handshake with the cloud failed");
            ErrorCode::TlsProtocolError
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
            .await
            .map_err(|_| ErrorCode::ConnectionTerminated)?;
    let driver = tokio::spawn(connection);
    let (mut parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|_| ErrorCode::HttpRequestBodySize(None))?
        .to_bytes();
    // On the wire the request line carries only the path; the authority goes in `host`.
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
    let response = sender
        .send_request(http::Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|_| ErrorCode::ConnectionTerminated)?;
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|_| ErrorCode::HttpResponseBodySize(None))?
        .to_bytes();
    driver.abort();
    let body: WasiBody = Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(http::Response::from_parts(parts, body))
}

/// `host:port` → (host, port); IPv6 hosts keep their brackets.
fn split_authority(authority: &str) -> Option<(&str, u16)> {
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            Some((host, port.parse().ok()?))
        }
        _ if !authority.is_empty() => Some((authority, 443)),
        _ => None,
    }
}
