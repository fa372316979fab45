//! The worker endpoints natively: role scoping, the meters and power reads, results stored once
//! by item, and the consent check inside the storing statement (a revocation played between
//! any two statements of the request never lets a result in). Results here are plaintext
//! (`plaintext_results = "allowed"`); sealed results are `tests/sealed.rs`'s.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::{Value, json};
use support::{Api, Household, Reply, assert_refused, measurement, unique, uuid4};
use wattlet_data_api::Method;
use wattlet_survey::{ConsentState, RefusalCode};

fn result(item: &str, meter: &str) -> Value {
    json!({
        "item": item, "meter": meter, "model": "fridge", "model_sha256": "0f".repeat(32),
        "window_start": "2026-11-23T16:00:00Z", "step_seconds": 60, "power_w": [0.0, 80.5],
    })
}

fn store(api: &Api, token: &str, results: Vec<Value>) -> Reply {
    *api.secrets.plaintext_results.borrow_mut() = Some("allowed".to_owned());
    api.with_token(
        token,
        Method::Post,
        "/api/worker/disaggregation",
        Some(&json!({ "results": results })),
    )
}

/// `(item, outcome, code)` of each answered result.
fn outcomes(reply: &Reply) -> Vec<(String, String, Option<String>)> {
    assert_eq!(reply.0, 200, "{}", reply.1);
    reply.1["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["item"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
                r["code"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn outcome(item: &str, outcome: &str, code: Option<&str>) -> (String, String, Option<String>) {
    (item.to_owned(), outcome.to_owned(), code.map(str::to_owned))
}

/// A household with consent and power readings on its electricity meter.
fn measured(api: &Api) -> Household {
    let household = api.register();
    api.set_consent(&household, ConsentState::Granted);
    let meter = &household.meters[0];
    let reply = api.upload(
        &household,
        &[
            measurement(
                meter,
                "2026-11-23T15:50:00Z",
                json!([{ "0100100700ff": 0.1 }]),
            ),
            measurement(
                meter,
                "2026-11-23T16:00:00Z",
                json!([{ "0100010700ff": 0.5 }]),
            ),
            measurement(
                meter,
                "2026-11-23T16:05:00Z",
                json!([{ "0100010800ff": 9.0 }]),
            ),
            measurement(
                meter,
                "2026-11-23T16:10:00Z",
                json!([{ "0100100700ff": -1.0 }]),
            ),
        ],
    );
    assert_eq!(reply.0, 200, "{}", reply.1);
    household
}

#[test]
fn only_manager_tokens_reach_the_manager_endpoints() {
    let api = Api::new();
    let household = measured(&api);
    let worker = api.mint(json!({ "role": "manager" }));
    let (status, body) = api.with_token(&worker, Method::Get, "/api/worker/meters", None);
    assert_eq!(status, 200, "{body}");
    for role in ["administrator", "researcher", "worker"] {
        let token = api.mint(json!({ "role": role }));
        let reply = api.with_token(&token, Method::Get, "/api/worker/meters", None);
        assert_refused(&reply, RefusalCode::RoleForbidden);
    }
    let participant = api.mint(json!({ "role": "participant", "household": household.id }));
    let reply = api.with_token(&participant, Method::Get, "/api/worker/meters", None);
    assert_refused(&reply, RefusalCode::RoleForbidden);
    let reply = api.admin(Method::Get, "/api/worker/meters", None);
    assert_refused(&reply, RefusalCode::RoleForbidden);
    let reply = api.send(Method::Get, "/api/worker/meters", &[], None);
    assert_refused(&reply, RefusalCode::InvalidToken);
    // A device is no worker either.
    let reply = api.as_device(&household, Method::Get, "/api/worker/meters", None);
    assert_refused(&reply, RefusalCode::InvalidToken);
    for path in ["/api/management/household", "/api/household"] {
        let reply = api.with_token(&worker, Method::Get, path, None);
        assert_refused(&reply, RefusalCode::RoleForbidden);
    }
    let reply = api.with_token(&worker, Method::Put, "/api/worker/meters", None);
    assert_refused(&reply, RefusalCode::MethodNotAllowed);
}

#[test]
fn meters_and_power_readings() {
    let api = Api::new();
    let household = measured(&api);
    let waiting = api.register();
    let worker = api.mint(json!({ "role": "manager" }));
    let meter = &household.meters[0];
    let (_, body) = api.with_token(&worker, Method::Get, "/api/worker/meters", None);
    assert_eq!(
        body,
        json!({ "meters": [
            { "meter": meter, "first": "2026-11-23T15:50:00Z", "last": "2026-11-23T16:10:00Z" },
        ] })
    );
    let power =
        |from: &str, to: &str| format!("/api/worker/meter/{meter}/power?from={from}&to={to}");
    let (status, body) = api.with_token(
        &worker,
        Method::Get,
        &power("2026-11-23T16:00:00Z", "2026-11-23T17:00:00Z"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let mut body = body;
    let key = body
        .as_object_mut()
        .and_then(|b| b.remove("key"))
        .expect("the household's key");
    assert_eq!(key["id"].as_str().map(str::len), Some(32), "{key}");
    assert_eq!(key["key"].as_str().map(str::len), Some(44), "{key}");
    assert_eq!(
        body,
        json!({
            "meter": meter,
            "before": { "at": "2026-11-23T15:50:00Z", "power_w": 100.0 },
            "readings": [
                { "at": "2026-11-23T16:00:00Z", "power_w": 500.0 },
                { "at": "2026-11-23T16:10:00Z", "power_w": 0.0 },
            ],
        })
    );
    // `before` looks back at most 8 measurements: none of these has power.
    let later: Vec<Value> = (0..8)
        .map(|i| {
            let at = format!("2026-11-23T17:0{i}:00Z");
            measurement(meter, &at, json!([{ "0100010800ff": 10.0 }]))
        })
        .collect();
    assert_eq!(api.upload(&household, &later).0, 200);
    let (_, body) = api.with_token(
        &worker,
        Method::Get,
        &power("2026-11-23T17:30:00Z", "2026-11-23T18:00:00Z"),
        None,
    );
    assert_eq!(body["before"], Value::Null, "{body}");
    assert_eq!(body["readings"], json!([]));
    for (from, to) in [
        ("2026-11-23T16:00:00Z", "2026-11-23T16:00:00Z"),
        ("2026-11-23T00:00:00Z", "2026-11-30T00:00:01Z"),
    ] {
        let reply = api.with_token(&worker, Method::Get, &power(from, to), None);
        assert_refused(&reply, RefusalCode::InvalidRequest);
        assert!(
            reply.1["error"]
                .as_str()
                .is_some_and(|m| m.starts_with("to:"))
        );
    }
    let unknown = format!(
        "/api/worker/meter/{}/power?from=2026-11-23T16:00:00Z&to=2026-11-23T17:00:00Z",
        uuid4()
    );
    assert_refused(
        &api.with_token(&worker, Method::Get, &unknown, None),
        RefusalCode::NotFound,
    );
    let not_yet = power("2026-11-23T16:00:00Z", "2026-11-23T17:00:00Z")
        .replace(meter.as_str(), &waiting.meters[0]);
    let reply = api.with_token(&worker, Method::Get, &not_yet, None);
    assert_refused(&reply, RefusalCode::ConsentNotGranted);
}

#[test]
fn results_are_stored_once_by_item() {
    let api = Api::new();
    let household = measured(&api);
    let worker = api.mint(json!({ "role": "worker" }));
    let meter = &household.meters[0];
    let (a, b) = (unique("item"), unique("item"));
    let reply = store(
        &api,
        &worker,
        vec![result(&a, meter), result(&b, meter), result(&a, meter)],
    );
    assert_eq!(
        outcomes(&reply),
        [
            outcome(&a, "stored", None),
            outcome(&b, "stored", None),
            outcome(&a, "duplicate", None),
        ]
    );
    let computed_at = api.sql_text(
        "SELECT computed_at FROM disaggregation WHERE item = ?1",
        [&a],
    );
    let mut changed = result(&a, meter);
    changed["power_w"] = json!([999.0]);
    let reply = store(&api, &worker, vec![changed]);
    assert_eq!(outcomes(&reply), [outcome(&a, "duplicate", None)]);
    assert_eq!(
        api.sql_text(
            "SELECT computed_at FROM disaggregation WHERE item = ?1",
            [&a]
        ),
        computed_at
    );
    let (status, body) = api.with_token(
        &worker,
        Method::Get,
        &format!("/api/worker/disaggregation/{a}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, result(&a, meter));
    assert_eq!(api.count("SELECT COUNT(*) FROM disaggregation", []), 2);
    // Another request stored the item between this one's look-up and its INSERT: a duplicate,
    // not a refusal.
    let c = unique("item");
    let other = c.clone();
    let the_meter = meter.clone();
    api.before_each_statement(move |sql, connection| {
        if sql
            .trim_start()
            .starts_with("INSERT OR IGNORE INTO disaggregation")
        {
            connection
                .execute(
                    "INSERT OR IGNORE INTO disaggregation (item, meter, model, model_sha256,
                     window_start, step_seconds, power_w, computed_at)
                     VALUES (?1, ?2, 'fridge', 'x', 'w', 60, '[]', 'now')",
                    (&other, &the_meter),
                )
                .expect("the other request");
        }
    });
    let reply = store(&api, &worker, vec![result(&c, meter)]);
    api.no_hook();
    assert_eq!(outcomes(&reply), [outcome(&c, "duplicate", None)]);
}

#[test]
fn the_consent_check_is_in_the_storing_statement() {
    // A revocation played before each statement of the request in turn: whichever statement
    // it precedes, no result of the revoked household is stored, and one that is not stored
    // is refused with `consent_revoked`.
    let api = Api::new();
    let worker = api.mint(json!({ "role": "worker" }));
    let probe = measured(&api);
    let item = unique("probe");
    store(&api, &worker, vec![result(&item, &probe.meters[0])]);
    let statements = api.storage.log.borrow().len();
    assert!(statements > 3);
    let mut saw_insert = false;
    for before in 0..statements + 2 {
        let household = measured(&api);
        let meter = household.meters[0].clone();
        let id = household.id.clone();
        let seen = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let counter = seen.clone();
        let start = api.storage.log.borrow().len();
        api.before_each_statement(move |_, connection| {
            if counter.get() == before {
                connection
                    .execute(
                        "UPDATE consent SET state = 'revoked', revoked_at = 'now'
                         WHERE household = ?1 AND state = 'granted'",
                        [&id],
                    )
                    .expect("the revocation");
            }
            counter.set(counter.get() + 1);
        });
        let item = unique("raced");
        let reply = store(&api, &worker, vec![result(&item, &meter)]);
        api.no_hook();
        let stored = api.count(
            "SELECT COUNT(*) FROM disaggregation WHERE item = ?1",
            [&item],
        );
        let revoked = api.consent_state(&household) == "revoked";
        let answered = outcomes(&reply);
        if revoked {
            // Revoked before the INSERT ran: nothing stored whatever the request checked
            // earlier. Revoked after it: stored (the anonymization deletes it later).
            let log = api.storage.log.borrow();
            let insert = log[start..].iter().position(|s| {
                s.trim_start()
                    .starts_with("INSERT OR IGNORE INTO disaggregation")
            });
            let revoked_first = insert.is_none_or(|i| before <= i);
            if revoked_first {
                saw_insert |= insert.is_some();
                assert_eq!(stored, 0, "revocation before statement {before}");
                assert_eq!(
                    answered,
                    [outcome(&item, "refused", Some("consent_revoked"))]
                );
            } else {
                assert_eq!(answered, [outcome(&item, "stored", None)]);
            }
        } else {
            assert_eq!(answered, [outcome(&item, "stored", None)]);
            assert_eq!(stored, 1);
        }
    }
    assert!(saw_insert, "a revocation just before the INSERT was played");
    // The write carries its own consent condition.
    let log = api.storage.log.borrow();
    let last = log
        .iter()
        .rposition(|s| {
            s.trim_start()
                .starts_with("INSERT OR IGNORE INTO disaggregation")
        })
        .expect("an INSERT");
    assert!(log[last].contains("JOIN consent"), "{}", log[last]);
}

#[test]
fn results_are_refused_with_their_codes() {
    let api = Api::new();
    let granted = measured(&api);
    let waiting = api.register();
    let revoked = measured(&api);
    let (status, _) = api.as_device(&revoked, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200);
    let worker = api.mint(json!({ "role": "worker" }));
    let items: Vec<String> = (0..4).map(|_| unique("r")).collect();
    let reply = store(
        &api,
        &worker,
        vec![
            result(&items[0], &granted.meters[0]),
            result(&items[1], &waiting.meters[0]),
            result(&items[2], &revoked.meters[0]),
            result(&items[3], &uuid4()),
        ],
    );
    assert_eq!(
        outcomes(&reply),
        [
            outcome(&items[0], "stored", None),
            outcome(&items[1], "refused", Some("consent_not_granted")),
            outcome(&items[2], "refused", Some("consent_revoked")),
            outcome(&items[3], "refused", Some("not_found")),
        ]
    );
    // A worker token restricted to one household.
    let one = api.mint(json!({ "role": "worker", "household": waiting.id }));
    let item = unique("r");
    let reply = store(&api, &one, vec![result(&item, &granted.meters[0])]);
    assert_eq!(
        outcomes(&reply),
        [outcome(&item, "refused", Some("token_restricted"))]
    );
    let read_only = api.mint(json!({ "role": "worker", "read_only": true }));
    let reply = store(
        &api,
        &read_only,
        vec![result(&unique("r"), &granted.meters[0])],
    );
    assert_refused(&reply, RefusalCode::TokenRestricted);
    // Revocation deletes what was stored.
    let (status, _) = api.as_device(&granted, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200);
    assert_eq!(api.count("SELECT COUNT(*) FROM disaggregation", []), 0);
    let reply = api.with_token(
        &worker,
        Method::Get,
        &format!("/api/worker/disaggregation/{}", items[0]),
        None,
    );
    assert_refused(&reply, RefusalCode::NotFound);
}
