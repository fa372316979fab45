//! `wattlet up`, the README's "run it" command, through the real binary: readings of the
//! household that granted consent arrive, none of the other, the NIALM queue's NATS server runs,
//! and it all stops cleanly on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn up_shows_readings_of_the_consenting_household_only() {
    let state = tempfile::tempdir().expect("temp dir");
    let nats = wattlet_testkit::free_port();
    let (mut up, rx) =
        wattlet_testkit::start_up(wattlet_testkit::binary!("wattlet"), state.path(), nats);

    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180) * wattlet_testkit::patience();
    let readings = |lines: &[String], device: &str| {
        lines
            .iter()
            .filter(|l| l.contains(device) && l.contains(" energy import "))
            .count()
    };
    while readings(&lines, "pi-ada") < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!(
                "no readings within 60 s; output so far:\n{}",
                lines.join("\n")
            ),
        }
    }
    let output = lines.join("\n");
    assert!(output.contains("consent granted"), "{output}");
    assert!(
        output.contains("consent not granted: nothing is measured"),
        "{output}"
    );
    assert!(output.contains("https://127.0.0.1:"), "{output}");
    // spin.toml's update repository component is served too (updates/ holds no repository in
    // the source tree).
    assert!(output.contains("Updates    https://127.0.0.1:"), "{output}");
    assert!(
        output.contains("SIMULATED TEE: the NIALM worker attests with simulated evidence"),
        "wattlet up says it opted into the simulated TEE: {output}"
    );
    assert_eq!(readings(&lines, "pi-grace"), 0, "{output}");
    assert!(
        output.contains(&format!("NIALM      nats://{nats} (JetStream)")),
        "{output}"
    );
    assert!(
        std::net::TcpStream::connect(nats).is_ok(),
        "the NIALM queue's nats-server listens"
    );
    assert!(state.path().join("ca/ca.crt").is_file());
    assert!(state.path().join("admin-token").is_file());

    Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .expect("kill -TERM");
    let exit = up.wait().expect("wait");
    assert!(
        exit.success(),
        "wattlet up exited with {exit:?}; its log:\n{}",
        std::fs::read_to_string(state.path().join("wattlet-up.log")).unwrap_or_default()
    );
    assert!(
        std::net::TcpStream::connect(nats).is_err(),
        "nats-server stops with wattlet up"
    );
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    assert!(
        lines.iter().any(|l| l == "wattlet up: stopped"),
        "{}",
        lines.join("\n")
    );
}

