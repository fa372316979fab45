//! The Data API component (components/data-api) served by `wattlet serve` from the repository's
//! `spin.toml` on loopback: administration (registration, listing, device revocation),
//! authentication failures and routing over plain HTTP; devices over real mutual TLS 1.3 with
//! certificates from `wattlet_pki` (consent, status reports, measurement upload and reads).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use wattlet_pki::{self as pki, CertificateAuthority, DeviceRequest, ServerRequest};
use wattlet_serve::server::{App, ClientAuth, ServeOptions, TlsOptions, serve};
use wattlet_survey::RefusalCode;

const ADMIN_TOKEN: &str = "admin-test-token-7f3a";

/// A household location for registrations that are not about locations.
fn location() -> Value {
    json!({ "latitude": 48.1372, "longitude": 11.5756 })
}

struct Api {
    addr: SocketAddr,
    _state: tempfile::TempDir,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts `wattlet serve` for the repository's `spin.toml` on its own runtime thread.
fn start(state: &std::path::Path, tls: Option<TlsOptions>) -> SocketAddr {
    let options = ServeOptions {
        manifest: repo().join("spin.toml"),
        state_dir: Some(state.to_path_buf()),
        runtime_config: None,
        max_request_bytes: 16 << 20,
        tls,
    };
    let env = |k: &str| (k == "SPIN_VARIABLE_ADMIN_TOKEN").then(|| ADMIN_TOKEN.to_owned());
    let app = Arc::new(App::load_with_env(&options, env).expect(
        "the data API loads (build and compose it first: see `[component.data-api.build]` in spin.toml)",
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
    addr
}

/// The plain-HTTP server, one for all tests (the component is compiled once); tests use their
/// own households.
fn api() -> &'static Api {
    static API: std::sync::OnceLock<Api> = std::sync::OnceLock::new();
    API.get_or_init(|| {
        let state = tempfile::tempdir().expect("temp dir");
        Api {
            addr: start(state.path(), None),
            _state: state,
        }
    })
}

/// The mutual-TLS server: its CA issues the server's and every device's certificate.
struct TlsApi {
    addr: SocketAddr,
    ca: CertificateAuthority,
    dir: tempfile::TempDir,
}

fn tls_api() -> &'static TlsApi {
    static API: std::sync::OnceLock<TlsApi> = std::sync::OnceLock::new();
    API.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca =
            CertificateAuthority::new("wattlet test CA", pki::DEFAULT_CA_VALIDITY).expect("CA");
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, ca.cert_pem()).expect("write CA");
        let (cert, key) = ca
            .issue_server(&ServerRequest::default())
            .expect("server certificate")
            .write(&dir.path().join("server"))
            .expect("write server certificate");
        let tls = TlsOptions {
            cert,
            key,
            client_ca: ca_path,
            crl: None,
            client_auth: ClientAuth::Required,
        };
        let addr = start(&dir.path().join("state"), Some(tls));
        TlsApi { addr, ca, dir }
    })
}

/// How a request reaches the server: plain HTTP, or mutual TLS as the holder of a certificate.
#[derive(Clone)]
enum Client {
    Plain,
    Tls(TlsConnector),
}

