//! Finding component files: built by `cargo build --profile component --target wasm32-wasip2`.

use std::path::{Path, PathBuf};

/// Where the Debian package installs the components.
pub const PACKAGED_DIR: &str = "/usr/lib/wattlet/components";

/// Where the components are looked up, in order: `--components DIR`, `$WATTLET_COMPONENTS`, then
/// the cargo target directory the running binary was built into, then [`PACKAGED_DIR`].
pub fn search_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    if let Some(dir) = std::env::var_os("WATTLET_COMPONENTS") {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/wattlet and target/{release,debug}/deps/<test> both reach
        // target/wasm32-wasip2/component.
        for ancestor in exe.ancestors().skip(1).take(3) {
            dirs.push(ancestor.join("wasm32-wasip2").join("component"));
        }
    }
    dirs.push(PathBuf::from(PACKAGED_DIR));
    dirs
}

#[derive(Debug, thiserror::Error)]
#[error(
    "component {file} not found in {searched}; build it with \
     `cargo build --profile component --target wasm32-wasip2 -p {package}` or pass --components DIR"
)]
pub struct NotFound {
    pub file: String,
    pub package: String,
    pub searched: String,
}

/// The path of the component built from `package` (e.g. `wattlet-meter-parser`).
pub fn locate(package: &str, explicit_dir: Option<&Path>) -> Result<PathBuf, NotFound> {
    let file = format!("{}.wasm", package.replace('-', "_"));
    let dirs = search_dirs(explicit_dir);
    dirs.iter()
        .map(|dir| dir.join(&file))
        .find(|path| path.is_file())
        .ok_or_else(|| NotFound {
            file,
            package: package.to_owned(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
