//! `wattlet gateway`: the mutual-TLS front of a Data API that runs elsewhere (the SpinApp on
//! Kubernetes, `spin up`, or `wattlet serve` on plain HTTP).
//!
//! Devices must reach the Data API over mutual TLS, and the Data API trusts a device identity
//! only with the proof its TLS terminator signs (`wattlet_survey::identity`). An ordinary
//! ingress can check a client certificate but cannot sign the proof, so this gateway does what
//! `wattlet serve` does at its listener — the same TLS configuration, CRL watching, header
//! stripping and proof ([`crate::listener`], [`crate::tls`], [`crate::headers`]) — and then
//! forwards the request to the upstream instead of running a component.
//!
//! Per request: incoming `spin-*` and `x-wattlet-client-*` headers are removed; a revoked
//! certificate gets 403; the identity headers and their proof are set; hop-by-hop headers are
//! dropped and `x-forwarded-for`/`x-forwarded-proto` set; the request goes to the upstream
//! with its path and query, the body streaming through. An upstream that cannot be reached
//! gives 502, one that does not answer within the request timeout 504.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::header::{CONNECTION, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use wattlet_tls::ClientIdentity;

use crate::headers;
use crate::limits::Limits;
use crate::listener::{Handler, admit};
use crate::response::{Body, plain};
use crate::tls::{TlsOptions, TlsState};

/// Headers that belong to one connection, not to the request (RFC 9110, 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// What `wattlet gateway` is started with.
pub struct GatewayOptions {
    /// The Data API's base URL, plain HTTP inside the cluster (`http://wattlet-app:80`).
    pub upstream: Uri,
    /// The device CA, server certificate and CRL, as for `wattlet serve`.
    pub tls: TlsOptions,
    /// The key of the identity proofs: the app's `client_identity_key`.
    pub identity_key: Vec<u8>,
    pub limits: Limits,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    code: u16,
}

/// The gateway's metrics, on its admin listener (`wattlet_gateway_…`).
pub struct GatewayMetrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    upstream_errors: Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let mut metrics = GatewayMetrics {
            registry: Registry::default(),
            requests: Family::default(),
            upstream_errors: Counter::default(),
        };
        metrics.registry.register(
            "wattlet_gateway_requests",
            "Requests answered, by status code (the upstream's, or the gateway's own)",
            metrics.requests.clone(),
        );
        metrics.registry.register(
            "wattlet_gateway_upstream_errors",
            "Requests the upstream did not answer (502) or not in time (504)",
            metrics.upstream_errors.clone(),
        );
        metrics
    }
}

impl wattlet_runtime::metrics::MetricsSource for GatewayMetrics {
    fn encode(&self) -> String {
        wattlet_runtime::metrics::encode_registry(&self.registry)
    }
}

/// The gateway: a [`Handler`] for [`crate::listener::serve`].
pub struct Gateway {
    upstream: Uri,
    tls: Arc<TlsState>,
    key: Vec<u8>,
    limits: Limits,
    client: Client<HttpConnector, Incoming>,
    pub metrics: Arc<GatewayMetrics>,
}

impl Gateway {
    pub fn new(options: GatewayOptions) -> anyhow::Result<Self> {
        let scheme = options.upstream.scheme_str();
        if scheme != Some("http") || options.upstream.authority().is_none() {
            anyhow::bail!(
                "--upstream must be an http:// URL with a host (the Data API inside the \
                 cluster), got {}",
                options.upstream
            );
        }
        wattlet_access_token::check_secret(&String::from_utf8_lossy(&options.identity_key))
            .map_err(|weak| anyhow::anyhow!("the client identity key is too weak: {weak}"))?;
        let tls = TlsState::load(&options.tls).context("cannot load the TLS configuration")?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Gateway {
            upstream: options.upstream,
            tls: Arc::new(tls),
            key: options.identity_key,
            limits: options.limits,
            client,
            metrics: Arc::new(GatewayMetrics::default()),
        })
    }

    /// The upstream URI for a request's path and query.
    fn upstream_uri(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let base = self.upstream.path().trim_end_matches('/');
        let rest = path_and_query.map_or("/", PathAndQuery::as_str);
        let mut parts = self.upstream.clone().into_parts();
        parts.path_and_query = Some(format!("{base}{rest}").parse()?);
        Ok(Uri::from_parts(parts)?)
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        identity: Option<&ClientIdentity>,
    ) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        // Before the identity headers are set: a client's `Connection` could name them.
        strip_hop_by_hop(&mut parts.headers);
        let path = parts.uri.path().to_owned();
        if let Some(refused) = admit(&mut parts.headers, Some(&self.tls), identity, client, &path) {
            return refused;
        }
        if let Some(identity) = identity {
            let Some(nonce) = headers::nonce() else {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "no random numbers\n");
            };
            let proven = headers::prove_identity(
                &mut parts,
                identity,
                &self.key,
                headers::unix_now(),
                &nonce,
            );
            if let Err(error) = proven {
                return plain(StatusCode::BAD_REQUEST, &format!("{error}\n"));
            }
        }
        if let Ok(value) = HeaderValue::from_str(&client.ip().to_string()) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-for"), value);
        }
        parts.headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https"),
        );
        parts.uri = match self.upstream_uri(parts.uri.path_and_query()) {
            Ok(uri) => uri,
            Err(error) => return plain(StatusCode::BAD_REQUEST, &format!("{error}\n")),
        };
        let timeout = self.limits.request_timeout.default;
        let sent = tokio::time::timeout(
            timeout,
            self.client.request(Request::from_parts(parts, body)),
        )
        .await;
        match sent {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.map_err(anyhow::Error::from).boxed_unsync())
            }
            Ok(Err(error)) => {
                tracing::error!(upstream = %self.upstream, %error, "upstream request failed");
                self.metrics.upstream_errors.inc();
                plain(StatusCode::BAD_GATEWAY, "the Data API cannot be reached\n")
            }
            Err(_) => {
                tracing::error!(upstream = %self.upstream, ?timeout, "upstream did not answer in time");
                self.metrics.upstream_errors.inc();
                plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the Data API did not answer in time\n",
                )
            }
        }
    }
}

impl Handler for Gateway {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn tls(&self) -> Option<&Arc<TlsState>> {
        Some(&self.tls)
    }

    async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        _local: SocketAddr,
        identity: Option<&ClientIdentity>,
    ) -> Response<Body> {
        let response = self.forward(request, client, identity).await;
        self.metrics
            .requests
            .get_or_create(&StatusLabels {
                code: response.status().as_u16(),
            })
            .inc();
        response
    }
}

/// Removes the hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("authorization", "Bearer t"),
            ("content-type", "application/json"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type"]);
    }
}
