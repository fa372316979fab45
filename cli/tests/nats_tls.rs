//! NATS over TLS with client certificates: a real `nats-server` that requires TLS and a client
//! certificate of its own CA (`verify`), as the operations stage runs it (infra/terraform,
//! module `nats`). The queue's clients connect with `--nats-ca/--nats-cert/--nats-key`; a client
//! without TLS, without a certificate or with a device's certificate (another CA) is refused.

use wattlet_pki::{self as pki, CaDir};
use wattlet_testkit::pki::{device, tls_nats};
use wattlet_testkit::run;
use wattlet_workers::{Nats, QueueSettings};

#[test]
fn the_queue_reaches_a_tls_only_nats_with_its_certificate_and_nothing_else_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let server = tls_nats(dir);
    // The NATS CA issues to the queue's processes only: the devices' CA is another.
    let devices_ca = CaDir::init(
        &dir.join("devices-ca"),
        "devices",
        pki::DEFAULT_CA_VALIDITY,
        false,
    )
    .expect("devices CA");
    let pi = device(&devices_ca, dir, "pi-0001", "erika@example.org");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // With the CA and its certificate: JetStream works (the queue's streams are made).
    let js = runtime
        .block_on(wattlet_workers::connect(server.client_connection()))
        .expect("connects with its certificate");
    runtime
        .block_on(wattlet_workers::ensure_streams(
            &js,
            &QueueSettings::default(),
        ))
        .expect("the queue's streams over TLS");
    // Anything else is refused, with an error that says what was tried.
    let refused = |nats: Nats| match runtime.block_on(wattlet_workers::connect(nats)) {
        Ok(_) => panic!("connected where it must be refused"),
        Err(error) => format!("{error:#}"),
    };
    let plain = refused(Nats::plain(&server.nats.url));
    assert!(plain.contains("cannot connect to NATS"), "{plain}");
    let anonymous = refused(server.connection(None));
    assert!(anonymous.contains("over TLS"), "{anonymous}");
    let device = refused(server.connection(Some((&pi.cert, &pi.key))));
    assert!(device.contains("over TLS"), "{device}");
    let missing = refused(server.connection(Some((&dir.join("no.crt"), &server.client.1))));
    assert!(
        missing.contains("cannot read the NATS TLS file"),
        "{missing}"
    );

    // The command line: a replay through TLS with the options (or their variables) …
    let file = dir.join("events.csv");
    let generate = [
        "stream",
        "generate",
        "--houses",
        "1",
        "--plugs",
        "2",
        "--minutes",
        "3",
    ];
    run(
        wattlet_testkit::binary!("wattlet")
            .args(generate)
            .args(["--seed", "7", "-o"])
            .arg(&file),
        None,
    )
    .expect_success("generate");
    let replay = |with_tls: bool| {
        let mut command = wattlet_testkit::binary!("wattlet");
        command
            .args(["stream", "replay"])
            .arg(&file)
            .args(["--nats", &server.nats.url]);
        if with_tls {
            command
                .arg("--nats-ca")
                .arg(server.ca.ca_cert_path())
                .env("WATTLET_NATS_CERT", &server.client.0)
                .env("WATTLET_NATS_KEY", &server.client.1);
        }
        run(&mut command, None)
    };
    replay(true).expect_success("replay over TLS");
    // … and without them, a refusal that says so.
    let ran = replay(false);
    assert!(!ran.success(), "a replay without TLS must fail");
    assert!(
        ran.stderr.contains("cannot connect to NATS"),
        "{}",
        ran.stderr
    );
}
