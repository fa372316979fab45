//! Revocation anonymizes a household at once and leaves no trace; NUTS-3 densities set the
//! displacement.

use base64::Engine as _;

use super::*;

/// The needles (with what each is) found anywhere in the state files of the server with state
/// in `state` (the database, its WAL and index), which must run in WAL mode.
fn traces_in(state: &Path, needles: &[Needle<'_>]) -> Vec<String> {
    let files = scan::files(state);
    assert!(
        files.iter().any(|(name, _)| name.ends_with("-wal")),
        "the database runs in WAL mode: {:?}",
        files.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    scan::traces(&[state], needles)
}

/// The needles found in the mutual-TLS server's state files.
fn traces_in_state(needles: &[Needle<'_>]) -> Vec<String> {
    traces_in(&tls_api().dir.path().join("state"), needles)
}

/// How a coordinate may be written down: a REAL's 8 bytes either way, its text.
fn coordinate_needles<'a>(what: &'a str, value: f64) -> [Needle<'a>; 3] {
    [
        (what, value.to_be_bytes().to_vec()),
        (what, value.to_le_bytes().to_vec()),
        (what, value.to_string().into_bytes()),
    ]
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
    let device = format!("{tag}-pi");
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

    let mut needles: Vec<Needle<'_>> = vec![
        ("name", name.clone().into_bytes()),
        ("email", email.clone().into_bytes()),
        ("street", street.clone().into_bytes()),
        ("device id", device.clone().into_bytes()),
    ];
    // SQLite stores a REAL as 8 big-endian bytes; also look for other encodings.
    needles.extend(coordinate_needles("latitude", latitude));
    needles.extend(coordinate_needles("longitude", longitude));
    // The CA that issued the device's certificate keeps no participant's email.
    let ca = tls_api().dir.path().join("ca");
    let email_needle = [("email", email.clone().into_bytes())];

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
    for what in [
        "name",
        "email",
        "street",
        "device id",
        "latitude",
        "longitude",
    ] {
        assert!(
            before.iter().any(|f| f.starts_with(what)),
            "{what} not found before revocation: {before:?}"
        );
    }

    grant(&client).await;
    // Registered just now: measurements from the last minutes are plausible.
    let reading = measurement(&meter, &rfc3339(unix_now() - 120), 1.5);
    assert_eq!(
        upload(&client, std::slice::from_ref(&reading)).await.status,
        StatusCode::OK
    );
    // The household's data key, as the work manager gets it with the readings; at rest it is
    // wrapped. Revocation shreds it: neither the wrapped key nor the key itself stays.
    let manager = mint(ADMIN_TOKEN, json!({ "role": "manager" })).await;
    let power = format!(
        "/api/worker/meter/{meter}/power?from={}&to={}",
        rfc3339(unix_now() - 3600),
        rfc3339(unix_now() + 60)
    );
    let reply = tls_admin()
        .bearer(&manager)
        .call(Method::GET, &power, None)
        .await;
    let key = super::workers::key_of(&reply);
    let wrapped: String = {
        let db = rusqlite::Connection::open_with_flags(
            tls_api().served.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the database");
        db.query_row(
            "SELECT wrapped FROM household_key WHERE key_id = ?1",
            [key.0.as_str()],
            |row| row.get(0),
        )
        .expect("the wrapped key")
    };
    let key_base64 = base64::engine::general_purpose::STANDARD.encode(key.1.as_bytes());
    let key_needles: Vec<Needle<'_>> = vec![
        ("wrapped key", wrapped.clone().into_bytes()),
        ("key id", key.0.as_str().as_bytes().to_vec()),
        ("raw key", key.1.as_bytes().to_vec()),
        ("key in base64", key_base64.into_bytes()),
    ];
    let before = traces_in_state(&key_needles[..2]);
    for what in ["wrapped key", "key id"] {
        assert!(
            before.iter().any(|f| f.starts_with(what)),
            "{what} not found before revocation: {before:?}"
        );
    }
    let sealed_late = super::workers::sealed(
        &key,
        &json!({
            "item": unique("late"), "meter": meter, "model": "kettle",
            "model_sha256": "ab".repeat(32), "window_start": "2026-11-23T16:00:00Z",
            "step_seconds": 60, "power_w": [1.0],
        }),
    );

    let reply = client
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // At once: the answer to the revocation came after the anonymization.
    let shredded = traces_in_state(&key_needles);
    assert!(
        shredded.is_empty(),
        "the household's key left after revocation: {shredded:?}"
    );
    // The key cannot be had again; a result sealed under it is refused for good.
    let reply = tls_admin()
        .bearer(&manager)
        .call(Method::GET, &power, None)
        .await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "consent revoked");
    let worker = mint(ADMIN_TOKEN, json!({ "role": "worker" })).await;
    let reply = tls_admin()
        .bearer(&worker)
        .call(
            Method::POST,
            "/api/worker/disaggregation",
            Some(&json!({ "results": [sealed_late] })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body["results"][0]["code"], "consent_revoked",
        "{}",
        reply.text
    );
    let after = traces_in_state(&needles);
    assert!(
        after.is_empty(),
        "identifying data left after revocation: {after:?}"
    );
    let in_ca = scan::traces(&[&ca], &email_needle);
    assert!(in_ca.is_empty(), "the CA keeps the email: {in_ca:?}");
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
    let late = measurement(&meter, &rfc3339(unix_now() - 60), 1.6);
    let reply = upload(&client, &[late]).await;
    assert_refused(&reply, RefusalCode::ConsentRevoked, "consent revoked");
    // Measurements stay, for anonymous processing.
    assert_eq!(uuids(&read(&client, &meter, "").await), [uuid_of(&reading)]);
    let listed = household_listed_on(tls_admin(), &reply_household(&client).await).await;
    assert_eq!(listed["user"], Value::Null, "{listed}");
    // Its device is known under a pseudonym, which its certificate still finds.
    let devices = listed["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{listed}");
    let pseudonym = devices[0]["id"].as_str().expect("device id");
    assert!(pseudonym.starts_with("anon:"), "{listed}");
    assert_eq!(
        reply_household(&client).await,
        listed["household"].as_str().expect("id")
    );
    let reply = admin_as(
        tls_admin(),
        Method::POST,
        &format!("/api/management/device/{device}/revoke"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = client.call(Method::GET, "/api/household", None).await;
    assert_refused(&reply, RefusalCode::DeviceRevoked, "revoked");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_before_a_revocation_leave_no_trace_once_a_reader_lets_go_of_the_wal() {
    // A server of its own: the reader below holds its WAL, which would keep other tests'
    // anonymizations from truncating it.
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, tls) = pki::server_ca(dir.path(), ClientAuth::Required);
    let state = dir.path().join("state");
    let served = start(&state, Some(tls));
    let console = pki::device(&ca, dir.path(), "admin-console", "admin@example.org");
    let admin = Client::tls(served.addr, console.tls).bearer(ADMIN_TOKEN);
    let tag = unique("changed");
    let names = [
        format!("Ottilie Vorher {tag}"),
        format!("Ottilie Nachher {tag}"),
    ];
    let emails = [
        format!("{tag}@old.example.org"),
        format!("{tag}@new.example.org"),
    ];
    let streets = [
        format!("Erste Gasse {tag}"),
        format!("Zweite Gasse {tag}"),
        format!("Dritte Gasse {tag}"),
    ];
    let salt = (std::process::id() % 9973) as f64 * 1e-9;
    let latitudes = [51.234_567_890_123 + salt, 51.345_678_901_234 + salt];
    let device = format!("{tag}-pi");
    let address = |street: &str| {
        json!({ "street": street, "house_number": "1", "postal_code": "04109",
                "city": "Leipzig", "country": "DE" })
    };
    let reply = admin
        .call(
            Method::POST,
            "/api/management/household",
            Some(&json!({
                "name": names[0], "email": emails[0], "device": device,
                "meters": [{ "type": "ELECTRICITY", "model": "MT681" }],
                "location": { "latitude": latitudes[0], "longitude": 12.37 },
                "address": address(&streets[0]),
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let household = reply.body["household"].as_str().expect("id").to_owned();

    // Another connection reads the database (a backup, a shell) and keeps its snapshot.
    let reader = rusqlite::Connection::open(served.database()).expect("open the database");
    reader.execute_batch("BEGIN").expect("begin");
    let households: i64 = reader
        .query_row("SELECT count(*) FROM household", [], |row| row.get(0))
        .expect("read");
    assert_eq!(households, 1);

    // Earlier versions of the registration: every one of them is personal data.
    let path = format!("/api/management/household/{household}");
    for change in [
        json!({ "name": names[1], "address": address(&streets[1]),
                "location": { "latitude": latitudes[1], "longitude": 12.37 } }),
        json!({ "email": emails[1], "address": address(&streets[2]) }),
    ] {
        let reply = admin.call(Method::PATCH, &path, Some(&change)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let mut needles: Vec<Needle<'_>> = vec![("device id", device.clone().into_bytes())];
    for name in &names {
        needles.push(("name", name.clone().into_bytes()));
    }
    for email in &emails {
        needles.push(("email", email.clone().into_bytes()));
    }
    for street in &streets {
        needles.push(("street", street.clone().into_bytes()));
    }
    for latitude in latitudes {
        needles.extend(coordinate_needles("latitude", latitude));
    }

    let client = Client::tls(
        served.addr,
        pki::device(&ca, dir.path(), &device, &emails[1]).tls,
    );
    grant(&client).await;
    let reply = client
        .call(Method::DELETE, "/api/household/consent", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // The reader is entitled to its snapshot: while it holds it, the WAL keeps old pages.
    assert!(!traces_in(&state, &needles).is_empty());
    reader.execute_batch("COMMIT").expect("commit");
    drop(reader);

    // Once it let go, the owed checkpoint is made by a later request.
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(60) * wattlet_testkit::patience();
    loop {
        let reply = client.call(Method::GET, "/api/household", None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["user"], Value::Null, "{}", reply.text);
        let left = traces_in(&state, &needles);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "identifying data left after revocation: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[test]
fn revocation_leaves_no_unsent_reading_in_the_edge_buffer() {
    use std::sync::Arc;
    use std::time::Duration;
    use wattlet_edge::config::EdgeConfig;
    use wattlet_edge::daemon::{Daemon, EdgeComponents, Stopped};
    use wattlet_edge::metrics::EdgeMetrics;
    use wattlet_testkit::{ConsentingEdge, pending, wait_for};

    let dir = tempfile::tempdir().expect("temp dir");
    let meter = uuid4();
    // Measures every second, reports once an hour: what it measures stays unsent.
    let edge = ConsentingEdge::start(
        dir.path(),
        &meter,
        Duration::from_millis(500),
        ("1s", "1h", "1s"),
    );
    let config = EdgeConfig::load(&edge.config).expect("edge configuration");
    let engine = wattlet_runtime::engine::engine().expect("engine");
    let components = EdgeComponents::load(&engine, &config, None).expect("edge components");
    let daemon = Daemon::new(config, components, Arc::new(EdgeMetrics::new())).expect("daemon");
    let runtime = edge.cloud.runtime().clone();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runtime.spawn(daemon.run(async {
        let _ = stopped.await;
    }));
    wait_for(Duration::from_secs(60), "unsent readings", || {
        pending(&edge.dir) >= 3
    });
    // The readings themselves: each one's values as the buffer stores them.
    let buffer = edge.dir.join("edge-state");
    let needles: Vec<Needle<'_>> = {
        let db = rusqlite::Connection::open_with_flags(
            buffer.join("buffer.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the buffer");
        let mut statement = db.prepare("SELECT data FROM measurement").expect("query");
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .expect("readings")
            .map(|data| ("unsent reading", data.expect("data").into_bytes()))
            .collect()
    };
    assert!(needles.len() >= 3);
    assert!(!scan::traces(&[&buffer], &needles).is_empty());

    let (status, body) =
        edge.cloud
            .as_device(&edge.device, "DELETE", "/api/household/consent", None);
    assert_eq!(status, 200, "revoke: {body}");
    let stopped = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), running).await })
        .expect("the edge stops after the revocation")
        .expect("the daemon's task")
        .expect("the daemon");
    assert!(matches!(stopped, Stopped::ConsentRevoked));
    assert_eq!(pending(&edge.dir), 0);
    let left = scan::traces(&[&buffer], &needles);
    assert!(
        left.is_empty(),
        "unsent readings left on the edge: {left:?}"
    );
}
