//! `wattlet serve` in the test's own process: an application loaded with `wattlet-serve`'s
//! library and served on loopback from a runtime of its own, as the CLI does.
//!
//! ```ignore
//! let served = serve::start(&serve::probe_options(dir.path()), &[("api_token", PROBE_TOKEN)]);
//! let reply = http::get(served.addr, "/probe/hello").await;
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use wattlet_serve::server::{App, ServeOptions, TlsOptions, serve};

use crate::repo;

/// The value of the probe application's required variable `api_token` in every test.
pub const PROBE_TOKEN: &str = "t0ken";

/// The largest request body the probe application takes in the tests (larger ones get 413).
pub const PROBE_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The Spin probe application (`tests/spin/spin.toml`, its components in tests/components) with
/// its runtime configuration (the `extra` database), state in `state_dir`, 64 KiB bodies. It
/// needs the variable `api_token` (see [`PROBE_TOKEN`]).
pub fn probe_options(state_dir: &Path) -> ServeOptions {
    ServeOptions {
        manifest: repo().join("tests/spin/spin.toml"),
        state_dir: Some(state_dir.to_path_buf()),
        runtime_config: Some(repo().join("tests/spin/runtime-config.toml")),
        max_request_bytes: PROBE_MAX_REQUEST_BYTES,
        tls: None,
        limits: Default::default(),
    }
}

/// The repository's application (`spin.toml`: the Data API and the web UIs), state in
/// `state_dir`; a full upload batch (1000 measurements) fits, as with `wattlet up`. It needs the
/// variables `admin_token`, `client_identity_key` and `key_encryption_key` (see
/// [`crate::APP_VARIABLES`]).
pub fn app_options(state_dir: &Path) -> ServeOptions {
    ServeOptions {
        manifest: repo().join("spin.toml"),
        state_dir: Some(state_dir.to_path_buf()),
        runtime_config: None,
        max_request_bytes: 16 << 20,
        tls: None,
        limits: Default::default(),
    }
}

/// The repository's `spin.toml` as text for a copy kept elsewhere: every component's source
/// made absolute; the `updates` files mount left relative (the copy's own `updates/`).
fn manifest_for_a_copy() -> String {
    let manifest = std::fs::read_to_string(repo().join("spin.toml")).expect("spin.toml");
    manifest.replace(
        "source = \"target/",
        &format!("source = \"{}/target/", repo().display()),
    )
}

/// `spin.toml` copied into `dir`, serving the update repository in `dir/updates` (created
/// empty): for a test that publishes updates of its own (`wattlet up --manifest`).
pub fn manifest_elsewhere(dir: &Path) -> PathBuf {
    let manifest = manifest_for_a_copy();
    assert!(
        manifest.contains("{ source = \"updates\""),
        "spin.toml mounts updates/"
    );
    std::fs::create_dir_all(dir.join("updates")).expect("updates dir");
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).expect("write the manifest");
    path
}

/// [`app_options`] with the Data API's component replaced by `wasm`, a file in the repository's
/// `target/wasm32-wasip2/component` (e.g. `wattlet_data_api_trapping_policy.wasm`, a
/// composition with a test policy, built by `./dev`): the manifest is copied into `state_dir`
/// with that source, everything else as in `spin.toml`, its `updates/` an empty directory of
/// its own (Spin maps no files from outside the manifest's directory).
pub fn app_options_with_data_api(state_dir: &Path, wasm: &str) -> ServeOptions {
    let shipped = repo().join("target/wasm32-wasip2/component/wattlet_data_api_composed.wasm");
    let shipped = format!("source = \"{}\"", shipped.display());
    let manifest = manifest_for_a_copy();
    assert!(manifest.contains(&shipped), "spin.toml has {shipped}");
    let replaced = repo().join("target/wasm32-wasip2/component").join(wasm);
    assert!(
        replaced.is_file(),
        "{} missing: run ./dev build",
        replaced.display()
    );
    let manifest = manifest.replace(&shipped, &format!("source = \"{}\"", replaced.display()));
    std::fs::create_dir_all(state_dir.join("updates")).expect("state dir");
    let path = state_dir.join("spin.toml");
    std::fs::write(&path, manifest).expect("write the manifest");
    ServeOptions {
        manifest: path,
        ..app_options(state_dir)
    }
}

/// The static-file component as `./dev` builds it (`components/static-files`).
pub const STATIC_FILES_WASM: &str = "target/wasm32-wasip2/component/wattlet_static_files.wasm";

