//! The edge's side: simulated SML meters on pseudo-terminals, edge configurations, the
//! `wattlet-edge` daemon as a child process, and what its buffer holds.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wattlet_meter_sim as sim;

use crate::cloud::Cloud;
use crate::pki::Device;
use crate::process::command;

/// A simulated meter on a pty, writing a telegram every `interval` until stopped or dropped.
pub struct Meter {
    /// The pty's device, where a probe would be.
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    /// A synthetic SML meter (10,000 kWh at the start, 2 kW on average).
    pub fn start(interval: Duration) -> Meter {
        Meter::run(
            sim::Source::Synthetic {
                server_id: vec![0x0a, 0x01, 0x49, 0x53, 0x4b, 0x00, 0x04, 0x58, 0x19, 0x41],
                start_wh: 10_000_000,
                mean_power_w: 2_000,
            },
            interval,
        )
    }

    /// A meter replaying a capture's bytes (any protocol), over and over.
    pub fn replay(capture: Vec<u8>, interval: Duration) -> Meter {
        Meter::run(sim::Source::Replay(capture), interval)
    }

    fn run(source: sim::Source, interval: Duration) -> Meter {
        let pty = sim::Pty::open().expect("pty");
        let path = pty.slave_path().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let options = sim::Options {
            source,
            interval,
            count: None,
        };
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            sim::run(&pty, &options, &flag).expect("meter simulator");
        });
        Meter {
            path,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the meter; panics if the simulator failed.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && let Err(panic) = thread.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A consenting household's edge, ready to run against the cloud: the cloud (in `dir/cloud`),
/// Ada's household with one electricity meter that granted consent, a simulated meter, and the
/// edge's configuration (in `dir/edge`).
pub struct ConsentingEdge {
    pub cloud: Cloud,
    /// The household's device (its certificate).
    pub device: Device,
    /// The simulated meter on the line (drop it to quiet the line).
    pub meter: Meter,
    /// The edge's directory: its state, journal and log.
    pub dir: PathBuf,
    /// The edge's configuration file, for [`spawn_edge`].
    pub config: PathBuf,
}

impl ConsentingEdge {
    /// Meter `meter_uuid` writing a telegram every `interval`; the edge measures, reports and
    /// asks for consent at `cycles` (as in [`edge_config`]).
    pub fn start(
        dir: &Path,
        meter_uuid: &str,
        interval: Duration,
        cycles: (&str, &str, &str),
    ) -> ConsentingEdge {
        let cloud = Cloud::start(&dir.join("cloud"));
        let device = cloud.register("Ada Lovelace", "ada@example.org", "pi-ada", meter_uuid);
        cloud.grant(&device);
        let meter = Meter::start(interval);
        let edge_dir = dir.join("edge");
        let config = edge_config(&edge_dir, &cloud, &device, meter_uuid, &meter.path, cycles);
        ConsentingEdge {
            cloud,
            device,
            meter,
            dir: edge_dir,
            config,
        }
    }
}

/// Writes an edge configuration with a journal and returns its path.
pub fn edge_config(
    dir: &Path,
    cloud: &Cloud,
    device: &Device,
    meter_uuid: &str,
    meter_path: &Path,
    cycles: (&str, &str, &str),
) -> PathBuf {
    let (measure, report, consent) = cycles;
    let text = format!(
        r#"cloud = "{cloud}"
state_dir = "{state}"
journal = true

[identity]
certificate = "{cert}"
key = "{key}"
cloud_ca = "{ca}"

[cycles]
measure = "{measure}"
report = "{report}"
consent = "{consent}"

[[meter]]
uuid = "{meter_uuid}"
device = "{meter_path}"
protocol = "sml"
"#,
        cloud = cloud.url(),
        state = dir.join("edge-state").display(),
        cert = device.cert.display(),
        key = device.key.display(),
        ca = cloud.ca.ca_cert_path().display(),
        meter_path = meter_path.display(),
    );
    std::fs::create_dir_all(dir).expect("create the edge's directory");
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).expect("write edge config");
    path
}

/// Starts `wattlet-edge run` (`bin`: `env!("CARGO_BIN_EXE_wattlet-edge")`); its log is
/// appended to `edge.log` next to the configuration (a file, not a pipe: nobody has to drain it
/// while the edge runs).
pub fn spawn_edge(bin: &str, config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(edge_log(config))
        .expect("open edge.log");
    command(bin)
        .args(["run", "--config"])
        .arg(config)
        .env("WATTLET_LOG", "wattlet_edge=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the edge daemon")
}

pub fn edge_log(config: &Path) -> PathBuf {
    config.with_file_name("edge.log")
}

/// The edge's journal: every measurement it ever took (uuid), sorted.
pub fn journal(dir: &Path) -> Vec<String> {
    let path = dir.join("edge-state").join("buffer.sqlite");
    if !path.exists() {
        return Vec::new();
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open buffer");
    if !has_table(&db, "journal") {
        // The edge created the file and has not created its tables yet.
        return Vec::new();
    }
    let mut statement = db
        .prepare("SELECT uuid FROM journal ORDER BY uuid")
        .expect("query");
    statement
        .query_map([], |row| row.get(0))
        .expect("journal")
        .collect::<Result<_, _>>()
        .expect("journal rows")
}

/// Measurements still waiting in the edge's buffer (none before the edge created it).
pub fn pending(dir: &Path) -> usize {
    let path = dir.join("edge-state").join("buffer.sqlite");
    if !path.exists() {
        return 0;
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open buffer");
    if !has_table(&db, "measurement") {
        return 0;
    }
    db.query_row("SELECT count(*) FROM measurement", [], |row| row.get(0))
        .expect("count")
}

fn has_table(db: &rusqlite::Connection, name: &str) -> bool {
    db.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |row| row.get(0),
    )
    .expect("read the schema")
}
