//! Consent natively: every step from every state answers as `wattlet_survey::ConsentState`
//! says, stores what it says, and a step raced by another request is made once.
#![cfg(not(target_family = "wasm"))]

mod support;

use support::{Api, assert_refused};
use wattlet_data_api::Method;
use wattlet_survey::{ConsentState, RefusalCode};

type Step = fn(ConsentState) -> Result<ConsentState, wattlet_survey::consent::TransitionError>;

#[test]
fn every_step_from_every_state_follows_the_state_machine() {
    let api = Api::new();
    let steps: [(Method, Step); 2] = [
        (Method::Post, ConsentState::grant),
        (Method::Delete, ConsentState::revoke),
    ];
    for from in ConsentState::ALL {
        for (method, step) in &steps {
            let household = api.register();
            api.set_consent(&household, from);
            let reply = api.as_device(&household, method.clone(), "/api/household/consent", None);
            let stored = api.consent_state(&household);
            match step(from) {
                Ok(to) => {
                    assert_eq!(reply.0, 200, "{from} {method}: {}", reply.1);
                    assert_eq!(reply.1["state"], to.as_str(), "{from} {method}");
                    assert_eq!(stored, to.as_str(), "{from} {method}");
                    let stamp = if to == ConsentState::Granted {
                        "granted_at"
                    } else {
                        "revoked_at"
                    };
                    assert!(reply.1[stamp].is_string(), "{from} {method}: {}", reply.1);
                }
                Err(refused) => {
                    assert_refused(&reply, RefusalCode::from(refused));
                    assert_eq!(reply.1["error"], refused.to_string());
                    assert_eq!(stored, from.as_str(), "{from} {method}: unchanged");
                }
            }
            // Reading the consent says the same as the database.
            let (status, body) =
                api.as_device(&household, Method::Get, "/api/household/consent", None);
            assert_eq!(status, 200);
            assert_eq!(body["state"], stored.as_str());
        }
    }
}

#[test]
fn a_step_raced_by_another_request_is_made_once() {
    let api = Api::new();
    for (method, raced_to, code) in [
        // Another request granted between this grant's check and its UPDATE.
        (
            Method::Post,
            ConsentState::Granted,
            RefusalCode::ConsentAlreadyGranted,
        ),
        // Another request revoked first.
        (
            Method::Delete,
            ConsentState::Revoked,
            RefusalCode::ConsentRevoked,
        ),
    ] {
        let household = api.register();
        if method == Method::Delete {
            api.set_consent(&household, ConsentState::Granted);
        }
        let id = household.id.clone();
        let state = raced_to.as_str();
        api.before_each_statement(move |sql, connection| {
            if sql.trim_start().starts_with("UPDATE consent SET state") {
                connection
                    .execute(
                        "UPDATE consent SET state = ?1 WHERE household = ?2",
                        (state, &id),
                    )
                    .expect("the other request");
            }
        });
        let reply = api.as_device(&household, method, "/api/household/consent", None);
        api.no_hook();
        assert_refused(&reply, code);
        assert_eq!(api.consent_state(&household), raced_to.as_str());
    }
}

#[test]
fn the_schema_holds_exactly_the_states_of_the_state_machine() {
    let api = Api::new();
    let household = api.register();
    // Registration starts not granted.
    assert_eq!(api.consent_state(&household), "not_granted");
    let listed = api.admin(Method::Get, "/api/management/household", None);
    assert_eq!(listed.1["households"][0]["consent"]["state"], "not_granted");
    // The CHECK constraint refuses any other name.
    let refused = api.storage_refuses("UPDATE consent SET state = 'maybe'");
    assert!(refused.contains("CHECK constraint failed"), "{refused}");
    for state in ConsentState::ALL {
        api.set_consent(&household, state);
        assert_eq!(api.consent_state(&household), state.as_str());
    }
    let reply = api.admin(
        Method::Get,
        &format!("/api/management/household/{}", household.id),
        None,
    );
    assert_eq!(reply.1["consent"]["state"], "revoked", "{}", reply.1);
}
