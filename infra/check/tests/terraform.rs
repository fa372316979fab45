//! The checks over the repository's `infra/terraform`, and each check shown to fail on a copy of
//! the tree with one deliberate break.

use std::path::{Path, PathBuf};
use std::process::Command;

use wattlet_infra_check::eval::{Rendered, evaluate};
use wattlet_infra_check::{Finding, check, tree};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn terraform_dir() -> PathBuf {
    repo().join("infra/terraform")
}

fn spin_toml() -> PathBuf {
    repo().join("spin.toml")
}

fn show(findings: &[Finding]) -> String {
    findings.iter().map(|f| format!("{f}\n")).collect()
}

#[test]
fn the_terraform_tree_passes_every_check() {
    let findings = check(&terraform_dir(), &spin_toml()).expect("checks run");
    assert!(findings.is_empty(), "findings:\n{}", show(&findings));
}

#[test]
fn the_envs_render_every_object_with_its_replicas() {
    let (tree, findings) = tree::load(&terraform_dir()).expect("tree loads");
    assert!(findings.is_empty(), "{}", show(&findings));
    let eval = evaluate(&tree);
    assert!(eval.findings.is_empty(), "{}", show(&eval.findings));
    // One ConfigMap per dashboard in infra/grafana/dashboards: however many there are.
    let mut seen: Vec<String> = eval
        .rendered
        .iter()
        .filter(|r| {
            !r.address
                .starts_with("kubernetes_config_map_v1.dashboards[")
        })
        .map(|r| format!("{}: {}", r.instance, r.address))
        .collect();
    seen.sort();
    let want = [
        "envs/survey-small/app: module.app: kubernetes_manifest.app",
        "envs/survey-small/app: module.app: kubernetes_manifest.database_claim[0]",
        "envs/survey-small/app: module.app: kubernetes_manifest.executor",
        "envs/survey-small/app: module.app: kubernetes_manifest.network_policy",
        "envs/survey-small/app: module.app: kubernetes_manifest.pod_monitor[0]",
        "envs/survey-small/app: module.gateway: kubernetes_manifest.deployment",
        "envs/survey-small/app: module.gateway: kubernetes_manifest.network_policy",
        "envs/survey-small/app: module.gateway: kubernetes_manifest.service",
        "envs/survey-small/app: module.workers: kubernetes_manifest.deployment[\"manager\"]",
        "envs/survey-small/app: module.workers: kubernetes_manifest.deployment[\"nialm-worker\"]",
        "envs/survey-small/app: module.workers: kubernetes_manifest.deployment[\"stream-worker\"]",
        "envs/survey-small/app: module.workers: kubernetes_manifest.network_policy[\"manager\"]",
        "envs/survey-small/app: module.workers: kubernetes_manifest.network_policy[\"nialm-worker\"]",
        "envs/survey-small/app: module.workers: kubernetes_manifest.network_policy[\"stream-worker\"]",
        "envs/survey-small/app: module.workers: kubernetes_manifest.pod_monitor[0]",
        "envs/survey-small/platform: module.monitoring: helm_release.kube_prometheus_stack",
        "envs/survey-small/platform: module.nats: helm_release.nats",
        "envs/survey-small/platform: module.nats: kubernetes_manifest.network_policy",
        "envs/survey-small/platform: module.spinkube: helm_release.cert_manager",
        "envs/survey-small/platform: module.spinkube: helm_release.kwasm_operator[0]",
        "envs/survey-small/platform: module.spinkube: helm_release.spin_operator",
        "envs/survey-small/platform: module.spinkube: kubernetes_manifest.runtime_class",
    ];
    assert_eq!(seen, want);

    for r in &eval.rendered {
        match &r.what {
            Rendered::Helm { chart, values, .. } if chart == "nats" => {
                assert_eq!(values.pointer("/config/cluster/replicas"), Some(&3.into()));
                // Clients, and the servers' routes to each other, over TLS with a certificate of
                // the NATS CA, from the named Secret.
                for block in ["/config/nats/tls", "/config/cluster/tls"] {
                    let tls = values.pointer(block).expect(block);
                    assert_eq!(tls.pointer("/enabled"), Some(&true.into()), "{block}");
                    assert_eq!(tls.pointer("/merge/verify"), Some(&true.into()), "{block}");
                    assert_eq!(
                        tls.pointer("/secretName"),
                        Some(&"nats-server-tls".into()),
                        "{block}"
                    );
                }
                assert_eq!(values.pointer("/tlsCA/key"), Some(&"ca.crt".into()));
                assert_eq!(
                    values.pointer("/config/jetstream/fileStore/pvc/size"),
                    Some(&"10Gi".into())
                );
            }
            Rendered::Manifest(m) if r.address.ends_with("deployment[\"manager\"]") => {
                let args = m
                    .pointer("/spec/template/spec/containers/0/args")
                    .expect("args");
                let args: Vec<&str> = args
                    .as_array()
                    .expect("a list")
                    .iter()
                    .filter_map(|a| a.as_str())
                    .collect();
                assert_eq!(&args[..2], ["manager", "nialm"]);
                assert_eq!(
                    wattlet_infra_check::lints::flag(&args, "--replicas"),
                    Some("3")
                );
                // NATS over TLS with the client certificate mounted from its Secret.
                assert_eq!(
                    wattlet_infra_check::lints::flag(&args, "--nats-cert"),
                    Some("/etc/wattlet/nats/tls.crt")
                );
                assert_eq!(
                    m.pointer("/spec/template/spec/volumes/0/secret/secretName"),
                    Some(&"wattlet-nats-client".into())
                );
            }
            Rendered::Manifest(m)
                if r.address.starts_with("kubernetes_manifest.network_policy") =>
            {
                let ingress = m.pointer("/spec/ingress").expect("ingress rules");
                let from = |i: usize| ingress.pointer(&format!("/{i}/from")).cloned();
                let monitoring = serde_json::json!([{"namespaceSelector": {"matchLabels":
                    {"kubernetes.io/metadata.name": "monitoring"}}}]);
                match r.address.as_str() {
                    // NATS: the workers' namespace on the client port, the servers' routes,
                    // Prometheus on the exporter and monitor ports; no one else.
                    _ if m.pointer("/metadata/name") == Some(&"nats".into()) => {
                        let wattlet = serde_json::json!([{"namespaceSelector": {"matchLabels":
                            {"kubernetes.io/metadata.name": "wattlet"}}}]);
                        assert_eq!(from(0), Some(wattlet));
                        assert_eq!(
                            ingress.pointer("/0/ports"),
                            Some(&serde_json::json!(
                            [{"port": 4222, "protocol": "TCP"}]))
                        );
                        assert_eq!(ingress.pointer("/1/ports/1/port"), Some(&6222.into()));
                        assert_eq!(from(2), Some(monitoring.clone()));
                        assert_eq!(ingress.as_array().map(Vec::len), Some(3));
                    }
                    // The manager serves nothing: nothing may reach it.
                    a if a.ends_with("[\"manager\"]") => {
                        assert_eq!(ingress, &serde_json::json!([]), "{a}")
                    }
                    // Workers: Prometheus only, on the metrics port.
                    a if a.contains("worker") => {
                        assert_eq!(from(0), Some(monitoring.clone()), "{a}");
                        assert_eq!(ingress.pointer("/0/ports/0/port"), Some(&9465.into()));
                    }
                    // The gateway: anyone on its TLS port, Prometheus on its metrics port.
                    a if m.pointer("/metadata/name") == Some(&"wattlet-gateway".into()) => {
                        assert_eq!(from(0), None, "{a}");
                        assert_eq!(from(1), Some(monitoring.clone()), "{a}");
                    }
                    // The app: wattlet's pods and Prometheus, no one else.
                    a => {
                        let sources = from(0).expect("sources");
                        assert_eq!(sources.as_array().map(Vec::len), Some(2), "{a}: {sources}");
                        assert_eq!(
                            sources.pointer("/0/podSelector/matchLabels/app.kubernetes.io~1name"),
                            Some(&"wattlet".into())
                        );
                    }
                }
            }
            Rendered::Manifest(m) if r.address == "kubernetes_manifest.app" => {
                assert_eq!(
                    m.pointer("/spec/executor"),
                    Some(&"containerd-shim-spin".into())
                );
                assert_eq!(
                    m.pointer("/spec/variables/0/valueFrom/secretKeyRef/name"),
                    Some(&"wattlet-spin-variables".into())
                );
            }
            _ => {}
        }
    }
}

