//! The update agent against a real signed repository on disk (published by
//! `wattlet_updates::Publisher`, verified through TUF), with the real components: a good parser
//! committed, a component that does not link as a parser refused before the switch, a parser
//! that reads the golden telegrams differently rolled back with the reason, an older version
//! never installed, and an upload component on trial committed by its first acknowledged
//! upload or rolled back at its deadline.

use std::time::{Duration, Instant};

use wattlet_edge::update::machine::{Outcome, Phase};
use wattlet_edge::update::slots::Source;
use wattlet_edge::update::{Admission, Applied, Kind};
use wattlet_runtime::meter::ParserComponent;
use wattlet_testkit::updates::{PARSER_WORLD, UPLOAD_WORLD, UpdateRepo, component, run};

fn v(text: &str) -> semver::Version {
    semver::Version::parse(text).unwrap()
}

#[test]
fn parser_updates_commit_refuse_roll_back_and_never_go_back() {
    let started = Instant::now();
    let repo = UpdateRepo::new();
    let device = tempfile::tempdir().unwrap();
    let agent = repo.agent(device.path(), repo.settings());
    let parser = component("wattlet-meter-parser");

    // Nothing published: up to date, and the shipped parser runs.
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap(),
        Applied::UpToDate
    );
    assert_eq!(agent.resolve(Kind::MeterParser).source, Source::Shipped);

    // A good parser: held back while no rollout admits the device, and above the version
    // one admits it to; then staged, linked, switched, healthy, committed.
    repo.publish("meter-parser", "1.1.0", PARSER_WORLD, &parser);
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::Nothing)).unwrap(),
        Applied::UpToDate
    );
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::UpTo(v("1.0.9")))).unwrap(),
        Applied::UpToDate
    );
    assert_eq!(agent.resolve(Kind::MeterParser).source, Source::Shipped);
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::UpTo(v("1.1.0")))).unwrap(),
        Applied::Committed(v("1.1.0"))
    );
    let resolved = agent.resolve(Kind::MeterParser);
    let Source::Slot(installed, _) = &resolved.source else {
        panic!("the committed version runs: {resolved:?}")
    };
    assert_eq!(installed.version, v("1.1.0"));
    let loaded = resolved.source.load(agent.engine(), &parser).unwrap();
    ParserComponent::from_component(agent.engine(), &loaded).expect("links as a parser");
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap(),
        Applied::UpToDate
    );

    // The upload component published as a parser: does not link, refused, nothing switched.
    repo.publish(
        "meter-parser",
        "1.2.0",
        PARSER_WORLD,
        &component("wattlet-upload"),
    );
    let Applied::Refused { version, reason } =
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap()
    else {
        panic!("refused before the switch")
    };
    assert_eq!(version, v("1.2.0"));
    assert!(reason.contains("does not link"), "{reason}");
    let state = agent.store().load(Kind::MeterParser).unwrap();
    assert_eq!(state.active().map(|a| a.version.clone()), Some(v("1.1.0")));
    assert!(matches!(state.last, Some(Outcome::Refused { .. })));

    // A parser that links but reads the golden telegrams differently: rolled back.
    repo.publish(
        "meter-parser",
        "1.3.0",
        PARSER_WORLD,
        &component("wattlet-skewed-parser-composed"),
    );
    let Applied::RolledBack { version, reason } =
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap()
    else {
        panic!("rolled back after the health check")
    };
    assert_eq!(version, v("1.3.0"));
    assert!(reason.contains("differently"), "{reason}");
    let state = agent.store().load(Kind::MeterParser).unwrap();
    assert_eq!(state.phase, Phase::Idle);
    assert_eq!(state.active().map(|a| a.version.clone()), Some(v("1.1.0")));
    assert_eq!(
        agent.resolve(Kind::MeterParser).source.version(),
        Some(&v("1.1.0"))
    );

    // A rejected version is not tried again at every poll.
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap(),
        Applied::UpToDate
    );

    // An older good version is never installed.
    repo.publish("meter-parser", "1.0.9", PARSER_WORLD, &parser);
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap(),
        Applied::UpToDate
    );
    assert_eq!(
        agent.resolve(Kind::MeterParser).source.version(),
        Some(&v("1.1.0"))
    );
    eprintln!("parser updates: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn an_upload_component_on_trial_commits_on_its_first_acknowledgement_or_rolls_back() {
    let repo = UpdateRepo::new();
    let upload = component("wattlet-upload");
    repo.publish("upload", "1.1.0", UPLOAD_WORLD, &upload);

    // Committed by the daemon's first acknowledged upload.
    let device = tempfile::tempdir().unwrap();
    let agent = repo.agent(device.path(), repo.settings());
    assert_eq!(
        run(agent.apply(Kind::Upload, &Admission::Any)).unwrap(),
        Applied::OnTrial(v("1.1.0"))
    );
    assert_eq!(
        run(agent.apply(Kind::Upload, &Admission::Any)).unwrap(),
        Applied::Waiting(v("1.1.0"))
    );
    assert_eq!(
        agent.current(Kind::Upload).source.version(),
        Some(&v("1.1.0"))
    );
    assert_eq!(agent.upload_acknowledged().unwrap(), Some(v("1.1.0")));
    let state = agent.store().load(Kind::Upload).unwrap();
    assert_eq!(state.committed.map(|c| c.version), Some(v("1.1.0")));

    // No acknowledgement by the deadline: rolled back to the shipped component.
    let device = tempfile::tempdir().unwrap();
    let mut settings = repo.settings();
    settings.trial_deadline = Duration::from_secs(1);
    let agent = repo.agent(device.path(), settings);
    assert_eq!(
        run(agent.apply(Kind::Upload, &Admission::Any)).unwrap(),
        Applied::OnTrial(v("1.1.0"))
    );
    assert_eq!(
        agent.tick(Kind::Upload).unwrap(),
        None,
        "within its deadline"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let reason = agent.tick(Kind::Upload).unwrap().expect("rolled back");
    assert!(reason.contains("deadline"), "{reason}");
    assert_eq!(agent.resolve(Kind::Upload).source, Source::Shipped);

    // Restarts without a commit count tries: the fourth start rolls back.
    let device = tempfile::tempdir().unwrap();
    let agent = repo.agent(device.path(), repo.settings());
    run(agent.apply(Kind::Upload, &Admission::Any)).unwrap();
    for _ in 0..3 {
        assert_eq!(
            agent.resolve(Kind::Upload).source.version(),
            Some(&v("1.1.0"))
        );
    }
    assert_eq!(agent.resolve(Kind::Upload).source, Source::Shipped);
    let state = agent.store().load(Kind::Upload).unwrap();
    assert!(
        matches!(&state.last, Some(Outcome::RolledBack { reason, .. }) if reason.contains("3 restarts")),
        "{state:?}"
    );
}

#[test]
fn damaged_slot_files_are_never_run() {
    let repo = UpdateRepo::new();
    repo.publish(
        "meter-parser",
        "1.1.0",
        PARSER_WORLD,
        &component("wattlet-meter-parser"),
    );
    let device = tempfile::tempdir().unwrap();
    let agent = repo.agent(device.path(), repo.settings());
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap(),
        Applied::Committed(v("1.1.0"))
    );
    // An older version published later is never installed (the version floor).
    repo.publish(
        "meter-parser",
        "1.0.9",
        PARSER_WORLD,
        &component("wattlet-meter-parser"),
    );
    assert_eq!(
        run(agent.apply(Kind::MeterParser, &Admission::Any)).unwrap(),
        Applied::UpToDate
    );
    let Source::Slot(installed, files) = agent.resolve(Kind::MeterParser).source else {
        panic!("installed")
    };
    // One flipped byte in the precompiled file: its digest no longer matches.
    let mut bytes = std::fs::read(&files.cwasm).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&files.cwasm, bytes).unwrap();
    assert_eq!(installed.version, v("1.1.0"));
    assert_eq!(agent.resolve(Kind::MeterParser).source, Source::Shipped);
    // A state file that is not one: the shipped component runs.
    std::fs::write(
        agent.store().dir(Kind::MeterParser).join("state.json"),
        b"{\"committed\": 7",
    )
    .unwrap();
    assert_eq!(agent.resolve(Kind::MeterParser).source, Source::Shipped);
}
