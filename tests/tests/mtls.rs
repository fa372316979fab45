//! Device identity over mutual TLS 1.3: `wattlet serve` with `ServeOptions::tls`, a CA made with
//! `wattlet_pki` in a temporary directory, real TLS on loopback (hyper over tokio-rustls), and
//! the probe component's `headers` route showing what reaches the component.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use wattlet_pki::{
    CaDir, CertificateAuthority, DEFAULT_CA_VALIDITY, DeviceRequest, IssuedCert, ServerRequest,
};
use wattlet_serve::server::{App, ClientAuth, ServeOptions, TlsOptions, serve};
use wattlet_tls::client_tls_config;

struct Server {
    addr: SocketAddr,
    /// The CA directory (`ca.crt`, `crl.pem`, …) and issued files.
    dir: PathBuf,
    _temp: tempfile::TempDir,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Loads the probe application and serves it on its own runtime and thread.
fn start(temp: tempfile::TempDir, tls: Option<TlsOptions>) -> Server {
    let options = ServeOptions {
        manifest: repo().join("tests/spin/spin.toml"),
        state_dir: Some(temp.path().join("state")),
        runtime_config: Some(repo().join("tests/spin/runtime-config.toml")),
        max_request_bytes: 64 * 1024,
        tls,
    };
    let env = |k: &str| (k == "SPIN_VARIABLE_API_TOKEN").then(|| "t0ken".to_owned());
    let app = Arc::new(App::load_with_env(&options, env).expect(
        "probe app loads (build it first: cargo build --profile component --target wasm32-wasip2 -p wattlet-spin-probe)",
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = TcpListener::from_std(listener).expect("listener");
            serve(app, listener, std::future::pending()).await
        })
    });
    Server {
        addr,
        dir: temp.path().to_path_buf(),
        _temp: temp,
    }
}

/// One mutual-TLS server for all tests (compiling the probe once keeps the suite fast); each
/// test uses its own devices, so revoking one does not disturb the others.
fn tls_server() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let temp = tempfile::tempdir().expect("temp dir");
        let ca = CaDir::init(
            &temp.path().join("ca"),
            "test CA",
            DEFAULT_CA_VALIDITY,
            false,
        )
        .expect("CA");
        let issued = ca
            .issue_server(&ServerRequest::default())
            .expect("server certificate");
        let (cert, key) = issued.write(&temp.path().join("server")).expect("write");
        let tls = TlsOptions {
            cert,
            key,
            client_ca: ca.ca_cert_path(),
            crl: Some(ca.crl_path()),
            client_auth: ClientAuth::Required,
        };
        start(temp, Some(tls))
    })
}

fn plain_server() -> &'static Server {
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| start(tempfile::tempdir().expect("temp dir"), None))
}

fn ca_dir(server: &Server) -> CaDir {
    CaDir::open(&server.dir.join("ca")).expect("open CA")
}

/// Issues a device certificate from the server's CA and returns it with a client config.
fn device(server: &Server, id: &str, email: &str) -> (IssuedCert, Arc<ClientConfig>) {
    let ca = ca_dir(server);
    let issued = ca
        .issue_device(&DeviceRequest::new(id, email))
        .expect("device certificate");
    let (cert, key) = issued.write(&server.dir.join(id)).expect("write");
    let config = client_tls_config(&cert, &key, &ca.ca_cert_path()).expect("client config");
    (issued, Arc::new(config))
}

type Sender = SendRequest<Full<Bytes>>;

type Connection = tokio::task::JoinHandle<Result<(), hyper::Error>>;

async fn connect_tls_with_task(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> anyhow::Result<(Sender, Connection)> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    Ok((sender, tokio::spawn(connection)))
}

async fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> anyhow::Result<Sender> {
    Ok(connect_tls_with_task(addr, config).await?.0)
}

