//! The edge's side: simulated SML meters on pseudo-terminals, edge configurations, the
//! `wattlet-edge` daemon as a child process or in this process, and what its buffer holds.

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

/// Adds a meter to an edge configuration written by [`edge_config`]: `meter_uuid` read as SML
/// from the probe at `meter_path`.
pub fn add_meter(config: &Path, meter_uuid: &str, meter_path: &Path) {
    let mut text = std::fs::read_to_string(config).expect("read the edge config");
    text.push_str(&format!(
        "\n[[meter]]\nuuid = \"{meter_uuid}\"\ndevice = \"{}\"\nprotocol = \"sml\"\n",
        meter_path.display()
    ));
    std::fs::write(config, text).expect("write the edge config");
}

/// The edge daemon of `config` in this process (the components from the build), on a runtime
/// of its own, until [`InProcessEdge::stop`] or drop: for tests that read its metrics without
/// a listener.
pub struct InProcessEdge {
    pub metrics: Arc<wattlet_edge::metrics::EdgeMetrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<wattlet_edge::daemon::Stopped>>>,
}

impl InProcessEdge {
    pub fn start(config: &Path) -> InProcessEdge {
        use wattlet_edge::daemon::{Daemon, EdgeComponents};
        let config = wattlet_edge::config::EdgeConfig::load(config).expect("edge config");
        let engine = wattlet_runtime::engine::engine().expect("engine");
        let components = EdgeComponents::load(&engine, &config, None)
            .expect("the edge's components (./dev test builds them)");
        let metrics = Arc::new(wattlet_edge::metrics::EdgeMetrics::new());
        let daemon = Daemon::new(config, components, metrics.clone()).expect("edge daemon");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            runtime.block_on(daemon.run(async {
                let _ = stopped.await;
            }))
        });
        InProcessEdge {
            metrics,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The daemon's metrics page (Prometheus text).
    pub fn scrape(&self) -> String {
        wattlet_runtime::metrics::MetricsSource::encode(self.metrics.as_ref())
    }

    /// Stops the daemon; panics if it failed.
    pub fn stop(mut self) -> wattlet_edge::daemon::Stopped {
        self.finish()
            .expect("the edge was running")
            .expect("the edge daemon failed")
    }

    fn finish(&mut self) -> Option<anyhow::Result<wattlet_edge::daemon::Stopped>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let thread = self.thread.take()?;
        Some(match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }
}

impl Drop for InProcessEdge {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.finish();
        }
    }
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
    journal_column(dir, "uuid")
}

/// The times (`measured_at`) of every measurement the edge ever took, sorted.
pub fn journal_times(dir: &Path) -> Vec<String> {
    journal_column(dir, "measured_at")
}

fn journal_column(dir: &Path, column: &str) -> Vec<String> {
    // None before the edge created its tables.
    let Some(db) = open_buffer(dir, "journal") else {
        return Vec::new();
    };
    let mut statement = db
        .prepare(&format!("SELECT {column} FROM journal ORDER BY {column}"))
        .expect("query");
    statement
        .query_map([], |row| row.get(0))
        .expect("journal")
        .collect::<Result<_, _>>()
        .expect("journal rows")
}

/// The measurements the edge set aside because the cloud refused them: (uuid, meter, code),
/// by uuid.
pub fn set_aside(dir: &Path) -> Vec<(String, String, String)> {
    let Some(db) = open_buffer(dir, "set_aside") else {
        return Vec::new();
    };
    let mut statement = db
        .prepare("SELECT uuid, meter, code FROM set_aside ORDER BY uuid")
        .expect("query");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("set-aside rows")
        .collect::<Result<_, _>>()
        .expect("set-aside rows")
}

/// Records in the edge's buffer (which must exist: run the edge once) that its newest
/// measurement was taken at `at` (RFC 3339), as a clock that ran ahead before a reboot leaves
/// it: a clock before that instant is not trusted.
pub fn measured_last_at(dir: &Path, at: &str) {
    let path = dir.join("edge-state").join("buffer.sqlite");
    let db = rusqlite::Connection::open(&path).expect("open buffer");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    db.execute(
        "INSERT INTO state (key, value) VALUES ('last_measurement', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [at],
    )
    .expect("record the last measurement");
}

/// The edge's buffer, read-only, when it exists and has `table`.
fn open_buffer(dir: &Path, table: &str) -> Option<rusqlite::Connection> {
    let path = dir.join("edge-state").join("buffer.sqlite");
    if !path.exists() {
        return None;
    }
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open buffer");
    has_table(&db, table).then_some(db)
}

/// Measurements still waiting in the edge's buffer (none before the edge created it).
pub fn pending(dir: &Path) -> usize {
    open_buffer(dir, "measurement").map_or(0, |db| {
        db.query_row("SELECT count(*) FROM measurement", [], |row| row.get(0))
            .expect("count")
    })
}

fn has_table(db: &rusqlite::Connection, name: &str) -> bool {
    db.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |row| row.get(0),
    )
    .expect("read the schema")
}
