//! A client of the Data API for services and tools (the NIALM workers, `wattlet up`, tests):
//! one JSON request per connection, over TLS 1.3 with the server's CA checked, or over plain
//! HTTP where TLS terminates in front of the API (a local `spin up`). Refusals come back with
//! the Data API's machine-readable code ([`wattlet_survey::Refusal`]); nobody reads messages.
//!
//! Devices do not use this: their requests come from the upload component, with the device's
//! key held by the edge host.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use wattlet_survey::Refusal;

/// Answers larger than this are not the Data API's.
const MAX_ANSWER: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid Data API URL {0:?}: use https://host[:port] or http://host[:port]")]
    InvalidUrl(String),
    #[error("cannot connect to the Data API at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with the Data API at {address} failed: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    #[error("{method} {path}: {source}")]
    Http {
        method: String,
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{method} {path}: no answer within {timeout:?}")]
    Timeout {
        method: String,
        path: String,
        timeout: Duration,
    },
    #[error("{method} {path} refused: {refusal}")]
    Refused {
        method: String,
        path: String,
        refusal: Refusal,
    },
    #[error("{method} {path}: the Data API failed: HTTP {status}: {body}")]
    Server {
        method: String,
        path: String,
        status: u16,
        body: String,
    },
}

impl ClientError {
    /// The Data API's refusal, if that is what this is.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ClientError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }
}

/// Where the Data API is and how to reach it.
#[derive(Clone)]
pub struct ApiClient {
    host: String,
    port: u16,
    /// `None`: plain HTTP.
    tls: Option<Arc<ClientConfig>>,
    bearer: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// `url` is `https://host[:port]` (with `tls`: the server's CA, and a client certificate
    /// if the caller has one) or `http://host[:port]` (no `tls`).
    pub fn new(url: &str, tls: Option<Arc<ClientConfig>>) -> Result<Self, ClientError> {
        let invalid = || ClientError::InvalidUrl(url.to_owned());
        let (rest, default_port, tls) = match (url.split_once("://"), tls) {
            (Some(("https", rest)), Some(tls)) => (rest, 443, Some(tls)),
            (Some(("http", rest)), None) => (rest, 80, None),
            _ => return Err(invalid()),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(invalid());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse().map_err(|_| invalid())?)
            }
            _ => (authority, default_port),
        };
        Ok(ApiClient {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            tls,
            bearer: None,
            timeout: Duration::from_secs(60),
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// Gives up on a request after `timeout` (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The request's status and JSON answer (a non-JSON answer as a JSON string, an empty one
    /// as `null`), whatever the status.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), ClientError> {
        let exchange = self.exchange(method, path, body, headers);
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                method: method.to_owned(),
                path: path.to_owned(),
                timeout: self.timeout,
            })??;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, json))
    }

    /// The JSON answer of a request that must succeed (2xx); a 4xx is a [`ClientError::Refused`]
    /// with the Data API's code, anything else a [`ClientError::Server`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, json) = self.send(method, path, body, &[]).await?;
        match status {
            200..=299 => Ok(json),
            400..=499 => Err(ClientError::Refused {
                method: method.to_owned(),
                path: path.to_owned(),
                refusal: Refusal::from_answer(status, json.to_string().as_bytes()),
            }),
            _ => Err(ClientError::Server {
                method: method.to_owned(),
                path: path.to_owned(),
                status,
                body: json.to_string(),
            }),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Bytes), ClientError> {
        let address = format!("{}:{}", self.host, self.port);
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ClientError::Connect {
                address: address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let http_error = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Http {
            method: method.to_owned(),
            path: path.to_owned(),
            source,
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &address);
        if let Some(token) = &self.bearer {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| http_error(e.into()))?;
        match &self.tls {
            None => exchange_on(tcp, request).await.map_err(http_error),
            Some(tls) => {
                let name = match self.host.parse::<std::net::IpAddr>() {
                    Ok(ip) => rustls_pki_types::ServerName::from(ip),
                    Err(_) => rustls_pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|_| ClientError::InvalidUrl(self.host.clone()))?,
                };
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ClientError::Tls { address, source })?;
                exchange_on(stream, request).await.map_err(http_error)
            }
        }
    }
}

/// One HTTP/1.1 exchange on an open connection; the whole answer is read.
async fn exchange_on<S>(
    stream: S,
    request: http::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let plain = ApiClient::new("http://127.0.0.1:3000/", None).unwrap();
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 3000));
        let config = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let tls = ApiClient::new("https://survey.example", Some(config.clone())).unwrap();
        assert_eq!((tls.host.as_str(), tls.port), ("survey.example", 443));
        let v6 = ApiClient::new("https://[::1]:8443", Some(config.clone())).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        for bad in ["ftp://x", "http://", "http://a/b", "http://u@h", "x"] {
            let tls = bad.starts_with("https").then(|| config.clone());
            assert!(
                matches!(ApiClient::new(bad, tls), Err(ClientError::InvalidUrl(_))),
                "{bad}"
            );
        }
        // https without TLS settings, or http with them, is a mistake.
        assert!(ApiClient::new("https://x", None).is_err());
        assert!(ApiClient::new("http://x", Some(config)).is_err());
    }
}
