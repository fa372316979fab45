//! The admin token, device revocation, participant endpoints without a certificate, routing and
//! JSON errors, over plain HTTP.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrative_endpoints_need_the_admin_token() {
    let reply = plain()
        .send(Method::GET, "/api/management/household", b"", &[])
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert!(reply.headers.contains_key("www-authenticate"));
    assert_refused(&reply, RefusalCode::InvalidToken, "bearer token");
    for value in [
        "Bearer wrong",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        ADMIN_TOKEN,
    ] {
        let reply = plain()
            .send(
                Method::GET,
                "/api/management/household",
                b"",
                &[("authorization", value)],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{value}: {}",
            reply.text
        );
    }
    let token_prefix = format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let reply = plain()
        .send(
            Method::POST,
            "/api/management/household",
            b"{}",
            &[("authorization", &token_prefix)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let reply = plain()
        .send(Method::POST, "/api/management/device/x/revoke", b"", &[])
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    // The scheme is case-insensitive.
    let reply = plain()
        .send(
            Method::GET,
            "/api/management/household",
            b"",
            &[("authorization", &format!("bearer {ADMIN_TOKEN}"))],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device() {
    let household = register().await;
    let path = format!("/api/management/device/{}/revoke", household.device);
    let reply = admin(Method::POST, &path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["device"], household.device.as_str());
    let revoked_at = reply.body["revoked_at"]
        .as_str()
        .expect("revoked_at")
        .to_owned();
    // Again: the same answer, the first time kept.
    let again = admin(Method::POST, &path, None).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["revoked_at"], revoked_at.as_str());
    let listed = household_in_listing(&household.id).await;
    assert_eq!(listed["devices"][0]["revoked_at"], revoked_at.as_str());
    for unknown in ["no-such-device", "bad%20id"] {
        let reply = admin(
            Method::POST,
            &format!("/api/management/device/{unknown}/revoke"),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    }
    let reply = admin(Method::GET, &path, None).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_endpoints_need_a_client_certificate() {
    let meter = uuid4();
    let read = format!("/api/household/meter/{meter}/measurement");
    let endpoints = [
        (Method::GET, "/api/account"),
        (Method::GET, "/api/household"),
        (Method::GET, "/api/household/pv_system"),
        (Method::GET, "/api/household/consent"),
        (Method::POST, "/api/household/consent"),
        (Method::DELETE, "/api/household/consent"),
        (Method::GET, "/api/household/measurement_device"),
        (Method::PUT, "/api/household/measurement_device/status"),
        (Method::GET, "/api/household/meter"),
        (Method::POST, "/api/household/meter/measurement"),
        (Method::GET, read.as_str()),
    ];
    for (method, path) in endpoints {
        let reply = plain().send(method.clone(), path, b"{}", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            reply.text
        );
        assert_eq!(reply.body["code"], "not_authenticated", "{}", reply.text);
        assert!(!reply.headers.contains_key("www-authenticate"), "{path}");
        // The admin token is no participant credential.
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let reply = plain()
            .send(method.clone(), path, b"{}", &[("authorization", &bearer)])
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            reply.text
        );
        // Uploads and status reports need the certificate whatever token comes along.
        assert!(
            ["invalid_token", "not_authenticated"]
                .contains(&reply.body["code"].as_str().unwrap_or_default()),
            "{method} {path}: {}",
            reply.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_health_and_json_errors() {
    let reply = plain().send(Method::GET, "/api/health", b"", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["database"], "ok");
    assert_eq!(reply.body["schema_version"], 11);
    let reply = plain().send(Method::GET, "/api/version", b"", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["version"].is_string());
    for path in [
        "/api/nothing",
        "/api/household/consent/extra",
        "/api/",
        "/api/household/meter//measurement",
    ] {
        let reply = plain().send(Method::GET, path, b"", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.body["error"], "not found", "{path}");
        assert_eq!(reply.body["code"], "not_found", "{path}");
    }
    let cases = [
        (Method::PUT, "/api/household/consent", "GET, POST, DELETE"),
        (Method::DELETE, "/api/management/household", "GET, POST"),
        (Method::GET, "/api/household/meter/measurement", "POST"),
        (Method::POST, "/api/health", "GET"),
        (Method::POST, "/api/household", "GET"),
        (Method::DELETE, "/api/household/pv_system", "GET"),
        (
            Method::GET,
            "/api/household/measurement_device/status",
            "PUT",
        ),
    ];
    for (method, path, allow) in cases {
        let reply = plain().send(method.clone(), path, b"", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.headers["allow"], allow, "{method} {path}");
        assert_eq!(reply.body["error"], "method not allowed");
        assert_eq!(reply.body["code"], "method_not_allowed");
    }
}
