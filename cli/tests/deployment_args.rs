//! The deployment runs the binary under test: every container of every Deployment that
//! `infra/terraform` renders (evaluated offline by `wattlet-infra-check`) whose command is
//! `wattlet` gets its arguments accepted by this `wattlet`. A flag renamed or removed in the
//! command line, or misspelt in the modules, fails here rather than in a pod's crash loop.

use std::path::Path;

use wattlet_infra_check::eval::{self, Rendered};
use wattlet_infra_check::tree;

#[test]
fn every_deployed_wattlet_command_line_is_accepted_by_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/terraform");
    let (tree, findings) = tree::load(&root).expect("infra/terraform loads");
    assert!(findings.is_empty(), "{findings:#?}");
    let evaluation = eval::evaluate(&tree);
    let mut checked = Vec::new();
    for rendered in &evaluation.rendered {
        let Rendered::Manifest(manifest) = &rendered.what else {
            continue;
        };
        if manifest["kind"] != "Deployment" {
            continue;
        }
        let containers = manifest["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("a Deployment has containers");
        for container in containers {
            let args: Vec<&str> = container["args"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().expect("string args")).collect())
                .unwrap_or_default();
            if args.is_empty() {
                continue;
            }
            // Everything the container passes, then --help: clap refuses an unknown flag or a
            // bad value before it prints the help, and exits 0 once all of them parse.
            let ran = wattlet_testkit::run(
                wattlet_testkit::binary!("wattlet")
                    .args(&args)
                    .arg("--help")
                    .env("WATTLET_API_TOKEN", "unused"),
                None,
            );
            assert!(
                ran.status.success(),
                "{} ({}): `wattlet {}` is refused:\n{}",
                rendered.address,
                rendered.instance,
                args.join(" "),
                ran.stderr
            );
            checked.push(args.join(" "));
        }
    }
    for wanted in ["manager nialm", "worker nialm", "worker stream"] {
        assert!(
            checked.iter().any(|c| c.starts_with(wanted)),
            "no Deployment runs `wattlet {wanted}`: {checked:#?}"
        );
    }
}