/// The update path end to end with `wattlet up`, over the devices' mutual TLS: a parser
/// published with `wattlet release` and rolled out reaches both simulated devices (staged,
/// golden telegrams, committed); a broken one (it reads an energy register wrong) is rolled
/// back on both by itself, and the rollout pauses on their reports.
#[test]
fn up_rolls_a_parser_out_to_both_devices_and_a_broken_one_back() {
    use wattlet_edge::update::machine::Outcome;
    use wattlet_edge::update::{Kind, slots::Store};
    use wattlet_testkit::updates::{PARSER_WORLD, component};

    let temp = tempfile::tempdir().expect("temp dir");
    let state = temp.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    // spin.toml copied next to a repository of this test's own (`updates/` beside it).
    let manifest = wattlet_testkit::serve::manifest_elsewhere(temp.path());
    let path = |p: &str| temp.path().join(p).to_string_lossy().into_owned();
    let release = |args: &[&str]| {
        wattlet_testkit::run(
            wattlet_testkit::binary!("wattlet")
                .arg("release")
                .args(args)
                .args(["--repo", &path("updates"), "--keys", &path("keys")]),
            None,
        )
    };
    release(&["init"]).expect_success("release init");
    let (mut up, rx) = wattlet_testkit::start_up_with(
        wattlet_testkit::binary!("wattlet"),
        &state,
        &[
            "--manifest",
            &manifest.to_string_lossy(),
            "--no-nialm",
            "--update-poll",
            "1s",
        ],
    );
    let mut cloud = None;
    while cloud.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(120) * wattlet_testkit::patience())
            .expect("wattlet up prints where the Data API is");
        cloud = line
            .strip_prefix("Data API   ")
            .and_then(|rest| rest.split("/api/health").next())
            .map(str::to_owned);
    }
    let cloud = cloud.unwrap();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let token = std::fs::read_to_string(state.join("admin-token")).expect("admin token");
    let admin = wattlet_api_client::ApiClient::new(
        &cloud,
        Some(std::sync::Arc::new(
            wattlet_tls::anonymous_client_tls_config(&state.join("ca/ca.crt")).expect("CA"),
        )),
    )
    .expect("client")
    .with_bearer(token.trim().to_owned());
    let call = |method: &str, path: &str, body: Option<serde_json::Value>| {
        runtime
            .block_on(admin.send(method, path, body.as_ref(), &[]))
            .expect("the Data API answers")
    };
    let publish = |version: &str, package: &str| {
        let wasm = component(package);
        release(&[
            "add",
            "--component",
            "meter-parser",
            "--version",
            version,
            "--world",
            PARSER_WORLD,
            "--min-host",
            "0.1.0",
            &wasm.to_string_lossy(),
        ])
        .expect_success("release add");
    };
    let roll_out = |version: &str| {
        let (status, rollout) = call(
            "POST",
            "/api/management/rollout",
            Some(
                serde_json::json!({"component": "meter-parser", "version": version,
                "stages": [100], "min_reports": 2, "max_failure_rate": 0.5}),
            ),
        );
        assert_eq!(status, 201, "{rollout}");
        rollout["id"].as_str().expect("id").to_owned()
    };
    let rollout = |id: &str| {
        let (status, listing) = call("GET", "/api/management/rollout", None);
        assert_eq!(status, 200, "{listing}");
        listing["rollouts"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["id"] == id).cloned())
            .expect("the rollout is listed")
    };
    let devices: Vec<Store> = ["pi-ada", "pi-grace"]
        .iter()
        .map(|d| Store::new(&state.join("devices").join(d).join("state")))
        .collect();
    let parsers = || {
        devices
            .iter()
            .map(|store| store.load(Kind::MeterParser).unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let log = || std::fs::read_to_string(state.join("wattlet-up.log")).unwrap_or_default();

    publish("1.1.0", "wattlet-meter-parser");
    let good = roll_out("1.1.0");
    wattlet_testkit::wait_for(Duration::from_secs(180), "1.1.0 committed on both", || {
        assert!(up.try_wait().expect("wait").is_none(), "{}", log());
        parsers().iter().all(|s| {
            s.committed
                .as_ref()
                .is_some_and(|c| c.version.to_string() == "1.1.0")
        })
    });
    wattlet_testkit::wait_for(Duration::from_secs(60), "both outcomes counted", || {
        rollout(&good)["cohorts"][0]["committed"] == 2
    });

    publish("1.2.0", "wattlet-skewed-parser-composed");
    let broken = roll_out("1.2.0");
    wattlet_testkit::wait_for(
        Duration::from_secs(180),
        "1.2.0 rolled back on both",
        || {
            parsers().iter().all(|s| {
                matches!(&s.last, Some(Outcome::RolledBack { version, .. })
                if version.to_string() == "1.2.0")
            })
        },
    );
    for state in parsers() {
        assert_eq!(
            state.committed.map(|c| c.version.to_string()).as_deref(),
            Some("1.1.0"),
            "the device went back to the committed parser"
        );
    }
    wattlet_testkit::wait_for(Duration::from_secs(60), "the rollout paused", || {
        rollout(&broken)["state"] == "paused"
    });
    let paused = rollout(&broken);
    assert!(
        paused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("2 of 2")),
        "{paused}"
    );
    wattlet_testkit::terminate(&up);
    assert!(up.wait().expect("wait").success(), "{}", log());
}
