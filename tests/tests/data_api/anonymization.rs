//! Revocation anonymizes a household at once and leaves no trace; NUTS-3 densities set the
//! displacement.

use super::*;

/// Every file of the mutual-TLS server's state directory (the database, its WAL and index).
fn state_files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut dirs = vec![tls_api().dir.path().join("state")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("state dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read state file");
                files.push((path, bytes));
            }
        }
    }
    files
}

/// The needles (with what each is) found anywhere in the state files.
fn traces_in_state(needles: &[(&str, Vec<u8>)]) -> Vec<String> {
    let files = state_files();
    assert!(
        files
            .iter()
            .any(|(p, _)| p.to_string_lossy().ends_with("-wal")),
        "the database runs in WAL mode: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let mut found = Vec::new();
    for (path, bytes) in &files {
        for (what, needle) in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found.push(format!("{what} in {}", path.display()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_anonymizes_at_once_and_leaves_no_trace() {
    let tag = unique("anon");
    let name = format!("Hildegard Verborgen {tag}");
    let email = format!("{tag}@example.org");
    let street = format!("Geheimgasse {tag}");
    // Coordinates no other test uses, with all the digits an f64 holds.
    let salt = (std::process::id() % 9973) as f64 * 1e-9;
    let (latitude, longitude) = (52.123_456_789_012 + salt, 13.987_654_321_098 - salt);
    let device = unique("dev");
    let reply = admin_as(
        tls_admin(),
        Method::POST,
        "/api/management/household",
        Some(&json!({
            "name": name, "email": email, "device": device,
            "meters": [
                { "type": "ELECTRICITY", "model": "MT681" },
                { "type": "PV-GENERATION", "model": "EASY", "pv_systems": [0, 1] },
            ],
            // No density is known for this region: ρ = 0, the largest displacement.
            "location": { "latitude": latitude, "longitude": longitude, "nuts3": "DE999" },
            "address": { "street": street, "house_number": "7a", "postal_code": "10115",
                         "city": "Berlin", "country": "DE" },
            "metadata": { "children": 2, "adults": 2, "employed_adults": 1,
                          "ev_charger": true, "heat_pump": false, "home_battery": true },
            "pv_systems": [
                { "nominal_power_kwp": 9.86, "azimuth": 185.5, "tilt": 32.0,
                  "installation_date": "2019-06-14" },
                { "nominal_power_kwp": 2.5, "azimuth": 90.0, "tilt": 15.0,
                  "installation_date": "2021-12-31" },
            ],
        })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let meter = reply.body["meters"][0]["uuid"]
        .as_str()
        .expect("meter")
        .to_owned();
    assert_eq!(
        reply.body["meters"][1]["pv_systems"], reply.body["pv_systems"],
        "{}",
        reply.text
    );
    let client = device_client(&device, &email);

    let mut needles: Vec<(&str, Vec<u8>)> = vec![
        ("name", name.clone().into_bytes()),
        ("email", email.clone().into_bytes()),
        ("street", street.clone().into_bytes()),
    ];
    for (what, value) in [("latitude", latitude), ("longitude", longitude)] {
        // SQLite stores a REAL as 8 big-endian bytes; also look for other encodings.
        needles.push((what, value.to_be_bytes().to_vec()));
        needles.push((what, value.to_le_bytes().to_vec()));
        needles.push((what, value.to_string().into_bytes()));
    }

    let reply = client.call(Method::GET, "/api/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"], json!({ "name": name, "email": email }));
    assert_eq!(reply.body["address"]["street"], street.as_str());
    // Stored exactly as sent, to the last bit (the needles below are the sent values).
    assert_eq!(reply.body["location"]["latitude"], latitude);
    assert_eq!(reply.body["location"]["longitude"], longitude);
    assert_eq!(reply.body["metadata"]["ev_charger"], true);
    // The scan finds what is there: before revocation, every needle is in the files.
    let before = traces_in_state(&needles);
    for what in ["name", "email", "street", "latitude", "longitude"] {
        assert!(
            before.iter().any(|f| f.starts_with(what)),
            "{what} not found before revocation: {before:?}"
        );
    }

    grant(&client).await;
    let reading = measurement(&meter, "2026-11-23T16:00:00Z", 1.5);
    assert_eq!(
        upload(&client, std::slice::from_ref(&reading)).await.status,
        StatusCode::OK
    );
    let reply = client
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // At once: the answer to the revocation came after the anonymization.
    let after = traces_in_state(&needles);
    assert!(
        after.is_empty(),
        "identifying data left after revocation: {after:?}"
    );
    let reply = client.call(Method::GET, "/api/household", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["user"], Value::Null, "{}", reply.text);
    assert_eq!(reply.body["address"], Value::Null, "{}", reply.text);
    let account = client.call(Method::GET, "/api/account", None).await;
    assert_eq!(account.body["user"], Value::Null, "{}", account.text);
    assert_eq!(reply.body["consent"]["state"], "revoked");
    assert_eq!(reply.body["metadata"]["children"], 2, "metadata stays");
    let location = &reply.body["location"];
    let displacement = &location["displacement"];
    assert_eq!(displacement["density_unknown"], true, "{location}");
    assert_eq!(displacement["population_density_per_km2"], 0.0);
    let (d_min, d_max) = (
        wattlet_anonymizer::d_min_m(0.0),
        wattlet_anonymizer::d_max_m(0.0),
    );
    assert_eq!(displacement["d_min_m"], d_min);
    assert_eq!(displacement["d_max_m"], d_max);
    let moved = wattlet_anonymizer::Location {
        latitude: location["latitude"].as_f64().expect("latitude"),
        longitude: location["longitude"].as_f64().expect("longitude"),
    };
    let distance = wattlet_anonymizer::haversine_m(
        wattlet_anonymizer::Location {
            latitude,
            longitude,
        },
        moved,
    );
    assert!(
        (d_min - 1e-3..=d_max + 1e-3).contains(&distance),
        "moved {distance} m, not within [{d_min}, {d_max}]"
    );
    let stored = displacement["distance_m"].as_f64().expect("distance_m");
    assert!((distance - stored).abs() < 1e-3, "{distance} vs {stored}");

    let reply = client
        .call(Method::GET, "/api/household/pv_system", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut systems: Vec<(f64, f64, f64, String)> = reply.body["pv_systems"]
        .as_array()
        .expect("pv_systems")
        .iter()
        .map(|pv| {
            (
                pv["nominal_power_kwp"].as_f64().expect("kWp"),
                pv["azimuth"].as_f64().expect("azimuth"),
                pv["tilt"].as_f64().expect("tilt"),
                pv["installation_date"].as_str().expect("date").to_owned(),
            )
        })
        .collect();
    systems.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        systems,
        [
            (3.0, 90.0, 15.0, "2021-01-01".to_owned()),
            (10.0, 185.5, 32.0, "2019-01-01".to_owned()),
        ]
    );

    // A second revocation is refused and changes nothing: the point is never redrawn.
    let reply = client
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "already revoked");
    let again = client.call(Method::GET, "/api/household", None).await;
    assert_eq!(again.body["location"], *location);
    // The device still learns that the consent is revoked, and its uploads are refused.
    let reply = client
        .call(Method::GET, "/api/household/consent", None)
        .await;
    assert_eq!(reply.body["state"], "revoked", "{}", reply.text);
    let late = measurement(&meter, "2026-11-23T16:15:00Z", 1.6);
    let reply = upload(&client, &[late]).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "consent revoked");
    // Measurements stay, for anonymous processing.
    assert_eq!(uuids(&read(&client, &meter, "").await), [uuid_of(&reading)]);
    let listed = household_listed_on(tls_admin(), &reply_household(&client).await).await;
    assert_eq!(listed["user"], Value::Null, "{listed}");
    assert!(traces_in_state(&needles).is_empty());
}

/// Registers a household located in `nuts3` on the mutual-TLS server, grants and revokes its
/// consent; returns the displacement its location got.
async fn revoke_in_region(nuts3: &str) -> Value {
    let device = unique("dev");
    let email = format!("{}@example.org", unique("region"));
    let reply = admin_as(
        tls_admin(),
        Method::POST,
        "/api/management/household",
        Some(&json!({
            "name": "R", "email": email, "device": device,
            "meters": [{ "type": "ELECTRICITY", "model": "EHZ" }],
            "location": { "latitude": 50.0, "longitude": 8.0, "nuts3": nuts3 },
        })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let client = device_client(&device, &email);
    grant(&client).await;
    let reply = client
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = client.call(Method::GET, "/api/household", None).await;
    reply.body["location"]["displacement"].clone()
}

async fn import_regions(csv: &str) -> Reply {
    tls_admin()
        .bearer(ADMIN_TOKEN)
        .send(
            Method::PUT,
            "/api/management/nuts3_region",
            csv.as_bytes(),
            &[("content-type", "text/csv")],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_nuts3_densities_set_the_displacement() {
    // A refused import stores none of its rows.
    for (csv, needle) in [
        (
            "code,population_density_per_km2\nDEB11,10\nDEB12,-1\n",
            "line 3",
        ),
        (
            "code,population_density_per_km2\nDEB11,10\nD-B12,3\n",
            "line 3: code",
        ),
        ("code,population_density_per_km2\nDEB11,ten\n", "line 2"),
        ("code,density\nDEB11,10\n", "line 2"),
        ("code,population_density_per_km2\n", "no regions"),
        ("", "no regions"),
    ] {
        let reply = import_regions(csv).await;
        assert_refused(&reply, RefusalCode::InvalidRequest, needle);
    }
    let reply = tls_admin()
        .send(
            Method::PUT,
            "/api/management/nuts3_region",
            b"code,population_density_per_km2\nDEB11,10\n",
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let unknown = revoke_in_region("DEB11").await;
    assert_eq!(unknown["density_unknown"], true, "{unknown}");

    // Codes are case-insensitive, extra columns ignored, a repeated code keeps its last value.
    let csv = "name, code ,population_density_per_km2\n\
               Darmstadt,dea1c,100\nFrankfurt,DE712,3065.2\nDarmstadt,DEA1C,2500.5\n";
    let reply = import_regions(csv).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({ "imported": 3 }));
    let known = revoke_in_region("DEA1C").await;
    assert_eq!(known["density_unknown"], false, "{known}");
    assert_eq!(known["population_density_per_km2"], 2500.5);
    assert_eq!(known["d_min_m"], wattlet_anonymizer::d_min_m(2500.5));
    assert_eq!(known["d_max_m"], wattlet_anonymizer::d_max_m(2500.5));
    let distance = known["distance_m"].as_f64().expect("distance_m");
    assert!(
        (wattlet_anonymizer::d_min_m(2500.5)..=wattlet_anonymizer::d_max_m(2500.5))
            .contains(&distance),
        "{known}"
    );
}

/// The household id the device belongs to.
async fn reply_household(client: &Client) -> String {
    let reply = client.call(Method::GET, "/api/household", None).await;
    reply.body["household"]
        .as_str()
        .expect("household")
        .to_owned()
}
