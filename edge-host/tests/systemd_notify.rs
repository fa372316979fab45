//! `wattlet-edge run` under systemd (`Type=notify`, `WatchdogSec=`): on a real unix datagram
//! socket as `NOTIFY_SOCKET` it says READY=1 once running, feeds the watchdog from its loop at
//! half the timeout while the cloud is out of reach, says STOPPING=1 on SIGTERM, and feeds
//! nothing while its loop is held up. The packaged example configuration is refused with exit
//! status 78, which the unit does not restart on.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
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
        let left = deadline.saturating_duration_since(Instant::now());
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
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

/// An edge configuration in `dir` with a device certificate, its cloud at `cloud`.
fn config_for(dir: &Path, cloud: SocketAddr) -> PathBuf {
    let ca = CaDir::init(
        &dir.join("ca"),
        "test CA",
        wattlet_pki::DEFAULT_CA_VALIDITY,
        false,
    )
    .expect("CA");
    let device = wattlet_testkit::pki::device(&ca, dir, "pi-notify", "nina@example.org");
    let config = dir.join("edge.toml");
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
    config
}

/// `wattlet-edge run` told to notify `socket_path`, with a watchdog of `watchdog`.
fn spawn_notifying(config: &Path, socket_path: &Path, watchdog: Duration) -> Child {
    command(EDGE)
        .args(["run", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", socket_path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wattlet-edge")
}

#[test]
fn ready_watchdog_and_stopping_reach_the_service_manager() {
    let temp = tempfile::tempdir().expect("temp dir");
    // Nothing listens at the cloud's address: consent cannot be fetched, the loop goes on.
    let config = config_for(temp.path(), free_port());
    let socket_path = temp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let watchdog = Duration::from_secs(1) * patience();
    let mut edge = spawn_notifying(&config, &socket_path, watchdog);

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

/// A cloud that accepts connections and never answers holds the loop in the consent call (up
/// to the upload component's 2-minute limit): no thread feeds the watchdog meanwhile, so
/// systemd would kill a daemon whose loop hangs for longer than `WatchdogSec`.
#[test]
fn a_loop_held_up_feeds_no_watchdog() {
    let temp = tempfile::tempdir().expect("temp dir");
    // Connections complete in the kernel's backlog; nobody ever reads them.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = config_for(temp.path(), silent.local_addr().expect("address"));
    let socket_path = temp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let watchdog = Duration::from_secs(1) * patience();
    let mut edge = spawn_notifying(&config, &socket_path, watchdog);
    let ready = receive(&socket, Duration::from_secs(120), |m| m.contains("READY=1"));
    assert!(
        ready.iter().any(|(_, m)| m.contains("READY=1")),
        "{ready:?}"
    );
    // Three watchdog periods (`receive` scales its limit by the patience, as `watchdog` is).
    let after = receive(&socket, Duration::from_secs(3), |_| false);
    // SIGKILL: a SIGTERM, too, waits for the loop.
    edge.kill().expect("SIGKILL");
    edge.wait().expect("reap");
    assert!(
        !after.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "the watchdog was fed while the loop was held up: {after:?}"
    );
}

#[test]
fn the_packaged_example_configuration_is_refused_with_exit_status_78() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/edge.toml");
    let ran = run(command(EDGE).args(["run", "--config"]).arg(&example), None);
    assert_eq!(ran.status.code(), Some(78), "{ran:?}");
    assert!(ran.stderr.contains("sets nothing"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("Installing on a Raspberry Pi"),
        "{}",
        ran.stderr
    );
}
