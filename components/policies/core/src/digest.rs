//! A policy's content digest: SHA-256 over its source, so that an attachment and every access
//! log entry name the code that decided, and anyone holding the repository recomputes it.
//!
//! The source of a policy is its crate (`Cargo.toml` and everything under `src/`), the shared
//! core crate (the same) and the policy world (`wit/policy/*.wit`). Source rather than the
//! compiled component: the same code gives the same digest on every build and toolchain, where
//! the bytes of a `.wasm` change with the compiler. Each file enters as its root's label, its
//! path below the root, its length and its bytes, in path order.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What a policy's digest covers: `(label, root, files)` with `files` the paths below `root` to
/// hash (a directory: everything in it).
pub fn sources<'a>(
    policy_crate: &'a Path,
    core_crate: &'a Path,
    wit: &'a Path,
) -> [(&'static str, &'a Path, &'static [&'static str]); 3] {
    [
        ("policy", policy_crate, &["Cargo.toml", "src"]),
        ("core", core_crate, &["Cargo.toml", "src"]),
        ("wit", wit, &["."]),
    ]
}

/// `sha256:<64 hex>` of the policy crate at `policy_crate`, with the core crate at `core_crate`
/// and the policy world at `wit` (see [`sources`]).
pub fn source_digest(policy_crate: &Path, core_crate: &Path, wit: &Path) -> io::Result<String> {
    let mut hash = Sha256::new();
    for (label, root, parts) in sources(policy_crate, core_crate, wit) {
        let mut files = Vec::new();
        for part in parts {
            collect(&root.join(part), &mut files)?;
        }
        let mut files: Vec<(String, PathBuf)> = files
            .into_iter()
            .map(|path| {
                let below = path.strip_prefix(root).unwrap_or(&path);
                let name = below
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                (name, path)
            })
            .collect();
        files.sort();
        for (name, path) in files {
            let bytes = std::fs::read(&path)?;
            hash.update(format!("{label}/{name}\0{}\0", bytes.len()).as_bytes());
            hash.update(&bytes);
        }
    }
    Ok(format!("sha256:{}", hex::encode(hash.finalize())))
}

/// Every file at or below `path`.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect(&entry?.path(), out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(path, text).expect("write");
        }
    }

    #[test]
    fn the_digest_follows_the_source_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (policy, core, wit) = (
            dir.path().join("p"),
            dir.path().join("c"),
            dir.path().join("w"),
        );
        tree(
            &policy,
            &[
                ("Cargo.toml", "[package]"),
                ("src/lib.rs", "fn a() {}"),
                ("README.md", "x"),
            ],
        );
        tree(&core, &[("Cargo.toml", "[package]"), ("src/lib.rs", "")]);
        tree(&wit, &[("policy.wit", "package a:b;")]);
        let digest = || source_digest(&policy, &core, &wit).expect("digest");
        let first = digest();
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        assert_eq!(digest(), first);
        // Files outside the sources do not count; a changed source, a new one and a moved one do.
        std::fs::write(policy.join("README.md"), "y").expect("write");
        assert_eq!(digest(), first);
        std::fs::write(policy.join("src/lib.rs"), "fn b() {}").expect("write");
        let changed = digest();
        assert_ne!(changed, first);
        tree(&core, &[("src/more.rs", "")]);
        assert_ne!(digest(), changed);
        let added = digest();
        std::fs::rename(core.join("src/more.rs"), core.join("src/other.rs")).expect("rename");
        assert_ne!(digest(), added);
    }
}
