//! `openapi.yaml` is kept true: schemathesis (from PyPI, installed into the cargo target
//! directory the first time) generates requests for every operation of the spec, positive and
//! hostile, and sends them to the Data API served over mutual TLS by `wattlet serve`'s library.
//! No response may be a server error, carry an undocumented status code or content type, or
//! break its documented schema. The README's endpoint table and the spec list the same
//! operations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use wattlet_testkit::{ADMIN_TOKEN, Cloud, repo, run};

/// The schemathesis release the spec is checked with.
const SCHEMATHESIS: &str = "4.32.5";
const HYPOTHESIS: &str = "6.131.0";

/// `st` from a virtualenv in the target directory, made (pip, PyPI) when missing.
fn schemathesis() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "schemathesis-{SCHEMATHESIS}-hypothesis-{HYPOTHESIS}"
    ));
    let st = venv.join("bin").join("st");
    if st.is_file() {
        return st;
    }
    eprintln!(
        "installing schemathesis {SCHEMATHESIS} into {}",
        venv.display()
    );
    let run = |command: &mut Command| {
        let status = command
            .status()
            .expect("run python3 (install it: apt-get install python3-venv)");
        assert!(status.success(), "{command:?} failed: {status}");
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={SCHEMATHESIS}"),
        // Later releases describe filters by parsing source with `ast`, which fails on CPython
        // 3.11 ("AST constructor recursion depth mismatch") in schemathesis' coverage phase.
        &format!("hypothesis=={HYPOTHESIS}"),
    ]));
    st
}

/// `(METHOD, /path/{param})` of every operation in openapi.yaml. The spec's layout is ours:
/// paths at two spaces of indent, their methods at four.
fn spec_operations(spec: &str) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    let mut path = None;
    for line in spec.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if !line.starts_with("  ") {
            path = None;
        } else if let (Some(path), Some(method)) = (
            &path,
            line.strip_prefix("    ").and_then(|m| m.strip_suffix(':')),
        ) && ["get", "post", "put", "delete", "patch"].contains(&method)
        {
            operations.insert((method.to_uppercase(), path.clone()));
        }
    }
    operations
}

/// `(METHOD, /path/{param})` of every row of the README's endpoint table (`:uuid` → `{uuid}`).
fn readme_operations(readme: &str) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, methods, paths, ..] = cells.as_slice() else {
            continue;
        };
        if !paths.starts_with("`/api/") {
            continue;
        }
        for method in methods.split(',') {
            let method = method.split_whitespace().next().unwrap_or_default();
            for path in paths.split('`').filter(|p| p.starts_with("/api/")) {
                let path: Vec<String> = path
                    .split('/')
                    .map(|s| match s.strip_prefix(':') {
                        Some(param) => format!("{{{param}}}"),
                        None => s.to_owned(),
                    })
                    .collect();
                operations.insert((method.to_owned(), path.join("/")));
            }
        }
    }
    operations
}

#[test]
fn readme_and_openapi_list_the_same_operations() {
    let spec = std::fs::read_to_string(repo().join("openapi.yaml")).expect("openapi.yaml");
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let spec = spec_operations(&spec);
    let readme = readme_operations(&readme);
    assert!(spec.len() >= 17, "{spec:?}");
    assert_eq!(
        spec.difference(&readme).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in openapi.yaml, not in the README's table"
    );
    assert_eq!(
        readme.difference(&spec).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the README's table, not in openapi.yaml"
    );
}

/// The codes of the spec's `RefusalCode` schema: its enum, one `- code` per line.
fn spec_refusal_codes(spec: &str) -> Vec<String> {
    let mut lines = spec.lines().skip_while(|l| *l != "    RefusalCode:");
    let mut codes = Vec::new();
    for line in lines.by_ref().skip(1) {
        if let Some(code) = line.trim_start().strip_prefix("- ") {
            codes.push(code.to_owned());
        } else if !codes.is_empty() {
            break;
        }
    }
    codes
}

