//! The SQLite files behind `fermyon:spin/sqlite` databases and `fermyon:spin/key-value` stores.
//!
//! As in Spin, the `default` database and store live in the application's state directory
//! (`.spin/sqlite_db.db`, `.spin/sqlite_key_value.db`); other labels must be declared in a
//! runtime configuration file, and using an undeclared label is an error at start-up.
//!
//! How a component's SQL is confined: [`authorizer`] (what it may do) and [`database`] (a
//! connection of its own per guest `open`, off the executor, interrupted at the deadline).

pub mod authorizer;
pub mod database;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use database::{Database, Lease, QueryError};

use crate::manifest::Manifest;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot read runtime config {path}: {message}")]
    RuntimeConfig { path: String, message: String },
    #[error(
        "component {component:?} uses {kind} {label:?}, which is neither \"default\" nor declared in a runtime config file"
    )]
    Undeclared {
        component: String,
        kind: &'static str,
        label: String,
    },
    #[error(
        "{kind} {label:?} has type {kind_type:?}; wattlet supports type = \"spin\" (a local SQLite file)"
    )]
    UnsupportedType {
        kind: &'static str,
        label: String,
        kind_type: String,
    },
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: String,
        source: std::io::Error,
    },
}

/// The runtime configuration file (`--runtime-config-file`), the subset wattlet implements.
#[derive(Debug, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub sqlite_database: BTreeMap<String, BackendDecl>,
    #[serde(default)]
    pub key_value_store: BTreeMap<String, BackendDecl>,
}

#[derive(Debug, Deserialize)]
pub struct BackendDecl {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<Self, StorageError> {
        let err = |message: String| StorageError::RuntimeConfig {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }
}

/// Open databases by label, shared by every request; each request leases connections of its own.
#[derive(Debug, Default)]
pub struct Storage {
    pub databases: BTreeMap<String, Arc<Database>>,
    pub stores: BTreeMap<String, Arc<Database>>,
}

/// The two kinds of label a component can be granted, and how their files are laid out.
struct BackendKind {
    name: &'static str,
    default_file: &'static str,
    /// Schema created when the file is opened.
    schema: &'static str,
}

const DATABASE: BackendKind = BackendKind {
    name: "sqlite database",
    default_file: "sqlite_db.db",
    schema: "",
};

const KEY_VALUE_STORE: BackendKind = BackendKind {
    name: "key-value store",
    default_file: "sqlite_key_value.db",
    schema: "CREATE TABLE IF NOT EXISTS spin_key_value (
                 store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (store, key))",
};

impl Storage {
    pub fn open(
        manifest: &Manifest,
        config: &RuntimeConfig,
        state_dir: &Path,
        config_dir: &Path,
    ) -> Result<Self, StorageError> {
        let mut storage = Storage::default();
        for (component, decl) in &manifest.component {
            let grants = [
                (
                    &DATABASE,
                    &decl.sqlite_databases,
                    &config.sqlite_database,
                    &mut storage.databases,
                ),
                (
                    &KEY_VALUE_STORE,
                    &decl.key_value_stores,
                    &config.key_value_store,
                    &mut storage.stores,
                ),
            ];
            for (kind, labels, declared, opened) in grants {
                for label in labels {
                    if opened.contains_key(label) {
                        continue;
                    }
                    let path = backend_path(
                        kind,
                        component,
                        label,
                        declared.get(label),
                        state_dir,
                        config_dir,
                    )?;
                    opened.insert(label.clone(), open_file(&path, kind.schema)?);
                }
            }
        }
        Ok(storage)
    }
}

fn backend_path(
    kind: &BackendKind,
    component: &str,
    label: &str,
    decl: Option<&BackendDecl>,
    state_dir: &Path,
    config_dir: &Path,
) -> Result<PathBuf, StorageError> {
    match decl {
        Some(decl) if decl.kind != "spin" => Err(StorageError::UnsupportedType {
            kind: kind.name,
            label: label.to_owned(),
            kind_type: decl.kind.clone(),
        }),
        Some(BackendDecl {
            path: Some(path), ..
        }) => Ok(config_dir.join(path)),
        Some(_) => Ok(state_dir.join(format!("{label}.db"))),
        None if label == "default" => Ok(state_dir.join(kind.default_file)),
        None => Err(StorageError::Undeclared {
            component: component.to_owned(),
            kind: kind.name,
            label: label.to_owned(),
        }),
    }
}

fn open_file(path: &Path, schema: &str) -> Result<Arc<Database>, StorageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::StateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Database::open(path, schema).map_err(|source| StorageError::Open {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(databases: &str, stores: &str) -> Manifest {
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n[component.c]\nsource = \"c.wasm\"\n\
             sqlite_databases = {databases}\nkey_value_stores = {stores}\n"
        );
        Manifest::parse(&text, PathBuf::new(), "t").unwrap()
    }

    #[test]
    fn default_labels_live_in_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(r#"["default"]"#, r#"["default"]"#);
        let storage = Storage::open(&m, &RuntimeConfig::default(), dir.path(), dir.path()).unwrap();
        assert!(dir.path().join("sqlite_db.db").is_file());
        assert!(dir.path().join("sqlite_key_value.db").is_file());
        let kv = rusqlite::Connection::open(storage.stores["default"].path()).unwrap();
        kv.execute(
            "INSERT INTO spin_key_value VALUES ('default', 'k', x'01')",
            [],
        )
        .unwrap();
    }

    #[test]
    fn other_labels_need_a_runtime_config() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(r#"["default", "extra"]"#, "[]");
        let err = Storage::open(&m, &RuntimeConfig::default(), dir.path(), dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("\"extra\", which is neither"),
            "{err}"
        );
        let config: RuntimeConfig =
            toml::from_str("[sqlite_database.extra]\ntype = \"spin\"\npath = \"data/extra.db\"\n")
                .unwrap();
        Storage::open(&m, &config, &dir.path().join("state"), dir.path()).unwrap();
        assert!(dir.path().join("data/extra.db").is_file());
        let config: RuntimeConfig =
            toml::from_str("[sqlite_database.extra]\ntype = \"libsql\"\n").unwrap();
        let err = Storage::open(&m, &config, dir.path(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("libsql"), "{err}");
    }
}
