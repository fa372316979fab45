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
