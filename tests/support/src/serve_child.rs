//! `wattlet serve` as a child process: the CLI as an operator runs it, with its signal
//! handling, under limits the test sets (an open-file limit), its log kept for the test to read.
//!
//! ```ignore
//! let server = ServeChild::probe(&["--header-timeout", "1s"], Some(128));
//! let reply = http::get(server.addr, "/probe/hello").await;
//! server.terminate();
//! ```
//!
//! The binary is the workspace's `wattlet` next to the test binary (`target/<profile>/wattlet`):
//! `cargo test --workspace` builds it; a test binary run alone needs `cargo build -p wattlet`
//! first.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::serve::PROBE_TOKEN;
use crate::{command, patience, repo};

/// A `wattlet serve` child process, killed when dropped.
pub struct ServeChild {
    child: Child,
    /// The HTTP listener.
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`).
    pub admin: SocketAddr,
    /// Its standard error: the log (`WATTLET_LOG=info`).
    log: PathBuf,
    /// Lines it printed on standard output after its start-up lines.
    stdout: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

/// The workspace binary `name` of the build the calling test binary belongs to.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("the build directory");
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p {name}`; `cargo test --workspace` does)",
        path.display()
    );
    path
}

impl ServeChild {
    /// Serves the Spin probe application (`tests/spin/spin.toml`, [`PROBE_TOKEN`] as its
    /// `api_token`) on free loopback ports, with `args` added to `wattlet serve`'s options and,
    /// with `open_files`, that limit on open files (soft and hard, as `ulimit -n` sets).
    /// Returns once it serves; panics when it does not start.
    pub fn probe(args: &[&str], open_files: Option<u64>) -> ServeChild {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serve.log");
        let mut command = command(&workspace_binary("wattlet").to_string_lossy());
        command
            .arg("serve")
            .arg("--manifest")
            .arg(repo().join("tests/spin/spin.toml"))
            .arg("--runtime-config-file")
            .arg(repo().join("tests/spin/runtime-config.toml"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .env("SPIN_VARIABLE_API_TOKEN", PROBE_TOKEN)
            .env(
                "WATTLET_LOG",
                std::env::var("WATTLET_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(limit) = open_files {
            limit_open_files(&mut command, limit);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let (lines, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let mut addr = None;
        let mut admin = None;
        let deadline = Instant::now() + Duration::from_secs(60) * patience();
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = stdout.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "wattlet serve did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            // "Serving http://127.0.0.1:PORT (name)", "Metrics: http://127.0.0.1:PORT/metrics"
            let url = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|rest| rest.split(['/', ' ']).next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
            };
            addr = addr.or_else(|| url("Serving http://"));
            admin = admin.or_else(|| url("Metrics: http://"));
        }
        ServeChild {
            child,
            addr: addr.expect("address"),
            admin: admin.expect("admin address"),
            log,
            stdout,
            _dir: dir,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a service manager stops it.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `limit` (times [`patience`]) for it to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit * patience();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lines it printed on standard output since it started serving (all of them, once it
    /// has exited).
    pub fn printed(&mut self) -> Vec<String> {
        if self.is_running() {
            self.stdout.try_iter().collect()
        } else {
            // Its standard output is closed: read to the end.
            self.stdout.iter().collect()
        }
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the child's open-file limit (soft and hard) before it runs.
fn limit_open_files(command: &mut std::process::Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    let rlimit = rustix::process::Rlimit {
        current: Some(limit),
        maximum: Some(limit),
    };
    // SAFETY: between fork and exec the closure only makes the setrlimit system call (no
    // allocation, no locks).
    unsafe {
        command.pre_exec(move || {
            rustix::process::setrlimit(rustix::process::Resource::Nofile, rlimit)
                .map_err(std::io::Error::from)
        });
    }
}
