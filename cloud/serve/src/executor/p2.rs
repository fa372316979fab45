//! `wasi:http/incoming-handler@0.2.x`: the guest sets its response through an outparam and
//! returns; its body may still be streaming from the instance's task.

use std::time::Instant;

use http_body_util::BodyExt;
use hyper::{Request, Response};
use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::{ExecuteError, Guest, GuestRequestBody, GuestTask, error_code, respond};
use crate::engine;
use crate::host::SpinState;
use crate::metrics::InstanceMetrics;
use crate::response::Body;

pub struct Executor(ProxyPre<SpinState>);

impl Executor {
    pub fn new(pre: InstancePre<SpinState>) -> anyhow::Result<Self> {
        Ok(Executor(ProxyPre::new(pre)?))
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
        let scheme = match request.uri().scheme() {
            Some(scheme) if *scheme == http::uri::Scheme::HTTPS => Scheme::Https,
            _ => Scheme::Http,
        };
        let request = request.map(|body| body.map_err(error_code));
        let to_request = |e: wasmtime::Error| ExecuteError::Request(e.into());
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)
            .map_err(to_request)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(to_request)?;
        let proxy = self
            .0
            .instantiate_async(&mut store)
            .await
            .map_err(|e| ExecuteError::Instantiate(e.into()))?;
        let live = metrics.instantiated(started);
        let task = GuestTask::spawn(deadline, guest, async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await;
            drop(live);
            result.map_err(|trap| ExecuteError::from_trap(trap, store.data()))
        });
        respond(receiver, task).await
    }
}
