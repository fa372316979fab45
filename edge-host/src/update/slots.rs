//! The update state on disk and the slot directories, under `<state_dir>/components/`:
//!
//! ```text
//! components/<name>/state.json        the machine's state (which slot runs, a trial, the last outcome)
//! components/<name>/{a,b}/component.wasm    the verified bytes the repository signed
//! components/<name>/{a,b}/component.cwasm   precompiled by this device's wasmtime
//! components/_verifier/                the TUF client's datastore (trusted metadata, floors)
//! ```
//!
//! `state.json` is the pointer to the active slot: every change is written to a temporary file,
//! synced, renamed over it and the directory synced, so a power cut or `kill -9` leaves the old
//! state or the new one. Slot files are written the same way, and only ever into the slot that
//! neither runs nor is committed.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::Kind;
use super::machine::{Event, Installed, Slot, State, advance};

pub const WASM: &str = "component.wasm";
pub const CWASM: &str = "component.cwasm";
const STATE: &str = "state.json";

/// The update directories of one device.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store below `state_dir` (the daemon's state directory).
    pub fn new(state_dir: &Path) -> Store {
        Store {
            root: state_dir.join("components"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The TUF client's datastore.
    pub fn verifier_dir(&self) -> PathBuf {
        self.root.join("_verifier")
    }

    pub fn dir(&self, kind: Kind) -> PathBuf {
        self.root.join(kind.name())
    }

    pub fn slot_dir(&self, kind: Kind, slot: Slot) -> PathBuf {
        self.dir(kind).join(slot.dir_name())
    }

    /// The component's state; the default (shipped component, nothing in progress) if none
    /// was ever written.
    pub fn load(&self, kind: Kind) -> anyhow::Result<State> {
        let path = self.dir(kind).join(STATE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not an update state", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self, kind: Kind, state: &State) -> anyhow::Result<()> {
        let dir = self.dir(kind);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let bytes = serde_json::to_vec_pretty(state).context("update state")?;
        write_atomically(&dir.join(STATE), &bytes)
    }

    /// Advances the machine by `event` and persists the result before returning it.
    pub fn advance(&self, kind: Kind, state: &State, event: Event) -> anyhow::Result<State> {
        let next = advance(state, event)?;
        if next != *state {
            self.save(kind, &next)?;
        }
        Ok(next)
    }

    /// Writes `wasm` and its precompiled `cwasm` into `slot` (each atomically, then the
    /// directory synced) and returns their digests.
    pub fn write_slot(
        &self,
        kind: Kind,
        slot: Slot,
        version: &semver::Version,
        wasm: &[u8],
        cwasm: &[u8],
    ) -> anyhow::Result<Installed> {
        let dir = self.slot_dir(kind, slot);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomically(&dir.join(WASM), wasm)?;
        write_atomically(&dir.join(CWASM), cwasm)?;
        Ok(Installed {
            slot,
            version: version.clone(),
            wasm_sha256: sha256(wasm),
            cwasm_sha256: sha256(cwasm),
        })
    }

    /// The paths of `installed`'s files if both still have the digests recorded at staging.
    pub fn verify(&self, kind: Kind, installed: &Installed) -> anyhow::Result<SlotFiles> {
        let dir = self.slot_dir(kind, installed.slot);
        let files = SlotFiles {
            wasm: dir.join(WASM),
            cwasm: dir.join(CWASM),
        };
        for (path, expected) in [
            (&files.wasm, &installed.wasm_sha256),
            (&files.cwasm, &installed.cwasm_sha256),
        ] {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let actual = sha256(&bytes);
            if actual != *expected {
                anyhow::bail!(
                    "{} has SHA-256 {actual}, not {expected} as staged",
                    path.display()
                );
            }
        }
        Ok(files)
    }
}

/// A slot's verified files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFiles {
    pub wasm: PathBuf,
    pub cwasm: PathBuf,
}

/// Where a component comes from at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An installed version whose files verify.
    Slot(Installed, SlotFiles),
    /// The component the device shipped with (found by `wattlet_runtime::locate`).
    Shipped,
}

impl Source {
    pub fn version(&self) -> Option<&semver::Version> {
        match self {
            Source::Slot(installed, _) => Some(&installed.version),
            Source::Shipped => None,
        }
    }

    /// Loads the component for `engine`. An installed version is loaded from its precompiled
    /// file; if this engine cannot take it (the device's wasmtime was upgraded since), it is
    /// compiled again from the verified `.wasm`.
    pub fn load(&self, engine: &Engine, shipped: &Path) -> anyhow::Result<Component> {
        match self {
            Source::Slot(_, files) => match deserialize(engine, &files.cwasm) {
                Ok(component) => Ok(component),
                Err(error) => {
                    tracing::warn!(file = %files.cwasm.display(), %error, "precompiled component not usable by this engine; compiling it again");
                    Component::from_file(engine, &files.wasm)
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("cannot compile {}", files.wasm.display()))
                }
            },
            Source::Shipped => Component::from_file(engine, shipped)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot load component {}", shipped.display())),
        }
    }
}

