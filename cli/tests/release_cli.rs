//! `wattlet release` through the real binary: a repository created with a threshold, a real
//! component published, checked as a device would, and refused once tampered with.

use wattlet_testkit::{Ran, binary, run};

/// `wattlet release ARGS…`
fn release(args: &[&str]) -> Ran {
    run(binary!("wattlet").arg("release").args(args), None)
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

    let add = |version: &str| {
        release(&[
            "add",
            "--repo",
            &repo,
            "--keys",
            &keys,
            "--component",
            "meter-parser",
            "--version",
            version,
            "--world",
            "wattlet:meter/parser",
            "--min-host",
            "0.1.0",
            &component,
        ])
    };
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
