//! Spin application manifests, version 2 (`spin.toml`), as far as HTTP applications use them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid Spin manifest: {message}")]
    Invalid { path: String, message: String },
}

/// The parts of a manifest the host acts on; unknown keys (build, description, …) are ignored
/// as Spin does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDecl>,
    /// Settings of tools such as `spin build` plugins; not the host's business.
    #[serde(default)]
    pub tool: Option<toml::Table>,
    /// Directory of the manifest: relative paths in it are relative to this.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[application]`; keys other than the name (version, authors, …) are informational.
#[derive(Debug, Clone, Deserialize)]
pub struct Application {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VariableDecl {
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpTrigger {
    pub route: Route,
    pub component: String,
    /// `{ type = "spin" }` (the default), `{ type = "wasip3-unstable" }` (Spin's name for
    /// `wasi:http/handler@0.3` components), or `{ type = "wagi" }`, which wattlet does not run.
    /// The host finds a component's HTTP world from its exports; the executor is not needed.
    #[serde(default)]
    pub executor: Option<Executor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Executor {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Path(String),
    /// `route = { private = true }`: reachable only through service chaining, not over HTTP.
    Private {
        private: bool,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct ComponentDecl {
    pub source: Source,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Files mounted into the component, read-only (see [`FileMount`]).
    #[serde(default)]
    pub files: Vec<FileMount>,
}

/// One entry of a component's `files`, as Spin reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FileMount {
    /// `"static/**/*"`: a glob pattern relative to the manifest's directory; each file it
    /// matches appears at the same relative path under the guest's `/`.
    Pattern(String),
    /// `{ source = "updates", destination = "/" }`: a directory relative to the manifest's
    /// directory, mounted at `destination`.
    Placement { source: String, destination: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Path(String),
    Remote { url: String },
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, dir, &path.display().to_string())
    }

    pub fn parse(text: &str, dir: PathBuf, name: &str) -> Result<Self, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            path: name.to_owned(),
            message,
        };
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        manifest.dir = dir;
        if manifest.spin_manifest_version != 2 {
            return Err(invalid(format!(
                "spin_manifest_version {} is not supported (only 2)",
                manifest.spin_manifest_version
            )));
        }
        for trigger in &manifest.trigger.http {
            if !manifest.component.contains_key(&trigger.component) {
                return Err(invalid(format!(
                    "trigger route {:?} names component {:?}, which is not defined",
                    trigger.route, trigger.component
                )));
            }
            if let Route::Path(route) = &trigger.route
                && !route.starts_with('/')
            {
                return Err(invalid(format!("route {route:?} must start with '/'")));
            }
            if let Some(executor) = &trigger.executor
                && !["spin", "wasip3-unstable"].contains(&executor.kind.as_str())
            {
                return Err(invalid(format!(
                    "component {:?} uses the {:?} executor; wattlet runs wasi:http components (executor \"spin\" or \"wasip3-unstable\") only",
                    trigger.component, executor.kind
                )));
            }
        }
        for (name, decl) in &manifest.variables {
            if decl.required && decl.default.is_some() {
                return Err(invalid(format!(
                    "variable {name:?} cannot be both required and have a default"
                )));
            }
            if !valid_variable_name(name) {
                return Err(invalid(format!(
                    "variable name {name:?} must be lower-case letters, digits and '_'"
                )));
            }
        }
        Ok(manifest)
    }

    /// The path of a component's Wasm file, resolved against the manifest's directory.
    pub fn source_path(&self, component: &str) -> Result<PathBuf, String> {
        let decl = self
            .component
            .get(component)
            .ok_or_else(|| format!("no component {component:?}"))?;
        match &decl.source {
            Source::Path(path) => Ok(self.dir.join(path)),
            Source::Remote { url } => Err(format!(
                "component {component:?} has a remote source ({url}); wattlet runs local files only: \
                 download it and point `source` at the file"
            )),
        }
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and underscores, starting
/// with a letter.
pub fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
version = "1.0.0"
[variables]
token = { required = true, secret = true }
greeting = { default = "hi" }
[[trigger.http]]
route = "/api/..."
component = "api"
[[trigger.http]]
route = { private = true }
component = "api"
[component.api]
source = "api.wasm"
sqlite_databases = ["default"]
files = ["static/**/*", { source = "updates", destination = "/" }]
[component.api.variables]
greeting = "{{ greeting }}"
[component.api.build]
command = "cargo build"
"#;

    #[test]
    fn parses_a_v2_manifest() {
        let m = Manifest::parse(APP, PathBuf::from("/app"), "spin.toml").unwrap();
        assert_eq!(m.application.name, "demo");
        assert!(m.variables["token"].required && m.variables["token"].secret);
        assert_eq!(m.trigger.http.len(), 2);
        assert_eq!(
            m.source_path("api").unwrap(),
            PathBuf::from("/app/api.wasm")
        );
        assert_eq!(m.component["api"].sqlite_databases, ["default"]);
        assert_eq!(
            m.component["api"].files,
            [
                FileMount::Pattern("static/**/*".into()),
                FileMount::Placement {
                    source: "updates".into(),
                    destination: "/".into()
                }
            ]
        );
    }

    #[test]
    fn rejects_what_spin_rejects() {
        let cases = [
            (
                APP.replace("spin_manifest_version = 2", "spin_manifest_version = 1"),
                "only 2",
            ),
            (
                APP.replace("component = \"api\"\n[[", "component = \"nope\"\n[["),
                "not defined",
            ),
            (
                APP.replace("route = \"/api/...\"", "route = \"api\""),
                "must start with",
            ),
            (
                APP.replace("greeting = { default", "Greeting = { default"),
                "lower-case",
            ),
            (
                APP.replace("[application]", "[applicaton]"),
                "unknown field",
            ),
            (
                "spin_manifest_version = ".to_owned(),
                "not a valid Spin manifest",
            ),
        ];
        for (text, expected) in cases {
            let err = Manifest::parse(&text, PathBuf::new(), "spin.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }
}
