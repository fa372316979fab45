//! The NIALM manager's and workers' endpoints (`/api/worker/...`): role `manager` reads the
//! meters and their power with the household's data key, role `worker` stores results sealed
//! under it.

use base64::Engine as _;
use wattlet_sealing::{DataKey, KeyId, Purpose, Sealed};

use super::*;

/// The household's data key of a power read's answer (`"key":{"id","key"}`).
pub(super) fn key_of(power: &Reply) -> (KeyId, DataKey) {
    assert_eq!(power.status, StatusCode::OK, "{}", power.text);
    let id = KeyId::parse(power.body["key"]["id"].as_str().expect("key id")).expect("key id");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(power.body["key"]["key"].as_str().expect("key"))
        .expect("base64");
    (id, DataKey::from_bytes(&bytes).expect("a 32-byte key"))
}

/// `result` sealed under `key` as a confidential function posts it.
pub(super) fn sealed(key: &(KeyId, DataKey), result: &Value) -> Value {
    let item = result["item"].as_str().expect("item");
    let sealed = Sealed::seal(
        &key.1,
        &key.0,
        item,
        Purpose::Result,
        result.to_string().as_bytes(),
    )
    .expect("sealed");
    json!({ "sealed": sealed })
}

/// `{"results": [...]}` with each result sealed under `key`.
fn sealed_body(key: &(KeyId, DataKey), results: &[Value]) -> Value {
    json!({ "results": results.iter().map(|r| sealed(key, r)).collect::<Vec<_>>() })
}

