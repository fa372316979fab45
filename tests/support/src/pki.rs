//! Certificates for mutual TLS on loopback, made with `wattlet-pki` as the survey makes them: a
//! CA with its CRL, a server certificate for `localhost`/127.0.0.1, device certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use wattlet_pki::{self as pki, CaDir, DeviceRequest, ServerRequest};
use wattlet_serve::tls::{ClientAuth, TlsOptions};

/// A device's identity: its certificate files and a TLS client configuration presenting them.
pub struct Device {
    pub id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's serial number (hex), as the CA lists and revokes it.
    pub serial: String,
    pub tls: Arc<ClientConfig>,
}

/// A CA in `dir/ca` (with its CRL) and a server certificate in `dir/server.{crt,key}`; returns
/// the CA and the TLS options of a server presenting that certificate and checking client
/// certificates against the CA and its CRL (`client_auth`: must clients present one).
pub fn server_ca(dir: &Path, client_auth: ClientAuth) -> (CaDir, TlsOptions) {
    let ca = CaDir::init(&dir.join("ca"), "test CA", pki::DEFAULT_CA_VALIDITY, false).expect("CA");
    let (cert, key) = ca
        .issue_server(&ServerRequest::default())
        .expect("server certificate")
        .write(&dir.join("server"))
        .expect("write the server certificate");
    let tls = TlsOptions {
        cert,
        key,
        client_ca: ca.ca_cert_path(),
        crl: Some(ca.crl_path()),
        client_auth,
    };
    (ca, tls)
}

/// A certificate of `ca` for device `id` of participant `email` (registered or not), its files
/// in `dir` under a name no other certificate of the test binary has.
pub fn device(ca: &CaDir, dir: &Path, id: &str, email: &str) -> Device {
    device_valid_for(ca, dir, id, email, pki::DEFAULT_DEVICE_VALIDITY)
}

/// [`device`] with a certificate that expires `validity` from now (whole seconds: X.509 has no
/// finer time).
pub fn device_valid_for(
    ca: &CaDir,
    dir: &Path,
    id: &str,
    email: &str,
    validity: Duration,
) -> Device {
    let prefix = dir.join(crate::unique(&format!("device-{id}")));
    let request = DeviceRequest {
        validity,
        ..DeviceRequest::new(id, email)
    };
    let issued = ca.issue_device(&request).expect("device certificate");
    let (cert, key) = issued.write(&prefix).expect("write the device certificate");
    let tls = Arc::new(
        wattlet_tls::client_tls_config(&cert, &key, &ca.ca_cert_path()).expect("device TLS"),
    );
    Device {
        id: id.to_owned(),
        cert,
        key,
        serial: issued.serial_hex,
        tls,
    }
}

/// A client of a server of `ca` that presents no certificate of its own.
pub fn anonymous(ca: &CaDir) -> Arc<ClientConfig> {
    Arc::new(wattlet_tls::anonymous_client_tls_config(&ca.ca_cert_path()).expect("TLS client"))
}

/// A `nats-server -js` that takes clients over TLS only, each with a certificate of its own CA
/// (`tls { verify: true }`), as the operations stage runs NATS; with that CA and a client
/// certificate of it.
pub struct TlsNats {
    pub nats: wattlet_workers::server::LocalNats,
    pub ca: CaDir,
    /// A client certificate of `ca`: (cert, key).
    pub client: (PathBuf, PathBuf),
}

impl TlsNats {
    /// The connection that presents `client` (another certificate or none).
    pub fn connection(&self, client: Option<(&Path, &Path)>) -> wattlet_workers::Nats {
        wattlet_workers::Nats {
            url: self.nats.url.clone(),
            tls: Some(wattlet_workers::NatsTls {
                ca: self.ca.ca_cert_path(),
                client: client.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
            }),
        }
    }

    /// The connection with the NATS CA's client certificate.
    pub fn client_connection(&self) -> wattlet_workers::Nats {
        self.connection(Some((&self.client.0, &self.client.1)))
    }
}

/// [`TlsNats`] on a free port, its CA, certificates, store and log in `dir`.
pub fn tls_nats(dir: &Path) -> TlsNats {
    let ca = CaDir::init(
        &dir.join("nats-ca"),
        "NATS CA",
        pki::DEFAULT_CA_VALIDITY,
        false,
    )
    .expect("NATS CA");
    let tls = server_tls(&ca, &dir.join("nats-server"), false);
    let workers = device(&ca, dir, "wattlet-workers", "operations@example.org");
    let client = (workers.cert, workers.key);
    let config = dir.join("nats.conf");
    std::fs::write(&config, tls.config_block()).expect("nats.conf");
    let nats = wattlet_workers::server::LocalNats::start_with_config(
        crate::free_port(),
        &dir.join("jetstream"),
        &dir.join("nats-server.log"),
        &config,
    )
    .expect("nats-server with TLS starts (./dev test installs it)");
    TlsNats { nats, ca, client }
}

/// Route TLS for one server of a local NATS cluster: a server certificate of `ca` (for
/// 127.0.0.1, where the routes connect) in `dir` under `name`, and `ca` to check the others'.
pub fn route_tls(ca: &CaDir, dir: &Path, name: &str) -> wattlet_workers::server::ServerTls {
    server_tls(ca, &dir.join(crate::unique(&format!("route-{name}"))), true)
}

/// A server certificate of `ca` for localhost written to `out` (`.crt`, `.key`), with `ca` to
/// check the peers' certificates; `peer`: it also authenticates as a client (routes).
fn server_tls(ca: &CaDir, out: &Path, peer: bool) -> wattlet_workers::server::ServerTls {
    let request = ServerRequest {
        peer,
        ..ServerRequest::default()
    };
    let (cert, key) = ca
        .issue_server(&request)
        .expect("server certificate")
        .write(out)
        .expect("write the server certificate");
    wattlet_workers::server::ServerTls {
        cert,
        key,
        ca: ca.ca_cert_path(),
    }
}
