//! The request headers only the host sets: Spin's `spin-*` headers and wattlet's client
//! identity (`x-wattlet-client-*`) with its proof, and the absolute request URL wasi:http hands
//! the guest.
//!
//! Every incoming header named like one of them is removed first ([`strip_reserved`]), so a
//! client can spoof neither a route nor an identity. (Spin itself only overwrites the `spin-*`
//! headers it sets, so a client's `spin-path-match-x` reaches a component there; here it does
//! not.) The identity's proof ([`prove_identity`], `wattlet_survey::identity`) lets the
//! component tell these headers from ones that reached it some other way.

use std::net::SocketAddr;

use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use wattlet_survey::identity::{
    self, Bound, DEVICE as DEVICE_HEADER, EMAIL as EMAIL_HEADER, Identity,
    PREFIX as IDENTITY_PREFIX, PROOF as PROOF_HEADER, SERIAL as SERIAL_HEADER,
};
use wattlet_tls::ClientIdentity;

use crate::router::RouteMatch;

/// The prefix of Spin's request headers.
const SPIN_PREFIX: &str = "spin-";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("client certificate: {name} {value:?} is not a valid header value")]
    Identity { name: &'static str, value: String },
    #[error("header {name}: {value:?} is not a valid header value")]
    Value { name: String, value: String },
    #[error("request URL {0:?} is not valid (check the Host header)")]
    Url(String),
}

/// Where a request came in: what the `spin-*` headers and the URL are made of besides the
/// request itself.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    pub client: SocketAddr,
    /// The listener's address: the URL's authority when a request has no Host header.
    pub local: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'a str,
}

/// Removes every `spin-*` and `x-wattlet-client-*` header: only the host sets them.
pub fn strip_reserved(headers: &mut HeaderMap) {
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with(SPIN_PREFIX) || name.starts_with(IDENTITY_PREFIX)
        })
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(name);
    }
}

/// Passes a verified client certificate's identity on in [`DEVICE_HEADER`], [`EMAIL_HEADER`]
/// and [`SERIAL_HEADER`].
pub fn set_identity(headers: &mut HeaderMap, identity: &ClientIdentity) -> Result<(), HeaderError> {
    for (name, value) in [
        (DEVICE_HEADER, &identity.device_id),
        (EMAIL_HEADER, &identity.email),
        (SERIAL_HEADER, &identity.serial_hex),
    ] {
        let value = HeaderValue::from_str(value).map_err(|_| HeaderError::Identity {
            name,
            value: value.clone(),
        })?;
        headers.insert(name, value);
    }
    Ok(())
}

/// Adds [`PROOF_HEADER`] to a request whose identity headers [`set_identity`] set: an HMAC with
/// `key` over the identity, the method, the path, `at` (seconds since 1970) and `nonce`
/// (random, once per request). Call it when the request's head has been read, just before the
/// component runs: the proof is fresh for `wattlet_survey::identity::MAX_SKEW_SECONDS`.
pub fn prove_identity(
    parts: &mut Parts,
    client: &ClientIdentity,
    key: &[u8],
    at: u64,
    nonce: &str,
) -> Result<(), HeaderError> {
    let request = Bound {
        method: parts.method.as_str(),
        path: parts.uri.path(),
    };
    let claimed = Identity {
        device: &client.device_id,
        email: &client.email,
        serial: &client.serial_hex,
    };
    let proof = identity::prove(key, request, claimed, at, nonce);
    insert(
        &mut parts.headers,
        HeaderName::from_static(PROOF_HEADER),
        &proof,
    )
}

/// Seconds since 1970, for an identity proof's time.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh nonce for an identity proof: 128 random bits as hex (`None` without randomness).
pub fn nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The URL the client asked for: `scheme://host/path?query`, with the Host header's authority
/// (the listener's address without one, e.g. from an HTTP/1.0 client; Spin refuses those).
pub fn full_url(parts: &Parts, connection: &Connection<'_>) -> String {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| connection.local.to_string(), str::to_owned);
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{}://{host}{path_and_query}", connection.scheme)
}

