//! Offline checks of `infra/terraform`, for machines where providers cannot be downloaded (so
//! neither `terraform init` nor `terraform validate` can run):
//!
//! - **parse**: every `.tf`, `.tfvars` and lock file parses as HCL (hcl-rs);
//! - **fmt**: `terraform fmt`'s line layout ([`format`]);
//! - **pinned-versions**: every provider pinned to one exact version, the same everywhere, and
//!   every Helm chart's version exact; **lock-file**: each env's `.terraform.lock.hcl` selects
//!   exactly those versions, with hashes;
//! - **replicas**: the NATS chart clusters at least 3 servers with JetStream on volumes, and the
//!   work manager creates its streams with `--replicas` ≥ 3;
//! - **secrets**: no plaintext secret in variables, literals, the state or the rendered objects;
//! - **schema** and **render**: every Kubernetes manifest and every chart's values the envs
//!   render (evaluated offline, [`eval`]) valid against the schemas in `schemas/`, Deployments
//!   and the SpinApp consistent in themselves and with `spin.toml`;
//! - **coverage**: every module is used by an env, so all of the above reaches it.

pub mod eval;
pub mod format;
pub mod lints;
pub mod schema;
pub mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

/// Why the checks could not run at all (as opposed to a [`Finding`] about the tree).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("schema {0}: {1}")]
    Schema(PathBuf, String),
    #[error("app manifest {0}: {1}")]
    Manifest(PathBuf, String),
}

/// One thing wrong with the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: PathBuf,
    pub rule: &'static str,
    pub message: String,
}

impl Finding {
    pub fn new(path: &Path, rule: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            path: path.to_path_buf(),
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: [{}] {}",
            self.path.display(),
            self.rule,
            self.message
        )
    }
}

/// Every check over the Terraform tree at `root`; `spin_toml` is the app's manifest whose
/// variables the SpinApp must bind.
pub fn check(root: &Path, spin_toml: &Path) -> Result<Vec<Finding>, Error> {
    let (tree, mut findings) = tree::load(root)?;
    findings.extend(lints::formatting(&tree));
    findings.extend(lints::pinned_providers(&tree));
    findings.extend(lints::lock_files(&tree));
    findings.extend(lints::secrets(&tree));
    let evaluation = eval::evaluate(&tree);
    findings.extend(lints::modules_reached(&tree, &evaluation.reached));
    findings.extend(lints::rendered(&evaluation, spin_toml)?);
    findings.extend(evaluation.findings);
    Ok(findings)
}
