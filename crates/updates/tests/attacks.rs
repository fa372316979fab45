//! One attack per TUF threat on a real repository on disk: the publisher writes it, the attacker
//! edits its files (or signs with keys it stole), the device checks. Every attack is refused
//! with the error of the guarantee that stopped it, the device keeps trusting what it trusted,
//! and a good update still goes through afterwards.

mod common;

use common::*;
use jiff::{SignedDuration, Timestamp};
use tough::schema::{Hashes, Target};
use wattlet_updates::{Error, KeyRole, Refresh};

#[tokio::test]
async fn a_good_update_is_verified_and_the_version_floor_holds() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    assert_eq!(offered(&device, "1.0.0").await, component_bytes("1.0.0"));

    // Installed: never offered again.
    device
        .record_installed(COMPONENT, &version("1.0.0"))
        .expect("record");
    assert!(
        device
            .check(COMPONENT, None)
            .await
            .expect("check")
            .is_none()
    );

    // A newer version is; one this host is too old for is not.
    fx.publish("1.1.0", "0.1.0").await;
    fx.publish("2.0.0", "9.0.0").await;
    assert_eq!(offered(&device, "1.1.0").await, component_bytes("1.1.0"));

    // Publishing an older version after a newer one does not take a device back.
    device
        .record_installed(COMPONENT, &version("1.1.0"))
        .expect("record");
    fx.publish("1.0.5", "0.1.0").await;
    assert!(
        device
            .check(COMPONENT, None)
            .await
            .expect("check")
            .is_none()
    );
    // Nor does an installed version passed by the caller that is newer than the floor.
    let device_b = fx.device("b");
    let none = device_b
        .check(COMPONENT, Some(&version("1.1.0")))
        .await
        .expect("check");
    assert!(
        none.is_none(),
        "offered a version not newer than the installed one"
    );
}

#[tokio::test]
async fn a_ceiling_holds_back_newer_versions_the_rollout_has_not_reached() {
    let fx = Fixture::new().await;
    fx.publish("1.1.0", "0.1.0").await;
    fx.publish("1.2.0", "0.1.0").await;
    let device = fx.device("a");
    let up_to = |ceiling: &'static str| {
        let device = &device;
        async move {
            device
                .check_up_to(COMPONENT, Some(&version("1.0.0")), Some(&version(ceiling)))
                .await
                .expect("check")
                .map(|u| u.meta.version.to_string())
        }
    };
    // The newest signed version up to the ceiling, never above it.
    assert_eq!(up_to("1.1.0").await.as_deref(), Some("1.1.0"));
    assert_eq!(up_to("1.1.9").await.as_deref(), Some("1.1.0"));
    assert_eq!(up_to("1.2.0").await.as_deref(), Some("1.2.0"));
    // A ceiling at or below what is installed offers nothing.
    assert_eq!(up_to("1.0.0").await, None);
    // Without one, the newest.
    let newest = device.check(COMPONENT, Some(&version("1.0.0"))).await;
    assert_eq!(
        newest.expect("check").unwrap().meta.version.to_string(),
        "1.2.0"
    );
}

#[tokio::test]
async fn arbitrary_software_tampered_metadata_fails_its_signature() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    let before = trusted(&device);
    let saved = fx.save();

    // The attacker edits timestamp.json (a longer life) without the timestamp key.
    let path = fx.metadata("timestamp.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&saved["timestamp.json"]).expect("timestamp.json");
    json["signed"]["expires"] = serde_json::json!("2036-01-01T00:00:00Z");
    std::fs::write(&path, serde_json::to_vec_pretty(&json).expect("json")).expect("tamper");
    let e = refused(&device, "signature").await;
    assert!(
        matches!(&e, Error::Signature { role, .. } if role == "timestamp"),
        "{e}"
    );
    assert_eq!(trusted(&device), before);

    fx.restore(&saved);
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
}

