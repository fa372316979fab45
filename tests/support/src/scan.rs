//! Byte scans for personal data left behind: every file under some directories (databases,
//! their WAL, CA records, certificates), with the contents of each PEM block decoded as well,
//! since a certificate carries its subject's email base64-encoded.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{PemObject, SectionKind};

/// What is searched for: a name for the report and the bytes.
pub type Needle<'a> = (&'a str, Vec<u8>);

/// Every file under `dir` (recursively; none when it does not exist) with its bytes, and for
/// each PEM block in it one more entry `FILE (PEM block N)` with the block's decoded bytes.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            // A file removed since it was listed (a WAL, a temporary file) holds nothing.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let name = path.display().to_string();
            for (i, block) in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
                .flatten()
                .enumerate()
            {
                found.push((format!("{name} (PEM block {i})"), block.1));
            }
            found.push((name, bytes));
        }
    }
    found
}

/// `what in FILE` for every needle found in a file under one of `dirs`.
pub fn traces(dirs: &[&Path], needles: &[Needle<'_>]) -> Vec<String> {
    let mut found = Vec::new();
    for dir in dirs {
        for (name, bytes) in files(dir) {
            for (what, needle) in needles {
                if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle.as_slice())
                {
                    found.push(format!("{what} in {name}"));
                }
            }
        }
    }
    found
}
