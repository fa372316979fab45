//! k-anonymity: no one but the participant reads a household's series, alone or inside a
//! region's aggregate, while fewer than `k` households share its NUTS-3 region (the Data API
//! counts them into `context.peers`; in a region query, the households the query covers). An
//! unknown region proves nothing and is refused too: the rule fails closed.
//!
//! Stricter: a larger k (`at_least_as_strict`: k ≥ the other's).

use serde::Deserialize;
use wattlet_policy::{Context, Decision, ObjectKind, ParamError, Policy, Role, Rows};

#[cfg(target_family = "wasm")]
mod component {
    wattlet_policy::export_policy!("k-anonymity-policy", k_anonymity, crate::KAnonymity);
}

/// Anything larger hides every region of a national survey.
pub const MAX_K: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    k: u32,
}

fn k(text: &str) -> Result<u32, ParamError> {
    let p: Parameters = wattlet_policy::parse_parameters(text)?;
    if !(2..=MAX_K).contains(&p.k) {
        return Err(ParamError(format!("k: {} is not from 2 to {MAX_K}", p.k)));
    }
    Ok(p.k)
}

pub struct KAnonymity;

impl Policy for KAnonymity {
    const NAME: &'static str = "k-anonymity";

    fn validate(text: &str) -> Result<(), ParamError> {
        k(text).map(|_| ())
    }

    fn at_least_as_strict(text: &str, than: &str) -> Result<bool, ParamError> {
        Ok(k(text)? >= k(than)?)
    }

    fn read(text: &str, _object: ObjectKind, context: &Context, _rows: Rows) -> Decision {
        if context.role == Role::Participant {
            return Decision::Allow;
        }
        let Ok(k) = k(text) else {
            return Decision::Deny("invalid parameters".into());
        };
        match context.peers {
            Some(peers) if peers >= k => Decision::Allow,
            Some(peers) => Decision::Deny(format!(
                "k-anonymity: {peers} household(s) in the region, fewer than {k}"
            )),
            None => Decision::Deny("k-anonymity: the household's region is unknown".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_policy::TimeRange;

    fn context(role: Role, peers: Option<u32>) -> Context {
        Context {
            role,
            caveats: vec![],
            purpose: None,
            range: TimeRange::default(),
            now: 0,
            peers,
        }
    }

    fn read(k: u32, role: Role, peers: Option<u32>) -> Decision {
        KAnonymity::read(
            &format!(r#"{{"k":{k}}}"#),
            ObjectKind::Measurements,
            &context(role, peers),
            Rows::default(),
        )
    }

    #[test]
    fn parameters_and_strictness() {
        assert!(KAnonymity::validate(r#"{"k":5}"#).is_ok());
        for bad in [
            r#"{"k":1}"#,
            r#"{"k":1001}"#,
            r#"{"k":"5"}"#,
            r#"{"n":5}"#,
            "5",
        ] {
            assert!(KAnonymity::validate(bad).is_err(), "{bad}");
        }
        assert!(
            KAnonymity::validate(r#"{"k":0}"#)
                .unwrap_err()
                .0
                .contains("k: 0")
        );
        assert_eq!(
            KAnonymity::at_least_as_strict(r#"{"k":10}"#, r#"{"k":5}"#),
            Ok(true)
        );
        assert_eq!(
            KAnonymity::at_least_as_strict(r#"{"k":3}"#, r#"{"k":5}"#),
            Ok(false)
        );
    }

    #[test]
    fn fewer_than_k_peers_or_an_unknown_region_serve_no_one_but_the_participant() {
        for role in [Role::Researcher, Role::Administrator, Role::Service] {
            assert_eq!(read(3, role, Some(3)), Decision::Allow, "{role:?}");
            assert_eq!(read(3, role, Some(40)), Decision::Allow, "{role:?}");
            let Decision::Deny(reason) = read(3, role, Some(2)) else {
                panic!("{role:?}: 2 < 3 denied");
            };
            assert!(reason.contains("2 household(s)") && reason.contains("fewer than 3"));
            let Decision::Deny(reason) = read(3, role, None) else {
                panic!("{role:?}: an unknown region is denied");
            };
            assert!(reason.contains("unknown"), "{reason}");
        }
        assert_eq!(read(3, Role::Participant, None), Decision::Allow);
        assert_eq!(read(3, Role::Participant, Some(1)), Decision::Allow);
        assert!(matches!(
            KAnonymity::read(
                "not json",
                ObjectKind::Measurements,
                &context(Role::Researcher, Some(99)),
                Rows::default()
            ),
            Decision::Deny(_)
        ));
    }
}