#[tokio::test]
async fn arbitrary_software_with_stolen_online_keys_fails_the_release_signature() {
    // Snapshot and timestamp keys live on the server; the release key does not. An attacker
    // with the server's keys adds a component to the release metadata and re-pins it.
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    device
        .record_installed(COMPONENT, &version("1.0.0"))
        .expect("record");
    let before = trusted(&device);
    let saved = fx.save();

    let evil = b"\0asm evil".to_vec();
    let file = fx.dir.path().join("evil.wasm");
    std::fs::write(&file, &evil).expect("write");
    let mut target = Target::from_path(&file).await.expect("target");
    target.custom = serde_json::from_value(serde_json::json!({
        "name": COMPONENT, "version": "9.9.9", "world": WORLD, "min_host": "0.1.0"
    }))
    .expect("custom");
    let release_signatures = fx.release().signatures;
    let mut release = fx.release().signed;
    release.version = nonzero(release.version.get() + 1);
    release.targets.insert(
        tough::TargetName::new(format!("components/{COMPONENT}/9.9.9.wasm")).expect("name"),
        target,
    );
    // The old release signatures over new content.
    let v = release.version.get();
    let forged = tough::schema::Signed {
        signed: release,
        signatures: release_signatures,
    };
    let bytes = write_signed(&fx.metadata(&format!("{v}.release.json")), &forged);
    fx.forge_snapshot(&[("release.json", v, bytes)]).await;

    let e = refused(&device, "signature").await;
    // TUF calls a delegated role's metadata targets metadata.
    assert!(
        matches!(&e, Error::Signature { role, .. } if role == "targets"),
        "{e}"
    );
    assert_eq!(trusted(&device).targets, before.targets);
    assert_eq!(
        device.installed(COMPONENT).expect("state"),
        Some(version("1.0.0"))
    );

    fx.restore(&saved);
    fx.recovers(&device, "1.1.0").await;
}

#[tokio::test]
async fn arbitrary_software_a_changed_target_fails_its_hash() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    fx.publish("1.1.0", "0.1.0").await;
    let target = fx.target_file("1.1.0");
    let good = std::fs::read(&target).expect("target");
    let mut evil = good.clone();
    evil[100] ^= 0xff; // same length, other bytes
    std::fs::write(&target, &evil).expect("tamper");

    let e = refused(&device, "hash-mismatch").await;
    assert!(e.to_string().contains("1.1.0.wasm"), "{e}");
    assert_eq!(device.installed(COMPONENT).expect("state"), None);

    std::fs::write(&target, &good).expect("restore");
    assert_eq!(offered(&device, "1.1.0").await, good);
}

#[tokio::test]
async fn arbitrary_software_a_longer_target_fails_its_length() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    let target = fx.target_file("1.0.0");
    let good = std::fs::read(&target).expect("target");
    let mut longer = good.clone();
    longer.extend_from_slice(b"appended payload");
    std::fs::write(&target, &longer).expect("tamper");

    let e = refused(&device, "too-large").await;
    assert!(matches!(e, Error::TooLarge { max, .. } if max == good.len() as u64));

    std::fs::write(&target, &good).expect("restore");
    assert_eq!(offered(&device, "1.0.0").await, good);
}

#[tokio::test]
async fn rollback_of_the_timestamp_is_refused() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    let old = fx.save();
    fx.refresh().await;
    offered(&device, "1.0.0").await;
    let before = trusted(&device);

    std::fs::write(fx.metadata("timestamp.json"), &old["timestamp.json"]).expect("replay");
    let e = refused(&device, "rollback").await;
    assert!(
        matches!(&e, Error::Rollback { role, trusted, offered } if role == "timestamp" && trusted > offered),
        "{e}"
    );
    assert_eq!(trusted(&device), before);

    fx.refresh().await;
    offered(&device, "1.0.0").await;
}

#[tokio::test]
async fn rollback_of_the_snapshot_is_refused() {
    // With the timestamp key, the attacker points a newer timestamp at an older snapshot.
    let fx = Fixture::new().await;
    let device = fx.device("a");
    let old_snapshot = fx.snapshot();
    let old_bytes = fx.save()[&format!("{}.snapshot.json", old_snapshot.signed.version)].clone();
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
    let before = trusted(&device);

    let next = fx.timestamp().signed.version.get() + 1;
    fx.forge_timestamp(
        &fx.stolen(KeyRole::Timestamp),
        next,
        (old_snapshot.signed.version.get(), &old_bytes),
    )
    .await;
    let e = refused(&device, "rollback").await;
    assert!(
        matches!(&e, Error::Rollback { role, .. } if role == "snapshot"),
        "{e}"
    );
    assert_eq!(trusted(&device).snapshot, before.snapshot);

    fx.recovers(&device, "1.2.0").await;
}