/// `terraform fmt -check` itself, where a terraform binary is installed (no provider needed).
/// Set WATTLET_REQUIRE_TERRAFORM=1 to fail rather than skip without one.
#[test]
fn terraform_fmt_check_passes() {
    let Some(out) = terraform(&["fmt", "-check", "-recursive", "-diff"], &terraform_dir()) else {
        return;
    };
    assert!(
        out.status.success(),
        "terraform fmt -check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn terraform(args: &[&str], dir: &Path) -> Option<std::process::Output> {
    terraform_with(args, dir, None)
}

/// Runs terraform without its update check (no network), optionally with a CLI config file.
fn terraform_with(
    args: &[&str],
    dir: &Path,
    config: Option<&Path>,
) -> Option<std::process::Output> {
    let mut cmd = Command::new("terraform");
    cmd.args(args)
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1");
    if let Some(config) = config {
        cmd.env("TF_CLI_CONFIG_FILE", config);
    }
    match cmd.output() {
        Ok(out) => Some(out),
        Err(e) if std::env::var_os("WATTLET_REQUIRE_TERRAFORM").is_some() => {
            panic!("no terraform binary ({e}) and WATTLET_REQUIRE_TERRAFORM is set")
        }
        Err(e) => {
            eprintln!("skipped: no terraform binary ({e}); the line-layout check (fmt) still ran");
            None
        }
    }
}

/// `terraform init` against an empty provider mirror (so nothing is downloaded or asked of a
/// registry): Terraform loads every env's configuration and module tree and accepts its lock
/// file, and then fails only because the providers are not there. A syntax error fails sooner.
#[test]
fn terraform_loads_every_env_and_its_lock_file() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mirror = tmp.path().join("empty-mirror");
    std::fs::create_dir_all(&mirror).expect("mkdir");
    let rc = tmp.path().join("terraform.rc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = {:?}\n  }}\n}}\n",
            mirror.display().to_string()
        ),
    )
    .expect("written");
    let root = tmp.path().join("terraform");
    copy(&terraform_dir(), &root);
    let (tree, _) = tree::load(&root).expect("tree loads");
    let envs = wattlet_infra_check::lints::roots(&tree);
    assert!(!envs.is_empty());
    let init = ["init", "-backend=false", "-input=false", "-no-color"];
    for env in envs {
        let Some(out) = terraform_with(&init, &env.dir, Some(&rc)) else {
            return;
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lock = tree.locks.get(&env.dir).expect("a lock file");
        for block in lock.body.blocks() {
            let source = block.labels()[0].as_str();
            let name = source.trim_start_matches("registry.terraform.io/");
            assert!(
                text.contains(&format!(
                    "Reusing previous version of {name} from the dependency lock file"
                )),
                "{}: {name} not taken from the lock file:\n{text}",
                env.dir.display()
            );
        }
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("Error:")).collect();
        assert!(
            errors
                .iter()
                .all(|e| *e == "Error: Failed to query available provider packages"),
            "{}: {text}",
            env.dir.display()
        );
    }

    // The same run stops at a broken file.
    let env = root.join("envs/survey-small/app");
    append(
        &root,
        "envs/survey-small/app/main.tf",
        "resource \"x\" {\n}\n",
    );
    let out = terraform_with(&init, &env, Some(&rc)).expect("terraform ran before");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Missing name for resource"));
}

