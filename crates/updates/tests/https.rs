//! The device fetches the repository over mutual TLS, as it reaches the cloud: a static file
//! server on loopback that requires a device certificate serves the publisher's directory.

mod common;

use common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wattlet_pki::{CaDir, DeviceRequest, ServerRequest};
use wattlet_updates::https::HttpsTransport;
use wattlet_updates::{Error, Verifier};

/// Serves `root` as static files over TLS with `config` until the test ends.
async fn serve(root: PathBuf, config: rustls::ServerConfig) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let root = root.clone();
            tokio::spawn(async move {
                // A client without a certificate fails here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    let root = root.clone();
                    async move { Ok::<_, std::convert::Infallible>(file(&root, &request)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn file<B>(root: &Path, request: &hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
    let path = request.uri().path().trim_start_matches('/');
    let found = if path.split('/').any(|s| s == ".." || s.is_empty()) {
        None
    } else {
        std::fs::read(root.join(path)).ok()
    };
    match found {
        Some(bytes) => hyper::Response::new(Full::new(Bytes::from(bytes))),
        None => {
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            response
        }
    }
}

struct Link {
    url: url::Url,
    device_tls: Arc<rustls::ClientConfig>,
    anonymous_tls: Arc<rustls::ClientConfig>,
}

async fn link(fx: &Fixture) -> Link {
    let pki = fx.dir.path().join("pki");
    let ca = CaDir::init(
        &pki.join("ca"),
        "test CA",
        std::time::Duration::from_secs(3600),
        false,
    )
    .expect("CA");
    let (server_crt, server_key) = ca
        .issue_server(&ServerRequest::default())
        .expect("server certificate")
        .write(&pki.join("server"))
        .expect("write");
    let (device_crt, device_key) = ca
        .issue_device(&DeviceRequest::new("dev-1", "p@example.org"))
        .expect("device certificate")
        .write(&pki.join("device"))
        .expect("write");
    let server = wattlet_tls::server_tls_config(
        &server_crt,
        &server_key,
        &ca.ca_cert_path(),
        None,
        wattlet_tls::ClientAuth::Required,
    )
    .expect("server TLS");
    let addr = serve(fx.repo.clone(), server).await;
    Link {
        url: url::Url::parse(&format!("https://127.0.0.1:{}/", addr.port())).expect("url"),
        device_tls: Arc::new(
            wattlet_tls::client_tls_config(&device_crt, &device_key, &ca.ca_cert_path())
                .expect("client TLS"),
        ),
        anonymous_tls: Arc::new(
            wattlet_tls::anonymous_client_tls_config(&ca.ca_cert_path()).expect("client TLS"),
        ),
    }
}

fn device(fx: &Fixture, link: &Link, name: &str, tls: &Arc<rustls::ClientConfig>) -> Verifier {
    Verifier::new(
        fx.shipped_root.clone(),
        fx.dir.path().join(format!("device-{name}")),
        &link.url,
        version("1.0.0"),
    )
    .expect("verifier")
    .transport(HttpsTransport::new(tls.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_verifies_updates_over_mutual_tls() {
    let fx = Fixture::new().await;
    let link = link(&fx).await;
    let device = device(&fx, &link, "a", &link.device_tls);

    assert_eq!(offered(&device, "1.0.0").await, component_bytes("1.0.0"));
    // What came over the link is counted: the component once, and the metadata.
    let first = device.fetched();
    assert_eq!(first.component_bytes, component_bytes("1.0.0").len() as u64);
    let on_disk: u64 = ["1.root.json", "timestamp.json"]
        .iter()
        .map(|f| {
            std::fs::metadata(fx.metadata(f))
                .expect("metadata file")
                .len()
        })
        .sum();
    assert!(first.metadata_bytes > on_disk, "{first:?}");
    // A poll that finds nothing new fetches metadata only.
    device
        .record_installed(COMPONENT, &version("1.0.0"))
        .expect("record");
    assert!(device.check(COMPONENT, None).await.expect("poll").is_none());
    let poll = device.fetched();
    assert_eq!(poll.component_bytes, first.component_bytes);
    assert!(poll.metadata_bytes > first.metadata_bytes && poll.fetches > first.fetches);

    // The root chain is followed over HTTPS too (a missing next root is a 404).
    fx.publisher
        .rotate(wattlet_updates::KeyRole::Timestamp)
        .await
        .expect("rotate");
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
    assert_eq!(device.trusted().expect("trusted").root, 2);

    // Endless data over the network is cut off at the limit, not read to the end.
    let saved = fx.save();
    std::fs::write(fx.metadata("timestamp.json"), vec![b' '; 32 * 1024 * 1024]).expect("write");
    let e = device
        .check(COMPONENT, None)
        .await
        .expect_err("endless data");
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    fx.restore(&saved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_device_certificate_nothing_is_fetched() {
    let fx = Fixture::new().await;
    let link = link(&fx).await;
    let device = device(&fx, &link, "anonymous", &link.anonymous_tls);
    let e = device
        .check(COMPONENT, None)
        .await
        .expect_err("the server requires a client certificate");
    assert_eq!(e.kind(), "transport", "{e}");
    assert_eq!(device.trusted().expect("trusted").timestamp, 0);
}
