//! `wattlet up`: the whole system on one machine, on embedded defaults.
//!
//! The cloud application (`spin.toml`) is served over mutual TLS; two simulated households
//! each get a measurement device with its own certificate and a simulated SML meter on a
//! pseudo-terminal; the first household grants consent, the second does not. Readings that
//! reach the cloud are printed as they arrive. A local `nats-server` with JetStream carries the
//! NIALM work queue: a work manager and a worker run alongside. Everything lives in one state
//! directory, so a second `wattlet up` continues where the first stopped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use wattlet_api_client::ApiClient;
use wattlet_edge::config::{EdgeConfig, Framing, Identity, MeterConfig};
use wattlet_edge::daemon::{Daemon, EdgeComponents};
use wattlet_edge::metrics::EdgeMetrics;
use wattlet_edge::update::UpdateSettings;
use wattlet_meter_sim as sim;
use wattlet_pki::{self as pki, CaDir, DeviceRequest, ServerRequest};
use wattlet_runtime::metrics::serve_admin;
use wattlet_serve::server::{App, Limits, ServeOptions, serve};
use wattlet_serve::tls::{ClientAuth, TlsOptions};
use wattlet_survey::RefusalCode;
use wattlet_survey::obis::{ENERGY_IMPORT, POWER_SUM, survey_code};
use wattlet_workers::api::ApiOptions;
use wattlet_workers::{
    QueueSettings,
    item::DEFAULT_MODELS,
    manager::ManagerOptions,
    server::LocalNats,
    worker::{ConfidentialOptions, WorkerOptions},
};

