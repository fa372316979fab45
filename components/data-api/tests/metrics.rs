//! `GET /api/management/metrics` natively: administrators only; households by consent, silent
//! devices, anonymizations that failed and the WAL checkpoints they owe, as Prometheus reads them.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::json;
use support::{ADMIN_TOKEN, Api};
use wattlet_data_api::{Method, Request};
use wattlet_survey::ConsentState;

/// The metrics page as `token` gets it: status, content type and text.
fn scrape(api: &Api, token: &str) -> (u16, String, String) {
    let response = api.handle(
        &Request::new(Method::Get, "/api/management/metrics")
            .with_header("authorization", &format!("Bearer {token}")),
    );
    (
        response.status,
        response.header("content-type").unwrap_or("").to_owned(),
        String::from_utf8(response.body).expect("UTF-8"),
    )
}

/// The value of the sample `name` (with its labels, as written) on `page`.
fn value(page: &str, name: &str) -> i64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{page}"))
}

fn devices(page: &str) -> [i64; 3] {
    ["reporting", "silent", "never"].map(|activity| {
        value(
            page,
            &format!("wattlet_api_devices{{activity=\"{activity}\"}}"),
        )
    })
}

#[test]
fn metrics_count_consent_silent_devices_and_pending_anonymizations() {
    let api = Api::new();
    let (status, content_type, page) = scrape(&api, ADMIN_TOKEN);
    assert_eq!(status, 200, "{page}");
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(page.ends_with("# EOF\n"), "{page}");
    assert_eq!(devices(&page), [0, 0, 0], "every class is there at 0");
    assert_eq!(value(&page, "wattlet_api_anonymizations_pending"), 0);

    let quiet = api.register();
    let reporting = api.register();
    let gone = api.register();
    let revoked = api.register();
    api.set_consent(&reporting, ConsentState::Granted);
    let (status, body) = api.as_device(&reporting, Method::Get, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    // A device last heard of three hours ago: silent (twice the longest report cycle is 2 h).
    api.sql(
        "UPDATE measurement_device SET last_activity = ?1 WHERE id = ?2",
        ("2000-01-01T00:00:00.000000000Z", &gone.device),
    );
    // Revoked devices and households that revoked consent are not expected to call.
    let (status, body) = api.admin(
        Method::Post,
        &format!("/api/management/device/{}/revoke", revoked.device),
        None,
    );
    assert_eq!(status, 200, "{body}");

    let (_, _, page) = scrape(&api, ADMIN_TOKEN);
    assert_eq!(devices(&page), [1, 1, 1], "{page}");
    assert_eq!(
        value(&page, "wattlet_api_households{consent=\"granted\"}"),
        1
    );
    assert_eq!(
        value(&page, "wattlet_api_households{consent=\"not_granted\"}"),
        3
    );
    assert!(
        !page.contains(&quiet.device) && !page.contains(&quiet.id),
        "no device id or household leaves through the metrics"
    );

    // A revocation whose anonymizer fails stays pending, and the scrape (a request, which
    // retries it first) says so until it succeeds.
    api.set_consent(&gone, ConsentState::Granted);
    api.anonymizer.failing.set(true);
    let (status, body) = api.as_device(&gone, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    let (_, _, page) = scrape(&api, ADMIN_TOKEN);
    assert_eq!(value(&page, "wattlet_api_anonymizations_pending"), 1);
    assert!(value(&page, "wattlet_api_anonymization_pending_seconds") >= 0);
    assert_eq!(
        value(&page, "wattlet_api_households{consent=\"revoked\"}"),
        1
    );
    assert_eq!(
        devices(&page),
        [1, 0, 1],
        "a revoked household's device is not silent"
    );
    api.anonymizer.failing.set(false);
    let (_, _, page) = scrape(&api, ADMIN_TOKEN);
    assert_eq!(value(&page, "wattlet_api_anonymizations_pending"), 0);
    assert_eq!(value(&page, "wattlet_api_anonymization_pending_seconds"), 0);
    assert_eq!(value(&page, "wattlet_api_wal_scrub_owed"), 0);
}

#[test]
fn metrics_are_for_administrators_only() {
    let api = Api::new();
    let (status, _, _) = scrape(&api, "wrong");
    assert_eq!(status, 401);
    let researcher = api.mint(json!({ "role": "researcher" }));
    let (status, _, page) = scrape(&api, &researcher);
    assert_eq!(status, 403, "{page}");
    let administrator = api.mint(json!({ "role": "administrator" }));
    let (status, _, page) = scrape(&api, &administrator);
    assert_eq!(status, 200, "{page}");
    let household = api.register();
    let one_household = api.mint(json!({ "role": "administrator", "household": household.id }));
    let (status, _, page) = scrape(&api, &one_household);
    assert_eq!(
        status, 403,
        "a household-restricted token sees no fleet: {page}"
    );
    let (status, _, _) = {
        let response = api.handle(
            &Request::new(Method::Post, "/api/management/metrics")
                .with_header("authorization", &format!("Bearer {ADMIN_TOKEN}")),
        );
        (response.status, (), ())
    };
    assert_eq!(status, 405);
}
