//! A tough transport over HTTPS with a caller's rustls configuration: the device passes its
//! mutual-TLS client configuration, so updates come over the same authenticated link as its
//! uploads. Bodies are streamed, never collected here: tough cuts every download off at its
//! size limit, which is what stops an endless-data attack.

use futures::StreamExt;
use http_body_util::BodyStream;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

/// Fetches `https://` URLs, one connection per file, with the given TLS configuration.
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    tls: Arc<rustls::ClientConfig>,
}

impl HttpsTransport {
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        HttpsTransport { tls }
    }
}

#[tough::async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let other = |e: &dyn std::fmt::Display| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e.to_string())
        };
        if url.scheme() != "https" {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| other(&"the URL has no host"))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let server_name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::from(ip),
            Err(_) => ServerName::try_from(host.clone()).map_err(|e| other(&e))?,
        };
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| other(&e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| other(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| other(&e))?;
        // Ends by itself once the response body is read or dropped.
        tokio::spawn(connection);
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let request = http::Request::get(path)
            .header(http::header::HOST, authority)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| other(&e))?;
        let response = sender.send_request(request).await.map_err(|e| other(&e))?;
        match response.status() {
            http::StatusCode::OK => {}
            // tough probes for the next root by fetching it: absent must read as not found.
            http::StatusCode::NOT_FOUND | http::StatusCode::GONE => {
                return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
            }
            status => return Err(other(&format!("HTTP {status}"))),
        }
        let body_url = url.clone();
        let stream = BodyStream::new(response.into_body()).filter_map(move |frame| {
            let url = body_url.clone();
            async move {
                match frame {
                    Ok(frame) => frame.into_data().ok().map(Ok),
                    Err(e) => Some(Err(TransportError::new_with_cause(
                        TransportErrorKind::Other,
                        url,
                        e,
                    ))),
                }
            }
        });
        Ok(Box::pin(stream))
    }
}