#[tokio::test]
async fn rollback_of_targets_and_release_is_refused() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    let saved = fx.save();
    let old_release = fx.release().signed.version.get();
    fx.publisher
        .refresh(Refresh {
            targets: true,
            release: false,
        })
        .await
        .expect("refresh targets");
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
    let before = trusted(&device);
    assert_eq!(before.targets, 2);
    let current = fx.save();

    // With the online keys, a snapshot pinning the first targets metadata again.
    fx.forge_snapshot(&[("targets.json", 1, saved["1.targets.json"].clone())])
        .await;
    let e = refused(&device, "rollback").await;
    assert!(
        matches!(&e, Error::Rollback { role, .. } if role == "targets"),
        "{e}"
    );
    assert_eq!(trusted(&device).targets, 2);
    fx.restore(&current);

    // And one pinning the older release metadata (without 1.1.0).
    let file = format!("{old_release}.release.json");
    fx.forge_snapshot(&[("release.json", old_release, saved[&file].clone())])
        .await;
    let e = refused(&device, "rollback").await;
    assert!(
        matches!(&e, Error::Rollback { role, .. } if role == "release"),
        "{e}"
    );
    fx.restore(&current);

    fx.recovers(&device, "1.2.0").await;
}

#[tokio::test]
async fn rollback_of_root_is_refused_also_after_a_restart() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    fx.publisher
        .rotate(KeyRole::Timestamp)
        .await
        .expect("rotate");
    let old_timestamp_keys = fx.retired(KeyRole::Timestamp);
    assert_eq!(old_timestamp_keys.len(), 1);
    offered(&device, "1.0.0").await;
    assert_eq!(trusted(&device).root, 2);

    // Root version 1 served as the next root.
    let one = std::fs::read(fx.metadata("1.root.json")).expect("root 1");
    std::fs::write(fx.metadata("3.root.json"), &one).expect("replay");
    let e = refused(&device, "rollback").await;
    assert!(
        matches!(&e, Error::Rollback { role, offered: 1, .. } if role == "root"),
        "{e}"
    );
    std::fs::remove_file(fx.metadata("3.root.json")).expect("remove");

    // The attacker holds the retired timestamp key, hides root 2 and signs a timestamp with it.
    // A device that restarted from its shipped root would believe it; ours kept root 2.
    let saved = fx.save();
    std::fs::remove_file(fx.metadata("2.root.json")).expect("hide root 2");
    let snapshot = fx.snapshot().signed.version.get();
    let snapshot_bytes = saved[&format!("{snapshot}.snapshot.json")].clone();
    fx.forge_timestamp(&old_timestamp_keys, 1000, (snapshot, &snapshot_bytes))
        .await;
    let restarted = fx.device("a");
    let e = refused(&restarted, "signature").await;
    assert!(
        matches!(&e, Error::Signature { role, .. } if role == "timestamp"),
        "{e}"
    );
    assert_eq!(trusted(&restarted).root, 2);

    fx.restore(&saved);
    fx.recovers(&restarted, "1.1.0").await;
}

