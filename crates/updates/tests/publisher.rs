//! The publisher's side: what it refuses, how it keeps keys, and that every way it changes the
//! repository (adding, refreshing, rotating any top-level role's keys) is followed by devices.

mod common;

use common::*;
use std::num::NonZeroU64;
use wattlet_updates::{Error, InitOptions, KeyRole, Publisher, Refresh};

#[tokio::test]
async fn keys_are_files_only_their_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::with_threshold(2, 3).await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&fx.keys), 0o700);
    for role in KeyRole::ALL {
        let keys = fx.stolen(role);
        assert_eq!(keys.len(), 3, "{role}");
        for key in keys {
            assert_eq!(mode(&key.path), 0o600, "{}", key.path.display());
            let text = std::fs::read_to_string(&key.path).expect("key file");
            assert!(
                text.starts_with("-----BEGIN PRIVATE KEY-----"),
                "PKCS#8 PEM"
            );
        }
    }
    // Root names three keys for each top-level role, two of which must sign.
    let root: tough::schema::Signed<tough::schema::Root> = fx.read("1.root.json");
    for role in root.signed.roles.values() {
        assert_eq!((role.keyids.len(), role.threshold.get()), (3, 2));
    }
    assert_eq!(root.signatures.len(), 3);
}

#[tokio::test]
async fn what_the_publisher_refuses() {
    let dir = tempfile::tempdir().expect("dir");
    let options = InitOptions {
        threshold: NonZeroU64::new(3).expect("3"),
        keys_per_role: NonZeroU64::new(2).expect("2"),
        ..InitOptions::default()
    };
    let e = Publisher::init(dir.path().join("r"), dir.path().join("k"), options)
        .await
        .expect_err("threshold above the key count");
    assert!(e.to_string().contains("threshold of 3"), "{e}");

    let fx = Fixture::new().await;
    let e = Publisher::init(
        &fx.repo,
        fx.dir.path().join("other-keys"),
        InitOptions::default(),
    )
    .await
    .expect_err("a second repository over the first");
    assert!(e.to_string().contains("already holds a repository"), "{e}");
    let e = Publisher::init(
        fx.dir.path().join("repo2"),
        &fx.keys,
        InitOptions::default(),
    )
    .await
    .expect_err("a second repository's keys among the first's");
    assert!(e.to_string().contains("already holds"), "{e}");

    // Versions are immutable.
    let file = fx.dir.path().join("again.wasm");
    std::fs::write(&file, b"\0asm other bytes").expect("write");
    let e = fx
        .publisher
        .add(&meta("1.0.0", "0.1.0"), &file)
        .await
        .expect_err("republishing 1.0.0");
    assert!(e.to_string().contains("already published"), "{e}");

    // Names that are no path segment.
    let mut bad = meta("1.0.1", "0.1.0");
    bad.name = "../bin".into();
    assert!(matches!(
        fx.publisher.add(&bad, &file).await,
        Err(Error::Invalid(_))
    ));

    // Without the release keys nothing is added, and the message says where keys are looked for.
    let elsewhere = fx.dir.path().join("online-keys");
    std::fs::create_dir(&elsewhere).expect("dir");
    for role in [KeyRole::Snapshot, KeyRole::Timestamp] {
        for key in fx.stolen(role) {
            let name = key.path.file_name().expect("name");
            std::fs::copy(&key.path, elsewhere.join(name)).expect("copy");
        }
    }
    let online = Publisher::open(&fx.repo, &elsewhere);
    let e = online
        .add(&meta("1.0.1", "0.1.0"), &file)
        .await
        .expect_err("no release keys");
    assert!(
        matches!(&e, Error::MissingKeys { role, .. } if role == "release"),
        "{e}"
    );
    // The online keys are enough to refresh.
    online
        .refresh(Refresh::default())
        .await
        .expect("refresh with online keys");
    let listed = fx.publisher.components().await.expect("list");
    assert_eq!(listed, vec![meta("1.0.0", "0.1.0")]);
}

