//! Household data keys and sealed results natively: the manager's power read carries the
//! household's key (made once), a result sealed under it is stored, a forged or misdirected one
//! is refused, plaintext only where allowed, the roles kept apart, and revocation shreds the
//! key (its bytes gone from the database files).
#![cfg(not(target_family = "wasm"))]

mod support;

use base64::Engine as _;
use serde_json::{Value, json};
use support::{Api, Reply, assert_refused, key_of, measured, seal, unique};
use wattlet_data_api::Method;
use wattlet_sealing::{DataKey, Purpose, Sealed};
use wattlet_survey::RefusalCode;

const POWER_SPAN: &str = "from=2026-11-23T16:00:00Z&to=2026-11-23T17:00:00Z";

fn power(api: &Api, token: &str, meter: &str) -> Reply {
    api.with_token(
        token,
        Method::Get,
        &format!("/api/worker/meter/{meter}/power?{POWER_SPAN}"),
        None,
    )
}

fn result(item: &str, meter: &str) -> Value {
    json!({
        "item": item, "meter": meter, "model": "fridge", "model_sha256": "0f".repeat(32),
        "window_start": "2026-11-23T16:00:00Z", "step_seconds": 60, "power_w": [0.0, 80.5],
    })
}

fn store(api: &Api, worker: &str, results: Vec<Value>) -> Reply {
    api.with_token(
        worker,
        Method::Post,
        "/api/worker/disaggregation",
        Some(&json!({ "results": results })),
    )
}

fn outcome(reply: &Reply) -> (String, Option<String>) {
    assert_eq!(reply.0, 200, "{}", reply.1);
    let r = &reply.1["results"][0];
    (
        r["outcome"].as_str().unwrap_or_default().to_owned(),
        r["code"].as_str().map(str::to_owned),
    )
}

fn refused_saying(reply: &Reply, code: RefusalCode, words: &str) {
    assert_refused(reply, code);
    assert!(
        reply.1["error"].as_str().is_some_and(|m| m.contains(words)),
        "{words:?} not in {}",
        reply.1
    );
}

#[test]
fn the_power_read_carries_the_households_key_made_once() {
    let api = Api::new();
    let household = measured(&api);
    let other = measured(&api);
    let manager = api.mint(json!({ "role": "manager" }));
    let first = key_of(&api, &manager, &household);
    let again = key_of(&api, &manager, &household);
    assert_eq!(first, again);
    let others = key_of(&api, &manager, &other);
    assert_ne!(first.0, others.0);
    assert_ne!(first.1, others.1);
    assert_eq!(api.count("SELECT COUNT(*) FROM household_key", []), 2);
    // At rest only wrapped: neither the key nor its base64 is in the row.
    let wrapped = api
        .sql_text(
            "SELECT wrapped FROM household_key WHERE key_id = ?1",
            [first.0.as_str()],
        )
        .expect("wrapped");
    let raw = base64::engine::general_purpose::STANDARD.encode(first.1.as_bytes());
    assert!(!wrapped.contains(&raw));
    // No key for a household whose consent does not permit processing.
    let waiting = api.register();
    let reply = power(&api, &manager, &waiting.meters[0]);
    assert_refused(&reply, RefusalCode::ConsentNotGranted);
    assert_eq!(api.count("SELECT COUNT(*) FROM household_key", []), 2);
}

