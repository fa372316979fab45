//! SQLite as a sandbox in `wattlet serve`: a component granted the `default` database (the Spin
//! probe's `/sqlite-abuse/...` routes) cannot reach another file (`ATTACH`, `VACUUM INTO`),
//! change durability (`PRAGMA synchronous`), load an extension, leave a transaction open for
//! the next request, or hold the database past its request's deadline; other requests keep
//! being served meanwhile. The same probes on the real Spin CLI show what Spin 4.1 allows (the
//! differences are listed in the README's `wattlet serve` section).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::Value;
use wattlet_serve::limits::PerComponent;
use wattlet_testkit::http::{self, Reply};
use wattlet_testkit::serve::{self, Served};
use wattlet_testkit::{NO_SPIN, PROBE_TOKEN, SpinUp, repo, spin_cli};

/// The probe application's request deadline in these tests.
const DEADLINE: Duration = Duration::from_secs(2);

/// One server for the module (compiling the probe once); tests use disjoint files and tables.
fn server() -> &'static Served {
    static SERVER: std::sync::OnceLock<Served> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let state = tempfile::tempdir().expect("temp dir");
        let mut options = serve::probe_options(state.path());
        options.limits.request_timeout = PerComponent::new(DEADLINE);
        serve::start(&options, &[("api_token", PROBE_TOKEN)]).keeping(state)
    })
}

/// A file path for a query string (temporary directories need no escaping).
fn query_path(path: &Path) -> String {
    let text = path.display().to_string();
    assert!(
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
        "{text} needs escaping"
    );
    text
}

async fn probe(addr: SocketAddr, route: &str) -> Reply {
    tokio::time::timeout(
        Duration::from_secs(30),
        http::get(addr, &format!("/probe/sqlite-abuse/{route}")),
    )
    .await
    .unwrap_or_else(|_| panic!("{route}: no answer within 30 s"))
}

