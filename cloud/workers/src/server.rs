//! A local `nats-server` with JetStream as a child process: what `wattlet up` and the queue
//! tests run (Debian's `nats-server` package). In the cloud NATS runs as its own service.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
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
        let child = spawn(listen, store, log, &[])?;
        Ok(LocalNats {
            url: format!("nats://{listen}"),
            child,
        })
    }

    /// [`LocalNats::start`] with a configuration file (`-c`, e.g. TLS and client
    /// certificates); `url` is then the address without a scheme's TLS hint (`nats://`),
    /// which the client upgrades when told to use TLS.
    pub fn start_with_config(
        listen: SocketAddr,
        store: &Path,
        log: &Path,
        config: &Path,
    ) -> anyhow::Result<Self> {
        let child = spawn(
            listen,
            store,
            log,
            &["-c".into(), config.display().to_string()],
        )?;
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

/// Starts `nats-server -js` on `listen` with `extra` arguments and waits until it listens.
fn spawn(listen: SocketAddr, store: &Path, log: &Path, extra: &[String]) -> anyhow::Result<Child> {
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
        .args(extra)
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
    Ok(child)
}

/// `nats-server -js` processes on loopback as one JetStream cluster (`wattlet`), each with its
/// own store and log: what the cluster tests run, killing and restarting servers.
pub struct LocalCluster {
    /// Every server's client URL, comma-separated (what `--nats` takes).
    pub url: String,
    nodes: Vec<Node>,
}

struct Node {
    client: SocketAddr,
    route: SocketAddr,
    dir: PathBuf,
    route_tls: Option<ServerTls>,
    child: Option<Child>,
}

/// A server's TLS with certificates both ways (nats.conf's `tls { … verify: true }`): it
/// presents `cert` and takes a connection only from a peer whose certificate `ca` issued. On a
/// cluster's routes, a process that can reach the route port cannot join the cluster and read
/// its streams.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl ServerTls {
    /// The `tls { … }` block for nats.conf, at top level (clients) or inside `cluster` (routes);
    /// paths double-quoted.
    pub fn config_block(&self) -> String {
        let path = |p: &Path| format!("{:?}", p.display().to_string());
        format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: true\n  timeout: 5\n}}\n",
            path(&self.cert),
            path(&self.key),
            path(&self.ca),
        )
    }
}

impl LocalCluster {
    /// Starts one server per `(client, route)` address pair, each in `dir/n<i>`.
    pub fn start(addresses: &[(SocketAddr, SocketAddr)], dir: &Path) -> anyhow::Result<Self> {
        let plain: Vec<_> = addresses.iter().map(|&(c, r)| (c, r, None)).collect();
        Self::start_with_route_tls(&plain, dir)
    }

    /// [`LocalCluster::start`] with each server's route TLS (`None`: plain routes); servers whose
    /// route TLS does not match never join the others (what the route TLS test shows).
    pub fn start_with_route_tls(
        servers: &[(SocketAddr, SocketAddr, Option<ServerTls>)],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut cluster = LocalCluster {
            url: servers
                .iter()
                .map(|(client, _, _)| format!("nats://{client}"))
                .collect::<Vec<_>>()
                .join(","),
            nodes: servers
                .iter()
                .enumerate()
                .map(|(i, (client, route, route_tls))| Node {
                    client: *client,
                    route: *route,
                    dir: dir.join(format!("n{i}")),
                    route_tls: route_tls.clone(),
                    child: None,
                })
                .collect(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.restart(i)?;
        }
        Ok(cluster)
    }

    /// Starts server `i` (again), on its store as it was left.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://{}", n.route))
            .collect();
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.dir)?;
        let mut extra = vec!["--server_name".to_owned(), format!("n{i}")];
        match &node.route_tls {
            // Route TLS has no command-line flags: the cluster block goes into a config file.
            Some(tls) => {
                let config = node.dir.join("nats.conf");
                std::fs::write(&config, cluster_config(node.route, &routes, tls))
                    .with_context(|| format!("cannot write {}", config.display()))?;
                extra.extend(["-c".to_owned(), config.display().to_string()]);
            }
            None => extra.extend([
                "--cluster_name".to_owned(),
                "wattlet".to_owned(),
                "--cluster".to_owned(),
                format!("nats://{}", node.route),
                "--routes".to_owned(),
                routes.join(","),
            ]),
        }
        let child = spawn(
            node.client,
            &node.dir.join("jetstream"),
            &node.dir.join("nats-server.log"),
            &extra,
        )?;
        node.child = Some(child);
        Ok(())
    }

    /// SIGKILLs server `i` (no goodbye to the others or the clients).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Connects once the servers have elected the cluster's JetStream leader (until then every
    /// JetStream request fails), waiting at most `timeout`.
    pub async fn connect_when_ready(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<async_nats::jetstream::Context> {
        let deadline = Instant::now() + timeout;
        let js = crate::connect(&self.url).await?;
        loop {
            // Listing the streams is a JetStream request that succeeds with none (account info
            // would do, but Debian's nats-server 2.9 and async-nats disagree on its reply).
            match futures::TryStreamExt::try_next(&mut js.stream_names()).await {
                Ok(_) => return Ok(js),
                Err(e) if Instant::now() > deadline => {
                    anyhow::bail!("the cluster's JetStream is not ready after {timeout:?}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Server `i`'s name in the cluster (`n<i>`), as JetStream names a stream's leader.
    pub fn name(i: usize) -> String {
        format!("n{i}")
    }
}

/// The `cluster` block of a server listening for routes on `listen`, routing to `routes`, over
/// `tls` (addresses double-quoted).
fn cluster_config(listen: SocketAddr, routes: &[String], tls: &ServerTls) -> String {
    let quoted = |s: &str| format!("{s:?}");
    let routes: Vec<_> = routes.iter().map(|r| quoted(r)).collect();
    format!(
        "cluster {{\n  name: wattlet\n  listen: {listen}\n  routes: [{routes}]\n{tls}}}\n",
        listen = quoted(&listen.to_string()),
        routes = routes.join(", "),
        tls = tls.config_block(),
    )
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