/// Loads a precompiled component.
pub fn deserialize(engine: &Engine, cwasm: &Path) -> anyhow::Result<Component> {
    // SAFETY: wasmtime runs precompiled code as it is, so the file must be one its own
    // `precompile_component` wrote. It is: only the update agent writes slot files, from this
    // engine's `precompile_component`, into the device's own state directory; the caller
    // checked its SHA-256 against the digest recorded when it was written
    // (`Store::verify`); and wasmtime itself refuses files of another version or
    // configuration.
    unsafe { Component::deserialize_file(engine, cwasm) }
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot load precompiled {}", cwasm.display()))
}

/// What [`resolve`] decided.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub source: Source,
    /// The state after the restart was counted (and any roll back).
    pub state: State,
}

/// Decides which component to run after a (re)start: a trial that did not commit counts a try
/// (too many, or past its deadline: rolled back); then the active slot if its files verify,
/// else the committed one, else the shipped component. Never neither: an unreadable state or
/// failing files fall back, and the state is persisted before anything is loaded.
pub fn resolve(store: &Store, kind: Kind, now: u64, max_tries: u32) -> Resolved {
    choose(store, kind, Event::Restarted { now, max_tries })
}

/// What runs now, without counting a start (after a switch, commit or roll back while
/// running); a trial past its deadline is rolled back.
pub fn current(store: &Store, kind: Kind, now: u64) -> Resolved {
    choose(store, kind, Event::Tick { now })
}

fn choose(store: &Store, kind: Kind, event: Event) -> Resolved {
    let state = match store.load(kind) {
        Ok(state) => state,
        Err(error) => {
            // The state file is only ever replaced whole, so this is damage from outside:
            // run the shipped component and leave the file for someone to look at.
            tracing::error!(
                component = kind.name(),
                error = format!("{error:#}"),
                "update state unreadable; running the shipped component"
            );
            return Resolved {
                source: Source::Shipped,
                state: State::default(),
            };
        }
    };
    let mut state = match store.advance(kind, &state, event) {
        Ok(next) => next,
        Err(error) => {
            tracing::error!(
                component = kind.name(),
                error = format!("{error:#}"),
                "cannot record the restart"
            );
            state
        }
    };
    if let Some(active) = state.active().cloned() {
        match store.verify(kind, &active) {
            Ok(files) => {
                return Resolved {
                    source: Source::Slot(active, files),
                    state,
                };
            }
            Err(error) => {
                let reason = format!("files do not verify: {error:#}");
                tracing::error!(component = kind.name(), version = %active.version, %reason, "installed component unusable");
                if state.committed.as_ref() != Some(&active) {
                    // A trial's candidate: roll back to the committed version.
                    state = store
                        .advance(kind, &state, Event::Unhealthy(reason))
                        .unwrap_or(state);
                    if let Some(committed) = state.committed.clone()
                        && let Ok(files) = store.verify(kind, &committed)
                    {
                        return Resolved {
                            source: Source::Slot(committed, files),
                            state,
                        };
                    }
                }
            }
        }
    }
    Resolved {
        source: Source::Shipped,
        state,
    }
}

/// SHA-256 in hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Replaces `path` with `bytes` so that a crash leaves the old content or the new: temporary
/// file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.with_context(|| format!("cannot write {}", path.display()))
}