#[tokio::test]
async fn indefinite_freeze_expired_metadata_is_refused() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    let before = trusted(&device);

    for (role, refresh, expect) in [
        (KeyRole::Timestamp, Refresh::default(), "timestamp"),
        (KeyRole::Snapshot, Refresh::default(), "snapshot"),
        (
            KeyRole::Targets,
            Refresh {
                targets: true,
                release: false,
            },
            "targets",
        ),
        // A delegated role's metadata is targets metadata to TUF.
        (
            KeyRole::Release,
            Refresh {
                targets: false,
                release: true,
            },
            "targets",
        ),
    ] {
        fx.publisher_with(expired(role))
            .refresh(refresh)
            .await
            .expect("sign expired metadata");
        let e = refused(&device, "expired").await;
        assert!(
            matches!(&e, Error::Expired { role } if role == expect),
            "{role}: {e}"
        );
        // Trust never moves to expired metadata, whatever else it carried.
        let now = trusted(&device);
        assert!(now.targets >= before.targets && now.snapshot >= before.snapshot);

        // The repository recovers once re-signed with a fresh expiry.
        fx.publisher.refresh(refresh).await.expect("refresh");
        device.check(COMPONENT, None).await.expect("recovered");
    }
}

#[tokio::test]
async fn mix_and_match_metadata_from_another_release_is_refused() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    let first = fx.save();
    let old_release = fx.release().signed.version.get();
    let old_snapshot = fx.snapshot().signed.version.get();
    fx.publish("1.1.0", "0.1.0").await;
    let saved = fx.save();
    let new_release = fx.release().signed.version.get();
    let new_snapshot = fx.snapshot().signed.version.get();

    // The current snapshot names release N; the attacker serves release N-1's file under it.
    std::fs::write(
        fx.metadata(&format!("{new_release}.release.json")),
        &first[&format!("{old_release}.release.json")],
    )
    .expect("mix");
    let e = refused(&device, "hash-mismatch").await;
    assert!(e.to_string().contains("release.json"), "{e}");
    fx.restore(&saved);

    // The current timestamp names snapshot N; the attacker serves snapshot N-1's file.
    std::fs::write(
        fx.metadata(&format!("{new_snapshot}.snapshot.json")),
        &first[&format!("{old_snapshot}.snapshot.json")],
    )
    .expect("mix");
    let e = refused(&device, "hash-mismatch").await;
    assert!(e.to_string().contains("snapshot.json"), "{e}");
    fx.restore(&saved);

    offered(&device, "1.1.0").await;
}

#[tokio::test]
async fn endless_data_is_cut_off() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    let before = trusted(&device);
    let saved = fx.save();
    let endless = vec![b' '; 8 * 1024 * 1024];

    // An endless timestamp (its size is not pinned anywhere: the device's limit applies).
    std::fs::write(fx.metadata("timestamp.json"), &endless).expect("write");
    let fetched = device.fetched().metadata_bytes;
    let e = refused(&device, "too-large").await;
    assert!(
        matches!(e, Error::TooLarge { max, .. } if max == 16 * 1024),
        "{e}"
    );
    // Read up to the limit, not to the end (the root probe is absent).
    let read = device.fetched().metadata_bytes - fetched;
    assert!(
        read < 1024 * 1024,
        "{read} bytes of an endless timestamp read"
    );
    fx.restore(&saved);

    // An endless next root.
    std::fs::write(fx.metadata("2.root.json"), &endless).expect("write");
    refused(&device, "too-large").await;
    std::fs::remove_file(fx.metadata("2.root.json")).expect("remove");

    // An endless snapshot (pinned length).
    let snapshot = fx.snapshot().signed.version.get();
    std::fs::write(fx.metadata(&format!("{snapshot}.snapshot.json")), &endless).expect("write");
    refused(&device, "too-large").await;
    fx.restore(&saved);
    assert_eq!(trusted(&device), before);

    // A signed component larger than the device accepts is not downloaded at all.
    fx.publish("1.1.0", "0.1.0").await;
    let small = fx.device("small").max_component_size(1024);
    let e = refused(&small, "too-large").await;
    assert!(matches!(e, Error::TooLarge { max: 1024, .. }), "{e}");

    offered(&device, "1.1.0").await;
}

