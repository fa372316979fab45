//! `wasi:http/handler@0.3.0` (WASIp3): `handle` returns the response, whose body the guest may
//! keep writing after `handle` has returned, from tasks of its own inside the instance.

use std::time::Instant;

use http_body_util::BodyExt;
use hyper::{Request, Response};
use tokio::sync::oneshot;
use wasmtime::component::{Accessor, InstancePre};
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use super::{ExecuteError, Guest, GuestRequestBody, GuestResponse, GuestTask, error_code, respond};
use crate::engine;
use crate::host::SpinState;
use crate::metrics::InstanceMetrics;
use crate::response::Body;

pub struct Executor(ServicePre<SpinState>);

impl Executor {
    pub fn new(pre: InstancePre<SpinState>) -> anyhow::Result<Self> {
        Ok(Executor(ServicePre::new(pre)?))
    }

    pub fn engine(&self) -> &Engine {
        self.0.engine()
    }

    pub async fn execute(
        &self,
        state: SpinState,
        request: Request<GuestRequestBody>,
        metrics: &InstanceMetrics,
        guest: Guest,
    ) -> Result<Response<Body>, ExecuteError> {
        let started = Instant::now();
        let deadline = state.deadline();
        let mut store = Store::new(self.engine(), state);
        engine::limit_store(&mut store);
        let service = self
            .0
            .instantiate_async(&mut store)
            .await
            .map_err(|e| ExecuteError::Instantiate(e.into()))?;
        let live = metrics.instantiated(started);
        let (sender, receiver) = oneshot::channel();
        let task = GuestTask::spawn(deadline, guest, async move {
            let result = store
                .run_concurrent(async move |accessor| {
                    handle(accessor, &service, request, sender).await
                })
                .await;
            drop(live);
            match result {
                Ok(Ok(None)) => Ok(()),
                Ok(Ok(Some(code))) => Err(ExecuteError::ErrorCode(format!("{code:?}"))),
                Ok(Err(trap)) | Err(trap) => Err(ExecuteError::from_trap(trap, store.data())),
            }
        });
        respond(receiver, task).await
    }
}

/// Calls the handler inside the store's event loop and hands its response to `sender`. The loop
/// must keep running until the body has been sent, since the guest may write the body after
/// `handle` has returned: the body holds a guard whose drop (body finished, or the client gone)
/// ends the wait. Returns the handler's error code when it answered with one.
async fn handle(
    accessor: &Accessor<SpinState>,
    service: &Service,
    request: Request<GuestRequestBody>,
    sender: oneshot::Sender<GuestResponse>,
) -> wasmtime::Result<Option<p3::bindings::http::types::ErrorCode>> {
    let (parts, body) = request.into_parts();
    let body = body.map_err(|e| wasmtime_wasi_http::Error::from(error_code(e)));
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
    let (body_sent, body_dropped) = oneshot::channel::<()>();
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
