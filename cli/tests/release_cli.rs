//! `wattlet release` through the real binary: a repository created with a threshold, a real
//! component published, checked as a device would, and refused once tampered with; and the same
//! check over the device's mutual-TLS link, through `wattlet serve` of spin.toml's `updates`
//! component.

use wattlet_serve::server::ClientAuth;
use wattlet_testkit::{Ran, binary, pki, run, serve};

/// `wattlet release ARGS…`
fn release(args: &[&str]) -> Ran {
    run(binary!("wattlet").arg("release").args(args), None)
}

/// `wattlet release add` of `component` as meter-parser `version` (any host from 0.1.0).
fn add_parser(repo: &str, keys: &str, version: &str, component: &str) -> Ran {
    release(&[
        "add",
        "--repo",
        repo,
        "--keys",
        keys,
        "--component",
        "meter-parser",
        "--version",
        version,
        "--world",
        "wattlet:meter/parser",
        "--min-host",
        "0.1.0",
        component,
    ])
}

#[test]
fn publish_check_and_refuse_a_tampered_repository() {
    let temp = tempfile::tempdir().expect("temp dir");
    let path = |p: &str| temp.path().join(p).to_string_lossy().into_owned();
    let (repo, keys) = (path("repo"), path("keys"));
    let root = path("repo/metadata/1.root.json");
    let component = path("parser.wasm");
    let bytes = b"\0asm\x0d\0\x01\0 a parser".repeat(100);
    std::fs::write(&component, &bytes).expect("component");

    let out = release(&[
        "init",
        "--repo",
        &repo,
        "--keys",
        &keys,
        "--threshold",
        "2",
        "--keys-per-role",
        "3",
    ])
    .expect_success("init");
    assert!(out.contains("1.root.json"), "{out}");

    let add = |version: &str| add_parser(&repo, &keys, version, &component);
    let out = add("1.2.0").expect_success("add");
    assert!(out.contains("components/meter-parser/1.2.0.wasm"), "{out}");
    let again = add("1.2.0");
    assert!(!again.success());
    assert!(
        again.stderr.contains("already published"),
        "{}",
        again.stderr
    );

    let out = release(&["list", "--repo", &repo]).expect_success("list");
    assert_eq!(
        out.trim(),
        "meter-parser 1.2.0  world wattlet:meter/parser  min-host 0.1.0"
    );

    // What a device with nothing installed would take (exit 0), and the verified bytes.
    let got = path("got.wasm");
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--repo",
            &repo,
            "--root",
            &root,
            "--component",
            "meter-parser",
        ];
        args.extend_from_slice(extra);
        release(&args)
    };
    let out = check(&["--out", &got]).expect_success("check");
    assert!(out.contains("meter-parser 1.2.0"), "{out}");
    assert_eq!(std::fs::read(&got).expect("written"), bytes);
    // Nothing newer than what is installed: exit 1.
    let ran = check(&["--installed", "1.2.0"]);
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);

    release(&["refresh", "--repo", &repo, "--keys", &keys]).expect_success("refresh");
    release(&[
        "rotate",
        "--repo",
        &repo,
        "--keys",
        &keys,
        "--role",
        "timestamp",
    ])
    .expect_success("rotate");
    check(&[]).expect_success("check after rotation");

    // The stored component changed on the server: refused, exit 2, the reason named.
    let stored = walk(&temp.path().join("repo/targets"))
        .into_iter()
        .find(|p| p.ends_with("meter-parser/1.2.0.wasm"))
        .expect("stored target");
    let mut evil = bytes.clone();
    evil[10] ^= 1;
    std::fs::write(&stored, &evil).expect("tamper");
    let ran = check(&[]);
    assert_eq!(ran.status.code(), Some(2));
    assert!(
        ran.stderr.contains("does not match the hash"),
        "{}",
        ran.stderr
    );

    // Errors say what to do.
    let ran = release(&["list", "--repo", &path("nowhere")]);
    assert!(
        ran.stderr.contains("wattlet release init"),
        "{}",
        ran.stderr
    );
}

/// The cloud serves the repository (`updates/`, with the committed placeholder in it before
/// `release init`) through the static-file component over mutual TLS; the device's verifier
/// reads it there with its certificate and takes the update, and refuses a tampered target.
#[test]
fn check_over_mutual_tls_through_wattlet_serve() {
    let temp = tempfile::tempdir().expect("temp dir");
    let path = |p: &str| temp.path().join(p).to_string_lossy().into_owned();
    let (repo, keys) = (path("updates"), path("keys"));
    std::fs::create_dir(&repo).expect("updates/");
    std::fs::copy(
        wattlet_testkit::repo().join("updates/.gitignore"),
        temp.path().join("updates/.gitignore"),
    )
    .expect("the committed placeholder");
    release(&["init", "--repo", &repo, "--keys", &keys])
        .expect_success("init over the placeholder");
    let component = path("parser.wasm");
    let bytes = b"\0asm\x0d\0\x01\0 a parser".repeat(100);
    std::fs::write(&component, &bytes).expect("component");
    add_parser(&repo, &keys, "1.3.0", &component).expect_success("add");

    let (ca, tls) = pki::server_ca(&temp.path().join("pki"), ClientAuth::Required);
    let device = pki::device(&ca, temp.path(), "pi-0042", "ada@example.org");
    let served = serve::start(
        &serve::static_files_options(temp.path(), "updates", Some(tls)),
        &[],
    );
    let url = format!("https://127.0.0.1:{}/updates/", served.addr.port());
    let root = path("updates/metadata/1.root.json");
    let got = path("got.wasm");
    let (cert, key) = (
        device.cert.display().to_string(),
        device.key.display().to_string(),
    );
    let ca_cert = ca.ca_cert_path().display().to_string();
    let check = || {
        release(&[
            "check",
            "--repo",
            &url,
            "--root",
            &root,
            "--component",
            "meter-parser",
            "--cert",
            &cert,
            "--key",
            &key,
            "--ca",
            &ca_cert,
            "--out",
            &got,
        ])
    };
    let out = check().expect_success("check over mutual TLS");
    assert!(out.contains("meter-parser 1.3.0"), "{out}");
    assert_eq!(std::fs::read(&got).expect("written"), bytes);

    // The target served changes under the signed metadata: refused, exit 2.
    let stored = walk(&temp.path().join("updates/targets"))
        .into_iter()
        .find(|p| p.ends_with("meter-parser/1.3.0.wasm"))
        .expect("stored target");
    let mut evil = bytes.clone();
    evil[10] ^= 1;
    std::fs::write(&stored, &evil).expect("tamper");
    let ran = check();
    assert_eq!(ran.status.code(), Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("does not match the hash"),
        "{}",
        ran.stderr
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
