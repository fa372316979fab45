//! `wattlet ca` through the real binary: init, device, server, list, revoke, and its errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wattlet_testkit::{Ran, run};

fn wattlet(args: &[&str]) -> Ran {
    run(wattlet_testkit::binary!("wattlet").args(args), None)
}

fn ok(args: &[&str]) -> String {
    wattlet(args).expect_success(&format!("wattlet {args:?}"))
}

fn fails(args: &[&str]) -> String {
    let ran = wattlet(args);
    assert!(!ran.success(), "wattlet {args:?} succeeded");
    ran.stderr
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn ca_commands_issue_list_and_revoke() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("ca");
    let dir = dir.to_str().expect("utf-8 path");
    let device = temp.path().join("pi-7");
    let server = temp.path().join("server");

    let error = fails(&["ca", "list", "--dir", dir]);
    assert!(error.contains("wattlet ca init"), "{error}");

    ok(&["ca", "init", "--dir", dir]);
    assert_eq!(mode(&Path::new(dir).join("ca.key")), 0o600);
    assert!(Path::new(dir).join("crl.pem").is_file());
    let error = fails(&["ca", "init", "--dir", dir]);
    assert!(error.contains("--force"), "{error}");

    let error = fails(&[
        "ca",
        "device",
        "--dir",
        dir,
        "--id",
        "no spaces",
        "--email",
        "a@example.org",
        "--out",
        device.to_str().expect("utf-8"),
    ]);
    assert!(error.contains("invalid device id"), "{error}");

    let out = ok(&[
        "ca",
        "device",
        "--dir",
        dir,
        "--id",
        "pi-7",
        "--email",
        "dora@example.org",
        "--out",
        device.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("pi-7"), "{out}");
    let cert = temp.path().join("pi-7.crt");
    let key = temp.path().join("pi-7.key");
    assert_eq!(mode(&key), 0o600);
    let identity =
        wattlet_tls::ClientIdentity::from_pem(&std::fs::read(&cert).expect("cert")).expect("id");
    assert_eq!(identity.device_id, "pi-7");
    assert_eq!(identity.email, "dora@example.org");

    ok(&[
        "ca",
        "server",
        "--dir",
        dir,
        "--name",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--out",
        server.to_str().expect("utf-8"),
    ]);
    assert!(temp.path().join("server.crt").is_file());
    // `--peer`: a server that also dials its peers (NATS routes) authenticates as a client too.
    let peer = temp.path().join("route");
    ok(&[
        "ca",
        "server",
        "--dir",
        dir,
        "--peer",
        "--out",
        peer.to_str().expect("utf-8"),
    ]);
    let usages = |cert: &Path| {
        let pem = std::fs::read(cert).expect("certificate");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
        let cert = pem.parse_x509().expect("X.509");
        let eku = cert.extended_key_usage().expect("eku").expect("some");
        (eku.value.server_auth, eku.value.client_auth)
    };
    assert_eq!(usages(&temp.path().join("server.crt")), (true, false));
    assert_eq!(usages(&temp.path().join("route.crt")), (true, true));

    let list = ok(&["ca", "list", "--dir", dir]);
    assert!(list.contains(&identity.serial_hex), "{list}");
    // The CA keeps no participant's email: not in its records, not in what it lists.
    assert!(!list.contains("dora@example.org"), "{list}");
    let record = Path::new(dir)
        .join("issued")
        .join(format!("{}.json", identity.serial_hex));
    assert_eq!(mode(&record), 0o600);
    let text = std::fs::read_to_string(&record).expect("record");
    assert!(!text.contains("dora@example.org"), "{text}");
    assert!(!text.contains("CERTIFICATE"), "{text}");
    assert!(list.contains("localhost,127.0.0.1"), "{list}");
    assert!(!list.contains("revoked"), "{list}");

    let error = fails(&["ca", "revoke", "--dir", dir]);
    assert!(error.contains("--serial"), "{error}");
    let error = fails(&["ca", "revoke", "--dir", dir, "--serial", "0abc"]);
    assert!(error.contains("no certificate with serial"), "{error}");

    ok(&[
        "ca",
        "revoke",
        "--dir",
        dir,
        "--cert",
        cert.to_str().expect("utf-8"),
    ]);
    let list = ok(&["ca", "list", "--dir", dir]);
    let line = list
        .lines()
        .find(|l| l.contains(&identity.serial_hex))
        .expect("device listed");
    assert!(line.contains("revoked"), "{list}");
    let crl = std::fs::read(Path::new(dir).join("crl.pem")).expect("crl");
    let revoked = wattlet_tls::revoked_serials(&crl).expect("CRL parses");
    assert!(revoked.contains(&identity.serial_hex));

    // --force replaces the CA.
    ok(&["ca", "init", "--dir", dir, "--force"]);
    let list = ok(&["ca", "list", "--dir", dir]);
    assert!(list.contains("no certificates issued yet"), "{list}");
}

#[test]
fn serve_tls_options_go_together() {
    let error = fails(&["serve", "--tls-cert", "server.crt"]);
    assert!(error.contains("missing --tls-key, --client-ca"), "{error}");
    let error = fails(&["serve", "--crl", "crl.pem"]);
    assert!(error.contains("--crl needs mutual TLS"), "{error}");
}

/// `wattlet ca sign-csr`: a request made on the device (`wattlet_edge::enrol`, what
/// `wattlet-edge enrol request` runs) becomes a certificate for the device id and email the
/// administrator gives, recorded like any other; a request that was altered is refused.
#[test]
fn sign_csr_issues_the_administrators_identity_for_the_devices_key() {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("ca");
    let dir = dir.to_str().expect("utf-8 path");
    ok(&["ca", "init", "--dir", dir]);
    let device = temp.path().join("device");
    let requested = wattlet_edge::enrol::request(&device, false, None).expect("request");
    let csr = requested.csr.to_str().expect("utf-8");
    let out = temp.path().join("pi-9.crt");
    let out_str = out.to_str().expect("utf-8");

    let sign = |csr: &str, id: &str| {
        wattlet(&[
            "ca",
            "sign-csr",
            "--dir",
            dir,
            "--csr",
            csr,
            "--id",
            id,
            "--email",
            "eve@example.org",
            "--out",
            out_str,
        ])
    };
    let ran = sign(csr, "bad id");
    assert!(
        !ran.success() && ran.stderr.contains("invalid device id"),
        "{ran:?}"
    );
    let altered = temp.path().join("altered.csr");
    let pem = std::fs::read_to_string(csr).expect("csr");
    // A character of the base64 body changed: the signed bytes differ.
    let at = pem.find('\n').expect("header") + 40;
    let flipped = if &pem[at..=at] == "A" { "B" } else { "A" };
    std::fs::write(
        &altered,
        format!("{}{flipped}{}", &pem[..at], &pem[at + 1..]),
    )
    .expect("write");
    let ran = sign(altered.to_str().expect("utf-8"), "pi-9");
    assert!(
        !ran.success() && ran.stderr.contains("refused certificate signing request"),
        "{ran:?}"
    );
    assert!(!out.exists());

    let printed = sign(csr, "pi-9").expect_success("ca sign-csr");
    assert!(printed.contains("wattlet-edge enrol install"), "{printed}");
    let identity =
        wattlet_tls::ClientIdentity::from_pem(&std::fs::read(&out).expect("cert")).expect("id");
    assert_eq!(identity.device_id, "pi-9");
    assert_eq!(identity.email, "eve@example.org");
    let list = ok(&["ca", "list", "--dir", dir]);
    assert!(
        list.contains(&identity.serial_hex) && list.contains("pi-9"),
        "{list}"
    );
    // The device accepts it: its own key, the CA's chain.
    let installed = wattlet_edge::enrol::install(&device, &out, &Path::new(dir).join("ca.crt"))
        .expect("install");
    assert_eq!(installed.identity, identity);
}
