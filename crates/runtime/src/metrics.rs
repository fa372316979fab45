//! The admin listener every host runs: Prometheus metrics (OpenMetrics text) at `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve_admin(
    metrics: Arc<dyn MetricsSource>,
    listener: TcpListener,
) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                async move {
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
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
