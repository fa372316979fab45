//! Running one request in a fresh component instance: one executor per HTTP world a component
//! can export, chosen from its exports when it is loaded (as Spin's `trigger-http` has one per
//! handler ABI).
//!
//! Each instance is made from a pre-instantiated component and runs in a task of its own, since
//! the guest may keep writing the response body after it has handed over the response head.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::{Request, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmtime::Engine;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use crate::host::SpinState;
use crate::metrics::InstanceMetrics;
use crate::response::Body;

mod p2;
mod p3;

/// How a request reached a component that could not answer it.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("cannot hand the request to the component: {0:#}")]
    Request(anyhow::Error),
    #[error("cannot instantiate the component: {0:#}")]
    Instantiate(anyhow::Error),
    #[error("component returned error code {0}")]
    ErrorCode(String),
    #[error("component returned without setting a response")]
    NoResponse,
    #[error("component trapped: {0:#}")]
    Trap(anyhow::Error),
    #[error("component task failed: {0}")]
    Task(String),
}

/// The executor of one component, found from its exports.
pub enum Executor {
    /// `wasi:http/incoming-handler@0.2.x` (what spin-sdk 5 builds).
    P2(p2::Executor),
    /// `wasi:http/handler@0.3.0` (WASIp3): async, its response body may stream after `handle`
    /// has returned.
    P3(p3::Executor),
}

impl Executor {
    pub fn new(pre: InstancePre<SpinState>) -> anyhow::Result<Self> {
        if let Ok(executor) = p2::Executor::new(pre.clone()) {
            return Ok(Executor::P2(executor));
        }
        p3::Executor::new(pre).map(Executor::P3).map_err(|e| {
            e.context(
                "it exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3.0",
            )
        })
    }

    pub fn engine(&self) -> &Engine {
        match self {
            Executor::P2(executor) => executor.engine(),
            Executor::P3(executor) => executor.engine(),
        }
    }

    /// Runs `request` (with an absolute URI: its scheme and authority reach the guest) in a new
    /// instance with `state`, and returns the response once the guest has sent its head.
    pub async fn execute(
        &self,
        state: SpinState,
        request: Request<Bytes>,
        metrics: &InstanceMetrics,
    ) -> Result<Response<Body>, ExecuteError> {
        match self {
            Executor::P2(executor) => executor.execute(state, request, metrics).await,
            Executor::P3(executor) => executor.execute(state, request, metrics).await,
        }
    }
}

/// What a guest hands the host as its response: both executors use wasi:http 0.2's channel.
type GuestResponse = Result<Response<UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>>, ErrorCode>;

/// Waits for the guest's response head; without one, says why from the guest's task.
async fn respond(
    receiver: oneshot::Receiver<GuestResponse>,
    task: JoinHandle<Result<(), ExecuteError>>,
) -> Result<Response<Body>, ExecuteError> {
    match receiver.await {
        Ok(Ok(response)) => {
            Ok(response.map(|body| body.map_err(anyhow::Error::from).boxed_unsync()))
        }
        Ok(Err(code)) => Err(ExecuteError::ErrorCode(format!("{code:?}"))),
        Err(_) => Err(match task.await {
            Ok(Ok(())) => ExecuteError::NoResponse,
            Ok(Err(error)) => error,
            Err(join) => ExecuteError::Task(join.to_string()),
        }),
    }
}
