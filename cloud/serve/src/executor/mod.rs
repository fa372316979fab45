//! Running one request in a fresh component instance: one executor per HTTP world a component
//! can export, chosen from its exports when it is loaded (as Spin's `trigger-http` has one per
//! handler ABI).
//!
//! Each instance is made from a pre-instantiated component and runs in a task of its own, since
//! the guest may keep writing the response body after it has handed over the response head.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::JoinHandle;
use wasmtime::Engine;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use crate::body::{BodyError, RequestBody};
use crate::engine::DeadlineExceeded;
use crate::host::SpinState;
use crate::metrics::InstanceMetrics;
use crate::response::Body;

mod p2;
mod p3;

/// The body of a request on its way to a component.
pub type GuestRequestBody = RequestBody<Incoming>;

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
    #[error("component stopped: it ran past the request deadline")]
    Deadline,
    #[error(
        "component trapped after its memory limit refused to grow a memory to {asked} bytes (limit {limit} bytes)"
    )]
    MemoryLimit { asked: usize, limit: usize },
    #[error("component task failed: {0}")]
    Task(String),
}

impl ExecuteError {
    /// A trap, told apart: the deadline's, after a refused memory growth, or the guest's own.
    fn from_trap(trap: wasmtime::Error, state: &SpinState) -> Self {
        let past_deadline = state.deadline().is_some_and(|d| Instant::now() >= d);
        if trap.downcast_ref::<DeadlineExceeded>().is_some() || past_deadline {
            ExecuteError::Deadline
        } else if let Some((asked, limit)) = state.refused_memory() {
            ExecuteError::MemoryLimit { asked, limit }
        } else {
            ExecuteError::Trap(trap.into())
        }
    }

    /// Whether the guest's task logs this error itself (it may happen after the response head
    /// went out, when nobody else sees it).
    pub fn logged_by_task(&self) -> bool {
        matches!(
            self,
            ExecuteError::Trap(_) | ExecuteError::Deadline | ExecuteError::MemoryLimit { .. }
        )
    }
}

/// The executor of one component, found from its exports.
pub enum Executor {
    /// `wasi:http/incoming-handler@0.2.x` (what spin-sdk 5 builds).
    P2(p2::Executor),
    /// `wasi:http/handler@0.3.0` (WASIp3): async, its response body may stream after `handle`
    /// has returned.
    P3(p3::Executor),
}

/// What lives as long as a request's instance: the slot it takes among the concurrent
/// requests, and the names its log lines carry.
pub struct Guest {
    pub permit: OwnedSemaphorePermit,
    pub component: Arc<str>,
    pub path: Box<str>,
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
    /// instance with `state` (its deadline and memory limit), and returns the response once the
    /// guest has sent its head. Dropping the returned future before that, or the response body
    /// before its end (the client went away), stops the instance.
    pub async fn execute(
        &self,
        state: SpinState,
        request: Request<GuestRequestBody>,
        metrics: &InstanceMetrics,
        guest: Guest,
    ) -> Result<Response<Body>, ExecuteError> {
        match self {
            Executor::P2(executor) => executor.execute(state, request, metrics, guest).await,
            Executor::P3(executor) => executor.execute(state, request, metrics, guest).await,
        }
    }
}

/// What a guest hands the host as its response: both executors use wasi:http 0.2's channel.
type GuestResponse = Result<Response<UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>>, ErrorCode>;

/// The task a guest runs in. Dropped before it finished, it aborts the task: the instance stops
/// at its next yield (a host call, or the next epoch tick).
struct GuestTask {
    handle: Option<JoinHandle<Result<(), ExecuteError>>>,
}

impl GuestTask {
    /// Runs `run` (the guest's whole life, from its call to the end of its response body) in a
    /// task of its own, stopped at `deadline`; logs the ways a guest fails that the host must
    /// know about (a trap, the deadline, the memory limit). The permit is given back when the
    /// instance is gone.
    fn spawn<F>(deadline: Option<Instant>, guest: Guest, run: F) -> Self
    where
        F: Future<Output = Result<(), ExecuteError>> + Send + 'static,
    {
        let handle = tokio::task::spawn(async move {
            let result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), run)
                    .await
                    .unwrap_or(Err(ExecuteError::Deadline)),
                None => run.await,
            };
            drop(guest.permit);
            if let Err(error) = &result
                && error.logged_by_task()
            {
                tracing::warn!(component = %guest.component, path = %guest.path, %error, "request failed");
            }
            result
        });
        GuestTask {
            handle: Some(handle),
        }
    }

    /// Leaves the task to end by itself (within its deadline).
    fn detach(&mut self) {
        self.handle = None;
    }

    /// Waits for the task's end.
    async fn join(&mut self) -> Result<(), ExecuteError> {
        let Some(handle) = self.handle.as_mut() else {
            return Ok(());
        };
        let result = match handle.await {
            Ok(result) => result,
            Err(join) => Err(ExecuteError::Task(join.to_string())),
        };
        self.handle = None;
        result
    }
}

impl Drop for GuestTask {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take()
            && !handle.is_finished()
        {
            handle.abort();
            tracing::debug!("the client went away: its component instance is stopped");
        }
    }
}

/// Waits for the guest's response head; without one, says why from the guest's task.
async fn respond(
    receiver: oneshot::Receiver<GuestResponse>,
    mut task: GuestTask,
) -> Result<Response<Body>, ExecuteError> {
    match receiver.await {
        Ok(Ok(response)) => Ok(response.map(|inner| GuestBody { inner, task }.boxed_unsync())),
        Ok(Err(code)) => Err(ExecuteError::ErrorCode(format!("{code:?}"))),
        Err(_) => Err(match task.join().await {
            Ok(()) => ExecuteError::NoResponse,
            Err(error) => error,
        }),
    }
}

/// A guest's response body, tied to the guest's task: dropped before its end (the client went
/// away), it stops the instance, as Spin's `AbortOnDropBody` does.
struct GuestBody {
    inner: UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>,
    task: GuestTask,
}

impl hyper::body::Body for GuestBody {
    type Data = Bytes;
    type Error = anyhow::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, anyhow::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.task.detach();
        }
        polled.map_err(anyhow::Error::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for GuestBody {
    fn drop(&mut self) {
        if hyper::body::Body::is_end_stream(&self.inner) {
            self.task.detach();
        }
    }
}

/// A request body error as wasi:http names it.
fn error_code(error: BodyError) -> ErrorCode {
    match error {
        BodyError::TooLarge { limit } => ErrorCode::HttpRequestBodySize(Some(limit as u64)),
        BodyError::TimedOut(_) => ErrorCode::ConnectionReadTimeout,
        BodyError::Read(message) => ErrorCode::InternalError(Some(message)),
    }
}
