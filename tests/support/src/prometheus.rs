//! A real Prometheus server (Debian's `prometheus`; `./dev test` installs it) scraping given
//! targets every second, with rule files loaded, and its HTTP API.

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{free_port, wait_for};

/// One scrape job of one target.
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    pub name: String,
    pub target: SocketAddr,
    pub path: String,
    /// `https` with this CA, else `http`.
    pub ca: Option<PathBuf>,
    /// A file holding the bearer token to scrape with.
    pub bearer_file: Option<PathBuf>,
}

impl ScrapeJob {
    /// `GET http://target/metrics`.
    pub fn plain(name: &str, target: SocketAddr) -> ScrapeJob {
        ScrapeJob {
            name: name.to_owned(),
            target,
            path: "/metrics".to_owned(),
            ca: None,
            bearer_file: None,
        }
    }
}

/// A running `prometheus`; killed when dropped.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every second, with `rule_files` loaded; returns once its
    /// API answers. Panics when it does not start (a rule file that does not parse, say), with
    /// its log.
    pub fn start(jobs: &[ScrapeJob], rule_files: &[PathBuf]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        // Jobs of one name are one scrape configuration with several targets.
        let mut by_name: Vec<(&ScrapeJob, Vec<String>)> = Vec::new();
        for job in jobs {
            match by_name.iter_mut().find(|(first, _)| first.name == job.name) {
                Some((first, targets)) => {
                    assert!(
                        first.path == job.path
                            && first.ca == job.ca
                            && first.bearer_file == job.bearer_file,
                        "targets of job {} differ in more than their address",
                        job.name
                    );
                    targets.push(job.target.to_string());
                }
                None => by_name.push((job, vec![job.target.to_string()])),
            }
        }
        let scrape_configs: Vec<Value> = by_name
            .iter()
            .map(|(job, targets)| {
                let mut config = json!({
                    "job_name": job.name,
                    "metrics_path": job.path,
                    "static_configs": [{ "targets": targets }],
                });
                if let Some(ca) = &job.ca {
                    config["scheme"] = json!("https");
                    config["tls_config"] = json!({ "ca_file": ca });
                }
                if let Some(file) = &job.bearer_file {
                    config["authorization"] = json!({ "type": "Bearer", "credentials_file": file });
                }
                config
            })
            .collect();
        // JSON is YAML: the configuration needs no YAML writer.
        let config = json!({
            "global": { "scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s" },
            "rule_files": rule_files,
            "scrape_configs": scrape_configs,
        });
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config.to_string()).expect("write prometheus.yml");
        let addr = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus.log"))
            .spawn()
            .expect("prometheus starts (Debian's prometheus package; ./dev test installs it)");
        let mut prometheus = Prometheus {
            child,
            addr,
            log,
            _dir: dir,
        };
        wait_for(Duration::from_secs(60), "Prometheus to be ready", || {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!(
                    "prometheus exited with {status}:\n{}",
                    prometheus.log_text()
                );
            }
            get(addr, "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        prometheus
    }

    /// Its log (standard error).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`: the answer's `data`; panics unless Prometheus answers `success`.
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = get(self.addr, &format!("/api/v1/{path}"))
            .unwrap_or_else(|| panic!("Prometheus does not answer /api/v1/{path}"));
        let answer: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/v1/{path}: {e}: {body}"));
        assert!(
            status == 200 && answer["status"] == "success",
            "/api/v1/{path}: HTTP {status} {body}"
        );
        answer["data"].clone()
    }

    /// Waits until every active target's last scrape succeeded; panics with each target's
    /// last error when that takes longer than `limit`.
    pub fn wait_all_up(&self, targets: usize, limit: Duration) {
        let deadline = std::time::Instant::now() + limit * crate::patience();
        loop {
            let last = self.api("targets?state=active");
            let active = last["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if active.len() == targets && active.iter().all(|t| t["health"] == "up") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not every target is up: {}",
                serde_json::to_string_pretty(&last).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over plain HTTP/1.0: status and body, `None` when nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nhost: prometheus\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `promtool` with `args`: whether it succeeded, and what it printed (standard output and
/// error). Panics when promtool is missing.
pub fn promtool<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (Debian's prometheus package; ./dev test installs it)");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}
