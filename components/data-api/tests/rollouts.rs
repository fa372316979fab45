//! Staged rollouts natively: administrators start and steer them, devices learn what they may
//! install by their cohort, and a stage whose devices roll back too often pauses by itself.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::{Value, json};
use support::{Api, Household, Reply, assert_refused};
use wattlet_data_api::Method;
use wattlet_data_api::rollout::{ALL, bucket};
use wattlet_survey::RefusalCode;

fn start(api: &Api, body: Value) -> Reply {
    api.admin(Method::Post, "/api/management/rollout", Some(&body))
}

fn act(api: &Api, id: &str, action: &str) -> Reply {
    api.admin(
        Method::Post,
        &format!("/api/management/rollout/{id}/{action}"),
        None,
    )
}

fn admitted(api: &Api, household: &Household) -> Value {
    let (status, body) = api.as_device(
        household,
        Method::Get,
        "/api/household/measurement_device/rollout",
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["components"].clone()
}

fn report(api: &Api, household: &Household, version: &str, outcome: &str) -> Reply {
    api.as_device(
        household,
        Method::Post,
        "/api/household/measurement_device/rollout",
        Some(&json!({
            "component": "meter-parser", "version": version, "outcome": outcome,
            "reason": (outcome == "rolled_back").then_some("health check: readings differ"),
        })),
    )
}

fn rollout(api: &Api, id: &str) -> Value {
    let (status, body) = api.admin(Method::Get, "/api/management/rollout", None);
    assert_eq!(status, 200, "{body}");
    body["rollouts"]
        .as_array()
        .expect("rollouts")
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .expect("the rollout is listed")
}

#[test]
fn plans_are_checked_and_a_version_has_one_rollout() {
    let api = Api::new();
    for (body, needle) in [
        (
            json!({"component": "Meter Parser", "version": "1.0.0"}),
            "component",
        ),
        (
            json!({"component": "meter-parser", "version": "1.0"}),
            "semantic version",
        ),
        (
            json!({"component": "meter-parser", "version": "1.0.0", "stages": [50, 5, 100]}),
            "strictly increasing",
        ),
        (
            json!({"component": "meter-parser", "version": "1.0.0", "stages": [5, 50]}),
            "ending at 100",
        ),
        (
            json!({"component": "meter-parser", "version": "1.0.0", "max_failure_rate": 2}),
            "max_failure_rate",
        ),
        (
            json!({"component": "meter-parser", "version": "1.0.0", "min_reports": 0}),
            "min_reports",
        ),
        (
            json!({"component": "meter-parser", "version": "1.0.0", "percent": 5}),
            "unknown field",
        ),
    ] {
        let (status, reply) = start(&api, body.clone());
        assert_eq!(status, 400, "{body}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{body}: {error}");
    }

    let (status, created) = start(
        &api,
        json!({"component": "meter-parser", "version": "1.4.0"}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["stages"], json!([5, 50, 100]));
    assert_eq!(created["state"], "active");
    assert_eq!(created["stage_percent"], 5);
    let again = start(
        &api,
        json!({"component": "meter-parser", "version": "1.4.0"}),
    );
    assert_refused(&again, RefusalCode::Conflict);

    // Devices and researchers neither start nor list rollouts.
    let household = api.register();
    let researcher = api.mint(json!({"role": "researcher"}));
    let by_researcher = api.with_token(
        &researcher,
        Method::Post,
        "/api/management/rollout",
        Some(&json!({"component": "upload", "version": "1.0.0"})),
    );
    assert_eq!(by_researcher.0, 403, "{}", by_researcher.1);
    let by_device = api.as_device(&household, Method::Get, "/api/management/rollout", None);
    assert!(matches!(by_device.0, 401 | 403), "{}", by_device.1);
}

#[test]
fn devices_are_admitted_by_cohort_and_a_failing_stage_pauses() {
    let api = Api::new();
    let households: Vec<Household> = (0..40).map(|_| api.register()).collect();
    let (status, created) = start(
        &api,
        json!({"component": "meter-parser", "version": "1.4.0", "stages": [50, 100],
               "max_failure_rate": 0.25, "min_reports": 4}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();

    // Exactly the devices in the first half of the component's buckets.
    let (first, rest): (Vec<&Household>, Vec<&Household>) = households
        .iter()
        .partition(|h| bucket("meter-parser", &h.device) < ALL / 2);
    assert!(
        first.len() >= 5 && rest.len() >= 5,
        "{} / {}",
        first.len(),
        rest.len()
    );
    for h in &first {
        assert_eq!(
            admitted(&api, h)["meter-parser"],
            json!({"version": "1.4.0", "rollout": id})
        );
    }
    for h in &rest {
        assert_eq!(admitted(&api, h), json!({}), "{}", h.device);
    }

    // Reports: one failure in four is at the limit (25 %), a second one is over it.
    for (h, outcome) in first
        .iter()
        .zip(["committed", "committed", "rolled_back", "committed"])
    {
        assert_eq!(report(&api, h, "1.4.0", outcome).0, 204);
    }
    assert_eq!(rollout(&api, &id)["state"], "active");
    assert_eq!(report(&api, first[4], "1.4.0", "rolled_back").0, 204);
    let paused = rollout(&api, &id);
    assert_eq!(paused["state"], "paused", "{paused}");
    assert_eq!(
        paused["reason"],
        "2 of 5 devices in this stage rolled back (40 % > 25 %)"
    );
    assert_eq!(
        paused["cohorts"],
        json!([{"up_to_percent": 50, "committed": 3, "rolled_back": 2},
               {"up_to_percent": 100, "committed": 0, "rolled_back": 0}])
    );
    // Paused: nobody is admitted, and it cannot advance before an administrator resumes it.
    assert_eq!(admitted(&api, first[0]), json!({}));
    assert_refused(&act(&api, &id, "advance"), RefusalCode::Conflict);
    // A device's later report replaces its earlier one.
    assert_eq!(report(&api, first[4], "1.4.0", "committed").0, 204);
    assert_eq!(rollout(&api, &id)["cohorts"][0]["rolled_back"], 1);

    let (status, resumed) = act(&api, &id, "resume");
    assert_eq!(
        (status, &resumed["state"]),
        (200, &json!("active")),
        "{resumed}"
    );
    let (status, advanced) = act(&api, &id, "advance");
    assert_eq!(advanced["stage_percent"], 100, "{status} {advanced}");
    assert_eq!(admitted(&api, rest[0])["meter-parser"]["version"], "1.4.0");
    let (_, complete) = act(&api, &id, "advance");
    assert_eq!(complete["state"], "complete");
    assert_refused(&act(&api, &id, "cancel"), RefusalCode::Conflict);
    assert_refused(
        &act(&api, "00000000-0000-4000-8000-000000000000", "resume"),
        RefusalCode::NotFound,
    );
}

#[test]
fn the_newest_admitted_version_wins_and_cancelled_ones_are_not_offered() {
    let api = Api::new();
    let household = api.register();
    let everyone = |version: &str| {
        let (status, body) = start(
            &api,
            json!({"component": "meter-parser", "version": version, "stages": [100]}),
        );
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_owned()
    };
    everyone("1.10.0");
    let newer = everyone("1.11.0-rc.1");
    everyone("1.9.3");
    // Semantic order, not text order: 1.11.0-rc.1 > 1.10.0 > 1.9.3.
    assert_eq!(
        admitted(&api, &household)["meter-parser"]["version"],
        "1.11.0-rc.1"
    );
    assert_eq!(act(&api, &newer, "cancel").0, 200);
    assert_eq!(
        admitted(&api, &household)["meter-parser"]["version"],
        "1.10.0"
    );

    // Reports name a rolled-out version and say what happened.
    assert_refused(
        &report(&api, &household, "2.0.0", "committed"),
        RefusalCode::NotFound,
    );
    let (status, body) = report(&api, &household, "1.10.0", "installed");
    assert_eq!(status, 400, "{body}");
    let long = "x".repeat(600);
    let (status, body) = api.as_device(
        &household,
        Method::Post,
        "/api/household/measurement_device/rollout",
        Some(&json!({"component": "meter-parser", "version": "1.10.0",
                     "outcome": "rolled_back", "reason": long})),
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn anonymization_renames_the_device_in_its_outcomes() {
    let api = Api::new();
    let household = api.register();
    let (status, created) = start(
        &api,
        json!({"component": "meter-parser", "version": "1.4.0", "stages": [100]}),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(report(&api, &household, "1.4.0", "committed").0, 204);
    api.set_consent(&household, wattlet_survey::ConsentState::Granted);
    let (status, body) = api.as_device(&household, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        api.count(
            "SELECT COUNT(*) FROM rollout_outcome WHERE device = ?1",
            [&household.device]
        ),
        0,
        "the device's id is gone from the outcomes"
    );
    assert_eq!(api.count("SELECT COUNT(*) FROM rollout_outcome", []), 1);
    assert_eq!(
        rollout(&api, created["id"].as_str().expect("id"))["cohorts"][0]["committed"],
        1
    );
}
