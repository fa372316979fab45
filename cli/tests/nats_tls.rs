//! NATS over TLS with client certificates: a real `nats-server` that requires TLS and a client
//! certificate of its own CA (`verify`), as the operations stage runs it (infra/terraform,
//! module `nats`). The queue's clients connect with `--nats-ca/--nats-cert/--nats-key`; a client
//! without TLS, without a certificate or with a device's certificate (another CA) is refused.
//! The servers of a cluster route to each other over TLS with certificates of that CA, so a
//! server of another CA, or without TLS, never joins.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use wattlet_pki::{self as pki, CaDir};
use wattlet_testkit::free_port;
use wattlet_testkit::pki::{device, route_tls, tls_nats};
use wattlet_testkit::run;
use wattlet_workers::server::LocalCluster;
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

#[test]
fn cluster_routes_take_only_servers_with_a_certificate_of_the_nats_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let ca = |name: &str| {
        CaDir::init(&dir.join(name), name, pki::DEFAULT_CA_VALIDITY, false).expect("CA")
    };
    let (nats_ca, other_ca) = (ca("nats-ca"), ca("other-ca"));
    // n0..n2: the cluster; n3: a certificate of another CA; n4: plain routes. All five are
    // configured to route to every other one.
    let tls = [
        Some(route_tls(&nats_ca, dir, "n0")),
        Some(route_tls(&nats_ca, dir, "n1")),
        Some(route_tls(&nats_ca, dir, "n2")),
        Some(route_tls(&other_ca, dir, "n3")),
        None,
    ];
    let servers: Vec<_> = tls
        .into_iter()
        .map(|tls| (free_port(), free_port(), tls))
        .collect();
    let cluster = LocalCluster::start_with_route_tls(&servers, dir).expect("servers start");
    let urls: Vec<&str> = cluster.url.split(',').collect();
    let logs = || {
        (0..servers.len())
            .map(|i| {
                let log = dir.join(format!("n{i}/nats-server.log"));
                format!(
                    "--- n{i}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            })
            .collect::<String>()
    };

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // JetStream replicates over the TLS routes: a stream of 3 replicas lives on n0..n2.
        let js = wattlet_workers::connect(urls[0])
            .await
            .expect("connect to n0");
        let deadline = Instant::now() + Duration::from_secs(60);
        let config = async_nats::jetstream::stream::Config {
            name: "ROUTES".into(),
            subjects: vec!["routes.>".into()],
            num_replicas: 3,
            ..Default::default()
        };
        let mut stream = loop {
            match js.create_stream(config.clone()).await {
                Ok(stream) => break stream,
                Err(error) if Instant::now() > deadline => {
                    panic!("no R3 stream over TLS routes: {error}\n{}", logs())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        let info = stream.info().await.expect("stream info");
        let placement = info.cluster.clone().expect("a clustered stream");
        let members: BTreeSet<String> = placement
            .leader
            .iter()
            .cloned()
            .chain(placement.replicas.iter().map(|peer| peer.name.clone()))
            .collect();
        let expected: BTreeSet<String> = (0..3).map(LocalCluster::name).collect();
        assert_eq!(members, expected, "{}", logs());
        js.publish("routes.a", "over TLS routes".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        let n2 = wattlet_workers::connect(urls[2])
            .await
            .expect("connect to n2");
        let stored = n2
            .get_stream("ROUTES")
            .await
            .expect("the stream, seen from n2")
            .get_raw_message(1)
            .await
            .expect("the message, read through n2");
        assert_eq!(&stored.payload[..], b"over TLS routes");

        // Core NATS: what n0 publishes reaches a subscriber on n1, never one on n3 or n4.
        let client = |i: usize| {
            let url = urls[i].to_owned();
            async move { async_nats::connect(url).await.expect("plain client") }
        };
        let (publisher, member) = (client(0).await, client(1).await);
        let mut on_member = member.subscribe("probe").await.expect("subscribe on n1");
        let mut outsiders = Vec::new();
        for i in [3, 4] {
            let outsider = client(i).await;
            let subscription = outsider.subscribe("probe").await.expect("subscribe");
            outsider.flush().await.expect("flush");
            outsiders.push((i, outsider, subscription));
        }
        member.flush().await.expect("flush");
        // Interest travels over the routes asynchronously: publish until n1 hears it.
        let heard = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                publisher
                    .publish("probe", "hello".into())
                    .await
                    .expect("publish");
                publisher.flush().await.expect("flush");
                if let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(200), on_member.next()).await
                {
                    return;
                }
            }
        })
        .await;
        assert!(heard.is_ok(), "n1 never heard n0\n{}", logs());
        for _ in 0..20 {
            publisher
                .publish("probe", "hello".into())
                .await
                .expect("publish");
        }
        publisher.flush().await.expect("flush");
        for (i, _client, mut subscription) in outsiders {
            let got = tokio::time::timeout(Duration::from_secs(2), subscription.next()).await;
            assert!(got.is_err(), "n{i} joined the cluster\n{}", logs());
        }
    });
    // The servers said why they turned the outsiders away.
    let refusals = logs();
    assert!(refusals.contains("TLS route handshake error"), "{refusals}");
}
