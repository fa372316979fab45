//! The CA issues what `wattlet-tls` accepts, and refuses what it must.

use super::*;
use std::fs;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use wattlet_tls::{
    ClientAuth, ClientIdentity, TlsError, certificate_serial, client_tls_config, normalize_serial,
    revoked_serials, server_tls_config, validate_device_id,
};

#[test]
fn device_certificate_round_trips_its_identity() {
    let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
    let issued = ca
        .issue_device(&DeviceRequest::new("pi-0042.home_A", "anna@example.org"))
        .expect("device cert");
    let identity = ClientIdentity::from_pem(issued.cert_pem.as_bytes()).expect("identity");
    assert_eq!(identity.device_id, "pi-0042.home_A");
    assert_eq!(identity.email, "anna@example.org");
    assert_eq!(identity.serial_hex, issued.serial_hex);
    assert_eq!(identity.serial_hex.len(), 32);
    assert_eq!(
        certificate_serial(issued.cert_pem.as_bytes()).expect("serial"),
        issued.serial_hex
    );

    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("der");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().expect("utf8").to_owned())
        .collect();
    assert_eq!(cn, ["pi-0042.home_A"]);
    let san = cert.subject_alternative_name().expect("san").expect("some");
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.contains("RFC822Name(\"anna@example.org\")")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("URI(\"urn:wattlet:device:pi-0042.home_A\")")),
        "{names:?}"
    );
    // Serials are random.
    let other = ca
        .issue_device(&DeviceRequest::new("pi-0042.home_A", "anna@example.org"))
        .expect("device cert");
    assert_ne!(other.serial_hex, issued.serial_hex);
}

#[test]
fn bad_device_ids_and_emails_are_rejected() {
    let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
    let long = "a".repeat(65);
    for id in [
        "",
        "has space",
        "slash/x",
        "ümlaut",
        "colon:x",
        long.as_str(),
    ] {
        assert!(
            matches!(
                ca.issue_device(&DeviceRequest::new(id, "a@example.org")),
                Err(PkiError::Tls(TlsError::InvalidDeviceId(_)))
            ),
            "{id:?} accepted"
        );
    }
    validate_device_id(&"a".repeat(64)).expect("64 characters are fine");
    for email in [
        "",
        "no-at",
        "@example.org",
        "a@",
        "a b@example.org",
        "a@b@c",
    ] {
        assert!(
            matches!(
                ca.issue_device(&DeviceRequest::new("dev1", email)),
                Err(PkiError::Tls(TlsError::InvalidEmail(_)))
            ),
            "{email:?} accepted"
        );
    }
}

#[test]
fn server_certificate_is_not_a_device() {
    let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
    let server = ca.issue_server(&ServerRequest::default()).expect("server");
    assert!(matches!(
        ClientIdentity::from_pem(server.cert_pem.as_bytes()),
        Err(TlsError::NotADevice(_))
    ));
    assert!(matches!(
        ca.issue_server(&ServerRequest {
            dns_names: vec![],
            ip_addresses: vec![],
            validity: DEFAULT_SERVER_VALIDITY,
            peer: false,
        }),
        Err(PkiError::NoServerNames)
    ));
}

#[test]
fn a_peer_server_certificate_also_authenticates_as_a_client() {
    let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
    let usages = |peer: bool| {
        let issued = ca
            .issue_server(&ServerRequest {
                peer,
                ..ServerRequest::default()
            })
            .expect("server");
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("der");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("some")
            .value
            .clone();
        // Still no device, whatever its usages.
        assert!(matches!(
            ClientIdentity::from_pem(issued.cert_pem.as_bytes()),
            Err(TlsError::NotADevice(_))
        ));
        (eku.server_auth, eku.client_auth)
    };
    assert_eq!(usages(false), (true, false));
    assert_eq!(usages(true), (true, true));
}

