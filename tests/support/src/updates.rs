//! A signed update repository on disk (written by `wattlet_updates::Publisher`) and devices
//! whose update agent reads it: the edge's update tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wattlet_edge::update::{Agent, UpdateSettings};
use wattlet_updates::{ComponentMeta, InitOptions, Publisher};

/// The WIT worlds the components are published for.
pub const PARSER_WORLD: &str = "wattlet:meter/meter-parser";
pub const UPLOAD_WORLD: &str = "wattlet:edge/upload";

/// A repository and its keys in a temporary directory.
pub struct UpdateRepo {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub publisher: Publisher,
    /// `1.root.json`, the root devices ship with.
    pub root: PathBuf,
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

impl UpdateRepo {
    pub fn new() -> UpdateRepo {
        let dir = tempfile::tempdir().expect("temporary directory");
        let repo = dir.path().join("repo");
        let keys = dir.path().join("keys");
        let publisher = block_on(Publisher::init(&repo, &keys, InitOptions::default()))
            .expect("repository created");
        let root = repo.join("metadata/1.root.json");
        assert!(root.is_file(), "{} written", root.display());
        UpdateRepo {
            dir,
            repo,
            publisher,
            root,
        }
    }

    /// Signs `wasm` as `version` of `name`, exporting `world`.
    pub fn publish(&self, name: &str, version: &str, world: &str, wasm: &Path) {
        let meta = ComponentMeta {
            name: name.into(),
            version: semver::Version::parse(version).expect("test version"),
            world: world.into(),
            min_host: semver::Version::new(0, 1, 0),
        };
        block_on(self.publisher.add(&meta, wasm)).expect("component published");
    }

    /// Update settings for a device reading this repository from its directory.
    pub fn settings(&self) -> UpdateSettings {
        UpdateSettings {
            repository: url::Url::from_directory_path(&self.repo).expect("absolute path"),
            root: self.root.clone(),
            poll_every: Duration::from_secs(3600),
            trial_deadline: Duration::from_secs(600),
            max_tries: 3,
            rollouts: false,
        }
    }

    /// The `[updates]` section of an edge configuration for this repository, polled every
    /// second.
    pub fn config_section(&self) -> String {
        format!(
            "\n[updates]\nrepository = {:?}\nroot = {:?}\npoll = \"1s\"\n",
            self.repo.display().to_string(),
            self.root.display().to_string()
        )
    }

    /// The update agent of a device with state in `state_dir`, shipped components found by
    /// the default search.
    pub fn agent(&self, state_dir: &Path, settings: UpdateSettings) -> Agent {
        let engine = wattlet_runtime::engine::engine().expect("engine");
        Agent::new(&engine, state_dir, Some(settings), None, None).expect("agent")
    }
}

impl Default for UpdateRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// A built component's file (`./dev` builds and composes them).
pub fn component(package: &str) -> PathBuf {
    wattlet_runtime::locate::locate(package, None)
        .unwrap_or_else(|e| panic!("{e} (./dev test builds the components)"))
}

/// Runs `future` to its end on a fresh runtime.
pub fn run<T>(future: impl Future<Output = T>) -> T {
    block_on(future)
}

/// Copies a device's state directory `from` into `to` (created), hard-linking component files
/// (`*.wasm`, `*.cwasm`): the update agent never writes a file in place, it replaces it.
pub fn clone_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("state directory");
    for entry in std::fs::read_dir(from).expect("state directory readable") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            clone_state(&path, &target);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("wasm" | "cwasm")
        ) {
            std::fs::hard_link(&path, &target).expect("hard link");
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// A device configuration for `state_dir` reading `repo`'s updates (no cloud is contacted:
/// no rollout gate).
pub fn device_config(dir: &Path, state_dir: &Path, repo: &UpdateRepo) -> PathBuf {
    let path = dir.join("edge.toml");
    let text = format!(
        "cloud = \"https://127.0.0.1:9\"\nstate_dir = {:?}\n[identity]\ncertificate = \"device.crt\"\nkey = \"device.key\"\ncloud_ca = \"ca.crt\"\n[[meter]]\nuuid = \"meter-1\"\ndevice = \"/dev/null\"\nprotocol = \"sml\"\n{}",
        state_dir.display().to_string(),
        repo.config_section() + "rollouts = false\n"
    );
    std::fs::write(&path, text).expect("edge.toml written");
    path
}
