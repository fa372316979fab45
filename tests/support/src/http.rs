//! HTTP/1.1 clients over hyper, plain or mutual TLS (tokio-rustls, server name `localhost`), that
//! show the tests everything: status, headers, the body as bytes, text and JSON.
//!
//! - [`get`] and [`send`]: one request on a new plain connection; [`get_within`]: one that
//!   must be answered in time, however often its connection fails;
//! - [`Client`]: an address, maybe a TLS client configuration (a device's certificate) and maybe
//!   a bearer token; each request on a new connection;
//! - [`Connection`]: one kept-alive connection for several requests, and why it closed.
//!
//! Without a `host` header among the request's headers, the address is sent as the host (with
//! TLS, `localhost` and the port).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as it came.
    pub bytes: Bytes,
    /// The body as text (invalid UTF-8 replaced).
    pub text: String,
    /// The body as JSON, `null` when it is not JSON.
    pub body: Value,
}

impl Reply {
    fn new(parts: hyper::http::response::Parts, bytes: Bytes) -> Reply {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status: parts.status,
            headers: parts.headers,
            bytes,
            text,
            body,
        }
    }
}

/// `GET path` on a new plain connection to `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, Method::GET, path, b"", &[]).await
}

/// `GET path` on a new plain connection to `addr`, tried again while connecting or the
/// connection fails (a server under attack may close or refuse it), until an answer comes;
/// returns it and how long it took. Panics when none came within `limit` (times
/// [`crate::patience`]).
pub async fn get_within(
    addr: SocketAddr,
    path: &str,
    limit: std::time::Duration,
) -> (Reply, std::time::Duration) {
    let started = std::time::Instant::now();
    let deadline = started + limit * crate::patience();
    let client = Client::plain(addr);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, client.try_send(Method::GET, path, b"", &[])).await {
            Ok(Ok(reply)) => return (reply, started.elapsed()),
            Ok(Err(_)) if !left.is_zero() => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            _ => panic!("GET {path}: no answer within {limit:?}"),
        }
    }
}

/// One request on a new plain connection to `addr`; panics when it fails.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Reply {
    Client::plain(addr).send(method, path, body, headers).await
}

/// Where requests go and as whom: each request on a new connection.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    bearer: Option<String>,
}

impl Client {
    /// Plain HTTP to `addr`.
    pub fn plain(addr: SocketAddr) -> Client {
        Client {
            addr,
            tls: None,
            bearer: None,
        }
    }

    /// Mutual TLS to `addr`, presenting the certificate of `config` (if it has one).
    pub fn tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        Client {
            addr,
            tls: Some(config),
            bearer: None,
        }
    }

    /// The same client sending `authorization: Bearer <token>` with every request.
    pub fn bearer(&self, token: &str) -> Client {
        Client {
            bearer: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// A kept-alive connection of this client (the bearer token is not sent on it).
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        Connection::open(self.addr, self.tls.clone()).await
    }

    /// One request on a new connection; `Err` when the connection or the request fails, with
    /// the connection's own reason (e.g. the server's TLS alert: with TLS 1.3 the client's
    /// side of the handshake may finish before the server's verdict arrives, so a refusal can
    /// show on the first request).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let bearer = self.bearer.as_ref().map(|token| format!("Bearer {token}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(bearer) = &bearer {
            all.push(("authorization", bearer));
        }
        let mut connection = self.connect().await?;
        match connection.send(method, path, body, &all).await {
            Ok(reply) => Ok(reply),
            Err(error) => match connection.closed().await {
                Some(reason) => Err(anyhow::Error::from(reason).context(error)),
                None => Err(error),
            },
        }
    }

    /// [`Client::try_send`], panicking when it fails.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Reply {
        self.try_send(method.clone(), path, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    /// A request with `body` as JSON (none: an empty body).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let body = body.map(Value::to_string).unwrap_or_default();
        self.send(method, path, body.as_bytes(), &[]).await
    }
}

/// One HTTP/1.1 connection, kept alive across requests.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<Result<(), hyper::Error>>,
    host: String,
}

impl Connection {
    /// Connects to `addr`, over TLS when `tls` is given (server name `localhost`).
    pub async fn open(addr: SocketAddr, tls: Option<Arc<ClientConfig>>) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await.context("connect")?;
        let _ = tcp.set_nodelay(true);
        let (sender, task, host) = match tls {
            None => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .context("handshake")?;
                (sender, tokio::spawn(connection), addr.to_string())
            }
            Some(config) => {
                let tls = TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost")?, tcp)
                    .await
                    .context("TLS handshake")?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await
                        .context("handshake")?;
                let host = format!("localhost:{}", addr.port());
                (sender, tokio::spawn(connection), host)
            }
        };
        Ok(Connection { sender, task, host })
    }

    /// One request on this connection.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let (parts, bytes) = self
            .fetch(method, path, Bytes::copy_from_slice(body), headers)
            .await?;
        Ok(Reply::new(parts, bytes))
    }

    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.send(Method::GET, path, b"", headers).await
    }

    /// One request, the answer's head and body as they came (nothing decoded: for load
    /// generators).
    pub async fn fetch(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(hyper::http::response::Parts, Bytes)> {
        self.sender.ready().await.context("not ready")?;
        let mut request = Request::builder().method(method).uri(path);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            request = request.header(hyper::header::HOST, &self.host);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .sender
            .send_request(request.body(Full::new(body))?)
            .await
            .context("request")?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.context("body")?.to_bytes();
        Ok((parts, bytes))
    }

    /// Whether the connection is closed (no further request can go on it).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Why the connection ended (waits until it has): `None` when it closed cleanly.
    pub async fn closed(self) -> Option<hyper::Error> {
        drop(self.sender);
        match self.task.await {
            Ok(Err(reason)) => Some(reason),
            _ => None,
        }
    }
}