#[tokio::test]
async fn fast_forward_recovery_after_a_timestamp_key_rotation() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;

    // With the stolen timestamp key, the attacker (between device and server) fast-forwards
    // the timestamp to version 1000.
    let saved = fx.save();
    let snapshot = fx.snapshot().signed.version.get();
    let bytes = saved[&format!("{snapshot}.snapshot.json")].clone();
    fx.forge_timestamp(&fx.stolen(KeyRole::Timestamp), 1000, (snapshot, &bytes))
        .await;
    device
        .check(COMPONENT, None)
        .await
        .expect("validly signed, accepted");
    assert_eq!(trusted(&device).timestamp, 1000);
    fx.restore(&saved);

    // The repository's next honest timestamp now looks like a rollback to the device...
    fx.refresh().await;
    refused(&device, "rollback").await;

    // ...until the timestamp key is rotated in root: the device drops the fast-forwarded
    // timestamp and follows the repository again.
    fx.publisher
        .rotate(KeyRole::Timestamp)
        .await
        .expect("rotate");
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
    let now = trusted(&device);
    assert_eq!(now.root, 2);
    assert!(
        now.timestamp < 1000,
        "still on the forged timestamp: {now:?}"
    );
}

#[tokio::test]
async fn fast_forward_recovery_after_a_snapshot_key_rotation() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;

    // With the online keys, a snapshot at version 1000, served to the device only.
    let saved = fx.save();
    let mut snapshot = fx.snapshot().signed;
    snapshot.version = nonzero(1000);
    let signed = sign_as(snapshot, &fx.stolen(KeyRole::Snapshot)).await;
    let bytes = write_signed(&fx.metadata("1000.snapshot.json"), &signed);
    let next = fx.timestamp().signed.version.get() + 1;
    fx.forge_timestamp(&fx.stolen(KeyRole::Timestamp), next, (1000, &bytes))
        .await;
    device
        .check(COMPONENT, None)
        .await
        .expect("validly signed, accepted");
    assert_eq!(trusted(&device).snapshot, 1000);
    fx.restore(&saved);
    std::fs::remove_file(fx.metadata("1000.snapshot.json")).expect("remove");
    fx.refresh().await;
    refused(&device, "rollback").await;

    fx.publisher
        .rotate(KeyRole::Snapshot)
        .await
        .expect("rotate");
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
    assert!(trusted(&device).snapshot < 1000);
}

#[tokio::test]
async fn a_clock_behind_the_build_time_is_refused_before_anything_is_fetched() {
    let fx = Fixture::new().await;
    let tomorrow = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24))
        .expect("time");
    let device = fx.device("a").build_time(tomorrow);
    let e = refused(&device, "clock-behind-floor").await;
    assert!(matches!(e, Error::ClockBehindFloor { floor, .. } if floor == tomorrow));
    assert_eq!(trusted(&device), Default::default(), "metadata was fetched");
}

#[tokio::test]
async fn a_clock_stepped_back_before_the_last_check_is_refused() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    let floor = device.time_floor().expect("floor");
    let before = trusted(&device);

    // The Pi rebooted without network time: its clock shows a day earlier. Expired metadata
    // would look valid to it, so it judges nothing.
    fx.publisher_with(expired(KeyRole::Timestamp))
        .refresh(Refresh::default())
        .await
        .expect("sign expired");
    let yesterday = floor
        .checked_sub(SignedDuration::from_hours(24))
        .expect("time");
    let stepped = fx.device("a").clock(clock_at(yesterday));
    let e = refused(&stepped, "clock-behind-floor").await;
    assert!(matches!(e, Error::ClockBehindFloor { floor: f, .. } if f == floor));
    assert_eq!(trusted(&stepped), before);
    assert_eq!(
        stepped.time_floor().expect("floor"),
        floor,
        "the floor moved back"
    );

    // Once the clock is right again, expiry is judged (and the frozen repository refused).
    refused(&fx.device("a"), "expired").await;
    fx.refresh().await;
    fx.device("a")
        .check(COMPONENT, None)
        .await
        .expect("clock synced, repository fresh");
}