/// The built-in layout check gives the same verdict as terraform fmt on good and bad samples.
#[test]
fn the_layout_check_agrees_with_terraform_fmt() {
    let samples = [
        "locals {\n  a   = 1\n  bcd = 2\n}\n",
        "locals {\n  a = 1\n  bcd = 2\n}\n",
        "locals {\n    a = 1\n}\n",
        "locals {\n\ta = 1\n}\n",
        "a = 1 \n",
        "a =  1\n",
        "locals {\n  a   = 1 # x\n  bcd = 22   # y\n}\n",
        "locals {\n  a   = 1  # x\n  bcd = 22 # y\n}\n",
        "locals {\n  c = var.x ? {\n    a = 1\n    } : {\n    a = 2\n  }\n  dd = 1\n}\n",
        "locals {\n  c = var.x ? {\n    a = 1\n  } : {\n    a = 2\n  }\n}\n",
        "locals {\n  list = [\n    1,\n  ]\n  x = 2\n}\n",
        "locals {\n  list = [\n    1,\n  ]\n  x    = 2\n}\n",
        "locals {\n  doc = <<-EOT\n   x   = 1\n  EOT\n  b   = 2\n}\n",
        "locals {\n  m = {\n    for k, v in var.x :\n    k => v\n  }\n}\n",
    ];
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (i, sample) in samples.iter().enumerate() {
        let path = dir.path().join(format!("s{i}.tf"));
        std::fs::write(&path, sample).expect("written");
        let ours = wattlet_infra_check::format::check(sample).is_empty();
        let Some(out) = terraform(&["fmt", "-check", &format!("s{i}.tf")], dir.path()) else {
            return;
        };
        assert_eq!(
            ours,
            out.status.success(),
            "sample {i} (ours: {:?}):\n{sample}",
            wattlet_infra_check::format::check(sample)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Each check fails on a deliberately broken copy of the tree.

/// Copies `infra/terraform` to a temporary directory, applies `edit`, runs the checks.
fn broken(edit: impl FnOnce(&Path)) -> Vec<Finding> {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let root = tmp.path().join("infra/terraform");
    copy(&terraform_dir(), &root);
    edit(&root);
    check(&root, &spin_toml()).expect("checks run")
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            if entry.file_name() != ".terraform" {
                copy(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).expect("copied");
        }
    }
}

/// Replaces `from` (which must occur) by `to` in a file of the tree.
fn replace(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).expect("readable");
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("written");
}

fn append(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    let mut s = std::fs::read_to_string(&path).unwrap_or_default();
    s.push_str(text);
    std::fs::write(&path, s).expect("written");
}

#[track_caller]
fn assert_rule(findings: &[Finding], rule: &str, needle: &str) {
    assert!(
        findings
            .iter()
            .any(|f| f.rule == rule && f.message.contains(needle)),
        "no [{rule}] finding containing {needle:?} among:\n{}",
        show(findings)
    );
}

const NATS: &str = "modules/nats/main.tf";
const WORKERS: &str = "modules/workers/main.tf";
const APP: &str = "modules/wattlet-app/main.tf";
const PLATFORM: &str = "envs/survey-small/platform/main.tf";
const APP_ENV: &str = "envs/survey-small/app/main.tf";

#[test]
fn a_file_that_does_not_parse_fails() {
    let f = broken(|r| append(r, NATS, "resource \"x\" {\n"));
    assert!(f.iter().any(|f| f.rule == "parse"), "{}", show(&f));
}

#[test]
fn misaligned_attributes_fail_the_layout_check() {
    let f = broken(|r| {
        replace(
            r,
            NATS,
            "  name             = \"nats\"",
            "  name = \"nats\"",
        )
    });
    assert_rule(&f, "fmt", "spaces before `=`");
}

#[test]
fn a_provider_range_fails() {
    let f = broken(|r| {
        replace(
            r,
            "modules/nats/versions.tf",
            "version = \"2.17.0\"",
            "version = \"~> 2.17\"",
        )
    });
    assert_rule(&f, "pinned-versions", "not one exact version");
}

#[test]
fn a_module_without_required_version_fails() {
    let f = broken(|r| {
        replace(
            r,
            "modules/nats/versions.tf",
            "  required_version = \">= 1.8.0\"\n",
            "",
        )
    });
    assert_rule(&f, "pinned-versions", "no terraform { required_version");
}

#[test]
fn providers_pinned_differently_fail() {
    let f = broken(|r| replace(r, "modules/workers/versions.tf", "\"2.38.0\"", "\"2.37.0\""));
    assert_rule(&f, "pinned-versions", "different versions");
    assert_rule(&f, "lock-file", "locked at");
}

#[test]
fn a_chart_version_range_fails() {
    let f = broken(|r| {
        replace(
            r,
            "modules/nats/variables.tf",
            "default     = \"1.3.6\"",
            "default     = \"~1.3\"",
        )
    });
    assert_rule(&f, "pinned-versions", "not one exact version");
}

#[test]
fn a_chart_newer_than_its_schema_fails() {
    let f = broken(|r| replace(r, "modules/nats/variables.tf", "\"1.3.6\"", "\"1.4.0\""));
    assert_rule(&f, "schema", "update the schema");
}

#[test]
fn a_missing_or_stale_lock_file_fails() {
    let f = broken(|r| {
        std::fs::remove_file(r.join("envs/survey-small/app/.terraform.lock.hcl")).expect("removed")
    });
    assert_rule(&f, "lock-file", "missing");
    let f = broken(|r| {
        replace(
            r,
            "envs/survey-small/platform/.terraform.lock.hcl",
            "version     = \"2.17.0\"",
            "version     = \"2.16.1\"",
        )
    });
    assert_rule(&f, "lock-file", "locked at");
    let f = broken(|r| {
        let lock = r.join("envs/survey-small/app/.terraform.lock.hcl");
        let text = std::fs::read_to_string(&lock).expect("readable");
        let kept: String = text
            .lines()
            .filter(|l| !l.contains("\"zh:"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(lock, kept).expect("written");
    });
    assert_rule(&f, "lock-file", "no zh: hash");
}

#[test]
fn a_nats_cluster_of_one_fails() {
    let f = broken(|r| {
        replace(
            r,
            PLATFORM,
            "cluster_size       = 3",
            "cluster_size       = 1",
        )
    });
    assert_rule(&f, "replicas", "R3 streams need at least 3");
    let f = broken(|r| {
        replace(
            r,
            NATS,
            "enabled  = true\n        replicas",
            "enabled  = false\n        replicas",
        )
    });
    assert_rule(&f, "replicas", "not clustered");
    let f = broken(|r| {
        replace(
            r,
            NATS,
            "pvc = {\n            enabled          = true",
            "pvc = {\n            enabled          = false",
        )
    });
    assert_rule(&f, "replicas", "on no volume");
}

#[test]
fn streams_with_fewer_than_three_replicas_fail() {
    let f = broken(|r| {
        replace(
            r,
            APP_ENV,
            "stream_replicas            = 3",
            "stream_replicas            = 1",
        )
    });
    assert_rule(&f, "replicas", "--replicas 1");
    let f = broken(|r| {
        replace(
            r,
            WORKERS,
            "        \"--replicas\", tostring(var.stream_replicas),\n",
            "",
        )
    });
    assert_rule(&f, "replicas", "without --replicas");
}

#[test]
fn more_stream_replicas_than_nats_servers_fail() {
    let f = broken(|r| {
        replace(
            r,
            APP_ENV,
            "stream_replicas            = 3",
            "stream_replicas            = 5",
        )
    });
    assert_rule(
        &f,
        "replicas",
        "streams of 5 replicas on a NATS cluster of 3 servers",
    );
}

#[test]
fn a_secret_variable_in_plaintext_fails() {
    let f = broken(|r| {
        append(
            r,
            "modules/wattlet-app/variables.tf",
            "\nvariable \"admin_token\" {\n  type    = string\n  default = \"changeme\"\n}\n",
        )
    });
    assert_rule(
        &f,
        "secrets",
        "admin_token looks like a secret but is not sensitive",
    );
    assert_rule(
        &f,
        "secrets",
        "admin_token looks like a secret and has a default",
    );
}

#[test]
fn secret_values_in_the_repository_or_the_state_fail() {
    let f = broken(|r| {
        replace(
            r,
            "modules/monitoring/main.tf",
            "existingSecret = var.grafana_admin_secret_name",
            "password       = \"hunter2-hunter2\"",
        )
    });
    assert_rule(&f, "secrets", "password is given a literal value");
    let f = broken(|r| {
        append(
            r,
            APP,
            "\nresource \"kubernetes_secret_v1\" \"spin\" {\n  metadata {\n    name = \"x\"\n  }\n}\n",
        )
    });
    assert_rule(&f, "secrets", "stored in the Terraform state");
    let f = broken(|r| {
        replace(
            r,
            NATS,
            "  values = [yamlencode(local.values)]\n",
            "  values = [yamlencode(local.values)]\n\n  set_sensitive {\n    name  = \"config.merge.authorization.token\"\n    value = var.namespace\n  }\n",
        )
    });
    assert_rule(&f, "secrets", "set_sensitive keeps the value in the state");
    let f = broken(|r| {
        append(
            r,
            APP,
            "\n# key: 3f6c1a525d0e4f7b9a517a1c2e9b0a013f6c1a525d0e4f7b\n",
        )
    });
    assert_rule(&f, "secrets", "a hex key in the repository");
    let f = broken(|r| {
        replace(
            r,
            WORKERS,
            "name = \"WATTLET_API_TOKEN\"\n      valueFrom = {\n        secretKeyRef = {\n          name = var.manager_token_secret_name\n          key  = \"token\"\n        }\n      }",
            "name  = \"WATTLET_API_TOKEN\"\n      value = var.manager_token_secret_name",
        )
    });
    assert_rule(
        &f,
        "secrets",
        "WATTLET_API_TOKEN of manager does not come from a Secret",
    );
}

#[test]
fn a_secret_spin_variable_not_from_a_secret_fails() {
    let f = broken(|r| {
        replace(
            r,
            APP,
            "secret_variables = [\"admin_token\", \"client_identity_key\", \"key_encryption_key\"]",
            "secret_variables = [\"client_identity_key\", \"key_encryption_key\"]",
        )
    });
    assert_rule(&f, "render", "spin.toml requires variable admin_token");
    let f = broken(|r| {
        replace(
            r,
            APP,
            "name  = \"plaintext_results\"",
            "name  = \"plaintext_result\"",
        )
    });
    assert_rule(
        &f,
        "render",
        "plaintext_result is not declared in spin.toml",
    );
}

#[test]
fn unknown_chart_values_fail_the_schema() {
    let f = broken(|r| replace(r, NATS, "fileStore = {", "fileStorage = {"));
    assert_rule(&f, "schema", "fileStorage");
}

#[test]
fn invalid_manifests_fail_the_schema() {
    let f = broken(|r| {
        replace(
            r,
            APP,
            "executor         = local.executor.metadata.name\n",
            "",
        )
    });
    assert_rule(&f, "schema", "SpinApp");
    let f = broken(|r| {
        replace(
            r,
            WORKERS,
            "containerPort = local.metrics_port",
            "containerPort = \"9465\"",
        )
    });
    assert_rule(&f, "schema", "Deployment");
    let f = broken(|r| {
        replace(
            r,
            "modules/spinkube/main.tf",
            "handler = \"spin\"",
            "handler = \"Spin Shim\"",
        )
    });
    assert_rule(&f, "schema", "RuntimeClass");
}

#[test]
fn inconsistent_deployments_fail() {
    let f = broken(|r| {
        replace(
            r,
            WORKERS,
            "r.attests ? [local.tee_mount.volume] : [],",
            "[],",
        )
    });
    assert_rule(&f, "render", "which is no volume");
}

#[test]
fn an_unused_module_fails() {
    let f = broken(|r| {
        let dir = r.join("modules/unused");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("main.tf"),
            "terraform {\n  required_version = \">= 1.8.0\"\n}\n",
        )
        .expect("written");
    });
    assert_rule(&f, "coverage", "no env uses this module");
}

#[test]
fn what_cannot_be_evaluated_offline_fails() {
    let f = broken(|r| {
        replace(
            r,
            NATS,
            "values = [yamlencode(local.values)]",
            "values = [templatefile(\"values.tftpl\", {})]",
        )
    });
    assert!(
        f.iter()
            .any(|f| f.rule == "evaluate" && f.message.contains("templatefile")),
        "{}",
        show(&f)
    );
}

#[test]
fn a_shared_database_allows_more_replicas() {
    let f = broken(|r| {
        replace(
            r,
            APP_ENV,
            "  namespace = var.namespace\n  image     = var.app_image\n  replicas  = 1\n",
            "  namespace  = var.namespace\n  image      = var.app_image\n  replicas   = 2\n  libsql_url = \"https://db.example.org\"\n",
        )
    });
    assert!(f.is_empty(), "{}", show(&f));
}

/// Dashboards and rule files from infra/grafana and infra/prometheus reach Grafana and
/// Prometheus; a rule file that is no Prometheus rule file fails.
#[test]
fn dashboards_and_rule_files_are_loaded_and_rule_files_checked() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let root = tmp.path().join("infra/terraform");
    copy(&terraform_dir(), &root);
    let dashboards = tmp.path().join("infra/grafana/dashboards");
    let rules = tmp.path().join("infra/prometheus/rules");
    std::fs::create_dir_all(&dashboards).expect("mkdir");
    std::fs::create_dir_all(&rules).expect("mkdir");
    std::fs::write(
        dashboards.join("fleet_health.json"),
        "{\"title\": \"Fleet\"}\n",
    )
    .expect("written");
    std::fs::write(
        rules.join("edge.yml"),
        "groups:\n  - name: edge\n    rules:\n      - alert: DeviceSilent\n        expr: up == 0\n",
    )
    .expect("written");
    let findings = check(&root, &spin_toml()).expect("checks run");
    assert!(findings.is_empty(), "{}", show(&findings));

    let (tree, _) = tree::load(&root).expect("tree loads");
    let eval = evaluate(&tree);
    let kps = eval
        .rendered
        .iter()
        .find_map(|r| match &r.what {
            Rendered::Helm { chart, values, .. } if chart == "kube-prometheus-stack" => {
                Some(values)
            }
            _ => None,
        })
        .expect("kube-prometheus-stack rendered");
    assert_eq!(
        kps.pointer("/additionalPrometheusRulesMap/wattlet-edge/groups/0/rules/0/alert"),
        Some(&"DeviceSilent".into())
    );

    assert!(eval.rendered.iter().any(|r| {
        r.address == "kubernetes_config_map_v1.dashboards[\"fleet_health.json\"]"
            && matches!(&r.what, Rendered::Manifest(m)
                if m.pointer("/metadata/name") == Some(&"wattlet-dashboard-fleet-health".into()))
    }));

    std::fs::write(
        rules.join("broken.yml"),
        "- alert: NoGroups\n  expr: up == 0\n",
    )
    .expect("written");
    let findings = check(&root, &spin_toml()).expect("checks run");
    assert_rule(&findings, "schema", "wattlet-broken");
    std::fs::remove_file(rules.join("broken.yml")).expect("removed");

    // A file name no ConfigMap key can be, and a dashboard larger than a ConfigMap holds.
    std::fs::write(dashboards.join("fleet health.json"), "{}\n").expect("written");
    let big = format!("{{\"panels\": \"{}\"}}\n", "x".repeat(1024 * 1024));
    std::fs::write(dashboards.join("huge.json"), big).expect("written");
    let findings = check(&root, &spin_toml()).expect("checks run");
    assert_rule(&findings, "schema", "fleet health.json");
    assert_rule(&findings, "render", "more than a ConfigMap holds");
}