#[test]
fn a_sealed_result_is_stored_once() {
    let api = Api::new();
    let household = measured(&api);
    let manager = api.mint(json!({ "role": "manager" }));
    let worker = api.mint(json!({ "role": "worker" }));
    let key = key_of(&api, &manager, &household);
    let item = unique("item");
    let plain = result(&item, &household.meters[0]);
    let reply = store(&api, &worker, vec![seal(&key, &item, &plain)]);
    assert_eq!(outcome(&reply), ("stored".to_owned(), None));
    let reply = store(&api, &worker, vec![seal(&key, &item, &plain)]);
    assert_eq!(outcome(&reply), ("duplicate".to_owned(), None));
    let (status, body) = api.with_token(
        &worker,
        Method::Get,
        &format!("/api/worker/disaggregation/{item}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, plain);
}

#[test]
fn forged_and_misdirected_results_are_refused() {
    let api = Api::new();
    let household = measured(&api);
    let other = measured(&api);
    let manager = api.mint(json!({ "role": "manager" }));
    let worker = api.mint(json!({ "role": "worker" }));
    let key = key_of(&api, &manager, &household);
    let others_key = key_of(&api, &manager, &other);
    let meter = &household.meters[0];

    // A flipped ciphertext bit.
    let item = unique("item");
    let mut flipped = seal(&key, &item, &result(&item, meter));
    let ciphertext = flipped["sealed"]["ciphertext"]
        .as_str()
        .expect("ciphertext");
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(ciphertext)
        .expect("base64");
    bytes[3] ^= 0x40;
    flipped["sealed"]["ciphertext"] =
        json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
    let reply = store(&api, &worker, vec![flipped]);
    refused_saying(&reply, RefusalCode::InvalidRequest, "not authentic");
    // Sealed under a key that is not the one it names (a forger's own key).
    let forged_key = (key.0.clone(), DataKey::generate().expect("key"));
    let reply = store(
        &api,
        &worker,
        vec![seal(&forged_key, &item, &result(&item, meter))],
    );
    refused_saying(&reply, RefusalCode::InvalidRequest, "not authentic");
    // Another item's envelope relabelled.
    let mut relabelled = seal(&key, &item, &result(&item, meter));
    relabelled["sealed"]["item"] = json!(unique("item"));
    let reply = store(&api, &worker, vec![relabelled]);
    refused_saying(&reply, RefusalCode::InvalidRequest, "not authentic");
    // Sealed as an item, not as a result.
    let as_item = Sealed::seal(
        &key.1,
        &key.0,
        &item,
        Purpose::Item,
        result(&item, meter).to_string().as_bytes(),
    )
    .expect("sealed");
    let reply = store(&api, &worker, vec![json!({ "sealed": as_item })]);
    refused_saying(&reply, RefusalCode::InvalidRequest, "purpose");
    // The envelope's item is not the result's.
    let reply = store(
        &api,
        &worker,
        vec![seal(&key, &item, &result(&unique("other"), meter))],
    );
    refused_saying(&reply, RefusalCode::InvalidRequest, "envelope");
    // Another household's key for this household's meter.
    let reply = store(
        &api,
        &worker,
        vec![seal(&others_key, &item, &result(&item, meter))],
    );
    refused_saying(
        &reply,
        RefusalCode::InvalidRequest,
        "not a meter of the household",
    );
    // A refused entry refuses the whole request: the good one next to it is not stored.
    let good = unique("item");
    let reply = store(
        &api,
        &worker,
        vec![
            seal(&key, &good, &result(&good, meter)),
            seal(&others_key, &item, &result(&item, meter)),
        ],
    );
    assert_refused(&reply, RefusalCode::InvalidRequest);
    assert_eq!(api.count("SELECT COUNT(*) FROM disaggregation", []), 0);
}

#[test]
fn plaintext_results_only_where_allowed() {
    let api = Api::new();
    let household = measured(&api);
    let worker = api.mint(json!({ "role": "worker" }));
    let item = unique("item");
    let plain = result(&item, &household.meters[0]);
    let reply = store(&api, &worker, vec![plain.clone()]);
    refused_saying(&reply, RefusalCode::InvalidRequest, "plaintext_results");
    for setting in ["refused", "yes", "ALLOWED"] {
        *api.secrets.plaintext_results.borrow_mut() = Some(setting.to_owned());
        let reply = store(&api, &worker, vec![plain.clone()]);
        refused_saying(&reply, RefusalCode::InvalidRequest, "plaintext");
    }
    assert_eq!(api.count("SELECT COUNT(*) FROM disaggregation", []), 0);
    *api.secrets.plaintext_results.borrow_mut() = Some("allowed".to_owned());
    let reply = store(&api, &worker, vec![plain]);
    assert_eq!(outcome(&reply), ("stored".to_owned(), None));
}

#[test]
fn workers_read_no_power_and_managers_store_no_results() {
    let api = Api::new();
    let household = measured(&api);
    let manager = api.mint(json!({ "role": "manager" }));
    let worker = api.mint(json!({ "role": "worker" }));
    let reply = power(&api, &worker, &household.meters[0]);
    assert_refused(&reply, RefusalCode::RoleForbidden);
    let reply = api.with_token(&worker, Method::Get, "/api/worker/meters", None);
    assert_refused(&reply, RefusalCode::RoleForbidden);
    let key = key_of(&api, &manager, &household);
    let item = unique("item");
    let sealed = seal(&key, &item, &result(&item, &household.meters[0]));
    let reply = store(&api, &manager, vec![sealed]);
    assert_refused(&reply, RefusalCode::RoleForbidden);
    let reply = api.with_token(
        &manager,
        Method::Get,
        &format!("/api/worker/disaggregation/{item}"),
        None,
    );
    assert_refused(&reply, RefusalCode::RoleForbidden);
    for path in ["/api/management/household", "/api/household"] {
        let reply = api.with_token(&manager, Method::Get, path, None);
        assert_refused(&reply, RefusalCode::RoleForbidden);
    }
    // The administrator's secret reaches neither.
    assert_refused(
        &api.admin(
            Method::Get,
            &format!(
                "/api/worker/meter/{}/power?{POWER_SPAN}",
                household.meters[0]
            ),
            None,
        ),
        RefusalCode::RoleForbidden,
    );
}

/// Every file of the database (the file, its WAL and shared memory).
fn database_bytes(api: &Api) -> Vec<(String, Vec<u8>)> {
    let dir = api.path.parent().expect("the database's directory");
    std::fs::read_dir(dir)
        .expect("the database's directory")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let bytes = std::fs::read(&path).expect("a database file");
            (path.display().to_string(), bytes)
        })
        .collect()
}