/// Sets Spin's request headers for the route that matched and makes the request URI absolute
/// (wasi:http gives the guest its scheme and authority from it). Call [`strip_reserved`] first.
pub fn set_spin_headers(
    parts: &mut Parts,
    matched: &RouteMatch<'_>,
    connection: &Connection<'_>,
) -> Result<(), HeaderError> {
    let full_url = full_url(parts, connection);
    let fixed = [
        ("spin-full-url", full_url.as_str()),
        ("spin-path-info", matched.path_info.as_str()),
        ("spin-matched-route", matched.based),
        ("spin-raw-component-route", matched.raw),
        ("spin-component-route", matched.component_route),
        ("spin-base-path", "/"),
    ];
    for (name, value) in fixed {
        insert(&mut parts.headers, HeaderName::from_static(name), value)?;
    }
    insert(
        &mut parts.headers,
        HeaderName::from_static("spin-client-addr"),
        &connection.client.to_string(),
    )?;
    for (name, value) in &matched.captures {
        // A segment name that makes no header name is skipped, as Spin skips it.
        if let Some(header) = path_match_header(name) {
            insert(&mut parts.headers, header, value)?;
        }
    }
    parts.uri = full_url.parse().map_err(|_| HeaderError::Url(full_url))?;
    Ok(())
}

