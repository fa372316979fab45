//! `allowed_outbound_hosts`: which URLs a component may request, as Spin checks them.

use http::uri::Scheme;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// One `allowed_outbound_hosts` entry: `scheme://host[:port]`, each part may be `*`, a host may
/// be `*.domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    scheme: String,
    host: String,
    port: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("allowed_outbound_hosts entry {0:?} is not scheme://host[:port]")]
pub struct BadPattern(pub String);

/// The outbound rules of one component; an empty list denies every request.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    pub fn new(entries: &[String]) -> Result<Self, BadPattern> {
        let allowed = entries
            .iter()
            .map(|entry| {
                let (scheme, rest) = entry
                    .split_once("://")
                    .ok_or_else(|| BadPattern(entry.clone()))?;
                let rest = rest.trim_end_matches('/');
                let (host, port) = match rest.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port.to_owned())),
                    None => (rest, None),
                };
                if scheme.is_empty() || host.is_empty() || rest.contains('/') {
                    return Err(BadPattern(entry.clone()));
                }
                Ok(AllowedHost {
                    scheme: scheme.to_owned(),
                    host: host.to_ascii_lowercase(),
                    port,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(OutboundPolicy { allowed })
    }

    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let default_port = match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        let port = port.or(default_port);
        let host = host.to_ascii_lowercase();
        self.allowed.iter().any(|a| {
            let scheme_ok = a.scheme == "*" || a.scheme == scheme;
            let host_ok = a.host == "*"
                || a.host == host
                || a.host
                    .strip_prefix("*.")
                    .is_some_and(|d| host.ends_with(&format!(".{d}")));
            let port_ok = match (&a.port, port) {
                (Some(p), _) if p == "*" => true,
                (Some(p), Some(port)) => p.parse::<u16>() == Ok(port),
                (None, Some(port)) => Some(port) == default_port,
                (_, None) => false,
            };
            scheme_ok && host_ok && port_ok
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme().unwrap_or(&Scheme::HTTP).as_str().to_owned();
        let host = uri.host().unwrap_or_default().to_owned();
        let allowed = self.allows(&scheme, &host, uri.port_u16());
        if !allowed {
            tracing::info!(%scheme, %host, "outbound request denied by allowed_outbound_hosts");
            return Box::new(async move { Err(ErrorCode::HttpRequestDenied.into()) });
        }
        let _ = fut;
        // Outbound HTTPS builds its client configuration with rustls's default provider.
        wattlet_tls::install_default_provider();
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_patterns() {
        let p = OutboundPolicy::new(&[
            "http://127.0.0.1:*".into(),
            "https://api.example.com".into(),
            "*://*.internal:8080".into(),
        ])
        .unwrap();
        assert!(p.allows("http", "127.0.0.1", Some(4000)));
        assert!(!p.allows("https", "127.0.0.1", Some(4000)));
        assert!(p.allows("https", "api.example.com", None));
        assert!(p.allows("https", "API.example.com", Some(443)));
        assert!(!p.allows("https", "api.example.com", Some(8443)));
        assert!(!p.allows("http", "api.example.com", None));
        assert!(p.allows("http", "db.internal", Some(8080)));
        assert!(!p.allows("http", "internal", Some(8080)));
        assert!(!OutboundPolicy::default().allows("http", "127.0.0.1", Some(80)));
        assert!(OutboundPolicy::new(&["127.0.0.1".into()]).is_err());
    }
}
