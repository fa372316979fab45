//! The content digest (`wattlet_policy::digest`) of every policy crate beside this one
//! (`components/policies/*` but the core), computed from the sources of this checkout, which the
//! composed Data API is built from (`./dev build`, `spin build`): `policy::digest` serves them.

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let here = Path::new(&manifest);
    let policies = here.join("../policies");
    let (core, wit) = (policies.join("core"), here.join("../../wit/policy"));
    println!("cargo:rerun-if-changed={}", policies.display());
    println!("cargo:rerun-if-changed={}", wit.display());
    let mut names: Vec<String> = std::fs::read_dir(&policies)
        .expect("components/policies")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            (name != "core" && path.join("Cargo.toml").is_file()).then_some(name)
        })
        .collect();
    names.sort();
    let mut out = String::from(
        "/// `(policy, sha256:…)`: the content digest of each policy crate of this checkout.\n\
         pub const POLICY_DIGESTS: &[(&str, &str)] = &[\n",
    );
    for name in names {
        let digest = wattlet_policy::digest::source_digest(&policies.join(&name), &core, &wit)
            .unwrap_or_else(|e| panic!("the digest of policy {name}: {e}"));
        out.push_str(&format!("    ({name:?}, {digest:?}),\n"));
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("policy_digests.rs");
    std::fs::write(dest, out).expect("write policy_digests.rs");
}
