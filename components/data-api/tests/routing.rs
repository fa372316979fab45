//! Routing, service endpoints and failures natively: JSON errors with codes, `allow` on 405,
//! `www-authenticate` on 401 `invalid_token`, a database that cannot open.
#![cfg(not(target_family = "wasm"))]

mod support;

use support::{Api, assert_refused};
use wattlet_data_api::anonymizer::{Anonymized, Anonymizer, Draw, Registration};
use wattlet_data_api::{
    Method, Request, Rows, Secrets, Services, Storage, StorageError, Value, handle,
};
use wattlet_survey::RefusalCode;

#[test]
fn routes_methods_and_service_endpoints() {
    let api = Api::new();
    let (status, body) = api.send(Method::Get, "/api/health", &[], None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["schema_version"], 11);
    let (status, body) = api.send(Method::Get, "/api/version", &[], None);
    assert_eq!((status, body["version"].is_string()), (200, true));
    for path in [
        "/api",
        "/api/",
        "/api/nothing",
        "/other",
        "/api/worker/meter//power",
    ] {
        assert_refused(
            &api.send(Method::Get, path, &[], None),
            RefusalCode::NotFound,
        );
    }
    let response = api.handle(&Request::new(Method::Delete, "/api/household/meter"));
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET"));
    assert_eq!(response.json()["code"], "method_not_allowed");
    let response = api.handle(&Request::new(Method::Get, "/api/management/household"));
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["code"], "invalid_token");
    assert!(response.header("www-authenticate").is_some());
    assert_eq!(response.header("content-type"), Some("application/json"));
}

struct Broken;

impl Storage for Broken {
    fn open(&self) -> Result<(), StorageError> {
        Err(StorageError::AccessDenied)
    }

    fn execute(&self, _: &str, _: &[Value]) -> Result<Rows, StorageError> {
        Err(StorageError::AccessDenied)
    }
}

struct NoSecret;

impl Secrets for NoSecret {
    fn admin_token(&self) -> Result<String, String> {
        Err("undefined".to_owned())
    }

    fn client_identity_key(&self) -> Result<String, String> {
        Err("undefined".to_owned())
    }

    fn key_encryption_key(&self) -> Result<String, String> {
        Err("undefined".to_owned())
    }

    fn plaintext_results(&self) -> Option<String> {
        None
    }
}

impl Anonymizer for NoSecret {
    fn anonymize(&self, _: &Registration, _: Draw) -> Result<Anonymized, String> {
        Err("none".to_owned())
    }
}

#[test]
fn failures_are_500_internal_and_health_says_503() {
    let api = Api::new();
    let services = Services {
        storage: &Broken,
        secrets: &api.secrets,
        anonymizer: &NoSecret,
        policies: &api.policies,
    };
    let health = handle(&Request::new(Method::Get, "/api/health"), &services);
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["database"], "database error: access-denied");
    // The version and routing answer without the database.
    let version = handle(&Request::new(Method::Get, "/api/version"), &services);
    assert_eq!(version.status, 200);
    let missing = handle(&Request::new(Method::Get, "/api/nothing"), &services);
    assert_eq!(missing.status, 404);
    let listing = handle(
        &Request::new(Method::Get, "/api/management/household"),
        &services,
    );
    assert_eq!(listing.status, 500);
    assert_eq!(listing.json()["code"], "internal");
    assert_eq!(listing.json()["error"], "internal database error");

    // A database, but no admin_token: management answers 500 `internal`, never 401.
    let services = Services {
        storage: &api.storage,
        secrets: &NoSecret,
        anonymizer: &NoSecret,
        policies: &api.policies,
    };
    let request = Request::new(Method::Get, "/api/management/household")
        .with_header("Authorization", "Bearer anything");
    let response = handle(&request, &services);
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["code"], "internal");
}
