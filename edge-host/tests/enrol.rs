//! `wattlet-edge enrol` through the binary with real certificates: the device makes its key
//! and request, the CA signs the request (`wattlet_pki`, what `wattlet ca sign-csr` runs), and
//! the device installs only a certificate for its own key that chains to the cloud CA.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wattlet_pki::{CaDir, DEFAULT_CA_VALIDITY, DeviceRequest};
use wattlet_testkit::{Ran, command, run};

const EDGE: &str = env!("CARGO_BIN_EXE_wattlet-edge");

fn enrol(args: &[&str], dir: &Path) -> Ran {
    run(
        command(EDGE).arg("enrol").args(args).arg("--dir").arg(dir),
        None,
    )
}

fn refused(ran: Ran, needle: &str) {
    assert!(!ran.success(), "succeeded: {ran:?}");
    assert!(
        ran.stderr.contains(needle),
        "{needle:?} not in {}",
        ran.stderr
    );
}

fn ca(dir: &Path, name: &str) -> CaDir {
    CaDir::init(&dir.join(name), name, DEFAULT_CA_VALIDITY, false).expect("CA")
}

#[test]
fn the_device_key_stays_on_the_device_and_only_its_certificate_is_installed() {
    let temp = tempfile::tempdir().expect("temp dir");
    let device = temp.path().join("etc-wattlet");
    let cloud_ca = ca(temp.path(), "cloud-ca");
    let other_ca = ca(temp.path(), "other-ca");
    let path = |name: &str| device.join(name);
    let s = |p: &Path| p.to_str().expect("utf-8").to_owned();

    refused(
        enrol(&["install", "--cert", "x.crt", "--ca", "ca.crt"], &device),
        "enrol request",
    );

    let requested = enrol(&["request", "--group", "no-such-group"], &device);
    let csr = requested.expect_success("enrol request");
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    assert_eq!(
        std::fs::read_to_string(path("device.csr")).expect("csr"),
        csr
    );
    let mode = std::fs::metadata(path("device.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "without the daemon's group only the owner reads the key"
    );
    let key = std::fs::read(path("device.key")).expect("key");

    // Asked again, the device keeps its key: a request signed meanwhile still fits.
    enrol(&["request"], &device).expect_success("enrol request again");
    assert_eq!(std::fs::read(path("device.key")).expect("key"), key);

    let request = DeviceRequest::new("pi-0042", "anna@example.org");
    let signed = cloud_ca.sign_device_csr(&csr, &request).expect("signed");
    let cert = temp.path().join("pi-0042.crt");
    signed.write(&cert).expect("write");
    let cloud_ca_cert = cloud_ca.ca_cert_path();

    // Signed by another CA: not trusted by the cloud.
    let foreign = temp.path().join("foreign.crt");
    other_ca
        .sign_device_csr(&csr, &request)
        .expect("signed")
        .write(&foreign)
        .expect("write");
    refused(
        enrol(
            &[
                "install",
                "--cert",
                &s(&foreign),
                "--ca",
                &s(&cloud_ca_cert),
            ],
            &device,
        ),
        "does not verify against the cloud CA",
    );
    // A certificate the CA issued with a key it generated: not this device's key.
    let (elsewhere, _) = cloud_ca
        .issue_device(&request)
        .expect("issued")
        .write(&temp.path().join("elsewhere"))
        .expect("write");
    refused(
        enrol(
            &[
                "install",
                "--cert",
                &s(&elsewhere),
                "--ca",
                &s(&cloud_ca_cert),
            ],
            &device,
        ),
        "for another key",
    );
    // Not a certificate at all.
    refused(
        enrol(
            &[
                "install",
                "--cert",
                &s(&path("device.csr")),
                "--ca",
                &s(&cloud_ca_cert),
            ],
            &device,
        ),
        "not a PEM certificate",
    );
    assert!(
        !path("device.crt").exists() && !path("ca.crt").exists(),
        "a refused install wrote"
    );

    let out = enrol(
        &["install", "--cert", &s(&cert), "--ca", &s(&cloud_ca_cert)],
        &device,
    )
    .expect_success("enrol install");
    assert!(
        out.contains("pi-0042") && out.contains("anna@example.org"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(path("ca.crt")).expect("ca"),
        std::fs::read(&cloud_ca_cert).expect("ca")
    );
    let identity =
        wattlet_tls::ClientIdentity::from_pem(&std::fs::read(path("device.crt")).expect("crt"))
            .expect("identity");
    assert_eq!(identity.device_id, "pi-0042");
    // What the daemon loads for mutual TLS.
    wattlet_tls::client_tls_config(&path("device.crt"), &path("device.key"), &path("ca.crt"))
        .expect("the installed identity makes a TLS client");

    // A new key: the old certificate no longer fits it.
    enrol(&["request", "--new-key"], &device).expect_success("enrol request --new-key");
    assert_ne!(std::fs::read(path("device.key")).expect("key"), key);
    refused(
        enrol(
            &["install", "--cert", &s(&cert), "--ca", &s(&cloud_ca_cert)],
            &device,
        ),
        "for another key",
    );
}
