//! Measurements up and back: round trips, idempotent re-uploads, refusals before consent and
//! after revocation, foreign meters, bad batches.

use super::*;

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

    let reply = device
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
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
    let reply = device
        .call(
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
    let reply = device.call(Method::GET, "/api/household/meter", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["household"], mine.id.as_str());
    assert!(!reply.text.contains(&theirs.meters[0]), "{}", reply.text);
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
        let reply = device
            .send(Method::POST, "/api/household/meter/measurement", body, &[])
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    }
    assert!(uuids(&read(&device, meter, "").await).is_empty());
    // The full batch of 1000 is accepted.
    let reply = upload(&device, &many[..1000]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(uuids(&read(&device, meter, "").await).len(), 1000);
}