async fn connect_plain(addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn get(
    sender: &mut Sender,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(StatusCode, String)> {
    sender.ready().await?;
    let mut request = Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A TLS connection and one request; `Err` when the server refuses the handshake (with TLS
/// 1.3 the client's side of the handshake may finish before the server's verdict arrives, so
/// the refusal can show on the first request).
async fn tls_request(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let (mut sender, connection) = connect_tls_with_task(addr, config).await?;
    match get(&mut sender, path, &[]).await {
        Ok(answer) => Ok(answer),
        // The connection task holds the reason (e.g. the server's TLS alert).
        Err(error) => match connection.await {
            Ok(Err(reason)) => Err(anyhow::Error::from(reason).context(error)),
            _ => Err(error),
        },
    }
}

/// Asserts the server refused the connection with this TLS alert (e.g. `CertificateRequired`).
fn assert_refused(result: anyhow::Result<(StatusCode, String)>, alert: &str) {
    match result {
        Ok((status, body)) => panic!("expected the TLS alert {alert}, got {status}: {body}"),
        Err(error) => {
            let chain = format!("{error:#}");
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
            let mut debug = String::new();
            while let Some(e) = source {
                debug.push_str(&format!("{e:?} "));
                source = e.source();
            }
            assert!(
                chain.contains(alert) || debug.contains(alert),
                "expected the TLS alert {alert}, got: {chain} ({debug})"
            );
        }
    }
}

fn headers_of(body: &str) -> serde_json::Map<String, Value> {
    let json: Value = serde_json::from_str(body).expect("probe answers JSON");
    json["headers"].as_object().expect("headers object").clone()
}

const SPOOFED: &[(&str, &str)] = &[
    ("x-wattlet-client-device", "someone-else"),
    ("X-Wattlet-Client-Email", "mallory@example.org"),
    ("x-wattlet-client-serial", "00"),
    ("x-wattlet-client-role", "admin"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_device_reaches_the_component_with_its_identity() {
    let server = tls_server();
    let (issued, config) = device(server, "pi-kitchen.01", "anna@example.org");
    let mut sender = connect_tls(server.addr, config).await.expect("handshake");
    let (status, body) = get(&mut sender, "/probe/headers?x=1", SPOOFED)
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK, "{body}");
    let headers = headers_of(&body);
    assert_eq!(headers["x-wattlet-client-device"], "pi-kitchen.01");
    assert_eq!(headers["x-wattlet-client-email"], "anna@example.org");
    assert_eq!(
        headers["x-wattlet-client-serial"],
        issued.serial_hex.as_str()
    );
    assert!(
        !headers.contains_key("x-wattlet-client-role"),
        "a spoofed x-wattlet-client-* header got through: {body}"
    );
    let json: Value = serde_json::from_str(&body).expect("JSON");
    let full_url = headers["spin-full-url"].as_str().expect("spin-full-url");
    assert!(full_url.starts_with("https://localhost"), "{full_url}");
    let uri = json["uri"].as_str().expect("uri");
    assert!(uri.starts_with("https://"), "wasi:http scheme: {uri}");

    // Keep-alive: the same connection serves the next request with the same identity.
    let (status, body) = get(&mut sender, "/probe/headers", &[])
        .await
        .expect("second request");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        headers_of(&body)["x-wattlet-client-device"],
        "pi-kitchen.01"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_plain_http() {
    let server = plain_server();
    let mut sender = connect_plain(server.addr).await.expect("connect");
    let (status, body) = get(&mut sender, "/probe/headers", SPOOFED)
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK, "{body}");
    let headers = headers_of(&body);
    let leaked: Vec<_> = headers
        .keys()
        .filter(|k| k.starts_with("x-wattlet-client-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "spoofed headers reached the component: {leaked:?}"
    );
    let full_url = headers["spin-full-url"].as_str().expect("spin-full-url");
    assert!(full_url.starts_with("http://"), "{full_url}");
}

fn roots(ca_cert: &Path) -> Arc<RootCertStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_cert).expect("CA file") {
        roots.add(cert.expect("CA cert")).expect("add root");
    }
    Arc::new(roots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_certificate_is_refused() {
    let server = tls_server();
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots(&ca_dir(server).ca_cert_path()))
            .with_no_client_auth();
    let result = tls_request(server.addr, Arc::new(config), "/probe/headers").await;
    assert_refused(result, "CertificateRequired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_another_ca_is_refused() {
    let server = tls_server();
    let other = CertificateAuthority::new("another CA", DEFAULT_CA_VALIDITY).expect("CA");
    let issued = other
        .issue_device(&DeviceRequest::new("pi-intruder", "eve@example.org"))
        .expect("device");
    let (cert, key) = issued.write(&server.dir.join("intruder")).expect("write");
    // The client trusts the real server; only its own certificate is foreign.
    let config =
        client_tls_config(&cert, &key, &ca_dir(server).ca_cert_path()).expect("client config");
    let result = tls_request(server.addr, Arc::new(config), "/probe/headers").await;
    assert_refused(result, "UnknownCA");
}

/// A TLS 1.2-only ClientHello (what a client limited to TLS 1.2 sends): ECDHE suites, no
/// key share; with `supported_versions` listing only TLS 1.2, or without the extension.
fn tls12_client_hello(with_supported_versions: bool) -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut extensions = Vec::new();
    let name = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    ext(&mut extensions, 0x0000, &sni); // server_name
    ext(&mut extensions, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // x25519, secp256r1
    ext(&mut extensions, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    ext(
        &mut extensions,
        0x000d,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    ); // signature_algorithms
    ext(&mut extensions, 0xff01, &[0]); // renegotiation_info
    if with_supported_versions {
        ext(&mut extensions, 0x002b, &[2, 0x03, 0x03]); // supported_versions: TLS 1.2 only
    }
    let mut hello = Vec::new();
    hello.extend_from_slice(&[0x03, 0x03]); // client_version TLS 1.2
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // session id
    let suites: [u16; 4] = [0xc02b, 0xc02f, 0xcca9, 0xcca8];
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        hello.extend_from_slice(&suite.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null
    hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello.extend_from_slice(&extensions);
    let mut handshake = vec![0x01]; // ClientHello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_only_client_is_refused() {
    let server = tls_server();
    for with_supported_versions in [false, true] {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        tcp.write_all(&tls12_client_hello(with_supported_versions))
            .await
            .expect("send ClientHello");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tcp.read_to_end(&mut answer),
        )
        .await
        .expect("the server answers and closes");
        let _ = read; // a reset after the alert is fine too
        // A fatal alert record: content type 21, level 2 (fatal), protocol_version (70).
        assert!(
            answer.len() >= 7 && answer[0] == 0x15 && answer[5] == 2 && answer[6] == 70,
            "expected a protocol_version alert, got {answer:02x?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_revoked_mid_connection_is_refused_from_its_next_request() {
    let server = tls_server();
    let (issued, config) = device(server, "pi-revoked", "bob@example.org");
    let (_, bystander) = device(server, "pi-bystander", "carol@example.org");
    let mut sender = connect_tls(server.addr, config.clone())
        .await
        .expect("handshake");
    let (status, body) = get(&mut sender, "/probe/headers", &[])
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK, "{body}");

    assert!(ca_dir(server).revoke(&issued.serial_hex).expect("revoke"));

    // The same keep-alive connection: refused before any component runs.
    let (status, body) = get(&mut sender, "/probe/headers", &[])
        .await
        .expect("the open connection still answers");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("revoked"), "{body}");

    // A new connection (the client offers to resume its session) is refused at the handshake.
    let result = tls_request(server.addr, config, "/probe/headers").await;
    assert_refused(result, "CertificateRevoked");

    // Other devices are unaffected.
    let (status, body) = tls_request(server.addr, bystander, "/probe/headers")
        .await
        .expect("bystander");
    assert_eq!(status, StatusCode::OK, "{body}");
}