/// A manifest in `dir` (`dir/spin.toml`, which `spin up` reads as well) with the `updates`
/// component of the repository's `spin.toml`: the static-file component at `/updates/...`,
/// serving `dir/<files>` mounted at `/`.
pub fn static_files_manifest(dir: &Path, files: &str) -> PathBuf {
    let shipped = std::fs::read_to_string(repo().join("spin.toml")).expect("spin.toml");
    for line in [
        "route = \"/updates/...\"",
        "files = [{ source = \"updates\", destination = \"/\" }]",
    ] {
        assert!(shipped.contains(line), "spin.toml has {line}");
    }
    let wasm = repo().join(STATIC_FILES_WASM);
    assert!(
        wasm.is_file(),
        "{} missing: run ./dev build (or build wattlet-static-files for wasm32-wasip2)",
        wasm.display()
    );
    let manifest = format!(
        "spin_manifest_version = 2\n[application]\nname = \"updates\"\n\
         [[trigger.http]]\nroute = \"/updates/...\"\ncomponent = \"updates\"\n\
         [component.updates]\nsource = {:?}\nfiles = [{{ source = {files:?}, destination = \"/\" }}]\n",
        wasm.display().to_string()
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).expect("write the manifest");
    path
}

/// [`static_files_manifest`] served by `wattlet serve`, its state in `dir/state`, with mutual
/// TLS when `tls` is given.
pub fn static_files_options(dir: &Path, files: &str, tls: Option<TlsOptions>) -> ServeOptions {
    ServeOptions {
        manifest: static_files_manifest(dir, files),
        state_dir: Some(dir.join("state")),
        runtime_config: None,
        max_request_bytes: 64 * 1024,
        tls,
        limits: Default::default(),
    }
}

/// An application served on loopback until dropped (a `static` one, for the whole test binary).
pub struct Served {
    /// Where it listens (plain HTTP, or mutual TLS when its options had `tls`).
    pub addr: SocketAddr,
    /// The loaded application: its routes, its metrics.
    pub app: Arc<App>,
    state_dir: PathBuf,
    handle: Handle,
    _stop: oneshot::Sender<()>,
    /// The runtime [`start`] made (none with [`start_on`]); shut down in the background when
    /// dropped, so a `Served` may end inside an async test.
    runtime: Option<Runtime>,
    /// A directory that lives as long as the server (see [`Served::keeping`]).
    kept: Option<tempfile::TempDir>,
}

/// Loads the application of `options`, with `variables` (`(name, value)`, as in the manifest's
/// `[variables]`) instead of the process environment, and serves it on a free loopback port from
/// a multi-thread runtime of its own. Panics when the application does not load (most often: its
/// components are not built; `./dev test` builds them).
pub fn start(options: &ServeOptions, variables: &[(&str, &str)]) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("wattlet-serve")
        .enable_all()
        .build()
        .expect("the server's runtime");
    let mut served = start_on(runtime.handle(), options, variables);
    served.runtime = Some(runtime);
    served
}

/// [`start`] on a runtime the caller owns (a bench that measures the server and its clients on
/// one runtime).
pub fn start_on(handle: &Handle, options: &ServeOptions, variables: &[(&str, &str)]) -> Served {
    let variables: Vec<(String, String)> = variables
        .iter()
        .map(|(name, value)| {
            (
                format!("SPIN_VARIABLE_{}", name.to_uppercase()),
                (*value).to_owned(),
            )
        })
        .collect();
    let env = |key: &str| {
        variables
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    };
    let app = Arc::new(App::load_with_env(options, env).unwrap_or_else(|e| {
        panic!(
            "{} does not load (./dev test builds its components first): {e:#}",
            options.manifest.display()
        )
    }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    listener.set_nonblocking(true).expect("nonblocking");
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = app.clone();
    handle.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let stopped = async {
            let _ = stopped.await;
        };
        serve(serving, listener, stopped)
            .await
            .expect("wattlet serve");
    });
    Served {
        addr,
        app,
        state_dir: options
            .state_dir
            .clone()
            .unwrap_or_else(|| options.manifest.with_file_name(".spin")),
        handle: handle.clone(),
        _stop: stop,
        runtime: None,
        kept: None,
    }
}

impl Served {
    /// `http://…` or `https://…` and the address.
    pub fn url(&self) -> String {
        format!("{}://{}", self.app.scheme(), self.addr)
    }

    /// The same server, keeping `dir` (its state, certificates) until it is dropped.
    pub fn keeping(mut self, dir: tempfile::TempDir) -> Served {
        self.kept = Some(dir);
        self
    }

    /// The runtime the server runs on (clients may block on it, outside async code).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The application's default SQLite database (`sqlite_db.db` in its state directory).
    pub fn database(&self) -> PathBuf {
        self.state_dir.join("sqlite_db.db")
    }

    /// Serves the application's Prometheus metrics (`GET /metrics`) on another free loopback
    /// port, as `wattlet serve --admin-listen` does; returns that address.
    pub fn serve_metrics(&self) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind metrics");
        let addr = listener.local_addr().expect("metrics address");
        listener.set_nonblocking(true).expect("nonblocking");
        let metrics = self.app.metrics.clone();
        self.handle.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            wattlet_runtime::metrics::serve_admin(metrics, listener).await
        });
        addr
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        // The server is gone before its directory.
        self.kept.take();
    }
}