/// SQLite's words for a statement the authorizer denied (`VACUUM INTO` fails in the `ATTACH`
/// it runs).
fn refused(text: &str) -> bool {
    text.contains("not authorized") || text.contains("authorization denied")
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{what}: {}",
        reply.text
    );
    assert!(refused(&reply.text), "{what}: {}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_another_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let other = dir.path().join("other.db");
    let reply = probe(
        server().addr,
        &format!("attach?path={}", query_path(&other)),
    )
    .await;
    assert_refused(&reply, "ATTACH");
    assert!(!other.exists(), "ATTACH created {}", other.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_into_a_new_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("copy.db");
    let reply = probe(
        server().addr,
        &format!("vacuum-into?path={}", query_path(&copy)),
    )
    .await;
    assert_refused(&reply, "VACUUM INTO");
    assert!(!copy.exists(), "VACUUM INTO wrote {}", copy.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_cannot_be_turned_down() {
    let addr = server().addr;
    let before = probe(addr, "pragma?name=synchronous").await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    assert_refused(&probe(addr, "synchronous-off").await, "synchronous = OFF");
    for _ in 0..4 {
        let after = probe(addr, "pragma?name=synchronous").await;
        assert_eq!(after.text, before.text, "synchronous changed");
    }
    let secure = probe(addr, "pragma?name=secure_delete").await;
    assert_eq!(secure.text, "1", "secure_delete is on for every connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_cannot_be_loaded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let library = dir.path().join("evil.so");
    std::fs::write(&library, b"not a library").expect("write");
    let reply = probe(
        server().addr,
        &format!("load-extension?path={}", query_path(&library)),
    )
    .await;
    assert_refused(&reply, "load_extension");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_ends_with_its_request() {
    let addr = server().addr;
    let begun = probe(addr, "begin").await;
    assert_eq!(begun.status, StatusCode::OK, "{}", begun.text);
    // Another request sees none of it and cannot commit it; nor can a later one.
    for _ in 0..3 {
        let peek = probe(addr, "peek").await;
        assert_eq!(peek.status, StatusCode::OK, "{}", peek.text);
        assert_eq!(peek.body["rows"], Value::from(0), "{}", peek.text);
        let commit = peek.body["commit"].as_str().unwrap_or_default();
        assert!(commit.contains("no transaction is active"), "{commit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_statement_ends_at_the_deadline_while_others_are_served() {
    let addr = server().addr;
    let started = Instant::now();
    let slow = tokio::spawn(probe(addr, "slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile: other statements on the same database, and on the key-value store.
    for _ in 0..5 {
        let asked = Instant::now();
        let reply = tokio::time::timeout(DEADLINE, http::get(addr, "/probe/sqlite/default"))
            .await
            .expect("another request answered while the runaway statement runs");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let kv = tokio::time::timeout(DEADLINE, http::get(addr, "/probe/kv/default/none"))
            .await
            .expect("the key-value store answers meanwhile");
        assert_eq!(kv.status, StatusCode::NOT_FOUND, "{}", kv.text);
        assert!(asked.elapsed() < DEADLINE, "{:?}", asked.elapsed());
    }
    assert!(!slow.is_finished() || started.elapsed() >= DEADLINE);
    let reply = slow.await.expect("slow request");
    let elapsed = started.elapsed();
    // The statement is interrupted at the deadline, and the guest is stopped at the same
    // instant: whichever the host sees first answers (504, or the guest's 500 `interrupted`).
    assert!(
        reply.status == StatusCode::GATEWAY_TIMEOUT
            || (reply.status == StatusCode::INTERNAL_SERVER_ERROR
                && reply.text.contains("interrupted")),
        "{} {}",
        reply.status,
        reply.text
    );
    assert!(
        elapsed >= DEADLINE,
        "answered before its deadline: {elapsed:?}"
    );
    assert!(elapsed < DEADLINE + Duration::from_secs(3), "{elapsed:?}");
}

/// What one probe got from a server: status and body.
fn outcome(reply: &Reply) -> String {
    format!("{} {}", reply.status.as_u16(), reply.text.trim())
}

/// Every probe on a server, with the files the file probes aimed at (in `dir`).
async fn probe_all(addr: SocketAddr, dir: &Path) -> (Vec<(&'static str, String)>, Vec<PathBuf>) {
    let other = dir.join("other.db");
    let copy = dir.join("copy.db");
    let mut seen = Vec::new();
    for (name, route) in [
        ("attach", format!("attach?path={}", query_path(&other))),
        (
            "vacuum-into",
            format!("vacuum-into?path={}", query_path(&copy)),
        ),
        ("synchronous-off", "synchronous-off".to_owned()),
        ("synchronous after", "pragma?name=synchronous".to_owned()),
        (
            "load-extension",
            format!("load-extension?path={}", query_path(&dir.join("x.so"))),
        ),
        ("begin", "begin".to_owned()),
        ("peek", "peek".to_owned()),
    ] {
        seen.push((name, outcome(&probe(addr, &route).await)));
    }
    (seen, vec![other, copy])
}

/// The same probes on Spin 4.1 and on `wattlet serve`; the differences are the README's. Spin
/// gets no `slow` probe: it would run for ever (Spin 4.1 has no request deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_allows_what_wattlet_serve_refuses() {
    let Some(spin) = spin_cli() else {
        println!("{NO_SPIN}");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let spin_dir = dir.path().join("spin");
    let spin_up = tokio::task::spawn_blocking(move || {
        SpinUp::start(
            &spin,
            &repo().join("tests/spin/spin.toml"),
            Some(&repo().join("tests/spin/runtime-config.toml")),
            &spin_dir,
            &[("api_token", PROBE_TOKEN)],
        )
    })
    .await
    .expect("spin up");
    let spin_files = dir.path().join("spin-files");
    let wattlet_files = dir.path().join("wattlet-files");
    for d in [&spin_files, &wattlet_files] {
        std::fs::create_dir_all(d).expect("dir");
    }
    let (on_spin, spin_paths) = probe_all(spin_up.addr, &spin_files).await;
    let (on_wattlet, wattlet_paths) = probe_all(server().addr, &wattlet_files).await;
    for ((name, spin), (_, wattlet)) in on_spin.iter().zip(&on_wattlet) {
        println!("{name:18} spin: {spin}\n{:18} wattlet: {wattlet}", "");
    }
    let get = |seen: &[(&str, String)], name: &str| {
        seen.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    };
    // Spin lets a component turn durability down (on its own connection); wattlet serve
    // refuses.
    assert!(
        get(&on_spin, "synchronous-off").starts_with("200"),
        "{on_spin:?}"
    );
    let outcome = get(&on_wattlet, "synchronous-off");
    assert!(
        outcome.starts_with("500") && refused(&outcome),
        "synchronous-off: {outcome}"
    );
    // Alike: no other file reached (`ATTACH`, `VACUUM INTO`), no extension loading, and a
    // transaction left open is gone with its request (Spin opens a connection per `open` and
    // closes it with the instance).
    for name in ["attach", "vacuum-into", "load-extension"] {
        for (server, seen) in [("spin", &on_spin), ("wattlet", &on_wattlet)] {
            let outcome = get(seen, name);
            assert!(
                outcome.starts_with("500") && refused(&outcome),
                "{name} on {server}: {outcome}"
            );
        }
    }
    assert!(
        spin_paths.iter().chain(&wattlet_paths).all(|p| !p.exists()),
        "a refused ATTACH or VACUUM INTO wrote no file"
    );
    for name in ["begin", "peek"] {
        let (spin, wattlet) = (get(&on_spin, name), get(&on_wattlet, name));
        assert_eq!(
            spin.split(' ').next(),
            wattlet.split(' ').next(),
            "{name}: {spin} / {wattlet}"
        );
    }
    assert!(get(&on_spin, "peek").contains("\"rows\":0"), "{on_spin:?}");
    drop(spin_up);
}
