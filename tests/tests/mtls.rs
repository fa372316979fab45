//! Device identity over mutual TLS 1.3: `wattlet serve` with `ServeOptions::tls`, a CA made with
//! `wattlet_pki` in a temporary directory, real TLS on loopback (hyper over tokio-rustls), and
//! the probe component's `headers` route showing what reaches the component.

use std::path::Path;
use std::sync::Arc;

use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use wattlet_pki::{CaDir, CertificateAuthority, DEFAULT_CA_VALIDITY, DeviceRequest};
use wattlet_serve::server::{ClientAuth, ServeOptions};
use wattlet_testkit::http::{Client, Connection, Reply};
use wattlet_testkit::serve::{self, Served};
use wattlet_testkit::{Device, PROBE_TOKEN, pki};
use wattlet_tls::client_tls_config;

/// The probe application served by `wattlet serve`, with the CA its clients' certificates come
/// from when it speaks mutual TLS.
struct Probe {
    served: Served,
    ca: Option<CaDir>,
    dir: tempfile::TempDir,
}

impl Probe {
    fn start(tls: bool) -> Probe {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, tls) = match tls {
            true => {
                let (ca, tls) = pki::server_ca(dir.path(), ClientAuth::Required);
                (Some(ca), Some(tls))
            }
            false => (None, None),
        };
        let options = ServeOptions {
            tls,
            ..serve::probe_options(&dir.path().join("state"))
        };
        let served = serve::start(&options, &[("api_token", PROBE_TOKEN)]);
        Probe { served, ca, dir }
    }

    fn ca(&self) -> &CaDir {
        self.ca.as_ref().expect("a mutual-TLS server")
    }

    /// Issues a device certificate from the server's CA.
    fn device(&self, id: &str, email: &str) -> Device {
        pki::device(self.ca(), self.dir.path(), id, email)
    }

    /// A client of this server presenting `config`'s certificate.
    fn client(&self, config: Arc<ClientConfig>) -> Client {
        Client::tls(self.served.addr, config)
    }
}

/// One mutual-TLS server for all tests (compiling the probe once keeps the suite fast); each
/// test uses its own devices, so revoking one does not disturb the others.
fn tls_server() -> &'static Probe {
    static SERVER: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| Probe::start(true))
}

fn plain_server() -> &'static Probe {
    static SERVER: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| Probe::start(false))
}

/// Asserts the server refused the connection with this TLS alert (e.g. `CertificateRequired`).
fn assert_refused(result: anyhow::Result<Reply>, alert: &str) {
    match result {
        Ok(reply) => panic!(
            "expected the TLS alert {alert}, got {}: {}",
            reply.status, reply.text
        ),
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

/// `GET /probe/headers` on a new connection of `client`; `Err` when the server refuses it.
async fn probe_headers(client: &Client) -> anyhow::Result<Reply> {
    client
        .try_send(hyper::Method::GET, "/probe/headers", b"", &[])
        .await
}

/// `GET path` on `connection`, answered 200 by the probe: its JSON (what reached it).
async fn probe(connection: &mut Connection, path: &str, headers: &[(&str, &str)]) -> Value {
    let reply = connection.get(path, headers).await.expect("request");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

fn headers_of(json: &Value) -> serde_json::Map<String, Value> {
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
    let device = server.device("pi-kitchen.01", "anna@example.org");
    let mut connection = server
        .client(device.tls.clone())
        .connect()
        .await
        .expect("handshake");
    let json = probe(&mut connection, "/probe/headers?x=1", SPOOFED).await;
    let headers = headers_of(&json);
    assert_eq!(headers["x-wattlet-client-device"], "pi-kitchen.01");
    assert_eq!(headers["x-wattlet-client-email"], "anna@example.org");
    assert_eq!(headers["x-wattlet-client-serial"], device.serial.as_str());
    assert!(
        !headers.contains_key("x-wattlet-client-role"),
        "a spoofed x-wattlet-client-* header got through: {json}"
    );
    let full_url = headers["spin-full-url"].as_str().expect("spin-full-url");
    assert!(full_url.starts_with("https://localhost"), "{full_url}");
    let uri = json["uri"].as_str().expect("uri");
    assert!(uri.starts_with("https://"), "wasi:http scheme: {uri}");

    // Keep-alive: the same connection serves the next request with the same identity.
    let json = probe(&mut connection, "/probe/headers", &[]).await;
    assert_eq!(
        headers_of(&json)["x-wattlet-client-device"],
        "pi-kitchen.01"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_plain_http() {
    let server = plain_server();
    let mut connection = Client::plain(server.served.addr)
        .connect()
        .await
        .expect("connect");
    let headers = headers_of(&probe(&mut connection, "/probe/headers", SPOOFED).await);
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
            .with_root_certificates(roots(&server.ca().ca_cert_path()))
            .with_no_client_auth();
    let result = probe_headers(&server.client(Arc::new(config))).await;
    assert_refused(result, "CertificateRequired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_another_ca_is_refused() {
    let server = tls_server();
    let other = CertificateAuthority::new("another CA", DEFAULT_CA_VALIDITY).expect("CA");
    let issued = other
        .issue_device(&DeviceRequest::new("pi-intruder", "eve@example.org"))
        .expect("device");
    let (cert, key) = issued
        .write(&server.dir.path().join("intruder"))
        .expect("write");
    // The client trusts the real server; only its own certificate is foreign.
    let config =
        client_tls_config(&cert, &key, &server.ca().ca_cert_path()).expect("client config");
    let result = probe_headers(&server.client(Arc::new(config))).await;
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
        let mut tcp = TcpStream::connect(server.served.addr)
            .await
            .expect("connect");
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
    let revoked = server.device("pi-revoked", "bob@example.org");
    let bystander = server.device("pi-bystander", "carol@example.org");
    let mut connection = server
        .client(revoked.tls.clone())
        .connect()
        .await
        .expect("handshake");
    probe(&mut connection, "/probe/headers", &[]).await;

    assert!(server.ca().revoke(&revoked.serial).expect("revoke"));

    // The same keep-alive connection: refused before any component runs.
    let reply = connection
        .get("/probe/headers", &[])
        .await
        .expect("the open connection still answers");
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(reply.text.contains("revoked"), "{}", reply.text);

    // A new connection (the client offers to resume its session) is refused at the handshake.
    let result = probe_headers(&server.client(revoked.tls.clone())).await;
    assert_refused(result, "CertificateRevoked");

    // Other devices are unaffected.
    let reply = probe_headers(&server.client(bystander.tls.clone()))
        .await
        .expect("bystander");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}
