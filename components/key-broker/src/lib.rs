//! The wattlet key broker: releases household data keys to confidential hosts that prove, by
//! attestation evidence, that they run the expected code in a trusted execution environment
//! (DESIGN.md "Confidential functions"). A Spin HTTP component (spin-sdk 5) mounted at
//! `/kbs/v0/...`, on `spin up` and on `wattlet serve`, next to the Data API and on its `default`
//! SQLite database, where the Data API keeps the household keys wrapped by the key-encryption key.
//!
//! - [`protocol`]: the protocol (request and response bodies, paths, error codes, the life of a
//!   session and a token), pure, shared with the clients (the worker host);
//! - [`broker`]: the decisions, over a [`store::Store`], the variables and the time of the
//!   request, tested natively;
//! - [`store`]: the broker's tables (`kbs_session`, `kbs_token`, `kbs_counter`) and the read of
//!   `household_key`, over one SQL database;
//! - `component` (wasm only): Spin's request, `default` database, variables and clock.
//!
//! Why a component and not a host service: the verifiers (`dcap-qvl` with RustCrypto, `sev`
//! without OpenSSL) and HPKE build for `wasm32-wasip2`, so the broker runs wherever the Data API
//! runs, sandboxed like it, with the same database and secrets and no new process to operate.

pub mod broker;
pub mod protocol;
pub mod store;

#[cfg(target_family = "wasm")]
mod component;

pub use broker::{Broker, Variables};

/// An incoming request as the broker sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Upper case (`GET`).
    pub method: String,
    /// Without the query.
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.split('?').next().unwrap_or(path).to_owned(),
            ..Request::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// `body` as JSON.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }
}
