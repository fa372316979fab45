//! Anonymization on revocation natively, with the `wattlet-anonymizer` library: at once, once,
//! and finished by a later request when the anonymizer failed.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::json;
use support::{Api, Household, assert_refused, unique};
use wattlet_data_api::Method;
use wattlet_survey::{ConsentState, RefusalCode};

/// Great-circle distance in metres (the anonymizer's sphere).
fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    wattlet_anonymizer::haversine_m(
        wattlet_anonymizer::Location {
            latitude: a.0,
            longitude: a.1,
        },
        wattlet_anonymizer::Location {
            latitude: b.0,
            longitude: b.1,
        },
    )
}

fn location(api: &Api, household: &Household) -> (f64, f64) {
    let (_, body) = api.as_device(household, Method::Get, "/api/household", None);
    (
        body["location"]["latitude"].as_f64().expect("latitude"),
        body["location"]["longitude"].as_f64().expect("longitude"),
    )
}

fn revoke(api: &Api, household: &Household) {
    api.set_consent(household, ConsentState::Granted);
    let (status, body) = api.as_device(household, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn revocation_anonymizes_at_once_and_once() {
    let api = Api::new();
    let household = api.register();
    let worker = api.mint(json!({ "role": "worker" }));
    *api.secrets.plaintext_results.borrow_mut() = Some("allowed".to_owned());
    api.set_consent(&household, ConsentState::Granted);
    let item = unique("item");
    let stored = api.with_token(
        &worker,
        Method::Post,
        "/api/worker/disaggregation",
        Some(&json!({ "results": [{
            "item": item, "meter": household.meters[0], "model": "kettle",
            "model_sha256": "00".repeat(32), "window_start": "2026-11-23T16:00:00Z",
            "step_seconds": 60, "power_w": [1.0],
        }] })),
    );
    assert_eq!(stored.1["results"][0]["outcome"], "stored", "{}", stored.1);
    let before = location(&api, &household);

    revoke(&api, &household);
    let (_, body) = api.as_device(&household, Method::Get, "/api/household", None);
    assert_eq!(body["user"], json!(null), "{body}");
    assert_eq!(body["address"], json!(null), "{body}");
    let displacement = &body["location"]["displacement"];
    assert_eq!(displacement["density_unknown"], true, "{body}");
    let after = location(&api, &household);
    let moved = distance_m(before, after);
    let (d_min, d_max) = (
        displacement["d_min_m"].as_f64().expect("d_min"),
        displacement["d_max_m"].as_f64().expect("d_max"),
    );
    assert!(
        d_min - 1.0 <= moved && moved <= d_max + 1.0,
        "{moved} m: {displacement}"
    );
    // Contact, address and the NIALM results are gone from the tables.
    assert_eq!(api.count(r#"SELECT COUNT(*) FROM "user""#, []), 0);
    assert_eq!(api.count("SELECT COUNT(*) FROM address", []), 0);
    assert_eq!(api.count("SELECT COUNT(*) FROM disaggregation", []), 0);
    // PV systems coarsened: whole kWp, the installation year.
    let (_, pv) = api.as_device(&household, Method::Get, "/api/household/pv_system", None);
    assert_eq!(pv["pv_systems"][0]["nominal_power_kwp"], 7.0, "{pv}");
    assert_eq!(
        pv["pv_systems"][0]["installation_date"], "2021-01-01",
        "{pv}"
    );
    // The draw is stored; later requests do not move the point again, and the registration no
    // longer changes.
    let calls = api.anonymizer.calls.get();
    let reply = api.as_device(&household, Method::Delete, "/api/household/consent", None);
    assert_refused(&reply, RefusalCode::ConsentRevoked);
    assert_eq!(location(&api, &household), after);
    assert_eq!(api.anonymizer.calls.get(), calls);
    let reply = api.admin(
        Method::Patch,
        &format!("/api/management/household/{}", household.id),
        Some(&json!({ "location": { "latitude": 1.0, "longitude": 1.0 } })),
    );
    assert_refused(&reply, RefusalCode::Anonymized);
    assert_eq!(location(&api, &household), after);
}

#[test]
fn an_anonymization_that_failed_is_finished_by_the_next_request() {
    let api = Api::new();
    let household = api.register();
    let before = location(&api, &household);
    api.anonymizer.failing.set(true);
    // The revocation stands although the anonymizer failed.
    revoke(&api, &household);
    assert_eq!(api.consent_state(&household), "revoked");
    let draw = api.sql_text(
        "SELECT CAST(distance_uniform AS TEXT) FROM anonymization WHERE household = ?1",
        [&household.id],
    );
    assert!(
        draw.is_some(),
        "the draw is stored before the anonymizer runs"
    );
    assert_eq!(
        api.count(
            "SELECT COUNT(*) FROM anonymization WHERE completed_at IS NULL",
            []
        ),
        1
    );
    assert_eq!(location(&api, &household), before);

    api.anonymizer.failing.set(false);
    let (status, _) = api.send(Method::Get, "/api/household", &[], None);
    assert_eq!(
        status, 401,
        "any request finishes pending anonymizations first"
    );
    assert_eq!(
        api.count(
            "SELECT COUNT(*) FROM anonymization WHERE completed_at IS NULL",
            []
        ),
        0
    );
    assert_ne!(location(&api, &household), before);
    // The same draw as the failed attempt stored.
    assert_eq!(
        api.sql_text(
            "SELECT CAST(distance_uniform AS TEXT) FROM anonymization WHERE household = ?1",
            [&household.id],
        ),
        draw
    );
    assert_eq!(api.count(r#"SELECT COUNT(*) FROM "user""#, []), 0);
}
