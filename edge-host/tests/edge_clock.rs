//! A Raspberry Pi has no battery-backed clock: after a reboot without NTP its clock may lie
//! behind the measurements it already took. `wattlet edge` then measures nothing, says so in
//! its log and metrics, and measures again once the clock has passed its newest measurement.

use std::time::{Duration, SystemTime};

use wattlet_testkit::{
    ConsentingEdge, edge_log, free_port, journal, journal_times, measured_last_at, metric, scrape,
    spawn_edge, wait_for,
};

/// The binary a device runs.
const EDGE: &str = env!("CARGO_BIN_EXE_wattlet-edge");
const METER: &str = "7c2e9a41-0b3d-4f5e-9a6b-1c2d3e4f5a6b";

#[test]
fn a_clock_behind_the_last_measurement_measures_nothing_until_it_passes_it() {
    let temp = tempfile::tempdir().expect("temp dir");
    let edge = ConsentingEdge::start(
        temp.path(),
        METER,
        Duration::from_millis(100),
        ("200ms", "400ms", "1s"),
    );
    let metrics_addr = free_port();
    let config = std::fs::read_to_string(&edge.config).expect("config");
    let config = config.replace(
        "journal = true\n",
        &format!("journal = true\nmetrics_listen = \"{metrics_addr}\"\n"),
    );
    std::fs::write(&edge.config, config).expect("config");
    let scrape_clock = || {
        let page = scrape(metrics_addr);
        page.contains("wattlet_edge_clock_plausible")
            .then(|| metric(&page, "wattlet_edge_clock_plausible"))
    };

    // A first run makes the buffer (and compiles the components into wasmtime's cache).
    let mut first = spawn_edge(EDGE, &edge.config);
    wait_for(Duration::from_secs(180), "the first measurement", || {
        !journal(&edge.dir).is_empty()
    });
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    let taken = journal(&edge.dir).len();

    // The device measured "tomorrow" before it rebooted: its clock now lies behind that.
    let tomorrow = SystemTime::now() + Duration::from_secs(24 * 3600);
    measured_last_at(
        &edge.dir,
        &humantime::format_rfc3339_millis(tomorrow).to_string(),
    );
    let mut behind = spawn_edge(EDGE, &edge.config);
    wait_for(
        Duration::from_secs(60),
        "the clock reported implausible",
        || std::net::TcpStream::connect(metrics_addr).is_ok() && scrape_clock() == Some(0.0),
    );
    std::thread::sleep(Duration::from_secs(2) * wattlet_testkit::patience());
    assert_eq!(scrape_clock(), Some(0.0));
    assert_eq!(
        journal(&edge.dir).len(),
        taken,
        "measured with a clock behind"
    );
    behind.kill().expect("SIGKILL");
    behind.wait().expect("reap");
    let log = std::fs::read_to_string(edge_log(&edge.config)).expect("edge.log");
    assert!(log.contains("the clock is not set"), "{log}");

    // The newest measurement a few seconds ahead: nothing until the clock passes it, then
    // measurements again, each after it.
    let soon = SystemTime::now() + Duration::from_secs(5);
    let soon_text = humantime::format_rfc3339_millis(soon).to_string();
    measured_last_at(&edge.dir, &soon_text);
    let mut again = spawn_edge(EDGE, &edge.config);
    wait_for(
        Duration::from_secs(60),
        "measurements once the clock is set",
        || journal(&edge.dir).len() > taken,
    );
    assert!(SystemTime::now() >= soon);
    assert_eq!(scrape_clock(), Some(1.0));
    again.kill().expect("SIGKILL");
    again.wait().expect("reap");
    let stamped_before = journal_times(&edge.dir)
        .into_iter()
        .filter(|at| *at < soon_text)
        .count();
    assert_eq!(
        stamped_before, taken,
        "a measurement stamped before the clock passed the newest one"
    );
}
