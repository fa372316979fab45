//! `wattlet serve`: runs Spin applications (`spin.toml`) on wasmtime, as `spin up` does.
//!
//! Components built with spin-sdk 5.x run unchanged: the host reads the same manifest, routes as
//! Spin does, sets Spin's request headers and implements `fermyon:spin/{sqlite,key-value,
//! variables}@2.0.0` and wasi:http with the manifest's grants. Components export either
//! `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.0` (WASIp3).
//!
//! - [`server`]: the entry points ([`server::App`], [`server::ServeOptions`], [`server::serve`]).
//! - Loading: [`manifest`], [`variables`], [`storage`], [`files`], [`engine`], [`app`]; what a client or
//!   a component may take: [`limits`].
//! - A request: [`listener`] (connections, TLS via [`tls`]) → [`router`] → [`headers`] and
//!   [`body`] → [`executor`] (one per HTTP world) → [`response`].
//! - What components call: [`host`] (Spin's interfaces, with [`conversions`] between WIT and
//!   host types) and [`outbound`] (wasi:http requests out).
//! - [`metrics`]: Prometheus metrics.
//! - [`gateway`]: `wattlet gateway`, the same listener in front of a Data API served elsewhere.

pub mod app;
pub mod body;
pub mod conversions;
pub mod engine;
pub mod executor;
pub mod files;
pub mod gateway;
pub mod headers;
pub mod host;
pub mod limits;
pub mod listener;
pub mod manifest;
pub mod metrics;
pub mod outbound;
pub mod response;
pub mod router;
pub mod server;
pub mod storage;
pub mod tls;
pub mod variables;