/// A worker's call with `token` through `client` (the TLS server needs a certificate too).
async fn as_worker(
    client: &Client,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    client.bearer(token).call(method, path, body).await
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
async fn manager_and_worker_tokens_reach_their_endpoints_and_nothing_else() {
    use wattlet_access_token::{Caveat, Role, Token};
    let household = register().await;
    let other = register().await;
    let manager = mint(ADMIN_TOKEN, json!({ "role": "manager" })).await;
    let worker = mint(ADMIN_TOKEN, json!({ "role": "worker" })).await;
    let meters = "/api/worker/meters";
    let reply = as_worker(plain(), &manager, Method::GET, meters, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.body["meters"].is_array(), "{}", reply.text);

    // Neither token reaches a management, participant or device endpoint.
    for token in [&manager, &worker] {
        for (method, path) in [
            (Method::GET, "/api/management/household"),
            (Method::POST, "/api/management/token"),
            (Method::GET, "/api/household"),
            (Method::GET, "/api/household/consent"),
        ] {
            let reply = as_worker(plain(), token, method, path, Some(&json!({}))).await;
            assert_refused(&reply, RefusalCode::RoleForbidden, "");
        }
    }
    // A worker reads no readings, a manager stores and reads no results.
    let power = format!(
        "/api/worker/meter/{}/power?from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z",
        household.meters[0]
    );
    for path in [meters, power.as_str()] {
        let reply = as_worker(plain(), &worker, Method::GET, path, None).await;
        assert_refused(&reply, RefusalCode::RoleForbidden, "worker");
    }
    let body = json!({ "results": [result("m-1", &household.meters[0], &[1.0])] });
    let reply = as_worker(
        plain(),
        &manager,
        Method::POST,
        "/api/worker/disaggregation",
        Some(&body),
    )
    .await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "manager");
    let reply = as_worker(
        plain(),
        &manager,
        Method::GET,
        "/api/worker/disaggregation/m-1",
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "manager");
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
    let both = Token::decode(&manager)
        .expect("token")
        .attenuate(Caveat::Role(Role::Worker))
        .encode();
    for token in [
        ADMIN_TOKEN,
        &researcher,
        &administrator,
        &participant,
        &promoted,
        &both,
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
            let reply = as_worker(plain(), token, method, path, body.as_ref()).await;
            assert_refused(&reply, RefusalCode::RoleForbidden, "");
        }
    }
    let reply = as_worker(
        plain(),
        &promoted,
        Method::GET,
        "/api/management/household",
        None,
    )
    .await;
    assert_refused(&reply, RefusalCode::RoleForbidden, "worker");
    // No token, or an invalid one: 401.
    let reply = plain().send(Method::GET, meters, b"", &[]).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "bearer token");
    assert!(reply.headers.contains_key("www-authenticate"));
    let reply = as_worker(plain(), "wt1.forged.AAAA", Method::GET, meters, None).await;
    assert_refused(&reply, RefusalCode::InvalidToken, "invalid bearer token");

    // Attenuated like any token: read-only, one household.
    let read_only = Token::decode(&manager)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    let reply = as_worker(plain(), &read_only, Method::GET, meters, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let read_only = Token::decode(&worker)
        .expect("token")
        .attenuate(Caveat::ReadOnly)
        .encode();
    let body = json!({ "results": [result("ro-1", &household.meters[0], &[1.0])] });
    let reply = as_worker(
        plain(),
        &read_only,
        Method::POST,
        "/api/worker/disaggregation",
        Some(&body),
    )
    .await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "read-only");
    let one = Token::decode(&manager)
        .expect("token")
        .attenuate(Caveat::Household(household.id.clone()))
        .encode();
    let reply = as_worker(plain(), &one, Method::GET, &power, None).await;
    assert_refused(
        &reply,
        RefusalCode::ConsentNotGranted,
        "consent not granted",
    );
    let foreign = power.replace(&household.meters[0], &other.meters[0]);
    let reply = as_worker(plain(), &one, Method::GET, &foreign, None).await;
    assert_refused(&reply, RefusalCode::TokenRestricted, "one household");
    // Results in the clear are refused by default (`plaintext_results`), whoever sends them.
    let body = json!({ "results": [result(&unique("one"), &other.meters[0], &[1.0])] });
    let reply = as_worker(
        plain(),
        &worker,
        Method::POST,
        "/api/worker/disaggregation",
        Some(&body),
    )
    .await;
    assert_refused(&reply, RefusalCode::InvalidRequest, "plaintext_results");
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
    let manager = mint(ADMIN_TOKEN, json!({ "role": "manager" })).await;
    let worker = mint(ADMIN_TOKEN, json!({ "role": "worker" })).await;
    let client = tls_admin();

    let reply = as_worker(client, &manager, Method::GET, "/api/worker/meters", None).await;
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
    let reply = as_worker(client, &manager, Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let key = key_of(&reply);
    let mut body = reply.body.clone();
    body.as_object_mut().map(|b| b.remove("key"));
    assert_eq!(
        body,
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
    let reply = as_worker(client, &manager, Method::GET, &path, None).await;
    assert_eq!(reply.body["before"], Value::Null, "{}", reply.text);
    assert_eq!(key_of(&reply), key, "one key per household");
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
        let reply = as_worker(client, &manager, Method::GET, &path, None).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
    let reply = as_worker(
        client,
        &manager,
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
        let reply = as_worker(client, &manager, Method::GET, &path, None).await;
        assert_refused(&reply, RefusalCode::NotFound, "no such meter");
    }

    // Results: stored once, by item; a repeat in the same request or later is a duplicate.
    let (first, second) = (unique("item"), unique("item"));
    let stored = |item: &str| format!("/api/worker/disaggregation/{item}");
    let reply = as_worker(client, &worker, Method::GET, &stored(&first), None).await;
    assert_refused(&reply, RefusalCode::NotFound, "no such result");
    let body = sealed_body(
        &key,
        &[
            result(&first, &meter, &[0.0, 1500.5, 2000.0]),
            result(&second, &meter.to_uppercase(), &[3.0]),
            result(&first, &meter, &[9.0]),
        ],
    );
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
    let again = sealed_body(
        &key,
        &[
            result(&second, &meter, &[7.0]),
            result(&first, &meter, &[7.0]),
        ],
    );
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
    let reply = device
        .call(
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
    let with = |field: &str, value: Value| {
        let mut r = result(&fresh, &meter, &[1.0]);
        r[field] = value;
        sealed_body(&key, &[r])
    };
    let many: Vec<Value> = (0..101)
        .map(|i| sealed(&key, &result(&format!("{fresh}-{i}"), &meter, &[1.0])))
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
        (
            json!({ "results": [result(&fresh, &meter, &[1.0])] }),
            "plaintext_results",
        ),
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
    let manager = mint(ADMIN_TOKEN, json!({ "role": "manager" })).await;
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
    let key = key_of(&as_worker(client, &manager, Method::GET, &power(&meter), None).await);
    let (kept, late, unknown, never) = (unique("r"), unique("r"), unique("r"), unique("r"));
    let reply = store(vec![
        sealed(&key, &result(&kept, &meter, &[1.0])),
        sealed(&key, &result(&unknown, &uuid4(), &[1.0])),
    ])
    .await;
    assert_eq!(
        outcomes(&reply),
        [
            outcome(&kept, "stored", None),
            outcome(&unknown, "refused", Some("not_found")),
        ]
    );
    // A household's key opens only its own meters' results.
    let reply = store(vec![sealed(
        &key,
        &result(&never, &waiting.meters[0], &[1.0]),
    )])
    .await;
    assert_refused(
        &reply,
        RefusalCode::InvalidRequest,
        "not a meter of the household",
    );
    // No key for a household without consent.
    let reply = as_worker(
        client,
        &manager,
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
    let reply = device
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
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
    // Sealed under the key that revocation shredded: refused for good (the items are done).
    let reply = store(vec![
        sealed(&key, &result(&late, &meter, &[1.0])),
        sealed(&key, &result(&kept, &meter, &[1.0])),
    ])
    .await;
    assert_eq!(
        outcomes(&reply),
        [
            outcome(&late, "refused", Some("consent_revoked")),
            outcome(&kept, "refused", Some("consent_revoked")),
        ]
    );
    let reply = as_worker(client, &manager, Method::GET, "/api/worker/meters", None).await;
    assert!(!reply.text.contains(&meter), "{}", reply.text);
    let reply = as_worker(client, &manager, Method::GET, &power(&meter), None).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "consent revoked");
}