/// A client presenting a device certificate for `device` and `email` (any device id the CA
/// signs, registered or not).
fn device_client(device: &str, email: &str) -> Client {
    let api = tls_api();
    let prefix = api.dir.path().join(unique("client"));
    let (cert, key) = api
        .ca
        .issue_device(&DeviceRequest::new(device, email))
        .expect("device certificate")
        .write(&prefix)
        .expect("write device certificate");
    let config = wattlet_tls::client_tls_config(&cert, &key, &api.dir.path().join("ca.crt"))
        .expect("client TLS config");
    Client::Tls(TlsConnector::from(Arc::new(config)))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

async fn send(method: Method, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
    send_as(&Client::Plain, method, path, body, headers).await
}

async fn send_as(
    client: &Client,
    method: Method,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match client {
        Client::Plain => {
            let addr = api().addr;
            let request = request.header("host", addr.to_string());
            let stream = TcpStream::connect(addr).await.expect("connect");
            exchange(stream, request, body).await
        }
        Client::Tls(connector) => {
            let addr = tls_api().addr;
            let request = request.header("host", format!("localhost:{}", addr.port()));
            let stream = TcpStream::connect(addr).await.expect("connect");
            let server = ServerName::try_from("localhost").expect("server name");
            let stream = connector
                .connect(server, stream)
                .await
                .expect("TLS handshake");
            exchange(stream, request, body).await
        }
    }
}

async fn exchange<S>(stream: S, request: hyper::http::request::Builder, body: &[u8]) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

async fn admin(method: Method, path: &str, body: Option<&Value>) -> Reply {
    admin_as(&Client::Plain, method, path, body).await
}

async fn admin_as(client: &Client, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let body = body.map(Value::to_string).unwrap_or_default();
    send_as(
        client,
        method,
        path,
        body.as_bytes(),
        &[("authorization", &bearer)],
    )
    .await
}

/// The administrators' client on the mutual-TLS server: every TLS client needs a certificate,
/// the bearer token is what makes it an administrator.
fn tls_admin() -> &'static Client {
    static ADMIN: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    ADMIN.get_or_init(|| device_client("admin-console", "admin@example.org"))
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

struct Household {
    id: String,
    device: String,
    email: String,
    meters: Vec<String>,
}

/// Registers a household on the plain server.
async fn register() -> Household {
    register_on(&Client::Plain).await
}

/// Registers a household on the mutual-TLS server; returns it with its device's client.
async fn register_device() -> (Household, Client) {
    let household = register_on(tls_admin()).await;
    let client = device_client(&household.device, &household.email);
    (household, client)
}

/// Registers a household with one electricity meter (fixed uuid) and one PV meter (generated).
async fn register_on(client: &Client) -> Household {
    let device = unique("dev");
    let email = format!("{}@example.org", unique("p"));
    let meter = uuid4();
    let reply = admin_as(
        client,
        Method::POST,
        "/api/management/household",
        Some(&json!({
            "name": "Erika Mustermann",
            "email": email,
            "device": device,
            "meters": [
                { "uuid": meter, "type": "ELECTRICITY", "model": "MT681" },
                { "type": "PV-GENERATION", "model": "EASY" },
            ],
            "location": { "latitude": 48.1372, "longitude": 11.5756 },
        })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let meters: Vec<String> = reply.body["meters"]
        .as_array()
        .expect("meters")
        .iter()
        .map(|m| m["uuid"].as_str().expect("uuid").to_owned())
        .collect();
    assert_eq!(meters[0], meter);
    Household {
        id: reply.body["household"].as_str().expect("id").to_owned(),
        device,
        email,
        meters,
    }
}

/// A random-enough v4 UUID without a uuid dependency (tests only).
fn uuid4() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u64;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let a = t ^ (u64::from(std::process::id()) << 32) ^ n.rotate_left(17);
    let b = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ t.rotate_left(29);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a as u16 & 0xfff,
        (b >> 48) as u16 & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

async fn household_in_listing(id: &str) -> Value {
    household_listed_on(&Client::Plain, id).await
}

async fn household_listed_on(client: &Client, id: &str) -> Value {
    let reply = admin_as(client, Method::GET, "/api/management/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["households"]
        .as_array()
        .expect("households")
        .iter()
        .find(|h| h["household"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrative_endpoints_need_the_admin_token() {
    let reply = send(Method::GET, "/api/management/household", b"", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert!(reply.headers.contains_key("www-authenticate"));
    assert_refused(&reply, RefusalCode::InvalidToken, "bearer token");
    for value in [
        "Bearer wrong",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        ADMIN_TOKEN,
    ] {
        let reply = send(
            Method::GET,
            "/api/management/household",
            b"",
            &[("authorization", value)],
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{value}: {}",
            reply.text
        );
    }
    let token_prefix = format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let reply = send(
        Method::POST,
        "/api/management/household",
        b"{}",
        &[("authorization", &token_prefix)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let reply = send(Method::POST, "/api/management/device/x/revoke", b"", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    // The scheme is case-insensitive.
    let reply = send(
        Method::GET,
        "/api/management/household",
        b"",
        &[("authorization", &format!("bearer {ADMIN_TOKEN}"))],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

async fn with_token(token: &str, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let bearer = format!("Bearer {token}");
    let body = body.map(Value::to_string).unwrap_or_default();
    send(method, path, body.as_bytes(), &[("authorization", &bearer)]).await
}

/// Mints a token with `request` as `minter` (the admin token or a token); returns it.
async fn mint(minter: &str, request: Value) -> String {
    let reply = with_token(
        minter,
        Method::POST,
        "/api/management/token",
        Some(&request),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{request}: {}",
        reply.text
    );
    reply.body["token"].as_str().expect("token").to_owned()
}

fn registration(device: &str) -> Value {
    json!({ "name": "T", "email": format!("{}@example.org", unique("tok")), "device": device,
            "meters": [{ "type": "ELECTRICITY", "model": "DD3" }], "location": location() })
}

/// The statuses `token` gets for: register, list, revoke `device`, import a region, mint.
async fn scope_of(token: &str, device: &str) -> [StatusCode; 5] {
    let register = with_token(
        token,
        Method::POST,
        "/api/management/household",
        Some(&registration(&unique("dev"))),
    )
    .await;
    let list = with_token(token, Method::GET, "/api/management/household", None).await;
    let revoke = with_token(
        token,
        Method::POST,
        &format!("/api/management/device/{device}/revoke"),
        None,
    )
    .await;
    let bearer = format!("Bearer {token}");
    let import = send(
        Method::PUT,
        "/api/management/nuts3_region",
        b"code,population_density_per_km2\nDEF0A,120\n",
        &[("authorization", &bearer)],
    )
    .await;
    let minted = with_token(
        token,
        Method::POST,
        "/api/management/token",
        Some(&json!({ "role": "researcher" })),
    )
    .await;
    [
        register.status,
        list.status,
        revoke.status,
        import.status,
        minted.status,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_carry_a_role_and_restrictions_that_only_narrow() {
    use wattlet_access_token::{Caveat, Role, Token};
    const OK: StatusCode = StatusCode::OK;
    const CREATED: StatusCode = StatusCode::CREATED;
    const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
    let household = register().await;
    let other = register().await;

    // Researchers register and list; device administration, regions and minting are not theirs.
    let researcher = mint(ADMIN_TOKEN, json!({ "role": "researcher" })).await;
    assert_eq!(
        scope_of(&researcher, &household.device).await,
        [CREATED, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN]
    );
    let administrator = mint(ADMIN_TOKEN, json!({ "role": "administrator" })).await;
    let spare = register().await;
    assert_eq!(
        scope_of(&administrator, &spare.device).await,
        [CREATED, OK, OK, OK, CREATED]
    );

    // A holder restricts a token offline; the restricted token keeps every restriction.
    let read_only = Token::decode(&administrator)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    assert_eq!(
        scope_of(&read_only, &household.device).await,
        [FORBIDDEN, OK, FORBIDDEN, FORBIDDEN, FORBIDDEN]
    );
    let one_household = Token::decode(&administrator)
        .expect("token")
        .attenuate(Caveat::Household(household.id.clone()))
        .encode();
    let listed = with_token(
        &one_household,
        Method::GET,
        "/api/management/household",
        None,
    )
    .await;
    let ids: Vec<&str> = listed.body["households"]
        .as_array()
        .expect("households")
        .iter()
        .map(|h| h["household"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [household.id.as_str()], "{}", listed.text);
    // Cross-household attempts: another household's device and meter.
    let reply = with_token(
        &one_household,
        Method::POST,
        &format!("/api/management/device/{}/revoke", other.device),
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let reply = with_token(
        &one_household,
        Method::GET,
        &format!("/api/management/meter/{}/disaggregation", other.meters[0]),
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let reply = with_token(
        &one_household,
        Method::GET,
        &format!(
            "/api/management/meter/{}/disaggregation",
            household.meters[0]
        ),
        None,
    )
    .await;
    assert_eq!(reply.status, OK, "{}", reply.text);
    assert_eq!(
        household_in_listing(&other.id).await["devices"][0]["revoked_at"],
        Value::Null
    );

    // Widening: a removed, changed or out-ranking restriction is refused or has no effect.
    let decoded = Token::decode(&read_only).expect("token");
    let caveats: Vec<String> = decoded.caveats().iter().map(Caveat::encode).collect();
    let (payload, tag) = read_only.rsplit_once('.').expect("tag");
    let forge = |caveats: &[&str]| {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = json!({ "id": decoded.id(), "caveats": caveats }).to_string();
        format!("wt1.{}.{tag}", engine.encode(body))
    };
    assert!(payload.starts_with("wt1."));
    for widened in [
        forge(&[caveats[0].as_str()]),
        forge(&["role=administrator", "household=x"]),
        format!("{payload}.{}", "A".repeat(43)),
        Token::mint(b"another server", "x", Role::Administrator).encode(),
    ] {
        let reply = with_token(&widened, Method::GET, "/api/management/household", None).await;
        assert_refused(&reply, RefusalCode::InvalidToken, "signature");
    }
    let promoted = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::Role(Role::Administrator))
        .encode();
    let reply = with_token(
        &promoted,
        Method::POST,
        &format!("/api/management/device/{}/revoke", household.device),
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "administrator");

    // Expiry: past restrictions are refused; a token minted by a token keeps its expiry.
    let expired = Token::decode(&administrator)
        .expect("token")
        .attenuate(Caveat::ExpiresAt(1))
        .encode();
    let reply = with_token(&expired, Method::GET, "/api/management/household", None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "expired");
    let until = Token::decode(&administrator)
        .expect("token")
        .attenuate(Caveat::ExpiresAt(4_102_444_800))
        .encode();
    let child = mint(&until, json!({ "role": "researcher", "read_only": true })).await;
    let child = Token::decode(&child).expect("token");
    assert_eq!(
        child.caveats()[1..],
        [Caveat::ExpiresAt(4_102_444_800), Caveat::ReadOnly]
    );
    for (request, needle) in [
        (json!({ "role": "owner" }), "role"),
        (
            json!({ "role": "researcher", "expires_at": "2001-01-01T00:00:00Z" }),
            "future",
        ),
        (
            json!({ "role": "researcher", "household": uuid4() }),
            "no household",
        ),
        (
            json!({ "role": "researcher", "scope": "all" }),
            "unknown field",
        ),
    ] {
        let reply = with_token(
            ADMIN_TOKEN,
            Method::POST,
            "/api/management/token",
            Some(&request),
        )
        .await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_tokens_reach_their_own_household_only() {
    use wattlet_access_token::{Caveat, Token};
    let household = register().await;
    let other = register().await;
    let reply = with_token(
        ADMIN_TOKEN,
        Method::POST,
        "/api/management/token",
        Some(&json!({ "role": "participant" })),
    )
    .await;
    assert_refused(&reply, RefusalCode::InvalidRequest, "needs its household");
    let participant = mint(
        ADMIN_TOKEN,
        json!({ "role": "participant", "household": household.id }),
    )
    .await;

    let reply = with_token(&participant, Method::GET, "/api/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["household"], household.id.as_str());
    assert_eq!(reply.body["user"]["email"], household.email.as_str());
    let reply = with_token(&participant, Method::GET, "/api/account", None).await;
    assert_eq!(
        reply.body,
        json!({ "household": household.id, "user": { "name": "Erika Mustermann", "email": household.email } })
    );
    let reply = with_token(&participant, Method::GET, "/api/household/meter", None).await;
    assert_eq!(
        reply.body["meters"].as_array().map(Vec::len),
        Some(2),
        "{}",
        reply.text
    );
    let reply = with_token(&participant, Method::POST, "/api/household/consent", None).await;
    assert_eq!(reply.body["state"], "granted", "{}", reply.text);
    // Uploads and status reports are the device's: they need its certificate.
    let batch =
        json!({ "measurements": [measurement(&household.meters[0], "2026-11-23T16:00:00Z", 1.0)] });
    let reply = with_token(
        &participant,
        Method::POST,
        "/api/household/meter/measurement",
        Some(&batch),
    )
    .await;
    assert_refused(&reply, RefusalCode::NotAuthenticated, "client certificate");
    let reply = with_token(
        &participant,
        Method::PUT,
        "/api/household/measurement_device/status",
        Some(&json!({})),
    )
    .await;
    assert_refused(&reply, RefusalCode::NotAuthenticated, "client certificate");
    // No management, no other household, no widening.
    let reply = with_token(&participant, Method::GET, "/api/management/household", None).await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "participant");
    let reply = with_token(
        &participant,
        Method::GET,
        &format!("/api/household/meter/{}/measurement", other.meters[0]),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let token = Token::decode(&participant).expect("token");
    let two = token
        .clone()
        .attenuate(Caveat::Household(other.id.clone()))
        .encode();
    let reply = with_token(&two, Method::GET, "/api/household", None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let read_only = token.attenuate(Caveat::ReadOnly).encode();
    let reply = with_token(&read_only, Method::DELETE, "/api/household/consent", None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "read-only");
    let reply = with_token(&read_only, Method::GET, "/api/household/consent", None).await;
    assert_eq!(reply.body["state"], "granted", "{}", reply.text);
    // The household changed inside the token: the signature no longer verifies.
    let (payload, tag) = participant.rsplit_once('.').expect("tag");
    let swapped = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let text = engine
            .decode(payload.trim_start_matches("wt1."))
            .expect("payload");
        let text = String::from_utf8(text)
            .expect("utf-8")
            .replace(&household.id, &other.id);
        format!("wt1.{}.{tag}", engine.encode(text))
    };
    let reply = with_token(&swapped, Method::GET, "/api/household", None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn researchers_see_and_change_a_participants_registration() {
    use wattlet_access_token::{Caveat, Token};
    let researcher = mint(ADMIN_TOKEN, json!({ "role": "researcher" })).await;
    let household = register().await;
    let other = register().await;
    let path = format!("/api/management/household/{}", household.id);

    let reply = with_token(&researcher, Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"]["email"], household.email.as_str());
    assert_eq!(reply.body["consent"]["state"], "not_granted");
    assert_eq!(reply.body["location"]["latitude"], 48.1372);
    assert_eq!(reply.body["address"], Value::Null);
    assert_eq!(reply.body["meters"].as_array().map(Vec::len), Some(2));
    assert_eq!(reply.body["devices"][0]["id"], household.device.as_str());

    let change = json!({
        "name": "Erika Musterfrau",
        "location": { "latitude": 53.0, "longitude": 8.8, "nuts3": "de501" },
        "address": { "street": "Am Markt", "house_number": "1", "postal_code": "28195",
                     "city": "Bremen", "country": "DE" },
        "metadata": { "children": 0, "adults": 1, "employed_adults": 1,
                      "ev_charger": false, "heat_pump": true, "home_battery": false },
        "pv_systems": [{ "nominal_power_kwp": 4.2, "azimuth": 200.0, "tilt": 35.0,
                         "installation_date": "2022-05-01" }],
    });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&change)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"]["name"], "Erika Musterfrau");
    assert_eq!(reply.body["location"]["nuts3"], "DE501");
    assert_eq!(reply.body["address"]["city"], "Bremen");
    assert_eq!(reply.body["metadata"]["heat_pump"], true);
    assert_eq!(reply.body["pv_systems"][0]["nominal_power_kwp"], 4.2);
    // Wiring the PV meter to the new PV system, then replacing the PV systems, which unwires it.
    let pv = reply.body["pv_systems"][0]["uuid"]
        .as_str()
        .expect("pv uuid")
        .to_owned();
    let pv_meter = household.meters[1].clone();
    let wiring = json!({ "meters": [{ "uuid": pv_meter.to_uppercase(), "pv_systems": [pv] }] });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&wiring)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let wired = |body: &Value| -> Value {
        body["meters"]
            .as_array()
            .and_then(|meters| meters.iter().find(|m| m["uuid"] == pv_meter.as_str()))
            .map(|m| m["pv_systems"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(wired(&reply.body), json!([pv]), "{}", reply.text);
    for (body, needle) in [
        (
            json!({ "meters": [{ "uuid": other.meters[1], "pv_systems": [pv] }] }),
            "not a meter of this household",
        ),
        (
            json!({ "meters": [{ "uuid": pv_meter, "pv_systems": [uuid4()] }] }),
            "not a PV system of this household",
        ),
        (
            json!({ "meters": [{ "uuid": pv_meter, "pv_systems": [] }], "pv_systems": [] }),
            "request of their own",
        ),
    ] {
        let reply = with_token(&researcher, Method::PATCH, &path, Some(&body)).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
    // A second device, a new meter on it measuring the PV system, the first meter moved to it.
    let second = unique("dev");
    let change = json!({
        "devices": [second],
        "meters": [
            { "type": "PV-GENERATION", "model": "DD3", "device": second, "pv_systems": [pv] },
            { "uuid": household.meters[0], "device": second },
        ],
    });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&change)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let devices: Vec<&str> = reply.body["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(devices.contains(&second.as_str()), "{}", reply.text);
    let meters = reply.body["meters"].as_array().expect("meters");
    assert_eq!(meters.len(), 3, "{}", reply.text);
    let added = meters
        .iter()
        .find(|m| m["model"] == "DD3")
        .expect("the new meter");
    assert_eq!(added["device"], second.as_str());
    assert_eq!(added["pv_systems"], json!([pv]));
    let moved = meters
        .iter()
        .find(|m| m["uuid"] == household.meters[0].as_str())
        .expect("the first meter");
    assert_eq!(moved["device"], second.as_str());
    for (body, code, needle) in [
        (
            json!({ "devices": [other.device] }),
            RefusalCode::Conflict,
            "already registered",
        ),
        (
            json!({ "meters": [{ "type": "ELECTRICITY", "model": "EHZ" }] }),
            RefusalCode::InvalidRequest,
            "needs its device",
        ),
        (
            json!({ "meters": [{ "uuid": household.meters[0], "type": "PV-GENERATION" }] }),
            RefusalCode::InvalidRequest,
            "do not change",
        ),
        (
            json!({ "meters": [{ "uuid": household.meters[0], "device": other.device }] }),
            RefusalCode::InvalidRequest,
            "not a device of this household",
        ),
    ] {
        let reply = with_token(&researcher, Method::PATCH, &path, Some(&body)).await;
        assert_refused(&reply, code, needle);
    }
    let replace = json!({ "pv_systems": [{ "nominal_power_kwp": 5.0, "azimuth": 180.0,
                                          "tilt": 30.0, "installation_date": "2023-03-01" }] });
    let reply = with_token(&researcher, Method::PATCH, &path, Some(&replace)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(wired(&reply.body), json!([]), "{}", reply.text);
    let reply = with_token(
        &researcher,
        Method::PATCH,
        &path,
        Some(&json!({ "address": null })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["address"], Value::Null);
    assert_eq!(reply.body["metadata"]["adults"], 1, "untouched");

    // Refused changes change nothing.
    for (body, code, needle) in [
        (
            json!({ "name": "X", "email": other.email }),
            RefusalCode::Conflict,
            "already registered",
        ),
        (
            json!({ "name": "X", "location": { "latitude": 91.0, "longitude": 0.0 } }),
            RefusalCode::InvalidRequest,
            "location.latitude",
        ),
        (
            json!({ "name": "X", "pv_systems": [{ "nominal_power_kwp": 1.0, "azimuth": 0.0,
                  "tilt": 0.0, "installation_date": "2022-13-01" }] }),
            RefusalCode::InvalidRequest,
            "installation_date",
        ),
        (
            json!({ "name": "X", "household": "y" }),
            RefusalCode::InvalidRequest,
            "unknown field",
        ),
        (json!({}), RefusalCode::InvalidRequest, "nothing to change"),
    ] {
        let reply = with_token(&researcher, Method::PATCH, &path, Some(&body)).await;
        assert_refused(&reply, code, needle);
    }
    let reply = with_token(&researcher, Method::GET, &path, None).await;
    assert_eq!(
        reply.body["user"]["name"], "Erika Musterfrau",
        "{}",
        reply.text
    );

    // Scopes: one household, read-only, unknown ids.
    let only_other = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::Household(other.id.clone()))
        .encode();
    let reply = with_token(&only_other, Method::GET, &path, None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let other_path = format!("/api/management/household/{}", other.id);
    let reply = with_token(&only_other, Method::GET, &other_path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let read_only = Token::decode(&researcher)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    let reply = with_token(
        &read_only,
        Method::PATCH,
        &path,
        Some(&json!({ "name": "Y" })),
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "read-only");
    for missing in [uuid4(), "not-a-uuid".to_owned()] {
        let reply = with_token(
            &researcher,
            Method::GET,
            &format!("/api/management/household/{missing}"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymized_household_cannot_be_edited_back() {
    let (household, device) = register_device().await;
    grant(&device).await;
    let reply = call(&device, Method::DELETE, "/api/household/consent", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let path = format!("/api/management/household/{}", household.id);
    let reply = admin_as(
        tls_admin(),
        Method::PATCH,
        &path,
        Some(&json!({ "name": "Back Again", "email": household.email })),
    )
    .await;
    assert_refused(&reply, RefusalCode::Anonymized, "anonymized");
    let reply = admin_as(tls_admin(), Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"], Value::Null);
    assert_eq!(reply.body["consent"]["state"], "revoked");
    assert!(
        !reply.body["location"]["displacement"].is_null(),
        "{}",
        reply.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_household_and_listing_it() {
    let household = register().await;
    let listed = household_in_listing(&household.id).await;
    assert_eq!(
        listed["user"]["email"],
        household.email.as_str(),
        "{listed}"
    );
    assert_eq!(listed["user"]["name"], "Erika Mustermann");
    assert_eq!(
        listed["consent"],
        json!({ "state": "not_granted", "granted_at": null, "revoked_at": null })
    );
    let devices = listed["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], household.device.as_str());
    assert_eq!(devices[0]["component_versions"], json!({}));
    assert_eq!(devices[0]["last_measurement"], Value::Null);
    assert_eq!(devices[0]["revoked_at"], Value::Null);
    let meters = listed["meters"].as_array().expect("meters");
    assert_eq!(meters.len(), 2);
    for meter in meters {
        assert!(household.meters.iter().any(|m| meter["uuid"] == m.as_str()));
        assert_eq!(meter["device"], household.device.as_str());
    }
    let pv = meters
        .iter()
        .find(|m| m["type"] == "PV-GENERATION")
        .expect("pv meter");
    assert_eq!(pv["model"], "EASY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_conflicts_get_409_and_store_nothing() {
    let existing = register().await;
    let fresh_email = || format!("{}@example.org", unique("c"));
    let cases = [
        // The email is compared case-insensitively.
        (
            "email",
            json!({ "name": "A", "email": existing.email.to_uppercase(), "device": unique("dev"),
                    "meters": [{ "type": "ELECTRICITY", "model": "DD3" }],
                    "location": location() }),
        ),
        (
            "device",
            json!({ "name": "A", "email": fresh_email(), "device": existing.device,
                    "meters": [{ "type": "ELECTRICITY", "model": "DD3" }],
                    "location": location() }),
        ),
        (
            "meter",
            json!({ "name": "A", "email": fresh_email(), "device": unique("dev"),
                    "meters": [{ "uuid": existing.meters[0], "type": "ELECTRICITY", "model": "DD3" }],
                    "location": location() }),
        ),
    ];
    for (what, body) in cases {
        let reply = admin(Method::POST, "/api/management/household", Some(&body)).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{what}: {}", reply.text);
        assert!(reply.body["error"].is_string(), "{}", reply.text);
        // Nothing of the refused registration remains: its email and device are still free.
        let listing = admin(Method::GET, "/api/management/household", None).await;
        let households = listing.body["households"].as_array().expect("households");
        let email = body["email"].as_str().expect("email").to_lowercase();
        let holders = households
            .iter()
            .filter(|h| h["user"]["email"] == email.as_str())
            .count();
        assert_eq!(holders, usize::from(what == "email"), "{what}");
        let device = body["device"].as_str().expect("device");
        let holders = households
            .iter()
            .filter(|h| {
                h["devices"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["id"] == device))
            })
            .count();
        assert_eq!(holders, usize::from(what == "device"), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_registrations_get_400_with_a_reason() {
    let email = format!("{}@example.org", unique("bad"));
    let device = unique("dev");
    let good = json!({ "name": "A", "email": email, "device": device,
                       "meters": [{ "type": "ELECTRICITY", "model": "MT175" }],
                       "location": { "latitude": 48.1372, "longitude": 11.5756, "nuts3": "DE212" },
                       "address": { "street": "Marienplatz", "house_number": "1",
                                    "postal_code": "80331", "city": "München", "country": "DE" },
                       "metadata": { "children": 1, "adults": 2, "employed_adults": 1,
                                     "ev_charger": false, "heat_pump": true, "home_battery": false },
                       "pv_systems": [{ "nominal_power_kwp": 9.86, "azimuth": 180.0, "tilt": 30.0,
                                        "installation_date": "2019-06-14" }] });
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let pv = |key: &str, value: Value| {
        let mut system = good["pv_systems"][0].clone();
        system[key] = value;
        with("pv_systems", json!([system]))
    };
    let address = |key: &str, value: Value| {
        let mut address = good["address"].clone();
        address[key] = value;
        with("address", address)
    };
    let cases = [
        (with("email", json!("no-at-sign")), "email"),
        (with("name", json!("  ")), "name"),
        (with("device", json!("has space")), "device"),
        (with("device", json!("")), "device"),
        (with("meters", json!([])), "meters"),
        (
            with("meters", json!([{ "type": "GAS", "model": "MT175" }])),
            "meters[0].type",
        ),
        (
            with("meters", json!([{ "type": "ELECTRICITY", "model": "XYZ" }])),
            "meters[0].model",
        ),
        (
            with(
                "meters",
                json!([{ "uuid": "not-a-uuid", "type": "ELECTRICITY", "model": "EHZ" }]),
            ),
            "meters[0].uuid",
        ),
        (
            with(
                "meters",
                json!([
                    { "uuid": "6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e", "type": "ELECTRICITY", "model": "EHZ" },
                    { "uuid": "6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e", "type": "ELECTRICITY", "model": "EHZ" },
                ]),
            ),
            "appears twice",
        ),
        (with("unexpected", json!(1)), "unknown field"),
        (
            with(
                "meters",
                json!([{ "type": "PV-GENERATION", "model": "EASY", "pv_systems": [1] }]),
            ),
            "meters[0].pv_systems: no PV system 1",
        ),
        (
            with("location", json!({ "latitude": 90.5, "longitude": 0.0 })),
            "location.latitude",
        ),
        (
            with("location", json!({ "latitude": 0.0, "longitude": -180.01 })),
            "location.longitude",
        ),
        (
            with(
                "location",
                json!({ "latitude": 0.0, "longitude": 0.0, "nuts3": "D-30" }),
            ),
            "location.nuts3",
        ),
        (with("location", json!({ "latitude": 0.0 })), "longitude"),
        (address("street", json!(" ")), "address.street"),
        (
            address("postal_code", json!("1".repeat(21))),
            "address.postal_code",
        ),
        (
            with(
                "metadata",
                json!({ "children": 0, "adults": 1, "employed_adults": 2,
                        "ev_charger": false, "heat_pump": false, "home_battery": false }),
            ),
            "metadata.employed_adults",
        ),
        (
            pv("nominal_power_kwp", json!(-0.5)),
            "pv_systems[0].nominal_power_kwp",
        ),
        (pv("azimuth", json!(360.0)), "pv_systems[0].azimuth"),
        (pv("tilt", json!(91.0)), "pv_systems[0].tilt"),
        (
            pv("installation_date", json!("2019-02-30")),
            "pv_systems[0].installation_date",
        ),
        (
            pv("installation_date", json!("14.06.2019")),
            "pv_systems[0].installation_date",
        ),
        (
            with("pv_systems", json!(vec![good["pv_systems"][0].clone(); 17])),
            "at most 16",
        ),
        (
            json!({ "name": "A", "device": device, "meters": [], "location": location() }),
            "email",
        ),
        (json!([1, 2]), "invalid JSON"),
    ];
    for (body, expected) in cases {
        let reply = admin(Method::POST, "/api/management/household", Some(&body)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
        let message = reply.body["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for raw in [&b""[..], b"{", b"\xff\xfe"] {
        let reply = send(
            Method::POST,
            "/api/management/household",
            raw,
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    }
    // None of them registered anything.
    let listing = admin(Method::GET, "/api/management/household", None).await;
    assert!(!listing.text.contains(&email), "{}", listing.text);
    assert!(!listing.text.contains(&device), "{}", listing.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device() {
    let household = register().await;
    let path = format!("/api/management/device/{}/revoke", household.device);
    let reply = admin(Method::POST, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["device"], household.device.as_str());
    let revoked_at = reply.body["revoked_at"]
        .as_str()
        .expect("revoked_at")
        .to_owned();
    // Again: the same answer, the first time kept.
    let again = admin(Method::POST, &path, None).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["revoked_at"], revoked_at.as_str());
    let listed = household_in_listing(&household.id).await;
    assert_eq!(listed["devices"][0]["revoked_at"], revoked_at.as_str());
    for unknown in ["no-such-device", "bad%20id"] {
        let reply = admin(
            Method::POST,
            &format!("/api/management/device/{unknown}/revoke"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    }
    let reply = admin(Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_endpoints_need_a_client_certificate() {
    let meter = uuid4();
    let read = format!("/api/household/meter/{meter}/measurement");
    let endpoints = [
        (Method::GET, "/api/account"),
        (Method::GET, "/api/household"),
        (Method::GET, "/api/household/pv_system"),
        (Method::GET, "/api/household/consent"),
        (Method::POST, "/api/household/consent"),
        (Method::DELETE, "/api/household/consent"),
        (Method::GET, "/api/household/measurement_device"),
        (Method::PUT, "/api/household/measurement_device/status"),
        (Method::GET, "/api/household/meter"),
        (Method::POST, "/api/household/meter/measurement"),
        (Method::GET, read.as_str()),
    ];
    for (method, path) in endpoints {
        let reply = send(method.clone(), path, b"{}", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            reply.text
        );
        assert_eq!(reply.body["code"], "not_authenticated", "{}", reply.text);
        assert!(!reply.headers.contains_key("www-authenticate"), "{path}");
        // The admin token is no participant credential.
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let reply = send(method.clone(), path, b"{}", &[("authorization", &bearer)]).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            reply.text
        );
        // Uploads and status reports need the certificate whatever token comes along.
        assert!(
            ["invalid_token", "not_authenticated"]
                .contains(&reply.body["code"].as_str().unwrap_or_default()),
            "{method} {path}: {}",
            reply.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_health_and_json_errors() {
    let reply = send(Method::GET, "/api/health", b"", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["database"], "ok");
    assert_eq!(reply.body["schema_version"], 4);
    let reply = send(Method::GET, "/api/version", b"", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["version"].is_string());
    for path in [
        "/api/nothing",
        "/api/household/consent/extra",
        "/api/",
        "/api/household/meter//measurement",
    ] {
        let reply = send(Method::GET, path, b"", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.body["error"], "not found", "{path}");
        assert_eq!(reply.body["code"], "not_found", "{path}");
    }
    let cases = [
        (Method::PUT, "/api/household/consent", "GET, POST, DELETE"),
        (Method::DELETE, "/api/management/household", "GET, POST"),
        (Method::GET, "/api/household/meter/measurement", "POST"),
        (Method::POST, "/api/health", "GET"),
        (Method::POST, "/api/household", "GET"),
        (Method::DELETE, "/api/household/pv_system", "GET"),
        (
            Method::GET,
            "/api/household/measurement_device/status",
            "PUT",
        ),
    ];
    for (method, path, allow) in cases {
        let reply = send(method.clone(), path, b"", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
        assert_eq!(reply.body["error"], "method not allowed");
        assert_eq!(reply.body["code"], "method_not_allowed");
    }
}

// ---------------------------------------------------------------------------------------------
// Devices and participants over mutual TLS

async fn call(client: &Client, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let body = body.map(Value::to_string).unwrap_or_default();
    send_as(client, method, path, body.as_bytes(), &[]).await
}

/// The reply is a refusal with `code` (and the code's status) and an `error` message
/// containing `needle`.
fn assert_refused(reply: &Reply, code: RefusalCode, needle: &str) {
    assert_eq!(reply.status.as_u16(), code.status(), "{}", reply.text);
    assert_eq!(reply.body["code"], code.as_str(), "{}", reply.text);
    let message = reply.body["error"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

async fn grant(client: &Client) {
    let reply = call(client, Method::POST, "/api/household/consent", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

fn measurement(meter: &str, measured_at: &str, kwh: f64) -> Value {
    json!({
        "uuid": uuid4(),
        "meter": meter,
        "measured_at": measured_at,
        "data": [{ "0100010800ff": kwh }, { "0100100700ff": 0.42, "0100020800ff": 0 }],
    })
}

async fn upload(client: &Client, batch: &[Value]) -> Reply {
    call(
        client,
        Method::POST,
        "/api/household/meter/measurement",
        Some(&json!({ "measurements": batch })),
    )
    .await
}

async fn read(client: &Client, meter: &str, query: &str) -> Reply {
    call(
        client,
        Method::GET,
        &format!("/api/household/meter/{meter}/measurement{query}"),
        None,
    )
    .await
}

/// The uuids a read returned, in order.
fn uuids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .map(|m| m["uuid"].as_str().expect("uuid").to_owned())
        .collect()
}

fn uuid_of(m: &Value) -> String {
    m["uuid"].as_str().expect("uuid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_goes_one_way_each_step_once() {
    let (household, device) = register_device().await;
    let path = "/api/household/consent";
    let reply = call(&device, Method::GET, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({ "state": "not_granted", "granted_at": null, "revoked_at": null })
    );
    // Not granted yet: nothing to revoke.
    let reply = call(&device, Method::DELETE, path, None).await;
    assert_refused(&reply, RefusalCode::ConsentNotGranted, "never granted");

    let reply = call(&device, Method::POST, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["state"], "granted");
    let granted_at = reply.body["granted_at"]
        .as_str()
        .expect("granted_at")
        .to_owned();
    assert!(granted_at.ends_with('Z'), "{granted_at}");
    assert_eq!(reply.body["revoked_at"], Value::Null);
    // Granting twice is refused and changes nothing.
    let reply = call(&device, Method::POST, path, None).await;
    assert_refused(
        &reply,
        RefusalCode::ConsentAlreadyGranted,
        "already granted",
    );
    let reply = call(&device, Method::GET, path, None).await;
    assert_eq!(reply.body["granted_at"], granted_at.as_str());

    let reply = call(&device, Method::DELETE, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["state"], "revoked");
    assert_eq!(reply.body["granted_at"], granted_at.as_str());
    let revoked_at = reply.body["revoked_at"]
        .as_str()
        .expect("revoked_at")
        .to_owned();
    // Revoking twice, and granting again after revocation, are refused.
    let reply = call(&device, Method::DELETE, path, None).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "already revoked");
    let reply = call(&device, Method::POST, path, None).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "revoked");
    let reply = call(&device, Method::GET, path, None).await;
    assert_eq!(
        reply.body,
        json!({ "state": "revoked", "granted_at": granted_at, "revoked_at": revoked_at })
    );
    let listed = household_listed_on(tls_admin(), &household.id).await;
    assert_eq!(listed["consent"]["state"], "revoked", "{listed}");
}

/// Every file of the mutual-TLS server's state directory (the database, its WAL and index).
fn state_files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![tls_api().dir.path().join("state")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("state dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read state file");
                files.push((path, bytes));
            }
        }
    }
    files
}

/// The needles (with what each is) found anywhere in the state files.
fn traces_in_state(needles: &[(&str, Vec<u8>)]) -> Vec<String> {
    let files = state_files();
    assert!(
        files
            .iter()
            .any(|(p, _)| p.to_string_lossy().ends_with("-wal")),
        "the database runs in WAL mode: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let mut found = Vec::new();
    for (path, bytes) in &files {
        for (what, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found.push(format!("{what} in {}", path.display()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_anonymizes_at_once_and_leaves_no_trace() {
    let tag = unique("anon");
    let name = format!("Hildegard Verborgen {tag}");
    let email = format!("{tag}@example.org");
    let street = format!("Geheimgasse {tag}");
    // Coordinates no other test uses, with all the digits an f64 holds.
    let salt = (std::process::id() % 9973) as f64 * 1e-9;
    let (latitude, longitude) = (52.123_456_789_012 + salt, 13.987_654_321_098 - salt);
    let device = unique("dev");
    let reply = admin_as(
        tls_admin(),
        Method::POST,
        "/api/management/household",
        Some(&json!({
            "name": name, "email": email, "device": device,
            "meters": [
                { "type": "ELECTRICITY", "model": "MT681" },
                { "type": "PV-GENERATION", "model": "EASY", "pv_systems": [0, 1] },
            ],
            // No density is known for this region: ρ = 0, the largest displacement.
            "location": { "latitude": latitude, "longitude": longitude, "nuts3": "DE999" },
            "address": { "street": street, "house_number": "7a", "postal_code": "10115",
                         "city": "Berlin", "country": "DE" },
            "metadata": { "children": 2, "adults": 2, "employed_adults": 1,
                          "ev_charger": true, "heat_pump": false, "home_battery": true },
            "pv_systems": [
                { "nominal_power_kwp": 9.86, "azimuth": 185.5, "tilt": 32.0,
                  "installation_date": "2019-06-14" },
                { "nominal_power_kwp": 2.5, "azimuth": 90.0, "tilt": 15.0,
                  "installation_date": "2021-12-31" },
            ],
        })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let meter = reply.body["meters"][0]["uuid"]
        .as_str()
        .expect("meter")
        .to_owned();
    assert_eq!(
        reply.body["meters"][1]["pv_systems"], reply.body["pv_systems"],
        "{}",
        reply.text
    );
    let client = device_client(&device, &email);

    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("name", name.clone().into_bytes()),
        ("email", email.clone().into_bytes()),
        ("street", street.clone().into_bytes()),
    ];
    for (what, value) in [("latitude", latitude), ("longitude", longitude)] {
        // SQLite stores a REAL as 8 big-endian bytes; also look for other encodings.
        needles.push((what, value.to_be_bytes().to_vec()));
        needles.push((what, value.to_le_bytes().to_vec()));
        needles.push((what, value.to_string().into_bytes()));
    }

    let reply = call(&client, Method::GET, "/api/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"], json!({ "name": name, "email": email }));
    assert_eq!(reply.body["address"]["street"], street.as_str());
    // Stored exactly as sent, to the last bit (the needles below are the sent values).
    assert_eq!(reply.body["location"]["latitude"], latitude);
    assert_eq!(reply.body["location"]["longitude"], longitude);
    assert_eq!(reply.body["metadata"]["ev_charger"], true);
    // The scan finds what is there: before revocation, every needle is in the files.
    let before = traces_in_state(&needles);
    for what in ["name", "email", "street", "latitude", "longitude"] {
        assert!(
            before.iter().any(|f| f.starts_with(what)),
            "{what} not found before revocation: {before:?}"
        );
    }

    grant(&client).await;
    let reading = measurement(&meter, "2026-11-23T16:00:00Z", 1.5);
    assert_eq!(
        upload(&client, std::slice::from_ref(&reading)).await.status,
        StatusCode::OK
    );
    let reply = call(&client, Method::DELETE, "/api/household/consent", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // At once: the answer to the revocation came after the anonymization.
    let after = traces_in_state(&needles);
    assert!(
        after.is_empty(),
        "identifying data left after revocation: {after:?}"
    );
    let reply = call(&client, Method::GET, "/api/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"], Value::Null, "{}", reply.text);
    assert_eq!(reply.body["address"], Value::Null, "{}", reply.text);
    let account = call(&client, Method::GET, "/api/account", None).await;
    assert_eq!(account.body["user"], Value::Null, "{}", account.text);
    assert_eq!(reply.body["consent"]["state"], "revoked");
    assert_eq!(reply.body["metadata"]["children"], 2, "metadata stays");
    let location = &reply.body["location"];
    let displacement = &location["displacement"];
    assert_eq!(displacement["density_unknown"], true, "{location}");
    assert_eq!(displacement["population_density_per_km2"], 0.0);
    let (d_min, d_max) = (
        wattlet_anonymizer::d_min_m(0.0),
        wattlet_anonymizer::d_max_m(0.0),
    );
    assert_eq!(displacement["d_min_m"], d_min);
    assert_eq!(displacement["d_max_m"], d_max);
    let moved = wattlet_anonymizer::Location {
        latitude: location["latitude"].as_f64().expect("latitude"),
        longitude: location["longitude"].as_f64().expect("longitude"),
    };
    let distance = wattlet_anonymizer::haversine_m(
        wattlet_anonymizer::Location {
            latitude,
            longitude,
        },
        moved,
    );
    assert!(
        (d_min - 1e-3..=d_max + 1e-3).contains(&distance),
        "moved {distance} m, not within [{d_min}, {d_max}]"
    );
    let stored = displacement["distance_m"].as_f64().expect("distance_m");
    assert!((distance - stored).abs() < 1e-3, "{distance} vs {stored}");

    let reply = call(&client, Method::GET, "/api/household/pv_system", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut systems: Vec<(f64, f64, f64, String)> = reply.body["pv_systems"]
        .as_array()
        .expect("pv_systems")
        .iter()
        .map(|pv| {
            (
                pv["nominal_power_kwp"].as_f64().expect("kWp"),
                pv["azimuth"].as_f64().expect("azimuth"),
                pv["tilt"].as_f64().expect("tilt"),
                pv["installation_date"].as_str().expect("date").to_owned(),
            )
        })
        .collect();
    systems.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        systems,
        [
            (3.0, 90.0, 15.0, "2021-01-01".to_owned()),
            (10.0, 185.5, 32.0, "2019-01-01".to_owned()),
        ]
    );

    // A second revocation is refused and changes nothing: the point is never redrawn.
    let reply = call(&client, Method::DELETE, "/api/household/consent", None).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "already revoked");
    let again = call(&client, Method::GET, "/api/household", None).await;
    assert_eq!(again.body["location"], *location);
    // The device still learns that the consent is revoked, and its uploads are refused.
    let reply = call(&client, Method::GET, "/api/household/consent", None).await;
    assert_eq!(reply.body["state"], "revoked", "{}", reply.text);
    let late = measurement(&meter, "2026-11-23T16:15:00Z", 1.6);
    let reply = upload(&client, &[late]).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "consent revoked");
    // Measurements stay, for anonymous processing.
    assert_eq!(uuids(&read(&client, &meter, "").await), [uuid_of(&reading)]);
    let listed = household_listed_on(tls_admin(), &reply_household(&client).await).await;
    assert_eq!(listed["user"], Value::Null, "{listed}");
    assert!(traces_in_state(&needles).is_empty());
}

/// Registers a household located in `nuts3` on the mutual-TLS server, grants and revokes its
/// consent; returns the displacement its location got.
async fn revoke_in_region(nuts3: &str) -> Value {
    let device = unique("dev");
    let email = format!("{}@example.org", unique("region"));
    let reply = admin_as(
        tls_admin(),
        Method::POST,
        "/api/management/household",
        Some(&json!({
            "name": "R", "email": email, "device": device,
            "meters": [{ "type": "ELECTRICITY", "model": "EHZ" }],
            "location": { "latitude": 50.0, "longitude": 8.0, "nuts3": nuts3 },
        })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let client = device_client(&device, &email);
    grant(&client).await;
    let reply = call(&client, Method::DELETE, "/api/household/consent", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = call(&client, Method::GET, "/api/household", None).await;
    reply.body["location"]["displacement"].clone()
}

async fn import_regions(csv: &str) -> Reply {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    send_as(
        tls_admin(),
        Method::PUT,
        "/api/management/nuts3_region",
        csv.as_bytes(),
        &[("authorization", &bearer), ("content-type", "text/csv")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_nuts3_densities_set_the_displacement() {
    // A refused import stores none of its rows.
    for (csv, needle) in [
        (
            "code,population_density_per_km2\nDEB11,10\nDEB12,-1\n",
            "line 3",
        ),
        (
            "code,population_density_per_km2\nDEB11,10\nD-B12,3\n",
            "line 3: code",
        ),
        ("code,population_density_per_km2\nDEB11,ten\n", "line 2"),
        ("code,density\nDEB11,10\n", "line 2"),
        ("code,population_density_per_km2\n", "no regions"),
        ("", "no regions"),
    ] {
        let reply = import_regions(csv).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
    let reply = send_as(
        tls_admin(),
        Method::PUT,
        "/api/management/nuts3_region",
        b"code,population_density_per_km2\nDEB11,10\n",
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let unknown = revoke_in_region("DEB11").await;
    assert_eq!(unknown["density_unknown"], true, "{unknown}");

    // Codes are case-insensitive, extra columns ignored, a repeated code keeps its last value.
    let csv = "name, code ,population_density_per_km2\n\
               Darmstadt,dea1c,100\nFrankfurt,DE712,3065.2\nDarmstadt,DEA1C,2500.5\n";
    let reply = import_regions(csv).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({ "imported": 3 }));
    let known = revoke_in_region("DEA1C").await;
    assert_eq!(known["density_unknown"], false, "{known}");
    assert_eq!(known["population_density_per_km2"], 2500.5);
    assert_eq!(known["d_min_m"], wattlet_anonymizer::d_min_m(2500.5));
    assert_eq!(known["d_max_m"], wattlet_anonymizer::d_max_m(2500.5));
    let distance = known["distance_m"].as_f64().expect("distance_m");
    assert!(
        (wattlet_anonymizer::d_min_m(2500.5)..=wattlet_anonymizer::d_max_m(2500.5))
            .contains(&distance),
        "{known}"
    );
}

/// The household id the device belongs to.
async fn reply_household(client: &Client) -> String {
    let reply = call(client, Method::GET, "/api/household", None).await;
    reply.body["household"]
        .as_str()
        .expect("household")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_round_trip_and_re_uploads_are_idempotent() {
    let (household, device) = register_device().await;
    grant(&device).await;
    let electricity = &household.meters[0];
    let pv = &household.meters[1];
    // Out of order; one with an offset (stored and returned in UTC).
    let m1 = measurement(electricity, "2026-11-23T16:15:00Z", 1234.75);
    let m0 = measurement(electricity, "2026-11-23T17:00:00+01:00", 1234.5678);
    let m2 = measurement(electricity, "2026-11-23T16:30:00.5Z", 1235.0);
    let p0 = measurement(pv, "2026-11-23T16:15:00Z", 17.25);
    let batch = [m1.clone(), m0.clone(), p0.clone(), m2.clone()];
    let reply = upload(&device, &batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let sent: Vec<String> = batch.iter().map(uuid_of).collect();
    assert_eq!(reply.body["acknowledged"], json!(sent));

    let reply = read(&device, electricity, "").await;
    assert_eq!(reply.body["meter"], electricity.as_str());
    assert_eq!(uuids(&reply), [uuid_of(&m0), uuid_of(&m1), uuid_of(&m2)]);
    let first = &reply.body["measurements"][0];
    assert_eq!(first["measured_at"], "2026-11-23T16:00:00Z");
    assert_eq!(
        first["data"],
        json!([{ "0100010800ff": 1234.5678 }, { "0100100700ff": 0.42, "0100020800ff": 0 }])
    );
    assert_eq!(
        reply.body["measurements"][2]["measured_at"],
        "2026-11-23T16:30:00.5Z"
    );
    assert_eq!(uuids(&read(&device, pv, "").await), [uuid_of(&p0)]);

    // Windows: from inclusive, to exclusive, limit; `+` offsets percent-encoded or not.
    let window = read(
        &device,
        electricity,
        "?from=2026-11-23T16:15:00Z&to=2026-11-23T17:30:00%2B01:00",
    )
    .await;
    assert_eq!(uuids(&window), [uuid_of(&m1)]);
    let window = read(
        &device,
        electricity,
        "?from=2026-11-23T17:15:00+01:00&limit=1",
    )
    .await;
    assert_eq!(uuids(&window), [uuid_of(&m1)]);
    for bad in [
        "?limit=0",
        "?limit=10001",
        "?from=yesterday",
        "?to=2026-11-23",
        "?colour=red",
    ] {
        let reply = read(&device, electricity, bad).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text
        );
    }

    // The same batch again: acknowledged again, stored once.
    let reply = upload(&device, &batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["acknowledged"], json!(sent));
    // A batch repeating one uuid and adding a new one: both acknowledged.
    let m3 = measurement(electricity, "2026-11-23T16:45:00Z", 1235.5);
    let reply = upload(&device, &[m2.clone(), m3.clone()]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        uuids(&read(&device, electricity, "").await),
        [uuid_of(&m0), uuid_of(&m1), uuid_of(&m2), uuid_of(&m3)]
    );

    // UUIDs are compared case-insensitively and acknowledged as sent.
    let mut shouted = m3.clone();
    shouted["uuid"] = json!(uuid_of(&m3).to_uppercase());
    let reply = upload(&device, std::slice::from_ref(&shouted)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["acknowledged"], json!([uuid_of(&shouted)]));
    assert_eq!(uuids(&read(&device, electricity, "").await).len(), 4);

    // A stored uuid sent for another meter: 409, and nothing of that batch is stored.
    let mut moved = m1.clone();
    moved["meter"] = json!(pv);
    let extra = measurement(pv, "2026-11-23T16:30:00Z", 18.0);
    let reply = upload(&device, &[extra.clone(), moved]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(uuids(&read(&device, pv, "").await), [uuid_of(&p0)]);

    // The device's last measurement is the latest measured_at it uploaded.
    let listed = household_listed_on(tls_admin(), &household.id).await;
    let status = &listed["devices"][0];
    assert_eq!(
        status["last_measurement"], "2026-11-23T16:45:00Z",
        "{listed}"
    );
    assert!(status["last_activity"].is_string(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_before_consent_and_after_revocation() {
    let (household, device) = register_device().await;
    let meter = &household.meters[0];
    let early = measurement(meter, "2026-11-23T16:00:00Z", 1.0);
    let reply = upload(&device, std::slice::from_ref(&early)).await;
    assert_refused(
        &reply,
        RefusalCode::ConsentNotGranted,
        "consent not granted",
    );

    grant(&device).await;
    let granted = measurement(meter, "2026-11-23T16:15:00Z", 2.0);
    let reply = upload(&device, std::slice::from_ref(&granted)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let reply = call(&device, Method::DELETE, "/api/household/consent", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let late = measurement(meter, "2026-11-23T16:30:00Z", 3.0);
    for batch in [vec![late.clone()], vec![granted.clone()]] {
        let reply = upload(&device, &batch).await;
        assert_refused(&reply, RefusalCode::ConsentRevoked, "consent revoked");
    }
    assert_eq!(uuids(&read(&device, meter, "").await), [uuid_of(&granted)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_write_to_or_read_another_households_meters() {
    let (mine, device) = register_device().await;
    let (theirs, their_device) = register_device().await;
    grant(&device).await;
    grant(&their_device).await;
    let own = measurement(&mine.meters[0], "2026-11-23T16:00:00Z", 1.0);
    let foreign = measurement(&theirs.meters[0], "2026-11-23T16:00:00Z", 666.0);
    let unknown = measurement(&uuid4(), "2026-11-23T16:00:00Z", 1.0);
    for batch in [vec![own.clone(), foreign.clone()], vec![unknown]] {
        let reply = upload(&device, &batch).await;
        assert_refused(
            &reply,
            RefusalCode::MeterNotWired,
            "does not belong to this household",
        );
    }
    // Nothing stored, neither on the own meter nor on the foreign one.
    assert!(uuids(&read(&device, &mine.meters[0], "").await).is_empty());
    assert!(uuids(&read(&their_device, &theirs.meters[0], "").await).is_empty());

    // Reads of a foreign meter look exactly like reads of a meter that does not exist.
    let reply = upload(&their_device, std::slice::from_ref(&foreign)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    for meter in [theirs.meters[0].clone(), uuid4(), "not-a-uuid".to_owned()] {
        let reply = read(&device, &meter, "").await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{meter}: {}",
            reply.text
        );
        assert_eq!(
            reply.body,
            json!({ "error": "no such meter", "code": "not_found" })
        );
    }
    // A status report about a foreign meter is refused, too.
    let reply = call(
        &device,
        Method::PUT,
        "/api/household/measurement_device/status",
        Some(&json!({ "meters": [{ "uuid": theirs.meters[0], "locked": true }] })),
    )
    .await;
    assert_refused(
        &reply,
        RefusalCode::MeterNotWired,
        "not wired to this device",
    );
    // Listings show the own household only.
    let reply = call(&device, Method::GET, "/api/household/meter", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["household"], mine.id.as_str());
    assert!(!reply.text.contains(&theirs.meters[0]), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_mismatched_and_revoked_devices_get_403() {
    let (household, device) = register_device().await;
    grant(&device).await;
    let path = "/api/household/consent";
    // A certificate from the right CA for a device nobody registered.
    let stranger = device_client(&unique("stranger"), &household.email);
    let reply = call(&stranger, Method::GET, path, None).await;
    assert_eq!(
        reply.body,
        json!({ "error": "unknown device", "code": "unknown_device" })
    );
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    // The registered device id with another participant's email.
    let impostor = device_client(&household.device, "mallory@example.org");
    let reply = call(&impostor, Method::GET, path, None).await;
    assert_refused(&reply, RefusalCode::UnknownDevice, "email does not match");
    // Emails are compared case-insensitively.
    let shouting = device_client(&household.device, &household.email.to_uppercase());
    let reply = call(&shouting, Method::GET, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let revoke = format!("/api/management/device/{}/revoke", household.device);
    let reply = admin_as(tls_admin(), Method::POST, &revoke, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let batch = [measurement(
        &household.meters[0],
        "2026-11-23T16:00:00Z",
        1.0,
    )];
    let reply = upload(&device, &batch).await;
    assert_refused(&reply, RefusalCode::DeviceRevoked, "device revoked");
    for (method, path) in [
        (Method::GET, path),
        (Method::GET, "/api/household/meter"),
        (Method::DELETE, path),
    ] {
        let reply = call(&device, method, path, None).await;
        assert_refused(&reply, RefusalCode::DeviceRevoked, "device revoked");
    }
    // The revoked device's consent was not touched by its refused DELETE.
    let listed = household_listed_on(tls_admin(), &household.id).await;
    assert_eq!(listed["consent"]["state"], "granted", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_measurement_batches_get_400_and_store_nothing() {
    let (household, device) = register_device().await;
    grant(&device).await;
    let meter = &household.meters[0];
    let good = measurement(meter, "2026-11-23T16:00:00Z", 1.0);
    let with = |key: &str, value: Value| {
        let mut m = measurement(meter, "2026-11-23T16:15:00Z", 2.0);
        m[key] = value;
        m
    };
    let cases = [
        (with("uuid", json!("1234")), "measurements[1].uuid"),
        (with("meter", json!("meter-1")), "measurements[1].meter"),
        (
            with("measured_at", json!("2026-11-23 16:15")),
            "measured_at",
        ),
        (
            with("measured_at", json!("2026-11-23T16:15:00")),
            "measured_at",
        ),
        (with("data", json!([{ "1.8.0": 1.0 }])), "OBIS"),
        (with("data", json!([{ "0100010800FF": 1.0 }])), "OBIS"),
        (
            with("data", json!([{ "0100010800ff": "1.0" }])),
            "finite number",
        ),
        (
            with("data", json!([{ "0100010800ff": null }])),
            "finite number",
        ),
        (
            with("data", json!([{ "0100010800ff": true }])),
            "finite number",
        ),
        (with("data", json!([])), "data"),
        (with("data", json!([{}])), "data"),
        (with("data", json!({ "0100010800ff": 1.0 })), "data"),
    ];
    for (bad, expected) in cases {
        let reply = upload(&device, &[good.clone(), bad.clone()]).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, expected);
    }
    // Too many for one batch.
    let many: Vec<Value> = (0..1001)
        .map(|i| {
            measurement(
                meter,
                &format!("2026-11-24T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
                1.0,
            )
        })
        .collect();
    let reply = upload(&device, &many).await;
    assert_refused(&reply, RefusalCode::InvalidRequest, "at most 1000");
    // Not JSON, or not the expected shape; a number too large for a float.
    let raw: [&[u8]; 4] = [
        b"",
        b"measurements",
        br#"{"measurements": {}}"#,
        br#"{"measurements":[{"uuid":"6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e","meter":"6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e","measured_at":"2026-11-23T16:00:00Z","data":[{"0100010800ff":1e999}]}]}"#,
    ];
    for body in raw {
        let reply = send_as(
            &device,
            Method::POST,
            "/api/household/meter/measurement",
            body,
            &[],
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    }
    assert!(uuids(&read(&device, meter, "").await).is_empty());
    // The full batch of 1000 is accepted.
    let reply = upload(&device, &many[..1000]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(uuids(&read(&device, meter, "").await).len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_status_reports_show_in_the_admin_listing() {
    let (household, device) = register_device().await;
    let path = "/api/household/measurement_device/status";
    let report = json!({
        "components": { "meter-parser": "0.1.0", "upload": "0.1.0", "consent": "0.1.0" },
        "last_measurement": "2026-11-23T17:00:00+01:00",
        "meters": [
            { "uuid": household.meters[0], "locked": true, "missing": ["0100010700ff"] },
            { "uuid": household.meters[1], "locked": false, "missing": [] },
        ],
    });
    // Status reports need no consent: devices report health before they may measure.
    let reply = call(&device, Method::PUT, path, Some(&report)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);

    let listed = household_listed_on(tls_admin(), &household.id).await;
    let status = &listed["devices"][0];
    assert_eq!(
        status["component_versions"],
        json!({ "meter-parser": "0.1.0", "upload": "0.1.0", "consent": "0.1.0" })
    );
    assert_eq!(status["last_measurement"], "2026-11-23T16:00:00Z");
    assert!(status["last_activity"].is_string(), "{listed}");
    let meters = listed["meters"].as_array().expect("meters");
    let meter = |uuid: &str| {
        meters
            .iter()
            .find(|m| m["uuid"] == uuid)
            .cloned()
            .expect("meter listed")
    };
    let locked = meter(&household.meters[0]);
    assert_eq!(locked["status"]["locked"], true, "{locked}");
    assert_eq!(locked["status"]["missing"], json!(["0100010700ff"]));
    assert!(locked["status"]["reported_at"].is_string());
    assert_eq!(meter(&household.meters[1])["status"]["locked"], false);

    // The participant sees the same about their own device and meters.
    let reply = call(
        &device,
        Method::GET,
        "/api/household/measurement_device",
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["devices"][0]["id"], household.device.as_str());
    assert_eq!(
        reply.body["devices"][0]["component_versions"]["upload"],
        "0.1.0"
    );
    let reply = call(&device, Method::GET, "/api/household/meter", None).await;
    assert_eq!(
        reply.body["meters"].as_array().map(Vec::len),
        Some(2),
        "{}",
        reply.text
    );

    // An older last measurement does not move it back; null leaves it.
    let older = json!({ "components": { "meter-parser": "0.2.0" }, "last_measurement": "2026-11-01T00:00:00Z" });
    let reply = call(&device, Method::PUT, path, Some(&older)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let listed = household_listed_on(tls_admin(), &household.id).await;
    assert_eq!(
        listed["devices"][0]["last_measurement"],
        "2026-11-23T16:00:00Z"
    );
    assert_eq!(
        listed["devices"][0]["component_versions"],
        json!({ "meter-parser": "0.2.0" })
    );

    for bad in [
        json!({ "last_measurement": "today" }),
        json!({ "components": { "": "1" } }),
        json!({ "meters": [{ "uuid": household.meters[0], "locked": "yes" }] }),
        json!({ "meters": [{ "uuid": household.meters[0], "locked": true, "missing": ["1.7.0"] }] }),
        json!({ "meters": [{ "uuid": "x", "locked": true }] }),
    ] {
        let reply = call(&device, Method::PUT, path, Some(&bad)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text
        );
    }
}

// The NIALM manager's and workers' endpoints (`/api/worker/...`, role `worker`)

/// A worker's call with `token` through `client` (the TLS server needs a certificate too).
async fn as_worker(
    client: &Client,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let bearer = format!("Bearer {token}");
    let body = body.map(Value::to_string).unwrap_or_default();
    send_as(
        client,
        method,
        path,
        body.as_bytes(),
        &[("authorization", &bearer)],
    )
    .await
}

/// A measurement of `meter` with these readings (kWh, kW).
fn reading(meter: &str, measured_at: &str, data: Value) -> Value {
    json!({ "uuid": uuid4(), "meter": meter, "measured_at": measured_at, "data": data })
}

/// A result as a worker stores it.
fn result(item: &str, meter: &str, power: &[f32]) -> Value {
    json!({
        "item": item, "meter": meter, "model": "kettle", "model_sha256": "ab".repeat(32),
        "window_start": "2026-11-23T16:00:00Z", "step_seconds": 60, "power_w": power,
    })
}

/// `[(item, outcome, code)]` of a `POST /api/worker/disaggregation` answer.
fn outcomes(reply: &Reply) -> Vec<(String, String, Option<String>)> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["item"].as_str().expect("item").to_owned(),
                r["outcome"].as_str().expect("outcome").to_owned(),
                r["code"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn outcome(item: &str, outcome: &str, code: Option<&str>) -> (String, String, Option<String>) {
    (item.to_owned(), outcome.to_owned(), code.map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_tokens_reach_the_worker_endpoints_and_nothing_else() {
    use wattlet_access_token::{Caveat, Role, Token};
    let household = register().await;
    let other = register().await;
    let worker = mint(ADMIN_TOKEN, json!({ "role": "worker" })).await;
    let meters = "/api/worker/meters";
    let reply = as_worker(&Client::Plain, &worker, Method::GET, meters, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.body["meters"].is_array(), "{}", reply.text);

    // A worker's token reaches no management, participant or device endpoint.
    for (method, path) in [
        (Method::GET, "/api/management/household"),
        (Method::POST, "/api/management/token"),
        (Method::GET, "/api/household"),
        (Method::GET, "/api/household/consent"),
    ] {
        let reply = as_worker(&Client::Plain, &worker, method, path, Some(&json!({}))).await;
        assert_refused(&reply, RefusalCode::RoleForbidden, "");
    }
    // Every other role is refused at the worker endpoints, the administrator's secret too.
    let researcher = mint(ADMIN_TOKEN, json!({ "role": "researcher" })).await;
    let administrator = mint(ADMIN_TOKEN, json!({ "role": "administrator" })).await;
    let participant = mint(
        ADMIN_TOKEN,
        json!({ "role": "participant", "household": household.id }),
    )
    .await;
    let promoted = Token::decode(&worker)
        .expect("token")
        .attenuate(Caveat::Role(Role::Administrator))
        .encode();
    let power = format!(
        "/api/worker/meter/{}/power?from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z",
        household.meters[0]
    );
    for token in [
        ADMIN_TOKEN,
        &researcher,
        &administrator,
        &participant,
        &promoted,
    ] {
        for (method, path, body) in [
            (Method::GET, meters, None),
            (Method::GET, power.as_str(), None),
            (Method::GET, "/api/worker/disaggregation/item-1", None),
            (
                Method::POST,
                "/api/worker/disaggregation",
                Some(json!({ "results": [result("i-1", &household.meters[0], &[1.0])] })),
            ),
        ] {
            let reply = as_worker(&Client::Plain, token, method, path, body.as_ref()).await;
            assert_refused(&reply, RefusalCode::RoleForbidden, "");
        }
    }
    let reply = as_worker(
        &Client::Plain,
        &promoted,
        Method::GET,
        "/api/management/household",
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "worker");
    // No token, or an invalid one: 401.
    let reply = send(Method::GET, meters, b"", &[]).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "worker's bearer token");
    assert!(reply.headers.contains_key("www-authenticate"));
    let reply = as_worker(&Client::Plain, "wt1.forged.AAAA", Method::GET, meters, None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "invalid bearer token");

    // Attenuated like any token: read-only, one household.
    let read_only = Token::decode(&worker)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    let reply = as_worker(&Client::Plain, &read_only, Method::GET, meters, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = json!({ "results": [result("ro-1", &household.meters[0], &[1.0])] });
    let reply = as_worker(
        &Client::Plain,
        &read_only,
        Method::POST,
        "/api/worker/disaggregation",
        Some(&body),
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "read-only");
    let one = Token::decode(&worker)
        .expect("token")
        .attenuate(Caveat::Household(household.id.clone()))
        .encode();
    let reply = as_worker(&Client::Plain, &one, Method::GET, &power, None).await;
    assert_refused(
        &reply,
        RefusalCode::ConsentNotGranted,
        "consent not granted",
    );
    let foreign = power.replace(&household.meters[0], &other.meters[0]);
    let reply = as_worker(&Client::Plain, &one, Method::GET, &foreign, None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    let body = json!({ "results": [result(&unique("one"), &other.meters[0], &[1.0])] });
    let reply = as_worker(
        &Client::Plain,
        &one,
        Method::POST,
        "/api/worker/disaggregation",
        Some(&body),
    )
    .await;
    let item = body["results"][0]["item"].as_str().expect("item");
    assert_eq!(
        outcomes(&reply),
        [outcome(item, "refused", Some("token_restricted"))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_read_power_and_store_results_once() {
    let (household, device) = register_device().await;
    grant(&device).await;
    let meter = household.meters[0].clone();
    let batch = [
        // Before the span: the latest with power carries in; the one after it has none.
        reading(
            &meter,
            "2026-11-23T15:30:00Z",
            json!([{ "0100100700ff": 0.3 }]),
        ),
        reading(
            &meter,
            "2026-11-23T15:45:00Z",
            json!([{ "0100010800ff": 10.0 }]),
        ),
        // Import power wins over the sum; a negative sum is floored at 0 W.
        reading(
            &meter,
            "2026-11-23T16:00:00Z",
            json!([{ "0100010700ff": 0.25 }, { "0100100700ff": 9.0 }]),
        ),
        reading(
            &meter,
            "2026-11-23T16:15:00Z",
            json!([{ "0100100700ff": -0.5 }]),
        ),
        reading(
            &meter,
            "2026-11-23T16:30:00Z",
            json!([{ "0100010800ff": 11.0 }]),
        ),
        reading(
            &meter,
            "2026-11-23T17:00:00Z",
            json!([{ "0100010700ff": 1.5 }]),
        ),
    ];
    let reply = upload(&device, &batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let worker = mint(ADMIN_TOKEN, json!({ "role": "worker" })).await;
    let client = tls_admin();

    let reply = as_worker(client, &worker, Method::GET, "/api/worker/meters", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let listed = reply.body["meters"].as_array().expect("meters");
    let uuids: Vec<&str> = listed.iter().filter_map(|m| m["meter"].as_str()).collect();
    let mut sorted = uuids.clone();
    sorted.sort_unstable();
    assert_eq!(uuids, sorted, "ordered by uuid");
    let ours = listed
        .iter()
        .find(|m| m["meter"] == meter.as_str())
        .expect("our meter is listed");
    assert_eq!(
        *ours,
        json!({ "meter": meter, "first": "2026-11-23T15:30:00Z", "last": "2026-11-23T17:00:00Z" })
    );
    // The PV meter has no measurements; PV meters are never listed.
    assert!(!uuids.contains(&household.meters[1].as_str()));

    let power =
        |from: &str, to: &str| format!("/api/worker/meter/{meter}/power?from={from}&to={to}");
    let path = power("2026-11-23T16:00:00Z", "2026-11-23T17:00:00Z");
    let reply = as_worker(client, &worker, Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({
            "meter": meter,
            "before": { "at": "2026-11-23T15:30:00Z", "power_w": 300.0 },
            "readings": [
                { "at": "2026-11-23T16:00:00Z", "power_w": 250.0 },
                { "at": "2026-11-23T16:15:00Z", "power_w": 0.0 },
            ],
        })
    );
    // Nothing before the meter's first measurement: `before` is null. Offsets are accepted.
    let path = power("2026-11-23T15:00:00Z", "2026-11-23T16:30:00%2B00:00");
    let reply = as_worker(client, &worker, Method::GET, &path, None).await;
    assert_eq!(reply.body["before"], Value::Null, "{}", reply.text);
    assert_eq!(reply.body["readings"].as_array().map(Vec::len), Some(3));

    // Bounds: to after from, at most 7 days, both given; unknown or malformed meters.
    for (path, needle) in [
        (power("2026-11-23T16:00:00Z", "2026-11-23T16:00:00Z"), "to"),
        (power("2026-11-23T16:00:00Z", "2026-11-23T15:00:00Z"), "to"),
        (
            power("2026-11-23T00:00:00Z", "2026-11-30T00:00:01Z"),
            "7 days",
        ),
        (
            format!("/api/worker/meter/{meter}/power?to=2026-11-23T16:00:00Z"),
            "from",
        ),
        (power("yesterday", "2026-11-23T16:00:00Z"), "from"),
        (
            format!(
                "{}&limit=3",
                power("2026-11-23T16:00:00Z", "2026-11-23T17:00:00Z")
            ),
            "limit",
        ),
    ] {
        let reply = as_worker(client, &worker, Method::GET, &path, None).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
    let reply = as_worker(
        client,
        &worker,
        Method::GET,
        &power("2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"),
        None,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "exactly 7 days: {}",
        reply.text
    );
    for unknown in [uuid4(), "not-a-uuid".to_owned()] {
        let path = format!(
            "/api/worker/meter/{unknown}/power?from=2026-11-23T16:00:00Z&to=2026-11-23T17:00:00Z"
        );
        let reply = as_worker(client, &worker, Method::GET, &path, None).await;
        assert_refused(&reply, RefusalCode::NotFound, "no such meter");
    }

    // Results: stored once, by item; a repeat in the same request or later is a duplicate.
    let (first, second) = (unique("item"), unique("item"));
    let stored = |item: &str| format!("/api/worker/disaggregation/{item}");
    let reply = as_worker(client, &worker, Method::GET, &stored(&first), None).await;
    assert_refused(&reply, RefusalCode::NotFound, "no such result");
    let body = json!({ "results": [
        result(&first, &meter, &[0.0, 1500.5, 2000.0]),
        result(&second, &meter.to_uppercase(), &[3.0]),
        result(&first, &meter, &[9.0]),
    ] });
    let store = |body: &Value| {
        let body = body.clone();
        let worker = worker.clone();
        async move {
            as_worker(
                client,
                &worker,
                Method::POST,
                "/api/worker/disaggregation",
                Some(&body),
            )
            .await
        }
    };
    assert_eq!(
        outcomes(&store(&body).await),
        [
            outcome(&first, "stored", None),
            outcome(&second, "stored", None),
            outcome(&first, "duplicate", None),
        ]
    );
    let again =
        json!({ "results": [result(&second, &meter, &[7.0]), result(&first, &meter, &[7.0])] });
    assert_eq!(
        outcomes(&store(&again).await),
        [
            outcome(&second, "duplicate", None),
            outcome(&first, "duplicate", None)
        ]
    );
    let reply = as_worker(client, &worker, Method::GET, &stored(&first), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, result(&first, &meter, &[0.0, 1500.5, 2000.0]));
    // The participant's and the researchers' reads see the same table.
    let reply = call(
        &device,
        Method::GET,
        &format!("/api/household/meter/{meter}/disaggregation"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let windows = reply.body["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2, "{}", reply.text);
    assert_eq!(windows[0]["appliance"], "kettle");
    assert_eq!(windows[0]["window_start"], "2026-11-23T16:00:00Z");
    let reply = admin_as(
        client,
        Method::GET,
        &format!("/api/management/meter/{meter}/disaggregation?appliance=kettle"),
        None,
    )
    .await;
    assert_eq!(reply.body["windows"].as_array().map(Vec::len), Some(2));

    // Malformed results are refused as a whole, storing nothing.
    let fresh = unique("item");
    let with = |key: &str, value: Value| {
        let mut r = result(&fresh, &meter, &[1.0]);
        r[key] = value;
        json!({ "results": [r] })
    };
    let many: Vec<Value> = (0..101)
        .map(|i| result(&format!("{fresh}-{i}"), &meter, &[1.0]))
        .collect();
    for (body, needle) in [
        (json!({ "results": [] }), "results"),
        (json!({ "results": many }), "results"),
        (with("item", json!("")), "item"),
        (with("item", json!("a/b")), "item"),
        (with("item", json!("x".repeat(129))), "item"),
        (with("meter", json!("meter-1")), "meter"),
        (with("model", json!("Kettle")), "model"),
        (with("model_sha256", json!("abc")), "model_sha256"),
        (with("window_start", json!("16:00")), "window_start"),
        (with("step_seconds", json!(0)), "step_seconds"),
        (with("power_w", json!([])), "power_w"),
        (with("power_w", json!([1.0, -0.5])), "power_w[1]"),
        (with("power_w", json!(vec![1.0; 1441])), "power_w"),
        (with("power_w", json!([1e300])), "power_w[0]"),
        (with("extra", json!(1)), "unknown field"),
    ] {
        let reply = store(&body).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
    let reply = as_worker(client, &worker, Method::GET, &stored(&fresh), None).await;
    assert_refused(&reply, RefusalCode::NotFound, "no such result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_results_are_refused_without_consent_and_after_revocation() {
    let (household, device) = register_device().await;
    let (waiting, _) = register_device().await;
    let meter = household.meters[0].clone();
    let worker = mint(ADMIN_TOKEN, json!({ "role": "worker" })).await;
    let client = tls_admin();
    let store = |results: Vec<Value>| {
        let worker = worker.clone();
        async move {
            let body = json!({ "results": results });
            as_worker(
                client,
                &worker,
                Method::POST,
                "/api/worker/disaggregation",
                Some(&body),
            )
            .await
        }
    };
    let power = |meter: &str| {
        format!("/api/worker/meter/{meter}/power?from=2026-11-23T16:00:00Z&to=2026-11-23T17:00:00Z")
    };

    grant(&device).await;
    let reply = upload(
        &device,
        &[reading(
            &meter,
            "2026-11-23T16:00:00Z",
            json!([{ "0100010700ff": 0.5 }]),
        )],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let (kept, late, unknown, never) = (unique("r"), unique("r"), unique("r"), unique("r"));
    let reply = store(vec![
        result(&kept, &meter, &[1.0]),
        result(&unknown, &uuid4(), &[1.0]),
        result(&never, &waiting.meters[0], &[1.0]),
    ])
    .await;
    assert_eq!(
        outcomes(&reply),
        [
            outcome(&kept, "stored", None),
            outcome(&unknown, "refused", Some("not_found")),
            outcome(&never, "refused", Some("consent_not_granted")),
        ]
    );
    let reply = as_worker(
        client,
        &worker,
        Method::GET,
        &power(&waiting.meters[0]),
        None,
    )
    .await;
    assert_refused(
        &reply,
        RefusalCode::ConsentNotGranted,
        "consent not granted",
    );

    // Revocation: the stored result is deleted with the anonymization, new ones are refused,
    // the meter is no longer listed and its power no longer read.
    let reply = call(&device, Method::DELETE, "/api/household/consent", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = as_worker(
        client,
        &worker,
        Method::GET,
        &format!("/api/worker/disaggregation/{kept}"),
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::NotFound, "no such result");
    let reply = store(vec![
        result(&late, &meter, &[1.0]),
        result(&kept, &meter, &[1.0]),
    ])
    .await;
    assert_eq!(
        outcomes(&reply),
        [
            outcome(&late, "refused", Some("consent_revoked")),
            outcome(&kept, "refused", Some("consent_revoked")),
        ]
    );
    let reply = as_worker(client, &worker, Method::GET, "/api/worker/meters", None).await;
    assert!(!reply.text.contains(&meter), "{}", reply.text);
    let reply = as_worker(client, &worker, Method::GET, &power(&meter), None).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "consent revoked");
}
