//! The real Spin CLI (`spin up`), for the tests that compare `wattlet serve` with it or run the
//! application on it.
//!
//! Spin runs in a process group of its own (`spin up` serves from a child process, `spin trigger
//! http`, which outlives a killed parent: the whole group is killed), with its home, state, cache
//! and log directories in the test's directory, only `PATH` from the environment, and a proxy that
//! goes nowhere, so it neither writes outside the test nor reaches the network.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{patience, repo};

/// How long Spin may take to compile an application's components and start listening.
const SPIN_START: Duration = Duration::from_secs(180);

/// The Spin CLI to run: the binary `$WATTLET_SPIN` names, else the one
/// `../shared/tools/spin/get-spin` provides; `None` where neither is there (a test then says it
/// was skipped, see [`NO_SPIN`]).
pub fn spin_cli() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WATTLET_SPIN") {
        return Some(PathBuf::from(path));
    }
    let get_spin = repo().join("../shared/tools/spin/get-spin");
    if !get_spin.is_file() {
        return None;
    }
    let output = Command::new("bash")
        .arg(&get_spin)
        .output()
        .expect("run get-spin");
    assert!(
        output.status.success(),
        "{} failed: {}",
        get_spin.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.is_file().then_some(path)
}

/// What a test prints when [`spin_cli`] finds no Spin.
pub const NO_SPIN: &str =
    "skipped: no Spin CLI (../shared/tools/spin/get-spin is absent and WATTLET_SPIN unset)";

/// `spin up` of a manifest on a loopback port of its choosing; killed (its process group) when
/// dropped. Its output goes to [`SpinUp::log`].
pub struct SpinUp {
    pub addr: SocketAddr,
    /// Spin's standard output and error.
    pub log: PathBuf,
    /// The "Available Routes" Spin listed so far, in its order: `(component, route)`.
    routes: Arc<Mutex<Vec<(String, String)>>>,
    child: Child,
}

impl SpinUp {
    /// Starts `spin` (from [`spin_cli`]) on `manifest`, with `runtime_config` if given, its
    /// directories in `dir` and `variables` (`(name, value)`, as in the manifest's
    /// `[variables]`); waits until it serves.
    pub fn start(
        spin: &Path,
        manifest: &Path,
        runtime_config: Option<&Path>,
        dir: &Path,
        variables: &[(&str, &str)],
    ) -> SpinUp {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("Spin's home");
        let log = dir.join("spin.log");
        let mut output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("spin.log");
        let mut command = Command::new(spin);
        command
            .arg("up")
            .arg("--from")
            .arg(manifest)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .arg("--disable-cache");
        if let Some(config) = runtime_config {
            command.arg("--runtime-config-file").arg(config);
        }
        command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            // Spin would otherwise look for updates and plugins on the internet; anything it
            // might still fetch goes to a proxy that is not there.
            .env("SPIN_DISABLE_UPDATE_CHECK", "1")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "");
        for (name, value) in variables {
            command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
        }
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(output.try_clone().expect("log handle"))
            .spawn()
            .expect("start spin up");

        // Spin prints its address and then its routes; the reader keeps draining (into the log)
        // so that Spin never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout");
        let routes = Arc::new(Mutex::new(Vec::new()));
        let (address, serving) = std::sync::mpsc::channel();
        let listed = routes.clone();
        std::thread::spawn(move || {
            let mut addr: Option<SocketAddr> = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(output, "{line}");
                let line = line.trim();
                if let Some(url) = line.strip_prefix("Serving http://") {
                    let parsed = url.parse().expect("Spin's address");
                    addr = Some(parsed);
                    let _ = address.send(parsed);
                } else if let Some(addr) = addr
                    && let Some((component, url)) = line.split_once(": ")
                    && let Some(route) = url.strip_prefix(&format!("http://{addr}"))
                {
                    listed
                        .lock()
                        .expect("routes")
                        .push((component.to_owned(), route.to_owned()));
                }
            }
        });
        let deadline = Instant::now() + SPIN_START * patience();
        let addr = loop {
            match serving.recv_timeout(Duration::from_millis(100)) {
                Ok(addr) => break addr,
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "spin up exited ({status}): {}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                    assert!(
                        Instant::now() < deadline,
                        "spin up did not serve within {SPIN_START:?}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        };
        let up = SpinUp {
            addr,
            log,
            routes,
            child,
        };
        crate::wait_for(SPIN_START, "spin up to accept connections", || {
            std::net::TcpStream::connect(up.addr).is_ok()
        });
        up
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The routes Spin listed, `(component, route)` in its order, once it has listed `count`.
    pub fn routes(&self, count: usize) -> Vec<(String, String)> {
        let mut routes = Vec::new();
        crate::wait_for(SPIN_START, "spin up to list its routes", || {
            routes = self.routes.lock().expect("routes").clone();
            routes.len() >= count
        });
        routes
    }
}

impl Drop for SpinUp {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}
