//! Device-controlled timestamps. A consenting device used to upload `1969-12-31T23:59:59Z`
//! (every NIALM pass then failed for every household) or `9999-…` (a pass planned hundreds of
//! millions of items). The Data API now refuses implausible times with 400 naming the field;
//! rows an older version let through are planned within bounds or skipped, and the other
//! households are planned as before.

use std::time::Duration;

use serde_json::{Value, json};
use wattlet_testkit::clock::{rfc3339, unix_now};
use wattlet_testkit::{Cloud, Device, nats, uuid4};
use wattlet_workers::api::{ApiOptions, DataApi};
use wattlet_workers::item::WINDOW_SECONDS;
use wattlet_workers::plan::Planner;
use wattlet_workers::{Cursors, QueueSettings, manager};

/// A measurement of `meter` at `at` with an import power of `kw`.
fn reading(meter: &str, at: &str, kw: f64) -> Value {
    json!({
        "uuid": uuid4(), "meter": meter, "measured_at": at,
        "data": [{ "0100010800ff": 1000.0 }, { "0100010700ff": kw }],
    })
}

fn upload(cloud: &Cloud, device: &Device, batch: Vec<Value>) -> (u16, Value) {
    cloud.as_device(
        device,
        "POST",
        "/api/household/meter/measurement",
        Some(json!({ "measurements": batch })),
    )
}

/// A consenting household registered now, with one electricity meter that measured every
/// minute of the last four hours.
fn measuring(cloud: &Cloud, name: &str) -> (String, Device) {
    let meter = uuid4();
    let device = cloud.register_now(
        name,
        &format!("{name}@example.org"),
        &format!("pi-{name}"),
        &meter,
    );
    cloud.grant(&device);
    let now = unix_now();
    let batch = (1..=240)
        .rev()
        .map(|minute| {
            reading(
                &meter,
                &rfc3339(now - minute * 60),
                0.1 + (minute % 7) as f64,
            )
        })
        .collect();
    let (status, body) = upload(cloud, &device, batch);
    assert_eq!(status, 200, "{name}'s upload: {body}");
    (meter, device)
}

#[test]
fn implausible_times_are_refused_and_the_planner_plans_the_other_households() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = Cloud::start(&dir.path().join("cloud"));
    let (ada, _) = measuring(&cloud, "ada");
    let (grace, _) = measuring(&cloud, "grace");
    let (mallory, mallory_device) = measuring(&cloud, "mallory");

    // Each hostile time alone, then hidden in a batch of plausible ones: 400, the field named,
    // nothing stored.
    let before = cloud.measurements(&mallory_device, &mallory).len();
    let now = unix_now();
    for at in [
        "1969-12-31T23:59:59Z".to_owned(),
        "9999-12-31T23:59:59Z".to_owned(),
        "9999-12-31T23:30:00-01:00".to_owned(),
        rfc3339(now + 3600),
        rfc3339(now - 3 * 24 * 3600),
    ] {
        for hidden_at in [0, 2] {
            let mut batch: Vec<Value> = (0..3)
                .map(|i| reading(&mallory, &rfc3339(now - 30 - i), 1.0))
                .collect();
            batch[hidden_at] = reading(&mallory, &at, 1.0);
            let (status, body) = upload(&cloud, &mallory_device, batch.clone());
            assert_eq!(status, 400, "{at}: {body}");
            assert_eq!(body["code"], "time_out_of_range", "{at}: {body}");
            let field = format!("measurements[{hidden_at}].measured_at");
            let message = body["error"].as_str().unwrap_or_default();
            assert!(message.contains(&field), "{at}: {body}");
            assert_eq!(
                body["refused"],
                json!([{ "index": hidden_at, "uuid": batch[hidden_at]["uuid"],
                         "code": "time_out_of_range", "error": message }]),
                "{at}"
            );
        }
    }
    assert_eq!(
        cloud.measurements(&mallory_device, &mallory).len(),
        before,
        "a refused batch stored something"
    );

    // Rows an older Data API let through (written into its database as it stored them): a
    // meter whose history starts in 1969 cannot be planned, one that reaches 9999 is planned
    // up to the present only.
    let (ancient, _) = measuring(&cloud, "ancient");
    let db = rusqlite::Connection::open(cloud.database()).expect("the Data API's database");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    for (meter, at) in [
        (&ancient, "1969-12-31T23:59:59.000000000Z"),
        (&mallory, "9999-12-31T23:59:59.000000000Z"),
    ] {
        db.execute(
            "INSERT INTO measurement (uuid, meter, measured_at, data, received_at)
             VALUES (?1, ?2, ?3, '[{\"0100010700ff\":2.0}]', ?3)",
            [uuid4().as_str(), meter.as_str(), at],
        )
        .expect("a row of an older version");
    }

    // One pass of the NIALM manager, which must end (and soon) having planned the others.
    let nats = nats(dir.path());
    let token = cloud.mint("manager");
    let options = ApiOptions {
        url: cloud.url(),
        ca: Some(cloud.ca.ca_cert_path()),
        token,
    };
    let models = vec!["kettle".to_owned()];
    cloud.runtime().block_on(async {
        let js = wattlet_workers::connect(&nats.url).await.expect("NATS");
        wattlet_workers::ensure_streams(&js, &QueueSettings::default())
            .await
            .expect("streams");
        let cursors = Cursors::open(&js, &Default::default())
            .await
            .expect("cursors");
        let planner = Planner::new(DataApi::connect(&options).expect("Data API"));
        let report = tokio::time::timeout(
            Duration::from_secs(120),
            manager::pass(
                &js,
                &planner,
                &cursors,
                &models,
                wattlet_workers::manager::Sealing::Sealed,
            ),
        )
        .await
        .expect("the pass ends within two minutes")
        .expect("the pass succeeds");
        assert_eq!(report.meters, 3, "{report:?}: the 1969 meter is left out");
        assert!(report.published > 0, "{report:?}");
        let now = unix_now() as i64;
        for meter in [&ada, &grace, &mallory] {
            let next = cursors
                .get(meter, "kettle")
                .await
                .expect("cursor")
                .unwrap_or_else(|| panic!("{meter} was not planned: {report:?}"));
            // Four hours of minutes: at least the two hours before the last one, nothing
            // beyond the present.
            assert!(next >= now - 3 * WINDOW_SECONDS, "{meter}: {next} ({now})");
            assert!(next <= now, "{meter}: planned up to {next}, after {now}");
        }
        assert_eq!(cursors.get(&ancient, "kettle").await.expect("cursor"), None);
    });
}