fn found_in(files: &[(String, Vec<u8>)], needle: &[u8]) -> Vec<String> {
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn revocation_shreds_the_key() {
    let api = Api::new();
    let household = measured(&api);
    let manager = api.mint(json!({ "role": "manager" }));
    let worker = api.mint(json!({ "role": "worker" }));
    let key = key_of(&api, &manager, &household);
    let wrapped = api
        .sql_text(
            "SELECT wrapped FROM household_key WHERE key_id = ?1",
            [key.0.as_str()],
        )
        .expect("wrapped");
    let wrapped_bytes = base64::engine::general_purpose::STANDARD
        .decode(&wrapped)
        .expect("base64");
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key.1.as_bytes());
    let needles: [(&str, &[u8]); 5] = [
        ("wrapped key", wrapped.as_bytes()),
        ("key id", key.0.as_str().as_bytes()),
        ("wrapped key bytes", &wrapped_bytes),
        ("raw key", key.1.as_bytes()),
        ("key in base64", key_b64.as_bytes()),
    ];
    // The scan finds what is there: the wrapped key and its id before revocation.
    let files = database_bytes(&api);
    for (what, needle) in &needles[..2] {
        assert!(!found_in(&files, needle).is_empty(), "{what} not found");
    }
    let item = unique("item");
    let sealed = seal(&key, &item, &result(&item, &household.meters[0]));
    let (status, body) = api.as_device(&household, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.count("SELECT COUNT(*) FROM household_key", []), 0);
    let files = database_bytes(&api);
    for (what, needle) in &needles {
        let left = found_in(&files, needle);
        assert!(left.is_empty(), "{what} left after revocation in {left:?}");
    }
    // The key cannot be had again, and a result sealed under it is done: refused for good.
    let reply = power(&api, &manager, &household.meters[0]);
    assert_refused(&reply, RefusalCode::ConsentRevoked);
    assert_eq!(api.count("SELECT COUNT(*) FROM household_key", []), 0);
    let reply = store(&api, &worker, vec![sealed]);
    assert_eq!(
        outcome(&reply),
        ("refused".to_owned(), Some("consent_revoked".to_owned()))
    );
    assert_eq!(api.count("SELECT COUNT(*) FROM disaggregation", []), 0);
}
