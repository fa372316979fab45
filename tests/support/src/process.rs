//! Child processes: the workspace's binaries (under an emulator when cross-built), commands run
//! to their end, `nats-server`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use crate::free_port;

/// A binary of the workspace as a command: pass `env!("CARGO_BIN_EXE_<name>")`. Cross-built
/// tests run under an emulator (cargo's target runner, e.g. `qemu-aarch64`) that cannot start a
/// foreign binary by itself where the kernel has no binfmt_misc handler for it:
/// `WATTLET_TEST_RUNNER` (`./dev cross` sets it) is put in front of the binary, split at
/// whitespace.
pub fn command(bin: &str) -> Command {
    let runner = std::env::var("WATTLET_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(bin);
            command
        }
        None => Command::new(bin),
    }
}

/// The workspace binary `name` of the calling test's package as a [`command`], e.g.
/// `binary!("wattlet")`.
#[macro_export]
macro_rules! binary {
    ($name:literal) => {
        $crate::command(env!(concat!("CARGO_BIN_EXE_", $name)))
    };
}

/// What a command that ran to its end did.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Its standard output; panics with both outputs unless it succeeded.
    pub fn expect_success(self, what: &str) -> String {
        assert!(
            self.success(),
            "{what} failed ({}):\n{}\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }
}

/// Runs `command` to its end with `stdin` as its input (none: no input) and its output captured
/// as text.
pub fn run(command: &mut Command, stdin: Option<&str>) -> Ran {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait for the command");
    Ran {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A local `nats-server -js` on a free port, its store and log in `dir` (Debian's nats-server;
/// `./dev test` installs it).
pub fn nats(dir: &Path) -> wattlet_workers::server::LocalNats {
    wattlet_workers::server::LocalNats::start(
        free_port(),
        &dir.join("jetstream"),
        &dir.join("nats-server.log"),
    )
    .expect("nats-server starts (./dev test installs it)")
}

/// `servers` local `nats-server -js` processes on free ports as one JetStream cluster, each
/// server's store and log in `dir/n<i>`.
pub fn nats_cluster(dir: &Path, servers: usize) -> wattlet_workers::server::LocalCluster {
    let addresses: Vec<_> = (0..servers).map(|_| (free_port(), free_port())).collect();
    wattlet_workers::server::LocalCluster::start(&addresses, dir)
        .expect("nats-servers start as a cluster (./dev test installs nats-server)")
}

/// Sends SIGTERM to a child process (a graceful stop, as a service manager does).
pub fn terminate(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
}

/// A child process stopped with SIGTERM and reaped when dropped, however the test ends.
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // It may have exited already: then there is nothing to signal.
        if let Ok(None) = self.0.try_wait() {
            terminate(&self.0);
        }
        let _ = self.0.wait();
    }
}

/// Starts `wattlet up` (`wattlet` is the binary's command) from the repository with its state in
/// `state`, the NIALM queue's nats-server on `nats`, every other listener on a free port, and
/// quick timings (a reading every 300 ms, uploads every 600 ms, consent polled every 300 ms);
/// its stdout arrives line by line on the receiver, its log goes to `state/wattlet-up.log`.
pub fn start_up(
    wattlet: Command,
    state: &Path,
    nats: SocketAddr,
) -> (Child, mpsc::Receiver<String>) {
    start_up_with(
        wattlet,
        state,
        &[
            "--nats-listen",
            &nats.to_string(),
            "--worker-metrics-listen",
            &free_port().to_string(),
        ],
    )
}

/// [`start_up`] with `args` instead of the NIALM queue's (e.g. `--no-nialm`).
pub fn start_up_with(
    mut wattlet: Command,
    state: &Path,
    args: &[&str],
) -> (Child, mpsc::Receiver<String>) {
    let log = std::fs::File::create(state.join("wattlet-up.log")).expect("wattlet up's log");
    let mut child = wattlet
        .arg("up")
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .args(["--edge-metrics-listen", "127.0.0.1:0"])
        .args(["--measure", "300ms", "--report", "600ms"])
        .args(["--consent", "300ms"])
        .current_dir(crate::repo())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn wattlet up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}
