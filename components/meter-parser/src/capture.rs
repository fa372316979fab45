//! Capture files as people keep them: raw bytes (`.bin`) or hex text (`.hex`, and `.txt` files that
//! hold nothing but hex digits and white space). A `.txt` with anything else is a raw ASCII capture.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: hex capture has an odd number of digits")]
    OddHex { path: String },
    #[error("{path}: not hex at character {at}")]
    NotHex { path: String, at: usize },
}

/// The project's real meter captures, for tests, benchmarks and `./dev run`: `$WATTLET_TESTDATA`,
/// else `shared/testdata` beside the repository checkout. Panics with a hint when missing, as
/// callers are test and benchmark harnesses.
pub fn testdata_dir() -> PathBuf {
    let dir = match std::env::var_os("WATTLET_TESTDATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"),
    };
    assert!(
        dir.join("sml/SOURCES.md").is_file(),
        "meter captures not found at {} (no sml/SOURCES.md): set WATTLET_TESTDATA to the \
         shared/testdata directory",
        dir.display()
    );
    dir
}

/// Reads a capture file and returns the bytes the probe delivered.
pub fn load(path: &Path) -> Result<Vec<u8>, CaptureError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Read {
        path: name.clone(),
        source,
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let all_hex = || {
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
    };
    match ext {
        "hex" => decode_hex(&bytes, &name),
        "txt" if all_hex() => decode_hex(&bytes, &name),
        _ => Ok(bytes),
    }
}

fn decode_hex(text: &[u8], path: &str) -> Result<Vec<u8>, CaptureError> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    for (at, &c) in text.iter().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        let nibble = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => {
                return Err(CaptureError::NotHex {
                    path: path.to_owned(),
                    at,
                });
            }
        };
        match high.take() {
            Some(h) => out.push(h << 4 | nibble),
            None => high = Some(nibble),
        }
    }
    if high.is_some() {
        return Err(CaptureError::OddHex {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_with_white_space() {
        assert_eq!(
            decode_hex(b"1b 1B\n0a", "x").unwrap(),
            vec![0x1b, 0x1b, 0x0a]
        );
        assert!(matches!(
            decode_hex(b"1b1", "x"),
            Err(CaptureError::OddHex { .. })
        ));
        assert!(matches!(
            decode_hex(b"1g", "x"),
            Err(CaptureError::NotHex { at: 1, .. })
        ));
    }
}
