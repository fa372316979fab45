//! Load forecasts natively: a sealed forecast is stored and served to the household and to
//! researchers, only a later one replaces it, a repeat is a duplicate, a revoked household's
//! forecast is refused and its stored one deleted, and nobody reads another household's.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::{Value, json};
use support::{Api, Household, Reply, assert_refused, key_of, measured, seal, unique};
use wattlet_data_api::Method;
use wattlet_survey::RefusalCode;

const SLICES: [i64; 5] = [60, 300, 900, 3600, 7200];

/// A forecast result at `at` (RFC 3339, on a minute) with `load(slice)` per slice length.
fn forecast(item: &str, meter: &str, at: &str, load: impl Fn(i64) -> f64) -> Value {
    // Listed out of order: the Data API orders them.
    let forecasts: Vec<Value> = SLICES
        .iter()
        .rev()
        .map(|&s| json!({ "slice_seconds": s, "slice_start": at, "load_w": load(s) }))
        .collect();
    json!({ "item": item, "meter": meter, "at": at, "forecasts": forecasts })
}

fn store(api: &Api, worker: &str, results: Vec<Value>) -> Reply {
    api.with_token(
        worker,
        Method::Post,
        "/api/worker/forecast",
        Some(&json!({ "results": results })),
    )
}

fn outcomes(reply: &Reply) -> Vec<(String, Option<String>)> {
    assert_eq!(reply.0, 200, "{}", reply.1);
    reply.1["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or_default().to_owned(),
                r["code"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn stored() -> (String, Option<String>) {
    ("stored".to_owned(), None)
}

fn own(api: &Api, household: &Household, meter: &str) -> Reply {
    api.as_device(
        household,
        Method::Get,
        &format!("/api/household/meter/{meter}/forecast"),
        None,
    )
}

fn any(api: &Api, token: &str, meter: &str) -> Reply {
    api.with_token(
        token,
        Method::Get,
        &format!("/api/management/meter/{meter}/forecast"),
        None,
    )
}

/// What the GET endpoints serve for a [`forecast`] with these arguments.
fn served(meter: &str, at: &str, load: impl Fn(i64) -> f64) -> Value {
    let forecasts: Vec<Value> = SLICES
        .iter()
        .map(|&s| json!({ "slice_seconds": s, "slice_start": at, "load_w": load(s) }))
        .collect();
    json!({ "meter": meter, "at": at, "forecasts": forecasts })
}

struct Setup {
    api: Api,
    household: Household,
    worker: String,
    key: (wattlet_sealing::KeyId, wattlet_sealing::DataKey),
}

fn setup() -> Setup {
    let api = Api::new();
    let household = measured(&api);
    let manager = api.mint(json!({ "role": "manager" }));
    let worker = api.mint(json!({ "role": "worker" }));
    let key = key_of(&api, &manager, &household);
    Setup {
        api,
        household,
        worker,
        key,
    }
}

#[test]
fn the_latest_forecast_is_stored_and_served() {
    let Setup {
        api,
        household,
        worker,
        key,
    } = setup();
    let meter = household.meters[0].clone();
    let at = "2026-11-23T16:00:00Z";
    assert_refused(&own(&api, &household, &meter), RefusalCode::NotFound);
    let item = unique("forecast");
    let load = |s: i64| 400.0 + s as f64 / 60.0;
    let sealed = seal(&key, &item, &forecast(&item, &meter, at, load));
    assert_eq!(
        outcomes(&store(&api, &worker, vec![sealed.clone()])),
        [stored()]
    );
    let (status, body) = own(&api, &household, &meter);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, served(&meter, at, load));
    let researcher = api.mint(json!({ "role": "researcher" }));
    assert_eq!(any(&api, &researcher, &meter), (200, body.clone()));
    assert_eq!(any(&api, support::ADMIN_TOKEN, &meter), (200, body.clone()));

    // Delivered again: nothing changes.
    assert_eq!(
        outcomes(&store(&api, &worker, vec![sealed])),
        [("duplicate".to_owned(), None)]
    );
    // An earlier forecast (a late worker) never replaces it.
    let early = unique("forecast");
    let reply = store(
        &api,
        &worker,
        vec![seal(
            &key,
            &early,
            &forecast(&early, &meter, "2026-11-23T15:55:00Z", |_| 1.0),
        )],
    );
    assert_eq!(outcomes(&reply), [("superseded".to_owned(), None)]);
    assert_eq!(own(&api, &household, &meter), (200, body));
    // A later one does, every slice length.
    let later = unique("forecast");
    let at_later = "2026-11-23T16:05:00Z";
    let reply = store(
        &api,
        &worker,
        vec![seal(
            &key,
            &later,
            &forecast(&later, &meter, at_later, |_| 7.5),
        )],
    );
    assert_eq!(outcomes(&reply), [stored()]);
    assert_eq!(
        own(&api, &household, &meter),
        (200, served(&meter, at_later, |_| 7.5))
    );
    assert_eq!(
        api.count(
            "SELECT COUNT(*) FROM forecasts WHERE meter = ?1 AND item = ?2",
            [&meter, &later]
        ),
        5
    );
}

#[test]
fn nobody_reads_another_households_forecast() {
    let Setup {
        api,
        household,
        worker,
        key,
    } = setup();
    let other = measured(&api);
    let meter = household.meters[0].clone();
    let item = unique("forecast");
    let at = "2026-11-23T16:00:00Z";
    let reply = store(
        &api,
        &worker,
        vec![seal(&key, &item, &forecast(&item, &meter, at, |_| 3.0))],
    );
    assert_eq!(outcomes(&reply), [stored()]);
    // The other household's device: 404 as for a meter that does not exist.
    let reply = own(&api, &other, &meter);
    assert_refused(&reply, RefusalCode::NotFound);
    assert_refused(
        &own(&api, &other, "00000000-0000-4000-8000-000000000000"),
        RefusalCode::NotFound,
    );
    // A researcher restricted to the other household, the worker, and no token at all.
    let restricted = api.mint(json!({ "role": "researcher", "household": other.id }));
    assert_refused(
        &any(&api, &restricted, &meter),
        RefusalCode::TokenRestricted,
    );
    assert_refused(&any(&api, &worker, &meter), RefusalCode::RoleForbidden);
    let (status, _) = api.send(
        Method::Get,
        &format!("/api/management/meter/{meter}/forecast"),
        &[],
        None,
    );
    assert_eq!(status, 401);
    // Nor does a key open another household's meter.
    let item = unique("forecast");
    let reply = store(
        &api,
        &worker,
        vec![seal(
            &key,
            &item,
            &forecast(&item, &other.meters[0], at, |_| 3.0),
        )],
    );
    assert_refused(&reply, RefusalCode::InvalidRequest);
}

#[test]
fn revocation_deletes_the_forecast_and_refuses_new_ones() {
    let Setup {
        api,
        household,
        worker,
        key,
    } = setup();
    let meter = household.meters[0].clone();
    let item = unique("forecast");
    let reply = store(
        &api,
        &worker,
        vec![seal(
            &key,
            &item,
            &forecast(&item, &meter, "2026-11-23T16:00:00Z", |_| 2.0),
        )],
    );
    assert_eq!(outcomes(&reply), [stored()]);
    let next = unique("forecast");
    let sealed_next = seal(
        &key,
        &next,
        &forecast(&next, &meter, "2026-11-23T16:10:00Z", |_| 2.0),
    );
    let (status, body) = api.as_device(&household, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.count("SELECT COUNT(*) FROM forecasts", []), 0);
    let researcher = api.mint(json!({ "role": "researcher" }));
    assert_refused(&any(&api, &researcher, &meter), RefusalCode::NotFound);
    // Sealed under the shredded key: done for good.
    assert_eq!(
        outcomes(&store(&api, &worker, vec![sealed_next])),
        [("refused".to_owned(), Some("consent_revoked".to_owned()))]
    );
    // In the clear where allowed, the statement's consent check refuses it.
    *api.secrets.plaintext_results.borrow_mut() = Some("allowed".to_owned());
    let plain = unique("forecast");
    let reply = store(
        &api,
        &worker,
        vec![forecast(&plain, &meter, "2026-11-23T16:20:00Z", |_| 2.0)],
    );
    assert_eq!(
        outcomes(&reply),
        [("refused".to_owned(), Some("consent_revoked".to_owned()))]
    );
    assert_eq!(api.count("SELECT COUNT(*) FROM forecasts", []), 0);
}

#[test]
fn malformed_forecasts_and_other_roles_are_refused() {
    let Setup {
        api,
        household,
        worker,
        key,
    } = setup();
    let meter = household.meters[0].clone();
    let at = "2026-11-23T16:00:00Z";
    let item = unique("forecast");
    let mut missing = forecast(&item, &meter, at, |_| 1.0);
    missing["forecasts"]
        .as_array_mut()
        .expect("forecasts")
        .pop();
    let mut odd = forecast(&item, &meter, at, |_| 1.0);
    odd["forecasts"][0]["slice_seconds"] = json!(120);
    for bad in [missing, odd] {
        let reply = store(&api, &worker, vec![seal(&key, &item, &bad)]);
        assert_refused(&reply, RefusalCode::InvalidRequest);
    }
    // Sealed for another item than it holds.
    let reply = store(
        &api,
        &worker,
        vec![seal(
            &key,
            "other-item",
            &forecast(&item, &meter, at, |_| 1.0),
        )],
    );
    assert_refused(&reply, RefusalCode::InvalidRequest);
    // In the clear where plaintext is not allowed.
    let reply = store(&api, &worker, vec![forecast(&item, &meter, at, |_| 1.0)]);
    assert_refused(&reply, RefusalCode::InvalidRequest);
    // Only a worker stores forecasts.
    let manager = api.mint(json!({ "role": "manager" }));
    let sealed = seal(&key, &item, &forecast(&item, &meter, at, |_| 1.0));
    assert_refused(
        &store(&api, &manager, vec![sealed.clone()]),
        RefusalCode::RoleForbidden,
    );
    assert_eq!(api.count("SELECT COUNT(*) FROM forecasts", []), 0);
    assert_eq!(outcomes(&store(&api, &worker, vec![sealed])), [stored()]);
}
