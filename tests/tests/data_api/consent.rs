//! Devices and consent over mutual TLS: consent goes one way, unknown and revoked devices,
//! status reports.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_goes_one_way_each_step_once() {
    let (household, device) = register_device().await;
    let path = "/api/household/consent";
    let reply = device.call(Method::GET, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({ "state": "not_granted", "granted_at": null, "revoked_at": null })
    );
    // Not granted yet: nothing to revoke.
    let reply = device.call(Method::DELETE, path, None).await;
    assert_refused(&reply, RefusalCode::ConsentNotGranted, "never granted");

    let reply = device.call(Method::POST, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["state"], "granted");
    let granted_at = reply.body["granted_at"]
        .as_str()
        .expect("granted_at")
        .to_owned();
    assert!(granted_at.ends_with('Z'), "{granted_at}");
    assert_eq!(reply.body["revoked_at"], Value::Null);
    // Granting twice is refused and changes nothing.
    let reply = device.call(Method::POST, path, None).await;
    assert_refused(
        &reply,
        RefusalCode::ConsentAlreadyGranted,
        "already granted",
    );
    let reply = device.call(Method::GET, path, None).await;
    assert_eq!(reply.body["granted_at"], granted_at.as_str());

    let reply = device.call(Method::DELETE, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["state"], "revoked");
    assert_eq!(reply.body["granted_at"], granted_at.as_str());
    let revoked_at = reply.body["revoked_at"]
        .as_str()
        .expect("revoked_at")
        .to_owned();
    // Revoking twice, and granting again after revocation, are refused.
    let reply = device.call(Method::DELETE, path, None).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "already revoked");
    let reply = device.call(Method::POST, path, None).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "revoked");
    let reply = device.call(Method::GET, path, None).await;
    assert_eq!(
        reply.body,
        json!({ "state": "revoked", "granted_at": granted_at, "revoked_at": revoked_at })
    );
    let listed = household_listed_on(tls_admin(), &household.id).await;
    assert_eq!(listed["consent"]["state"], "revoked", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_mismatched_and_revoked_devices_get_403() {
    let (household, device) = register_device().await;
    grant(&device).await;
    let path = "/api/household/consent";
    // A certificate from the right CA for a device nobody registered.
    let stranger = device_client(&unique("stranger"), &household.email);
    let reply = stranger.call(Method::GET, path, None).await;
    assert_eq!(
        reply.body,
        json!({ "error": "unknown device", "code": "unknown_device" })
    );
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    // The registered device id with another participant's email.
    let impostor = device_client(&household.device, "mallory@example.org");
    let reply = impostor.call(Method::GET, path, None).await;
    assert_refused(&reply, RefusalCode::UnknownDevice, "email does not match");
    // Emails are compared case-insensitively.
    let shouting = device_client(&household.device, &household.email.to_uppercase());
    let reply = shouting.call(Method::GET, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let revoke = format!("/api/management/device/{}/revoke", household.device);
    let reply = admin_as(tls_admin(), Method::POST, &revoke, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let batch = [measurement(
        &household.meters[0],
        "2026-11-23T16:00:00Z",
        1.0,
    )];
    let reply = upload(&device, &batch).await;
    assert_refused(&reply, RefusalCode::DeviceRevoked, "device revoked");
    for (method, path) in [
        (Method::GET, path),
        (Method::GET, "/api/household/meter"),
        (Method::DELETE, path),
    ] {
        let reply = device.call(method, path, None).await;
        assert_refused(&reply, RefusalCode::DeviceRevoked, "device revoked");
    }
    // The revoked device's consent was not touched by its refused DELETE.
    let listed = household_listed_on(tls_admin(), &household.id).await;
    assert_eq!(listed["consent"]["state"], "granted", "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_status_reports_show_in_the_admin_listing() {
    let (household, device) = register_device().await;
    let path = "/api/household/measurement_device/status";
    let report = json!({
        "components": { "meter-parser": "0.1.0", "upload": "0.1.0", "consent": "0.1.0" },
        "last_measurement": "2026-11-23T17:00:00+01:00",
        "meters": [
            { "uuid": household.meters[0], "locked": true, "missing": ["0100010700ff"] },
            { "uuid": household.meters[1], "locked": false, "missing": [] },
        ],
    });
    // Status reports need no consent: devices report health before they may measure.
    let reply = device.call(Method::PUT, path, Some(&report)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);

    let listed = household_listed_on(tls_admin(), &household.id).await;
    let status = &listed["devices"][0];
    assert_eq!(
        status["component_versions"],
        json!({ "meter-parser": "0.1.0", "upload": "0.1.0", "consent": "0.1.0" })
    );
    assert_eq!(status["last_measurement"], "2026-11-23T16:00:00Z");
    assert!(status["last_activity"].is_string(), "{listed}");
    let meters = listed["meters"].as_array().expect("meters");
    let meter = |uuid: &str| {
        meters
            .iter()
            .find(|m| m["uuid"] == uuid)
            .cloned()
            .expect("meter listed")
    };
    let locked = meter(&household.meters[0]);
    assert_eq!(locked["status"]["locked"], true, "{locked}");
    assert_eq!(locked["status"]["missing"], json!(["0100010700ff"]));
    assert!(locked["status"]["reported_at"].is_string());
    assert_eq!(meter(&household.meters[1])["status"]["locked"], false);

    // The participant sees the same about their own device and meters.
    let reply = device
        .call(Method::GET, "/api/household/measurement_device", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["devices"][0]["id"], household.device.as_str());
    assert_eq!(
        reply.body["devices"][0]["component_versions"]["upload"],
        "0.1.0"
    );
    let reply = device.call(Method::GET, "/api/household/meter", None).await;
    assert_eq!(
        reply.body["meters"].as_array().map(Vec::len),
        Some(2),
        "{}",
        reply.text
    );

    // An older last measurement does not move it back; null leaves it.
    let older = json!({ "components": { "meter-parser": "0.2.0" }, "last_measurement": "2026-11-01T00:00:00Z" });
    let reply = device.call(Method::PUT, path, Some(&older)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let listed = household_listed_on(tls_admin(), &household.id).await;
    assert_eq!(
        listed["devices"][0]["last_measurement"],
        "2026-11-23T16:00:00Z"
    );
    assert_eq!(
        listed["devices"][0]["component_versions"],
        json!({ "meter-parser": "0.2.0" })
    );

    for bad in [
        json!({ "last_measurement": "today" }),
        json!({ "components": { "": "1" } }),
        json!({ "meters": [{ "uuid": household.meters[0], "locked": "yes" }] }),
        json!({ "meters": [{ "uuid": household.meters[0], "locked": true, "missing": ["1.7.0"] }] }),
        json!({ "meters": [{ "uuid": "x", "locked": true }] }),
    ] {
        let reply = device.call(Method::PUT, path, Some(&bad)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text
        );
    }
}