#[tokio::test]
async fn devices_follow_every_rotation() {
    let fx = Fixture::with_threshold(2, 3).await;
    let device = fx.device("a");
    device.check(COMPONENT, None).await.expect("first check");
    let mut published = vec!["1.0.0"];
    for (i, role) in [
        KeyRole::Timestamp,
        KeyRole::Snapshot,
        KeyRole::Targets,
        KeyRole::Root,
    ]
    .into_iter()
    .enumerate()
    {
        fx.publisher
            .rotate(role)
            .await
            .unwrap_or_else(|e| panic!("rotating {role}: {e}"));
        assert_eq!(fx.retired(role).len(), 3, "{role}: old keys retired");
        let v = ["1.1.0", "1.2.0", "1.3.0", "1.4.0"][i];
        fx.publish(v, "0.1.0").await;
        published.push(v);
        offered(&device, v).await;
        assert_eq!(device.trusted().expect("trusted").root, i as u64 + 2);
    }
    // A device that ships with the very first root follows the whole chain at once.
    let fresh = fx.device("fresh");
    offered(&fresh, "1.4.0").await;
    assert_eq!(
        fx.publisher.components().await.expect("list").len(),
        published.len()
    );
}

#[tokio::test]
async fn a_kept_root_cut_short_by_a_power_failure_is_recovered_from() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    fx.publisher
        .rotate(KeyRole::Timestamp)
        .await
        .expect("rotate");
    device.check(COMPONENT, None).await.expect("check");
    assert_eq!(device.trusted().expect("trusted").root, 2);

    // tough rewrites root.json in place: a power cut can leave it truncated.
    let kept = fx.dir.path().join("device-a/tuf/root.json");
    let bytes = std::fs::read(&kept).expect("kept root");
    std::fs::write(&kept, &bytes[..bytes.len() / 2]).expect("truncate");
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
    assert_eq!(device.trusted().expect("trusted").root, 2);
}

#[tokio::test]
async fn a_threshold_of_key_holders_is_enough_to_sign() {
    // 2-of-3: each role's keys are with three people; any two of them can publish.
    let fx = Fixture::with_threshold(2, 3).await;
    let device = fx.device("a");
    let away = fx.dir.path().join("away");
    std::fs::create_dir(&away).expect("dir");
    let take_away = |role: KeyRole| {
        let key = fx.stolen(role).pop().expect("a key");
        let name = key.path.file_name().expect("name").to_owned();
        std::fs::rename(&key.path, away.join(name)).expect("move");
    };
    for role in [KeyRole::Release, KeyRole::Snapshot, KeyRole::Timestamp] {
        take_away(role);
    }
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
    let signatures = fx.timestamp().signatures.len();
    assert_eq!(signatures, 2, "signed by the two keys present");

    // One holder alone cannot.
    take_away(KeyRole::Release);
    let file = fx.dir.path().join("x.wasm");
    std::fs::write(&file, b"\0asm").expect("write");
    let e = fx
        .publisher
        .add(&meta("1.2.0", "0.1.0"), &file)
        .await
        .expect_err("one release key of a 2-of-3 role");
    assert!(
        matches!(&e, Error::MissingKeys { role, .. } if role == "release"),
        "{e}"
    );
}

#[tokio::test]
async fn a_target_whose_metadata_contradicts_its_path_is_never_offered() {
    // Signed by the release role, but the metadata names another version than the path.
    let fx = Fixture::new().await;
    let device = fx.device("a");
    device
        .record_installed(COMPONENT, &version("1.0.0"))
        .expect("record");
    let bytes = component_bytes("9.0.0");
    let file = fx.dir.path().join("9.wasm");
    std::fs::write(&file, &bytes).expect("write");
    let mut target = tough::schema::Target::from_path(&file)
        .await
        .expect("target");
    target.custom = serde_json::from_value(serde_json::json!({
        "name": COMPONENT, "version": "1.0.0", "world": WORLD, "min_host": "0.1.0"
    }))
    .expect("custom");
    fx.forge_release(&fx.stolen(KeyRole::Release), |release| {
        release.targets.insert(
            tough::TargetName::new(format!("components/{COMPONENT}/9.0.0.wasm")).expect("name"),
            target,
        );
    })
    .await;
    let none = device
        .check(COMPONENT, None)
        .await
        .expect("the repository verifies");
    assert!(none.is_none(), "offered {:?}", none.map(|u| u.target));
}
