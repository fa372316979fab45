//! A local `nats-server` with JetStream as a child process: what `wattlet up` and the queue
//! tests run (Debian's `nats-server` package). In the cloud NATS runs as its own service.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

pub struct LocalNats {
    pub url: String,
    child: Child,
}

impl LocalNats {
    /// Starts `nats-server -js` on `listen`, its JetStream store in `store`, its log appended to
    /// `log`, and waits until it accepts connections.
    pub fn start(listen: SocketAddr, store: &Path, log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let mut child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                &listen.ip().to_string(),
                "-p",
                &listen.port().to_string(),
            ])
            .arg("-sd")
            .arg(store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context(
                "cannot start nats-server: install it (`apt-get install nats-server`; \
                 ./dev run and ./dev test do)",
            )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(listen).is_err() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "nats-server exited ({status}) before listening on {listen}; see {}",
                    log.display()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                anyhow::bail!("nats-server is not listening on {listen} after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(LocalNats {
            url: format!("nats://{listen}"),
            child,
        })
    }

    /// The server's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