#[tokio::test]
async fn a_compromised_release_key_is_limited_to_its_paths() {
    // The attacker holds the release key and the online (snapshot, timestamp) keys.
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    let before = trusted(&device);
    let saved = fx.save();
    let release_keys = fx.stolen(KeyRole::Release);

    // A target outside components/*/*.wasm.
    fx.forge_release(&release_keys, |release| {
        release.targets.insert(
            tough::TargetName::new("bin/wattlet-edge").expect("name"),
            Target {
                length: 4,
                hashes: Hashes {
                    sha256: vec![0; 32].into(),
                    _extra: Default::default(),
                },
                custom: Default::default(),
                _extra: Default::default(),
            },
        );
    })
    .await;
    let e = refused(&device, "outside-delegation").await;
    assert!(e.to_string().contains("bin/wattlet-edge"), "{e}");
    assert_eq!(trusted(&device).targets, before.targets);
    assert_eq!(device.installed(COMPONENT).expect("state"), None);

    // The top-level targets role, which the release key does not own.
    let mut targets = fx.read::<tough::schema::Targets>("1.targets.json").signed;
    targets.version = nonzero(2);
    targets.delegations = None;
    let signed = sign_as(targets, &release_keys).await;
    let bytes = write_signed(&fx.metadata("2.targets.json"), &signed);
    fx.forge_snapshot(&[("targets.json", 2, bytes)]).await;
    let e = refused(&device, "signature").await;
    assert!(
        matches!(&e, Error::Signature { role, .. } if role == "targets"),
        "{e}"
    );
    assert_eq!(trusted(&device).targets, before.targets);

    // The snapshots the stolen online keys signed were valid, and the device now trusts the
    // latest of them: recovering from an online key compromise means rotating those keys.
    fx.restore(&saved);
    std::fs::remove_file(fx.metadata("2.targets.json")).expect("remove forged targets");
    fx.publisher
        .rotate(KeyRole::Snapshot)
        .await
        .expect("rotate");
    fx.publisher
        .rotate(KeyRole::Timestamp)
        .await
        .expect("rotate");
    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
}

#[tokio::test]
async fn one_key_below_the_threshold_is_not_enough() {
    let fx = Fixture::with_threshold(2, 3).await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;
    let saved = fx.save();

    // One of the three timestamp keys stolen: a timestamp signed by it alone.
    let keys = fx.stolen(KeyRole::Timestamp);
    assert_eq!(keys.len(), 3);
    let snapshot = fx.snapshot().signed.version.get();
    let bytes = saved[&format!("{snapshot}.snapshot.json")].clone();
    let next = fx.timestamp().signed.version.get() + 1;
    fx.forge_timestamp(&keys[..1], next, (snapshot, &bytes))
        .await;
    let e = refused(&device, "signature").await;
    assert!(
        matches!(&e, Error::Signature { role, .. } if role == "timestamp"),
        "{e}"
    );

    // Two of three are the threshold.
    fx.forge_timestamp(&keys[..2], next, (snapshot, &bytes))
        .await;
    device.check(COMPONENT, None).await.expect("threshold met");

    fx.publish("1.1.0", "0.1.0").await;
    offered(&device, "1.1.0").await;
}

#[tokio::test]
async fn a_clock_once_far_ahead_does_not_lock_the_device_out() {
    let fx = Fixture::new().await;
    let device = fx.device("a");
    offered(&device, "1.0.0").await;

    // A boot with the clock ten years ahead: the check succeeds or not, but the floor it
    // leaves never passes the signed timestamp's expiry.
    let ahead = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24 * 3650))
        .expect("time");
    let _ = fx
        .device("a")
        .clock(clock_at(ahead))
        .check(COMPONENT, None)
        .await;
    let expires = fx.timestamp().signed.expires;
    assert!(device.time_floor().expect("floor") <= expires);
    // Nor does the start time tough records for every load, failed ones included.
    std::fs::write(
        fx.dir.path().join("device-a/tuf/latest_known_time.json"),
        serde_json::to_vec(&ahead).expect("json"),
    )
    .expect("write");

    // Once the clock reaches that floor (at most the timestamp's expiry away), the device
    // updates again.
    fx.publish("1.1.0", "0.1.0").await;
    let floor = device.time_floor().expect("floor");
    let at = floor.max(Timestamp::now());
    let update = fx
        .device("a")
        .clock(clock_at(at))
        .check(COMPONENT, None)
        .await
        .expect("not locked out")
        .expect("update");
    assert_eq!(update.meta.version, version("1.1.0"));
}