/// A simulated household: participant, device and meter.
struct Household {
    name: &'static str,
    email: &'static str,
    device: &'static str,
    meter: &'static str,
    model: &'static str,
    /// Where the household is (latitude, longitude) and its NUTS-3 region.
    location: (f64, f64, &'static str),
    server_id: [u8; 10],
    start_wh: u64,
    power_w: i64,
    grants_consent: bool,
}

/// The local worker's simulated TEE: its components, its measurement (this executable and the
/// components), and the key broker's policy allowing exactly that.
struct LocalTee {
    component: PathBuf,
    stream_component: PathBuf,
    measurement: String,
    policy: String,
}

impl LocalTee {
    fn measure(options: &UpOptions) -> anyhow::Result<LocalTee> {
        let component =
            wattlet_runtime::locate::locate("wattlet-nialm", options.components.as_deref())?;
        let stream_component = wattlet_runtime::locate::locate(
            "wattlet-stream-analytics",
            options.components.as_deref(),
        )?;
        // The worker runs in this process: /proc/self/exe is its host binary.
        let claims = wattlet_workers::tee::claims(wattlet_workers::tee::Measured::NialmWorker {
            nialm: &component,
            stream: &stream_component,
        })?;
        let measurement = wattlet_attestation::wattlet_measurement(&claims);
        let policy = format!(
            "# wattlet up: simulated evidence of this executable and its nialm and stream \
             components only\n\
             allowed_tees = [\"simulated\"]\nmeasurements = [\"{measurement}\"]\n"
        );
        wattlet_attestation::Policy::from_toml(&policy)
            .context("the local attestation policy does not parse")?;
        Ok(LocalTee {
            component,
            stream_component,
            measurement,
            policy,
        })
    }
}

/// Fixed ids, so a second `wattlet up` finds the households of the first.
const HOUSEHOLDS: [Household; 2] = [
    Household {
        name: "Ada Lovelace",
        email: "ada@example.org",
        device: "pi-ada",
        meter: "3f6c1a52-5d0e-4f7b-9a51-7a1c2e9b0a01",
        model: "MT681",
        location: (52.5163, 13.3777, "DE300"),
        server_id: [0x0a, 0x01, 0x49, 0x53, 0x4b, 0x00, 0x04, 0x58, 0x19, 0x41],
        start_wh: 12_345_678,
        power_w: 480,
        grants_consent: true,
    },
    Household {
        name: "Grace Hopper",
        email: "grace@example.org",
        device: "pi-grace",
        meter: "8b2d4e63-1c7f-4a09-b6d2-5e8f3a7c0b02",
        model: "DD3",
        location: (53.5511, 9.9937, "DE600"),
        server_id: [0x0a, 0x01, 0x45, 0x42, 0x5a, 0x01, 0x00, 0x0c, 0x33, 0x07],
        start_wh: 4_200_000,
        power_w: 310,
        grants_consent: false,
    },
];

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub manifest: PathBuf,
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The first device's metrics listener; the next device's one port higher (port 0: each
    /// device on a port of its own).
    pub edge_metrics_listen: SocketAddr,
    /// The NIALM worker's metrics listener.
    pub worker_metrics_listen: SocketAddr,
    pub components: Option<PathBuf>,
    pub measure_every: Duration,
    pub report_every: Duration,
    pub consent_every: Duration,
    /// Where the local NATS server listens for the NIALM queue; `None` runs no queue.
    pub nats_listen: Option<SocketAddr>,
    /// How often the devices' update agents poll the update repository.
    pub update_poll: Duration,
}

/// The signed update repository `spin.toml`'s `updates` component serves at `/updates/`
/// (`updates/` beside the manifest).
pub fn update_repository(manifest: &Path) -> PathBuf {
    manifest
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("updates")
}

/// The devices' `[updates]`: the cloud's `/updates/` over their mutual TLS, gated by the
/// cloud's staged rollouts, a short trial. `None` until the repository is initialised (its
/// first root is what a device ships with).
fn device_updates(
    repository: &Path,
    cloud: &str,
    device_dir: &Path,
    poll: Duration,
) -> anyhow::Result<Option<UpdateSettings>> {
    let published_root = repository.join("metadata").join("1.root.json");
    if !published_root.is_file() {
        return Ok(None);
    }
    // The root a device trusts first comes with it, once: a later repository does not
    // replace it (the device follows the repository's chain of roots from there).
    let root = device_dir.join("1.root.json");
    if !root.is_file() {
        std::fs::copy(&published_root, &root).with_context(|| {
            format!(
                "cannot give the device the repository's root {}",
                published_root.display()
            )
        })?;
    }
    Ok(Some(UpdateSettings {
        repository: url::Url::parse(&format!("{cloud}/updates/"))?,
        root,
        poll_every: poll,
        trial_deadline: Duration::from_secs(120),
        max_tries: 3,
        rollouts: true,
    }))
}

/// Runs until `shutdown` resolves, printing to `out`.
pub async fn run(
    options: UpOptions,
    out: &mut (dyn Write + Send),
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = &options.state_dir;
    std::fs::create_dir_all(state).with_context(|| format!("cannot create {}", state.display()))?;
    let ca = match CaDir::open(&state.join("ca")) {
        Ok(ca) => ca,
        Err(pki::PkiError::NotInitialized(_)) => CaDir::init(
            &state.join("ca"),
            "wattlet local CA",
            pki::DEFAULT_CA_VALIDITY,
            false,
        )?,
        Err(e) => return Err(e.into()),
    };
    let server_prefix = state.join("server");
    if !server_prefix.with_extension("crt").is_file() {
        ca.issue_server(&ServerRequest::default())?
            .write(&server_prefix)?;
    }
    let admin_token = kept_secret(&state.join("admin-token"))?;
    // Wraps the households' data keys in the cloud's database: kept with it, as admin-token.
    let key_encryption_key = kept_secret(&state.join("key-encryption-key"))?;
    // Only this process signs and checks identity proofs: a fresh key each run, kept nowhere.
    let identity_key = random_hex()?;
    // The NIALM worker runs in this process with the simulated TEE (no TEE here): the key
    // broker's policy allows simulated evidence of exactly this executable and nialm component.
    let confidential = match options.nats_listen {
        Some(_) => Some(LocalTee::measure(&options)?),
        None => None,
    };

    let serve_options = ServeOptions {
        manifest: options.manifest.clone(),
        state_dir: Some(state.join("cloud")),
        runtime_config: None,
        max_request_bytes: 16 << 20,
        tls: Some(TlsOptions {
            cert: server_prefix.with_extension("crt"),
            key: server_prefix.with_extension("key"),
            client_ca: ca.ca_cert_path(),
            crl: Some(ca.crl_path()),
            client_auth: ClientAuth::Optional,
        }),
        limits: Limits::default(),
    };
    let app = Arc::new(App::load_with_env(&serve_options, |name| match name {
        "SPIN_VARIABLE_ADMIN_TOKEN" => Some(admin_token.clone()),
        "SPIN_VARIABLE_CLIENT_IDENTITY_KEY" => Some(identity_key.clone()),
        "SPIN_VARIABLE_KEY_ENCRYPTION_KEY" => Some(key_encryption_key.clone()),
        "SPIN_VARIABLE_ATTESTATION_POLICY" => confidential.as_ref().map(|c| c.policy.clone()),
        _ => std::env::var(name).ok(),
    })?);
    let listener = wattlet_runtime::accept::bind(options.listen)
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let admin = TcpListener::bind(options.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", options.admin_listen))?;
    let address = listener.local_addr()?;
    let metrics_address = admin.local_addr()?;
    tokio::spawn(serve_admin(app.metrics.clone(), admin));
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(app, listener, async {
        let _ = serving_stopped.await;
    }));

    let cloud = format!("https://{address}");
    let admin_tls = Arc::new(wattlet_tls::anonymous_client_tls_config(
        &ca.ca_cert_path(),
    )?);
    let admin = ApiClient::new(&cloud, Some(admin_tls))?.with_bearer(admin_token.clone());
    let engine = wattlet_runtime::engine::engine()?;
    let stop_meters = Arc::new(AtomicBool::new(false));
    let mut meters = Vec::new();
    let mut daemons = Vec::new();
    let (stop_daemons, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut devices = Vec::new();
    // Each device's metrics as a scraper sees them: (device id, address).
    let mut device_metrics = Vec::new();
    let mut updating = false;
    for (index, household) in HOUSEHOLDS.iter().enumerate() {
        let device_dir = state.join("devices").join(household.device);
        std::fs::create_dir_all(&device_dir)
            .with_context(|| format!("cannot create {}", device_dir.display()))?;
        let prefix = device_dir.join("device");
        if !prefix.with_extension("crt").is_file() {
            ca.issue_device(&DeviceRequest::new(household.device, household.email))?
                .write(&prefix)?;
        }
        let (status, body) = admin
            .send(
                "POST",
                "/api/management/household",
                Some(&json!({
                "name": household.name,
                "email": household.email,
                "device": household.device,
                "meters": [{"uuid": household.meter, "type": "ELECTRICITY", "model": household.model}],
                "location": {
                    "latitude": household.location.0,
                    "longitude": household.location.1,
                    "nuts3": household.location.2,
                },
                })),
                &[],
            )
            .await?;
        if status != 201 && status != 409 {
            bail!(
                "registering {} failed: HTTP {status} {body}",
                household.name
            );
        }

        let pty = sim::Pty::open()?;
        let device_path = pty.slave_path().to_path_buf();
        let stop = stop_meters.clone();
        let sim_options = sim::Options {
            source: sim::Source::Synthetic {
                server_id: household.server_id.to_vec(),
                start_wh: meter_reading_now(household),
                mean_power_w: household.power_w,
            },
            interval: Duration::from_secs(2),
            count: None,
        };
        meters.push(std::thread::spawn(move || {
            sim::run(&pty, &sim_options, &stop)
        }));

        let config = EdgeConfig {
            cloud: cloud.clone(),
            state_dir: device_dir.join("state"),
            identity: Identity {
                certificate: prefix.with_extension("crt"),
                key: prefix.with_extension("key"),
                cloud_ca: ca.ca_cert_path(),
            },
            measure_every: options.measure_every,
            report_every: options.report_every,
            consent_every: options.consent_every,
            journal: false,
            metrics_listen: None,
            updates: device_updates(
                &update_repository(&options.manifest),
                &cloud,
                &device_dir,
                options.update_poll,
            )?
            .inspect(|_| updating = true),
            meters: vec![MeterConfig {
                uuid: household.meter.to_owned(),
                device: device_path.clone(),
                protocol: wattlet_meter_parser::Protocol::Sml,
                baud: sim::BAUD,
                framing: Framing::EightN1,
                model: Some(household.model.to_owned()),
                expected: vec![ENERGY_IMPORT.to_owned(), POWER_SUM.to_owned()],
            }],
        };
        let device = ApiClient::new(
            &cloud,
            Some(Arc::new(wattlet_tls::client_tls_config(
                &config.identity.certificate,
                &config.identity.key,
                &config.identity.cloud_ca,
            )?)),
        )?;
        if household.grants_consent {
            match device.call("POST", "/api/household/consent", None).await {
                Ok(_) => {}
                // A second run: granted before, or revoked meanwhile (then for good).
                Err(error)
                    if error.refusal().is_some_and(|r| {
                        r.is(RefusalCode::ConsentAlreadyGranted)
                            || r.is(RefusalCode::ConsentRevoked)
                    }) => {}
                Err(error) => bail!("granting consent for {} failed: {error}", household.name),
            }
        }
        devices.push(device);
        let components = EdgeComponents::load(&engine, &config, options.components.as_deref())?;
        let edge_metrics = Arc::new(EdgeMetrics::new());
        let metrics_at = edge_metrics_address(options.edge_metrics_listen, index)?;
        let metrics_listener = TcpListener::bind(metrics_at)
            .await
            .with_context(|| format!("cannot listen on {metrics_at} (device metrics)"))?;
        device_metrics.push((household.device, metrics_listener.local_addr()?));
        tokio::spawn(serve_admin(edge_metrics.clone(), metrics_listener));
        let daemon = Daemon::new(config, components, edge_metrics)?;
        let mut stop = stop_daemons.subscribe();
        daemons.push(tokio::spawn(daemon.run(async move {
            let _ = stop.recv().await;
        })));
        writeln!(
            out,
            "  {:<13} <{}>  device {}  meter {} ({}) on {}  consent {}",
            household.name,
            household.email,
            household.device,
            household.meter,
            household.model,
            device_path.display(),
            if household.grants_consent {
                "granted"
            } else {
                "not granted: nothing is measured"
            },
        )?;
    }
    let nialm = match (options.nats_listen, &confidential) {
        (Some(listen), Some(tee)) => {
            writeln!(
                out,
                "  SIMULATED TEE: the NIALM worker attests with simulated evidence (no TEE on \
                 this machine; it proves nothing); the key broker's policy here allows \
                 simulated evidence of measurement {} only",
                tee.measurement
            )?;
            Some(Nialm::start(&options, listen, &admin, &cloud, &ca, tee).await?)
        }
        _ => None,
    };
    writeln!(out)?;
    writeln!(
        out,
        "Data API   {cloud}/api/health  (CA {}; devices use their certificates)",
        ca.ca_cert_path().display()
    )?;
    // spin.toml's `updates` component serves this directory (README "Signed updates").
    let updates = update_repository(&options.manifest);
    if updating {
        writeln!(
            out,
            "Updates    {cloud}/updates/  (the signed repository in {}); the devices poll it \
             every {} and install what a rollout admits them to: `wattlet release add`, then \
             POST {cloud}/api/management/rollout",
            updates.display(),
            humantime::format_duration(options.update_poll)
        )?;
    } else {
        writeln!(
            out,
            "Updates    {cloud}/updates/  (the signed update repository in {}: `wattlet release \
             init --repo` it and start again for the devices to poll it)",
            updates.display()
        )?;
    }
    writeln!(
        out,
        "Metrics    http://{metrics_address}/metrics (the cloud host)"
    )?;
    for (device, address) in &device_metrics {
        writeln!(out, "Metrics    http://{address}/metrics (device {device})")?;
    }
    if nialm.is_some() {
        writeln!(
            out,
            "Metrics    http://{}/metrics (NIALM worker)",
            options.worker_metrics_listen
        )?;
    }
    writeln!(
        out,
        "Metrics    {cloud}/api/management/metrics and {cloud}/kbs/v0/metrics (the Data API \
         and the key broker; bearer: the admin token)"
    )?;
    if let Some(nialm) = &nialm {
        writeln!(
            out,
            "NIALM      {} (JetStream): work manager every {}, one worker; hourly appliance \
             estimates once a consenting meter has 1 h 49 min of data: \
             GET {cloud}/api/management/meter/<uuid>/disaggregation",
            nialm.nats.url,
            humantime::format_duration(NIALM_PASS_EVERY)
        )?;
        writeln!(
            out,
            "Forecast   the load forecast of a consenting meter once it has 1 h of data, \
             renewed as its data moves on 5 min: \
             GET {cloud}/api/management/meter/<uuid>/forecast"
        )?;
    }
    writeln!(
        out,
        "Admin      bearer token in {}",
        state.join("admin-token").display()
    )?;
    writeln!(
        out,
        "Web UIs    {cloud}/ui/registration/ and {cloud}/ui/status/ (enter the admin token)"
    )?;
    // Each device obtains its participant's link to the device UI, as a real device shows it.
    for (household, device) in HOUSEHOLDS.iter().zip(&devices) {
        let (status, body) = device
            .send("POST", "/api/household/token", None, &[])
            .await?;
        match body["ui"].as_str() {
            Some(link) if status == 201 => {
                writeln!(out, "Device UI  {:<13} {cloud}{link}", household.name)?;
            }
            _ => bail!(
                "the device of {} got no device UI link: HTTP {status} {body}",
                household.name
            ),
        }
    }
    writeln!(
        out,
        "Measuring every {}, uploading every {}. Readings as they reach the cloud (Ctrl-C stops):",
        humantime::format_duration(options.measure_every),
        humantime::format_duration(options.report_every)
    )?;
    out.flush()?;

    let watch = async {
        // Only what is measured from now on: earlier runs' measurements are not news.
        let mut from = vec![std::time::SystemTime::now(); HOUSEHOLDS.len()];
        let mut printed: Vec<Option<std::time::SystemTime>> = vec![None; HOUSEHOLDS.len()];
        loop {
            for (i, household) in HOUSEHOLDS.iter().enumerate() {
                let path = format!(
                    "/api/household/meter/{}/measurement?from={}",
                    household.meter,
                    wattlet_edge::daemon::rfc3339(from[i])
                );
                let Ok((200, body)) = devices[i].send("GET", &path, None, &[]).await else {
                    continue;
                };
                for m in body["measurements"].as_array().into_iter().flatten() {
                    let Some(at) = m["measured_at"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339(t).ok())
                    else {
                        continue;
                    };
                    // `from` is inclusive: the last one printed comes back once more.
                    if printed[i].is_some_and(|last| at <= last) {
                        continue;
                    }
                    let _ = writeln!(out, "{}", describe(household, m));
                    printed[i] = Some(at);
                    from[i] = at;
                }
            }
            let _ = out.flush();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = watch => {}
    }
    let _ = stop_daemons.send(());
    if let Some(nialm) = nialm {
        nialm.stop().await?;
    }
    for daemon in daemons {
        daemon
            .await
            .map_err(|e| anyhow!("edge daemon failed: {e}"))??;
    }
    stop_meters.store(true, Ordering::Relaxed);
    for meter in meters {
        let _ = meter.join();
    }
    let _ = stop_serving.send(());
    server.await.map_err(|e| anyhow!("server failed: {e}"))??;
    Ok(())
}

/// How often the local work manager looks for new NIALM work.
const NIALM_PASS_EVERY: Duration = Duration::from_secs(60);

/// The NIALM queue of the local system: NATS server, work manager, one worker.
struct Nialm {
    nats: LocalNats,
    stop: tokio::sync::watch::Sender<bool>,
    manager: tokio::task::JoinHandle<anyhow::Result<()>>,
    worker: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Nialm {
    /// Starts NATS, the manager and a worker; `admin` mints the worker token they use to reach
    /// the Data API at `cloud`.
    async fn start(
        options: &UpOptions,
        listen: SocketAddr,
        admin: &ApiClient,
        cloud: &str,
        ca: &CaDir,
        tee: &LocalTee,
    ) -> anyhow::Result<Self> {
        let state = &options.state_dir;
        // The longest a token may live (90 days): `wattlet up` runs as long as it is left on.
        let expires_at = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + Duration::from_secs(89 * 24 * 3600),
        )
        .to_string();
        // The manager (role manager: readings and household keys) and the worker (role worker:
        // results only) each with their own token.
        let mut tokens = Vec::with_capacity(2);
        for role in ["manager", "worker"] {
            let minted = admin
                .call(
                    "POST",
                    "/api/management/token",
                    Some(&json!({ "role": role, "expires_at": expires_at })),
                )
                .await
                .with_context(|| format!("cannot mint the NIALM {role}'s access token"))?;
            let token = minted["token"]
                .as_str()
                .context("the Data API minted no token")?
                .to_owned();
            tokens.push(ApiOptions {
                url: cloud.to_owned(),
                ca: Some(ca.ca_cert_path()),
                token,
            });
        }
        let (Some(api), Some(manager_api)) = (tokens.pop(), tokens.pop()) else {
            anyhow::bail!("no NIALM access tokens");
        };
        let nats = LocalNats::start(listen, &state.join("nats"), &state.join("nats-server.log"))?;
        let component = tee.component.clone();
        let stream_component = tee.stream_component.clone();
        tracing::warn!(
            "SIMULATED TEE: the local NIALM worker attests with simulated evidence, which proves \
             nothing (wattlet up opts into it; a real deployment runs workers in SEV-SNP or TDX)"
        );
        let confidential = ConfidentialOptions {
            broker: api.clone(),
            attester: wattlet_workers::tee::simulated(
                wattlet_workers::tee::Measured::NialmWorker {
                    nialm: &component,
                    stream: &stream_component,
                },
            )?,
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let manager = tokio::spawn(wattlet_workers::manager::run(
            ManagerOptions {
                nats: (&nats.url).into(),
                api: manager_api,
                models: DEFAULT_MODELS.map(String::from).to_vec(),
                settings: QueueSettings::default(),
                interval: Some(NIALM_PASS_EVERY),
                plaintext: false,
                forecast: true,
            },
            until_stopped(stopped.clone()),
        ));
        let worker = tokio::spawn(wattlet_workers::worker::run(
            WorkerOptions {
                nats: (&nats.url).into(),
                api,
                component,
                stream_component,
                limits: wattlet_runtime::sandbox::Limits::NIALM,
                settings: QueueSettings::default(),
                batch: 16,
                concurrency: 1,
                metrics_listen: Some(options.worker_metrics_listen),
                confidential: Some(confidential),
                plaintext: false,
            },
            until_stopped(stopped),
        ));
        Ok(Nialm {
            nats,
            stop,
            manager,
            worker,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.manager
            .await
            .map_err(|e| anyhow!("NIALM manager failed: {e}"))??;
        self.worker
            .await
            .map_err(|e| anyhow!("NIALM worker failed: {e}"))??;
        drop(self.nats);
        Ok(())
    }
}

/// The metrics address of device `index`: `first`'s port plus `index`, or port 0 for each.
fn edge_metrics_address(first: SocketAddr, index: usize) -> anyhow::Result<SocketAddr> {
    if first.port() == 0 {
        return Ok(first);
    }
    let port = u16::try_from(index)
        .ok()
        .and_then(|i| first.port().checked_add(i))
        .context("--edge-metrics-listen: no port left for every device")?;
    Ok(SocketAddr::new(first.ip(), port))
}

/// Where the simulated meter's counter stands now: as if it had run at its mean power since
/// 2026-01-01, so a later `wattlet up` never shows it lower than an earlier one did.
fn meter_reading_now(household: &Household) -> u64 {
    const SINCE: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let hours = now.saturating_sub(SINCE) / 3600;
    household.start_wh + hours * household.power_w.unsigned_abs()
}

/// One line per measurement: time, device, meter and its readings with units.
fn describe(household: &Household, m: &Value) -> String {
    let mut line = format!(
        "{}  {:<9} meter {}",
        m["measured_at"].as_str().unwrap_or("?"),
        household.device,
        &household.meter[..8]
    );
    for entry in m["data"].as_array().into_iter().flatten() {
        for (code, value) in entry.as_object().into_iter().flatten() {
            let (label, unit) = match survey_code(code) {
                Some(known) => (known.label, known.quantity.unit()),
                None => (code.as_str(), ""),
            };
            line.push_str(&format!("  {label} {value} {unit}"));
        }
    }
    line
}

/// A kept secret (the administrator's bearer token, the key-encryption key): made once, kept
/// in a file only its owner can read.
fn kept_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = random_hex()?;
    pki::write_atomic(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}

/// A secret of 256 random bits as 64 hex digits.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow!("no system randomness for a secret"))?;
    Ok(hex::encode(bytes))
}
