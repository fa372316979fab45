//! Uploads against the household's consent and its other meters. An upload that interleaved
//! with a revocation used to be stored after the revocation was answered; a device with one
//! meter the Data API refuses (a meter not wired to it) re-sent the same oldest measurements
//! forever and delivered nothing else.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use wattlet_api_client::ApiClient;
use wattlet_testkit::{
    Cloud, ConsentingEdge, InProcessEdge, Meter, Rng, add_meter, journal, pending, sample,
    set_aside, uuid4, wait_for,
};

/// A measurement of `meter` a moment ago.
fn recent(meter: &str) -> Value {
    let at = SystemTime::now() - Duration::from_secs(1);
    json!({
        "uuid": uuid4(), "meter": meter,
        "measured_at": humantime::format_rfc3339_millis(at).to_string(),
        "data": [{ "0100010800ff": 1234.5 }, { "0100100700ff": 0.4 }],
    })
}

/// Households revoking while several of their device's connections upload.
const ROUNDS: u64 = 8;
const UPLOADERS: usize = 4;

#[test]
fn no_upload_is_stored_after_the_revocation_it_raced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = Cloud::start(&dir.path().join("cloud"));
    let mut rng = Rng::new(0x0dd_ba11_5eed);
    let mut accepted_total = 0;
    let mut households = Vec::new();
    for round in 0..ROUNDS {
        let meter = uuid4();
        let name = format!("racer-{round}");
        let device = cloud.register_now(
            &name,
            &format!("{name}@example.org"),
            &format!("pi-{name}"),
            &meter,
        );
        cloud.grant(&device);
        let client = ApiClient::new(&cloud.url(), Some(device.tls.clone())).expect("client");
        let delay = Duration::from_millis(20 + rng.below(200));
        let accepted = cloud.runtime().block_on(async {
            let uploads = (0..UPLOADERS).map(|_| {
                let client = client.clone();
                let meter = meter.clone();
                async move {
                    let mut accepted = 0;
                    loop {
                        let batch: Vec<Value> = (0..5).map(|_| recent(&meter)).collect();
                        let (status, body) = client
                            .send(
                                "POST",
                                "/api/household/meter/measurement",
                                Some(&json!({ "measurements": batch })),
                                &[],
                            )
                            .await
                            .expect("upload");
                        match status {
                            200 => accepted += 1,
                            403 => {
                                assert_eq!(body["code"], "consent_revoked", "{body}");
                                return accepted;
                            }
                            // A concurrent change the Data API asks to retry.
                            409 => {}
                            other => panic!("upload answered {other}: {body}"),
                        }
                    }
                }
            });
            let revoke = async {
                tokio::time::sleep(delay).await;
                let (status, body) = client
                    .send("DELETE", "/api/household/consent", None, &[])
                    .await
                    .expect("revoke");
                assert_eq!(status, 200, "revoke: {body}");
            };
            let (accepted, ()) = tokio::join!(futures::future::join_all(uploads), revoke);
            accepted.into_iter().sum::<usize>()
        });
        accepted_total += accepted;
        households.push(device.id.clone());
    }
    assert!(
        accepted_total >= ROUNDS as usize,
        "too few uploads before the revocations to mean anything: {accepted_total}"
    );

    // Nothing was received after its household's revocation.
    let db = rusqlite::Connection::open_with_flags(
        cloud.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the Data API's database");
    let mut late = Vec::new();
    for device in &households {
        let mut statement = db
            .prepare(
                "SELECT x.received_at, c.revoked_at FROM measurement x
                 JOIN meter m ON m.uuid = x.meter
                 JOIN measurement_device d ON d.household = m.household
                 JOIN consent c ON c.household = m.household
                 WHERE d.id = ?1 AND x.received_at > c.revoked_at",
            )
            .expect("query");
        let rows: Vec<(String, String)> = statement
            .query_map([device], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows");
        late.extend(rows.into_iter().map(|r| (device.clone(), r)));
    }
    eprintln!(
        "revocation race: {ROUNDS} households × {UPLOADERS} uploaders, {accepted_total} batches \
         stored before the revocations, {} rows received after",
        late.len()
    );
    assert!(late.is_empty(), "stored after the revocation: {late:?}");
}

#[test]
fn a_stuck_meter_does_not_block_its_device() {
    let temp = tempfile::tempdir().expect("temp dir");
    let good = uuid4();
    let ConsentingEdge {
        cloud,
        device,
        meter,
        dir,
        config,
    } = ConsentingEdge::start(
        temp.path(),
        &good,
        Duration::from_millis(100),
        ("200ms", "500ms", "1s"),
    );
    // A second meter on the same device that the Data API does not know: every measurement of
    // it is refused (`meter_not_wired`).
    let stuck = uuid4();
    let stuck_meter = Meter::start(Duration::from_millis(100));
    add_meter(&config, &stuck, &stuck_meter.path);

    let edge = InProcessEdge::start(&config);
    wait_for(
        Duration::from_secs(120),
        "the good meter's measurements in the cloud while the stuck one's are set aside",
        || {
            cloud.measurements(&device, &good).len() >= 5
                && set_aside(&dir).len() >= 5
                && pending(&dir) <= 2
        },
    );
    // The device's status reaches the cloud with what it set aside.
    let status = || {
        let (status, listing) = cloud.admin("GET", "/api/management/household", None);
        assert_eq!(status, 200, "{listing}");
        listing["households"][0]["devices"][0]["status"].clone()
    };
    wait_for(
        Duration::from_secs(30),
        "the status with the set-aside count",
        || {
            status()["set_aside"].as_array().is_some_and(|entries| {
                entries.iter().any(|e| {
                    e["meter"] == stuck.as_str()
                        && e["code"] == "meter_not_wired"
                        && e["count"].as_i64().is_some_and(|n| n >= 1)
                })
            })
        },
    );
    let page = edge.scrape();
    let counted = sample(
        &page,
        &format!(
            "wattlet_edge_set_aside_measurements{{meter=\"{stuck}\",code=\"meter_not_wired\"}}"
        ),
    )
    .unwrap_or_else(|| panic!("no set-aside gauge:\n{page}"));
    assert!(counted >= 5.0, "{page}");
    assert!(
        sample(&page, "wattlet_edge_uploads_total{outcome=\"set_aside\"}")
            .is_some_and(|batches| batches >= 1.0),
        "{page}"
    );
    drop(stuck_meter);
    drop(meter);
    edge.stop();

    // Every measurement taken is in the cloud, set aside or still buffered, exactly once; the
    // cloud holds none of the stuck meter's, the buffer set aside none of the good one's.
    let taken = journal(&dir);
    let stored = cloud.measurements(&device, &good);
    let aside = set_aside(&dir);
    assert!(
        aside
            .iter()
            .all(|(_, meter, code)| *meter == stuck && code == "meter_not_wired")
    );
    let mut accounted: Vec<String> = stored.clone();
    accounted.extend(aside.iter().map(|(uuid, ..)| uuid.clone()));
    accounted.sort();
    let waiting = pending(&dir);
    assert_eq!(
        accounted.len() + waiting,
        taken.len(),
        "taken {}, stored {}, set aside {}, pending {waiting}",
        taken.len(),
        stored.len(),
        aside.len()
    );
    assert!(
        accounted.windows(2).all(|w| w[0] != w[1]),
        "a measurement both stored and set aside"
    );
    assert!(
        accounted
            .iter()
            .all(|uuid| taken.binary_search(uuid).is_ok())
    );
}
