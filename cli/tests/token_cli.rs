//! `wattlet token` through the binary: restrictions added offline stay verifiable and can only
//! narrow; bad input is a clear error.

use wattlet_access_token::{Caveat, DataClass, Role, Token};
use wattlet_testkit::run;

const ROOT: &[u8] = b"token cli test root";

/// `wattlet args` with `stdin`: (success, stdout, stderr).
fn wattlet(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let ran = run(wattlet_testkit::binary!("wattlet").args(args), stdin);
    (ran.success(), ran.stdout, ran.stderr)
}

#[test]
fn attenuate_adds_restrictions_that_still_verify() {
    let token = Token::mint(ROOT, "cli-1", Role::Researcher).encode();
    let (ok, out, err) = wattlet(
        &[
            "token",
            "attenuate",
            &token,
            "--read-only",
            "--household",
            "6F1C1B52-9D4E-4C1A-8A57-3F3E2B1C0D9E",
            "--expires-at",
            "2030-01-01T00:00:00Z",
        ],
        None,
    );
    assert!(ok, "{err}");
    let narrowed = Token::decode(out.trim()).expect("a token");
    assert_eq!(
        narrowed.caveats(),
        [
            Caveat::Role(Role::Researcher),
            Caveat::ExpiresAt(1_893_456_000),
            Caveat::Household("6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e".into()),
            Caveat::ReadOnly,
        ]
    );
    let grant = narrowed
        .verify(ROOT, 1_800_000_000)
        .expect("still verifies");
    assert_eq!(grant.households(), ["6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e"]);
    assert!(narrowed.verify(ROOT, 1_893_456_000).is_err(), "expired");

    // From standard input, and shown by inspect.
    let (ok, out, err) = wattlet(&["token", "inspect", "-"], Some(out.as_str()));
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "id cli-1",
            "role=researcher",
            "expires_at=1893456000",
            "household=6f1c1b52-9d4e-4c1a-8a57-3f3e2b1c0d9e",
            "read_only",
        ]
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let token = Token::mint(ROOT, "cli-2", Role::Administrator).encode();
    let (ok, _, err) = wattlet(&["token", "attenuate", &token], None);
    assert!(!ok);
    assert!(err.contains("no restriction given"), "{err}");
    let (ok, _, err) = wattlet(&["token", "inspect", "not-a-token"], None);
    assert!(!ok);
    assert!(err.contains("not a wattlet access token"), "{err}");
    let (ok, _, err) = wattlet(
        &["token", "attenuate", &token, "--expires-at", "tomorrow"],
        None,
    );
    assert!(!ok);
    assert!(err.contains("--expires-at"), "{err}");
    for (args, says) in [
        (&["--class", "everything"][..], "possible values"),
        (&["--data-from", "2026-11-01T00:00:00Z"][..], "--data-to"),
        (
            &[
                "--data-from",
                "2026-12-01T00:00:00Z",
                "--data-to",
                "2026-11-01T00:00:00Z",
            ][..],
            "--data-from must be before --data-to",
        ),
    ] {
        let mut all = vec!["token", "attenuate", &token];
        all.extend(args);
        let (ok, _, err) = wattlet(&all, None);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_data_class_and_a_time_range_are_restrictions_too() {
    let token = Token::mint(ROOT, "cli-3", Role::Researcher).encode();
    let (ok, out, err) = wattlet(
        &[
            "token",
            "attenuate",
            &token,
            "--class",
            "measurements",
            "--data-from",
            "2026-11-01T00:00:00Z",
            "--data-to",
            "2026-12-01T00:00:00Z",
        ],
        None,
    );
    assert!(ok, "{err}");
    let narrowed = Token::decode(out.trim()).expect("a token");
    assert_eq!(
        narrowed.caveats(),
        [
            Caveat::Role(Role::Researcher),
            Caveat::Class(DataClass::Measurements),
            Caveat::Range {
                from: 1_793_491_200,
                to: 1_796_083_200
            },
        ]
    );
    let grant = narrowed.verify(ROOT, 1_800_000_000).expect("verifies");
    assert!(grant.permits_data(Some(DataClass::Measurements)).is_ok());
    assert!(grant.permits_data(Some(DataClass::Forecast)).is_err());
}
