//! The admin listener every host runs: Prometheus metrics (OpenMetrics text) at `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::accept::{Backoff, accept};

/// Something whose metrics the admin listener serves.
pub trait MetricsSource: Send + Sync {
    /// The metrics in OpenMetrics text format.
    fn encode(&self) -> String;
}

/// Encodes a prometheus-client registry (encoding into a `String` cannot fail).
pub fn encode_registry(registry: &prometheus_client::registry::Registry) -> String {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Limits of the admin listener: a few scrapers, never a crowd.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Connections open at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may stay idle between requests.
    pub header_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 32,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `/metrics` on `listener` with the default [`AdminLimits`] until the task is dropped.
pub async fn serve_admin(metrics: Arc<dyn MetricsSource>, listener: TcpListener) {
    serve_admin_with(metrics, listener, AdminLimits::default()).await
}

/// Serves `/metrics` on `listener` until the task is dropped. It never ends by itself: accept
/// errors (out of file descriptors) pause it (see [`crate::accept`]); clients that send nothing,
/// or send slowly, are closed after the header timeout.
pub async fn serve_admin_with(
    metrics: Arc<dyn MetricsSource>,
    listener: TcpListener,
    limits: AdminLimits,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Backoff::default();
    loop {
        let Ok(permit) = open.clone().acquire_owned().await else {
            return; // never closed
        };
        let (stream, _) = accept(&listener, "admin", &mut backoff).await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&request, metrics.as_ref())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

fn answer(request: &Request<Incoming>, metrics: &dyn MetricsSource) -> Response<Full<Bytes>> {
    let (status, content_type, text) = if request.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: the admin listener serves /metrics\n".to_owned(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
