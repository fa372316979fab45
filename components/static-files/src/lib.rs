//! A static file server as a Spin HTTP component: the files of the directory mounted at `/`
//! (`files = [{ source = "…", destination = "/" }]` in spin.toml), read-only, under the
//! component's route. The cloud serves the signed update repository (`wattlet release`) with it,
//! at `/updates/...`, to devices polling over their mutual-TLS link.
//!
//! It is wattlet's own code because no well-kept static file server component could be fetched
//! as a dependency (only crates are). What it does is small on purpose: `GET` and `HEAD` of
//! regular files, never a directory listing, no ranges, no index files.
//!
//! The rules (which paths are refused, content types, caching) are the plain [`path`] module,
//! tested natively; `component` is the thin wasi:http export that opens and streams the file.

pub mod path;

pub use path::{Method, PathError, Target, check_method, resolve};

#[cfg(target_family = "wasm")]
mod component;
