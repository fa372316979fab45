//! `wattlet-edge run` under systemd (`Type=notify`, `WatchdogSec=`): on a real unix datagram
//! socket as `NOTIFY_SOCKET` it says READY=1 once running, feeds the watchdog from its loop at
//! half the timeout while the cloud is out of reach, and says STOPPING=1 on SIGTERM. The
//! packaged example configuration is refused with exit status 78, which the unit does not
//! restart on.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use wattlet_pki::CaDir;
use wattlet_testkit::{command, free_port, patience, run, terminate};

const EDGE: &str = env!("CARGO_BIN_EXE_wattlet-edge");

/// The messages on `socket` until `until` holds for one or `limit` passes, with their times.
fn receive(
    socket: &UnixDatagram,
    limit: Duration,
    mut until: impl FnMut(&str) -> bool,
) -> Vec<(Instant, String)> {
    let deadline = Instant::now() + limit * patience();
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .expect("timeout");
        let Ok(n) = socket.recv(&mut buffer) else {
            break;
        };
        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
        let done = until(&text);
        got.push((Instant::now(), text));
        if done {
            break;
        }
    }
    got
}

#[test]
fn ready_watchdog_and_stopping_reach_the_service_manager() {
    let temp = tempfile::tempdir().expect("temp dir");
    let ca = CaDir::init(
        &temp.path().join("ca"),
        "test CA",
        wattlet_pki::DEFAULT_CA_VALIDITY,
        false,
    )
    .expect("CA");
    let device = wattlet_testkit::pki::device(&ca, temp.path(), "pi-notify", "nina@example.org");
    // Nothing listens at the cloud's address: consent cannot be fetched, the loop goes on.
    let cloud = free_port();
    let config = temp.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            r#"cloud = "https://{cloud}"
state_dir = "state"
[identity]
certificate = "{}"
key = "{}"
cloud_ca = "{}"
[cycles]
consent = "1s"
[[meter]]
uuid = "9d1e6f0a-2b3c-4d5e-8f70-112233445566"
device = "/dev/null"
protocol = "sml"
"#,
            device.cert.display(),
            device.key.display(),
            ca.ca_cert_path().display()
        ),
    )
    .expect("config");
    let socket_path = temp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");

    let watchdog = Duration::from_secs(1) * patience();
    let mut edge = command(EDGE)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wattlet-edge");

    // Compiling the components (or taking them from the cache) comes first.
    let ready = receive(&socket, Duration::from_secs(120), |m| m.contains("READY=1"));
    let Some((ready_at, message)) = ready.last() else {
        panic!("no READY=1 from the daemon");
    };
    assert!(message.contains("READY=1"), "{ready:?}");
    assert!(message.contains("STATUS=reading 1 meter(s)"), "{message}");
    let ready_at = *ready_at;

    // Half the watchdog timeout apart, for several periods.
    let mut pings = Vec::new();
    let got = receive(&socket, watchdog * 4, |m| {
        if m.contains("WATCHDOG=1") {
            pings.push(Instant::now());
        }
        pings.len() >= 6
    });
    assert!(pings.len() >= 6, "watchdog pings: {got:?}");
    let mut previous = ready_at;
    for at in &pings {
        assert!(
            at.duration_since(previous) < watchdog,
            "a gap of {:?} between watchdog pings (timeout {watchdog:?})",
            at.duration_since(previous)
        );
        previous = *at;
    }

    terminate(&edge);
    let stopping = receive(&socket, Duration::from_secs(30), |m| {
        m.contains("STOPPING=1")
    });
    assert!(
        stopping.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
    let status = edge.wait().expect("reap");
    assert!(status.success(), "{status}");
}

#[test]
fn the_packaged_example_configuration_is_refused_with_exit_status_78() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/edge.toml");
    let ran = run(command(EDGE).args(["run", "--config"]).arg(&example), None);
    assert_eq!(ran.status.code(), Some(78), "{ran:?}");
    assert!(ran.stderr.contains("sets nothing"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("Installing on a Raspberry Pi"),
        "{}",
        ran.stderr
    );
}
