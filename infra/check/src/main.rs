//! `cargo run -p wattlet-infra-check [-- TERRAFORM_DIR [SPIN_TOML]]`: prints every finding.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = std::env::args_os().skip(1);
    let root = args
        .next()
        .map_or_else(|| repo.join("infra/terraform"), PathBuf::from);
    let spin_toml = args
        .next()
        .map_or_else(|| repo.join("spin.toml"), PathBuf::from);
    let findings = wattlet_infra_check::check(&root, &spin_toml)?;
    for f in &findings {
        println!("{f}");
    }
    eprintln!("{} finding(s)", findings.len());
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
