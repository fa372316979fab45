//! Records when the edge was built: no clock reading before that instant is plausible
//! (`wattlet_edge::clock`). `SOURCE_DATE_EPOCH` (reproducible builds) takes precedence. The
//! script runs again only when it changes, so the instant is that of its first build: still a
//! lower bound, and the crate is not rebuilt on every build for a new timestamp.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let at = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=WATTLET_EDGE_BUILT_AT={at}");
}
