//! The JSON Schemas of the Kubernetes kinds and Helm charts the modules render (`schemas/`),
//! each written for these checks and naming the upstream version it describes.

use std::path::{Path, PathBuf};

use crate::Error;

/// Schema files by `(apiVersion, kind)`.
pub const MANIFESTS: &[(&str, &str, &str)] = &[
    ("core.spinkube.dev/v1alpha1", "SpinApp", "spinapp.json"),
    (
        "core.spinkube.dev/v1alpha1",
        "SpinAppExecutor",
        "spinappexecutor.json",
    ),
    ("node.k8s.io/v1", "RuntimeClass", "runtimeclass.json"),
    ("apps/v1", "Deployment", "deployment.json"),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaim.json"),
    ("monitoring.coreos.com/v1", "PodMonitor", "podmonitor.json"),
    ("v1", "ConfigMap", "configmap.json"),
    ("v1", "Service", "service.json"),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicy.json",
    ),
];

/// The directory of the schema files shipped with this crate.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// A loaded schema and the upstream version it names.
pub struct Schema {
    pub path: PathBuf,
    pub upstream_version: Option<String>,
    validator: jsonschema::Validator,
}

impl Schema {
    pub fn load(path: &Path) -> Result<Schema, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_path_buf(), e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Schema(path.to_path_buf(), e.to_string()))?;
        let validator = jsonschema::validator_for(&json)
            .map_err(|e| Error::Schema(path.to_path_buf(), e.to_string()))?;
        Ok(Schema {
            path: path.to_path_buf(),
            upstream_version: json
                .get("x-upstream-version")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            validator,
        })
    }

    /// Every violation, as `at /json/pointer: message`.
    pub fn violations(&self, instance: &serde_json::Value) -> Vec<String> {
        self.validator
            .iter_errors(instance)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("at {at}: {e}")
            })
            .collect()
    }
}

/// The schema file for a manifest, if there is one.
pub fn for_manifest(api_version: &str, kind: &str) -> Option<PathBuf> {
    MANIFESTS
        .iter()
        .find(|(a, k, _)| *a == api_version && *k == kind)
        .map(|(_, _, f)| dir().join(f))
}

/// The schema file for a chart's values, if there is one.
pub fn for_chart(chart: &str) -> Option<PathBuf> {
    let path = dir().join("helm").join(format!("{chart}.json"));
    path.is_file().then_some(path)
}