#[test]
fn openapi_lists_every_refusal_code() {
    let spec = std::fs::read_to_string(repo().join("openapi.yaml")).expect("openapi.yaml");
    let expected: Vec<&str> = wattlet_survey::RefusalCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(spec_refusal_codes(&spec), expected);
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let st = schemathesis();
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = Cloud::start(dir.path());
    // The certificate schemathesis presents belongs to a household with consent, a measurement
    // (with power, for the workers' reads) and a density for its region, so participant
    // operations reach their handlers.
    let meter = "5d1b7c3e-8f2a-4e6b-9c0d-1a2b3c4d5e6f";
    let device = cloud.register("Schema Thesis", "st@example.org", "pi-st", meter);
    cloud.grant(&device);
    let reading = json!({"measurements": [{
        "uuid": "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "meter": meter,
        "measured_at": "2026-11-23T16:00:00Z", "data": [{"0100010800ff": 1234.5}, {"0100100700ff": 0.42}],
    }]});
    let (status, body) = cloud.as_device(
        &device,
        "POST",
        "/api/household/meter/measurement",
        Some(reading),
    );
    assert_eq!(status, 200, "{body}");

    // The manager's endpoints take a manager's token, the workers' a worker's; each reaches
    // nothing else.
    let manager_token = cloud.mint("manager");
    let worker_token = cloud.mint("worker");

    let spec = std::fs::read_to_string(repo().join("openapi.yaml")).expect("openapi.yaml");
    let operations = spec_operations(&spec).len();
    let workers = spec_operations(&spec)
        .iter()
        .filter(|(_, path)| path.starts_with("/api/worker/"))
        .count();
    let managers = spec_operations(&spec)
        .iter()
        .filter(|(_, path)| path.starts_with("/api/worker/meter"))
        .count();
    assert!(workers >= 4, "the worker operations are tagged and counted");
    assert!(
        managers >= 2,
        "the manager operations are tagged and counted"
    );
    let schemathesis = |selection: &[&str], token: &str| {
        let ran = run(
            Command::new(&st)
            // schemathesis keeps a cache (`.schemathesis/`) in its working directory.
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .arg("run")
            .arg(repo().join("openapi.yaml"))
            .arg("--url")
            .arg(cloud.url())
            .arg("--tls-verify")
            .arg(cloud.ca.ca_cert_path())
            .arg("--request-cert")
            .arg(&device.cert)
            .arg("--request-cert-key")
            .arg(&device.key)
            .arg("--header")
            .arg(format!("authorization: Bearer {token}"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "50",
                "--seed",
                "20261201",
                "--no-color",
            ])
            .args(selection)
                .env("SCHEMATHESIS_TELEMETRY", "false"),
            None,
        );
        println!("{}\n{}", ran.stdout, ran.stderr);
        ran.expect_success("schemathesis (failures found)")
    };
    // Every operation but the device revocation and the workers' first: the revocation's
    // stateful links would revoke the very device whose certificate the run uses, leaving
    // only 403s to the rest.
    let stdout = schemathesis(
        &[
            "--exclude-operation-id",
            "revokeDevice",
            "--exclude-tag",
            "worker",
            "--exclude-tag",
            "manager",
        ],
        ADMIN_TOKEN,
    );
    let selected = format!("{} selected / {operations} total", operations - 1 - workers);
    assert!(stdout.contains(&selected), "expected {selected:?}");
    let stdout = schemathesis(&["--include-tag", "worker"], &worker_token);
    let selected = format!("{} selected / {operations} total", workers - managers);
    assert!(stdout.contains(&selected), "expected {selected:?}");
    let stdout = schemathesis(&["--include-tag", "manager"], &manager_token);
    let selected = format!("{managers} selected / {operations} total");
    assert!(stdout.contains(&selected), "expected {selected:?}");
    let stdout = schemathesis(&["--include-operation-id", "revokeDevice"], ADMIN_TOKEN);
    assert!(stdout.contains(&format!("1 selected / {operations} total")));
}