/// `spin-path-match-<name>` for a route's `:name`, spelled as Spin spells it: lower case,
/// `_` as `-`.
pub fn path_match_header(segment: &str) -> Option<HeaderName> {
    let name = format!(
        "{SPIN_PREFIX}path-match-{}",
        segment.to_ascii_lowercase().replace('_', "-")
    );
    HeaderName::try_from(name).ok()
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) -> Result<(), HeaderError> {
    let parsed = HeaderValue::from_str(value).map_err(|_| HeaderError::Value {
        name: name.to_string(),
        value: value.to_owned(),
    })?;
    headers.insert(name, parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "192.0.2.7:50123";
    const LOCAL: &str = "127.0.0.1:3000";

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    fn connection(scheme: &str) -> Connection<'_> {
        Connection {
            client: CLIENT.parse().expect("addr"),
            local: LOCAL.parse().expect("addr"),
            scheme,
        }
    }

    fn wildcard_match() -> RouteMatch<'static> {
        RouteMatch {
            component: "api",
            raw: "/api/...",
            based: "/api/...",
            component_route: "/api",
            path_info: "/households/7".to_owned(),
            captures: Vec::new(),
        }
    }

    fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
        parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn every_spin_header_is_set() {
        let mut p = parts("/api/households/7?x=1", &[("host", "example.org:8443")]);
        set_spin_headers(&mut p, &wildcard_match(), &connection("https")).expect("headers");
        for (name, value) in [
            (
                "spin-full-url",
                "https://example.org:8443/api/households/7?x=1",
            ),
            ("spin-path-info", "/households/7"),
            ("spin-matched-route", "/api/..."),
            ("spin-raw-component-route", "/api/..."),
            ("spin-component-route", "/api"),
            ("spin-base-path", "/"),
            ("spin-client-addr", CLIENT),
        ] {
            assert_eq!(header(&p, name), Some(value), "{name}");
        }
        assert_eq!(
            p.uri.to_string(),
            "https://example.org:8443/api/households/7?x=1"
        );
    }

    #[test]
    fn named_segments_become_path_match_headers() {
        let matched = RouteMatch {
            component: "files",
            raw: "/users/:user_id/files/:Name/...",
            based: "/users/:user_id/files/:Name/...",
            component_route: "/users/:user_id/files/:Name",
            path_info: "/rest".to_owned(),
            captures: vec![("user_id", "ada".to_owned()), ("Name", "a.pdf".to_owned())],
        };
        let mut p = parts("/users/ada/files/a.pdf/rest", &[("host", "h")]);
        set_spin_headers(&mut p, &matched, &connection("http")).expect("headers");
        assert_eq!(header(&p, "spin-path-match-user-id"), Some("ada"));
        assert_eq!(header(&p, "spin-path-match-name"), Some("a.pdf"));
        assert_eq!(
            header(&p, "spin-component-route"),
            Some("/users/:user_id/files/:Name")
        );
        assert_eq!(path_match_header("bad name"), None);
    }

    #[test]
    fn spoofed_spin_and_identity_headers_are_removed() {
        let mut p = parts(
            "/api/x",
            &[
                ("host", "h"),
                ("spin-path-info", "/spoofed"),
                ("spin-path-match-id", "spoofed"),
                ("spin-anything", "spoofed"),
                ("x-wattlet-client-device", "pi-spoofed"),
                ("x-wattlet-client-whatever", "spoofed"),
                ("x-other", "kept"),
            ],
        );
        strip_reserved(&mut p.headers);
        let names: Vec<&str> = p.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["host", "x-other"]);
        set_spin_headers(&mut p, &wildcard_match(), &connection("http")).expect("headers");
        assert_eq!(header(&p, "spin-path-info"), Some("/households/7"));
        assert_eq!(header(&p, "spin-path-match-id"), None);
    }

    #[test]
    fn identity_headers_carry_the_certificate() {
        let identity = ClientIdentity {
            device_id: "pi-0042".into(),
            email: "anna@example.org".into(),
            serial_hex: "5f3a".into(),
        };
        let mut p = parts("/", &[("x-wattlet-client-device", "pi-spoofed")]);
        strip_reserved(&mut p.headers);
        set_identity(&mut p.headers, &identity).expect("identity");
        assert_eq!(header(&p, DEVICE_HEADER), Some("pi-0042"));
        assert_eq!(header(&p, EMAIL_HEADER), Some("anna@example.org"));
        assert_eq!(header(&p, SERIAL_HEADER), Some("5f3a"));
        assert_eq!(p.headers.get_all(DEVICE_HEADER).iter().count(), 1);
        let bad = ClientIdentity {
            email: "a\nb".into(),
            ..identity
        };
        assert!(matches!(
            set_identity(&mut p.headers, &bad),
            Err(HeaderError::Identity { name, .. }) if name == EMAIL_HEADER
        ));
    }

    #[test]
    fn the_proof_verifies_for_the_identity_and_request_it_was_made_for() {
        let identity = ClientIdentity {
            device_id: "pi-0042".into(),
            email: "anna@example.org".into(),
            serial_hex: "5f3a".into(),
        };
        let key = b"a key of 32 characters or longer!";
        let mut p = parts("/api/household/consent?x=1", &[(PROOF_HEADER, "v1;forged")]);
        p.method = http::Method::DELETE;
        strip_reserved(&mut p.headers);
        set_identity(&mut p.headers, &identity).expect("identity");
        prove_identity(&mut p, &identity, key, 1_764_600_000, "n0nce").expect("proof");
        let proof = header(&p, PROOF_HEADER).expect("a proof");
        assert_eq!(p.headers.get_all(PROOF_HEADER).iter().count(), 1);
        let claimed = Identity {
            device: "pi-0042",
            email: "anna@example.org",
            serial: "5f3a",
        };
        let request = Bound {
            method: "DELETE",
            path: "/api/household/consent",
        };
        let proven =
            identity::verify(key, request, claimed, proof, 1_764_600_010).expect("verifies");
        assert_eq!(proven.nonce, "n0nce");
        let grant = Bound {
            method: "POST",
            ..request
        };
        assert!(identity::verify(key, grant, claimed, proof, 1_764_600_010).is_err());
    }

    #[test]
    fn an_ipv6_client_and_listener_are_bracketed() {
        let connection = Connection {
            client: "[2001:db8::7]:50123".parse().expect("addr"),
            local: "[::1]:3000".parse().expect("addr"),
            scheme: "http",
        };
        let mut p = parts("/api/x", &[]);
        set_spin_headers(&mut p, &wildcard_match(), &connection).expect("headers");
        assert_eq!(header(&p, "spin-client-addr"), Some("[2001:db8::7]:50123"));
        assert_eq!(header(&p, "spin-full-url"), Some("http://[::1]:3000/api/x"));
        assert_eq!(p.uri.host(), Some("[::1]"));
    }

    #[test]
    fn without_a_host_header_the_url_names_the_listener() {
        let p = parts("/api/x?q", &[]);
        assert_eq!(
            full_url(&p, &connection("http")),
            "http://127.0.0.1:3000/api/x?q"
        );
        let p = parts("/", &[("host", "meter.example")]);
        assert_eq!(full_url(&p, &connection("https")), "https://meter.example/");
    }

    #[test]
    fn a_host_that_makes_no_url_is_an_error() {
        let mut p = parts("/api/x", &[("host", "bad host")]);
        let err = set_spin_headers(&mut p, &wildcard_match(), &connection("http")).unwrap_err();
        assert_eq!(err, HeaderError::Url("http://bad host/api/x".into()));
    }
}