#[test]
fn ca_directory_revokes_into_the_crl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_dir = dir.path().join("ca");
    let ca = CaDir::init(&ca_dir, "test CA", DEFAULT_CA_VALIDITY, false).expect("init");
    assert!(matches!(
        CaDir::init(&ca_dir, "again", DEFAULT_CA_VALIDITY, false),
        Err(PkiError::AlreadyInitialized(_))
    ));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(ca_dir.join("ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let empty = revoked_serials(&fs::read(ca.crl_path()).expect("crl")).expect("parse");
    assert!(empty.is_empty());

    let ca = CaDir::open(&ca_dir).expect("open");
    let a = ca
        .issue_device(&DeviceRequest::new("a", "a@example.org"))
        .expect("a");
    let b = ca
        .issue_device(&DeviceRequest::new("b", "b@example.org"))
        .expect("b");
    assert!(ca.revoke(&a.serial_hex.to_uppercase()).expect("revoke"));
    assert!(!ca.revoke(&a.serial_hex).expect("revoke again"));
    let crl = fs::read(ca.crl_path()).expect("crl");
    let revoked = revoked_serials(&crl).expect("parse");
    assert!(revoked.contains(&a.serial_hex));
    assert!(!revoked.contains(&b.serial_hex));
    assert!(matches!(
        ca.revoke("abcdef"),
        Err(PkiError::UnknownSerial(_))
    ));
    assert!(matches!(
        ca.revoke("xyz"),
        Err(PkiError::Tls(TlsError::InvalidSerial(_)))
    ));

    let listed = ca.list().expect("list");
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|r| r.serial == a.serial_hex && r.revoked_at.is_some())
    );

    // The CRL verifies against the CA for rustls.
    let server = ca.issue_server(&ServerRequest::default()).expect("server");
    let (cert, key) = server.write(&dir.path().join("server")).expect("write");
    server_tls_config(
        &cert,
        &key,
        &ca.ca_cert_path(),
        Some(&ca.crl_path()),
        ClientAuth::Required,
    )
    .expect("server config");
    let (dcert, dkey) = b.write(&dir.path().join("device")).expect("write");
    client_tls_config(&dcert, &dkey, &ca.ca_cert_path()).expect("client config");
}

#[test]
fn missing_ca_directory_says_init() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = CaDir::open(&dir.path().join("nope")).expect_err("no CA");
    assert!(error.to_string().contains("wattlet ca init"), "{error}");
}

#[test]
fn serials_normalise() {
    assert_eq!(normalize_serial("0x00:0A:1b").expect("ok"), "0a1b");
    assert_eq!(normalize_serial("a1b").expect("ok"), "0a1b");
    assert!(normalize_serial("").is_err());
}

/// The mode bits of a file or directory.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn records_keep_no_email_and_only_their_owner_reads_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_dir = dir.path().join("ca");
    let ca = CaDir::init(&ca_dir, "test CA", DEFAULT_CA_VALIDITY, false).expect("init");
    let issued = ca
        .issue_device(&DeviceRequest::new("pi-ada", "ada@example.org"))
        .expect("device");
    let record = ca_dir
        .join("issued")
        .join(format!("{}.json", issued.serial_hex));
    let text = fs::read_to_string(&record).expect("record");
    assert!(!text.contains("ada@example.org"), "{text}");
    assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
    assert_eq!(mode(&record), 0o600);
    assert_eq!(mode(&ca_dir.join("issued")), 0o700);
    let listed = ca.list().expect("list");
    assert_eq!(listed[0].subject(), "pi-ada");
    let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("der");
    {
        use sha2::Digest;
        assert_eq!(
            listed[0].fingerprint,
            hex::encode(sha2::Sha256::digest(&der))
        );
    }

    // A record as earlier versions wrote it (world-readable, the email and the certificate in
    // it) is rewritten when the CA is opened, and revocation still works.
    let legacy = serde_json::json!({
        "serial": issued.serial_hex, "kind": "device", "device_id": "pi-ada",
        "email": "ada@example.org", "not_before": 1, "not_after": 2, "revoked_at": null,
        "certificate": issued.cert_pem,
    });
    write_atomic(&record, legacy.to_string().as_bytes(), 0o644).expect("legacy record");
    let ca = CaDir::open(&ca_dir).expect("open");
    let text = fs::read_to_string(&record).expect("record");
    assert!(!text.contains("ada@example.org"), "{text}");
    assert!(!text.contains("BEGIN CERTIFICATE"), "{text}");
    assert_eq!(mode(&record), 0o600);
    assert_eq!(
        ca.list().expect("list")[0].fingerprint,
        listed[0].fingerprint
    );
    assert!(ca.revoke(&issued.serial_hex).expect("revoke"));
    let crl = fs::read(ca.crl_path()).expect("crl");
    assert!(
        revoked_serials(&crl)
            .expect("crl")
            .contains(&issued.serial_hex)
    );
}

#[test]
fn a_crl_says_until_when_it_counts() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
    let seconds =
        |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    let past = SystemTime::now() - Duration::from_secs(60);
    let outdated = ca.crl_pem_until(&[], 1, past).expect("CRL");
    assert_eq!(
        wattlet_tls::crl_next_update(outdated.as_bytes()).expect("parses"),
        Some(seconds(past))
    );
    let current = ca.crl_pem(&[], 2).expect("CRL");
    let next = wattlet_tls::crl_next_update(current.as_bytes())
        .expect("parses")
        .expect("a nextUpdate");
    assert!(next > seconds(SystemTime::now() + Duration::from_secs(364 * 24 * 3600)));
    // Two CRLs in one file: the earlier counts.
    let both = format!("{current}{outdated}");
    assert_eq!(
        wattlet_tls::crl_next_update(both.as_bytes()).expect("parses"),
        Some(seconds(past))
    );
    assert!(wattlet_tls::crl_next_update(b"no CRL here").is_err());
}

/// A device's request as `wattlet-edge enrol` makes it: an ECDSA P-256 key that stays on the
/// device, and a CSR whose subject the device chose.
fn device_csr(subject_cn: &str, san_uri: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec![]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject_cn);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(san_uri).expect("ia5"),
    )];
    let csr = params.serialize_request(&key).expect("csr");
    (key, csr.pem().expect("pem"))
}

#[test]
fn a_signed_csr_carries_the_administrators_identity_and_the_devices_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CaDir::init(
        &dir.path().join("ca"),
        "test CA",
        DEFAULT_CA_VALIDITY,
        false,
    )
    .expect("CA");
    // The device asks to be someone else: the CSR's subject and SANs count for nothing.
    let (key, csr) = device_csr("pi-admin", "urn:wattlet:device:pi-admin");
    let signed = ca
        .sign_device_csr(&csr, &DeviceRequest::new("pi-0042", "anna@example.org"))
        .expect("signed");
    let identity = ClientIdentity::from_pem(signed.cert_pem.as_bytes()).expect("identity");
    assert_eq!(identity.device_id, "pi-0042");
    assert_eq!(identity.email, "anna@example.org");
    assert_eq!(identity.serial_hex, signed.serial_hex);
    let der = CertificateDer::from_pem_slice(signed.cert_pem.as_bytes()).expect("der");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert_eq!(
        cert.tbs_certificate.subject_pki.raw,
        rcgen::PublicKeyData::subject_public_key_info(&key),
        "the certificate is for the device's key"
    );
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().expect("utf8").to_owned())
        .collect();
    assert_eq!(cn, ["pi-0042"]);
    // Recorded like any device certificate, and usable for mutual TLS with the device's key.
    let records = ca.list().expect("list");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].serial, signed.serial_hex);
    assert_eq!(records[0].device_id.as_deref(), Some("pi-0042"));
    let cert_path = dir.path().join("pi-0042.crt");
    let key_path = dir.path().join("pi-0042.key");
    signed.write(&cert_path).expect("write");
    fs::write(&key_path, key.serialize_pem()).expect("key");
    client_tls_config(&cert_path, &key_path, &ca.ca_cert_path()).expect("TLS client");
}

#[test]
fn csrs_that_are_altered_foreign_or_malformed_are_refused() {
    let ca = CertificateAuthority::new("test CA", DEFAULT_CA_VALIDITY).expect("CA");
    let request = DeviceRequest::new("pi-7", "dora@example.org");
    let (_, csr) = device_csr("pi-7", "urn:wattlet:device:pi-7");

    // One bit of the signed part flipped: the signature no longer verifies.
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .expect("der");
    let mut bytes = der.as_ref().to_vec();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    let altered = pem_of("CERTIFICATE REQUEST", &bytes);
    let error = ca
        .sign_device_csr(&altered, &request)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("signature does not verify") || error.contains("not a certificate"),
        "{error}"
    );

    // Another key type (P-384): refused, not written into a certificate as P-256.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let p384 = rcgen::CertificateParams::new(vec![])
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let error = ca.sign_device_csr(&p384, &request).unwrap_err().to_string();
    assert!(error.contains("not ECDSA P-256"), "{error}");

    for junk in [
        "",
        "hello",
        &pem_of("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00"),
    ] {
        let error = ca.sign_device_csr(junk, &request).unwrap_err().to_string();
        assert!(
            error.contains("refused certificate signing request"),
            "{error}"
        );
    }
    // A good CSR still needs a valid device id from the administrator.
    let error = ca
        .sign_device_csr(&csr, &DeviceRequest::new("no spaces", "dora@example.org"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid device id"), "{error}");
}

fn pem_of(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}
