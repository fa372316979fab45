//! Policies attached to data objects (`wit/policy`): the shipped policies, the [`Policies`] the
//! Data API calls them through (the composed components' WIT imports on wasm, the libraries in
//! native tests), and the chain that runs a data object's attachments in order on each read.
//!
//! A chain runs the study-wide attachments (administrators') first, then the household's own
//! (participant's), each in the order attached. A deny ends the chain; a transform hands its rows
//! to the next policy. A policy that traps, loops or allocates without limit takes the request
//! down with it (the host's per-request deadline and memory limit): nothing is served, which is
//! the fail-closed answer; the next request gets a fresh instance.

use serde_json::{Value, json};
pub use wattlet_policy::{Context, Decision, ObjectKind, Role, Rows, TimeRange};

use crate::db::{Db, Value as Sql, col_required, col_text, text};
use crate::error::{ApiError, ApiResult};

/// The version every shipped policy has in this build.
pub const VERSION: &str = "0.1.0";

/// Who may attach a shipped policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    pub name: &'static str,
    /// Administrators may attach it study-wide.
    pub study: bool,
    /// Participants may attach it to their household.
    pub participant: bool,
    /// It reads `context.peers`: a read counts the household's region only for a chain
    /// with such a policy (one query less on every other read).
    pub reads_peers: bool,
    pub summary: &'static str,
}

pub const SHIPPED: &[Shipped] = &[
    Shipped {
        name: "researchers-aggregate",
        study: true,
        participant: true,
        reads_peers: false,
        summary: "every role but the participant sees aggregates of step_minutes (>= 15, dividing 1440); stricter: a larger step",
    },
    Shipped {
        name: "pause-window",
        study: false,
        participant: true,
        reads_peers: false,
        summary: "no one but the participant reads rows inside the windows (ranges: [{from, to}], 1 to 64); stricter: windows covering the other's",
    },
    Shipped {
        name: "retention",
        study: true,
        participant: true,
        reads_peers: false,
        summary: "rows older than months (1 to 600) calendar months are served to no one; stricter: fewer months",
    },
    Shipped {
        name: "k-anonymity",
        study: true,
        participant: true,
        reads_peers: true,
        summary: "no one but the participant reads the household's series, alone or in a region's aggregate, while fewer than k (2 to 1000) households share its NUTS-3 region or its region is unknown; stricter: a larger k",
    },
    Shipped {
        name: "export-copy",
        study: false,
        participant: true,
        reads_peers: false,
        summary: "every measurement stored is also kept in the household's export copy (registers: [OBIS], 1 to 64, or all), which only the participant downloads (GET /api/household/export_copy) and no study rule purges; stricter: a subset of the other's registers",
    },
];

pub fn shipped(name: &str) -> Option<&'static Shipped> {
    SHIPPED.iter().find(|s| s.name == name)
}

include!(concat!(env!("OUT_DIR"), "/policy_digests.rs"));

/// The content digest of the policy `name` of this build (`wattlet_policy::digest`: SHA-256 of
/// its source, `sha256:<hex>`), computed at build time from the checkout the composed Data API
/// is built from.
pub fn digest(name: &str) -> Option<&'static str> {
    POLICY_DIGESTS
        .iter()
        .find(|(policy, _)| *policy == name)
        .map(|(_, digest)| *digest)
}

/// Whether a policy of `chain` reads `context.peers` (an unknown policy is assumed to).
pub fn reads_peers(chain: &[Attachment]) -> bool {
    chain
        .iter()
        .any(|a| shipped(&a.policy).is_none_or(|s| s.reads_peers))
}

/// The hooks a chain runs over rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before rows are served.
    Read,
    /// Before rows are stored.
    Write,
}

/// The shipped policies' hooks. `policy` is always one of [`SHIPPED`].
pub trait Policies {
    /// `Err`: why the parameters are refused (for people).
    fn validate(&self, policy: &str, parameters: &str) -> Result<(), String>;
    fn at_least_as_strict(
        &self,
        policy: &str,
        parameters: &str,
        than: &str,
    ) -> Result<bool, String>;
    /// `policy`'s `hook` over `rows` of `object`, before they are served (read) or stored
    /// (write): allow, deny, transform, or (a write) copy.
    fn rows(
        &self,
        hook: Hook,
        policy: &str,
        parameters: &str,
        object: ObjectKind,
        context: &Context,
        rows: &Rows,
    ) -> Decision;
    /// Before rows of `object` in `context.range` are deleted: allow, or deny with a reason.
    fn delete(
        &self,
        policy: &str,
        parameters: &str,
        object: ObjectKind,
        context: &Context,
    ) -> Decision;
}

/// One attachment as stored.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub id: i64,
    pub household: Option<String>,
    pub object: String,
    pub policy: String,
    pub parameters: String,
    pub principal: String,
    pub attached_at: Option<String>,
    /// The policy's content digest when it was attached ([`digest`]); `None` for attachments
    /// made before digests were kept.
    pub digest: Option<String>,
}

impl Attachment {
    /// What ran, for the answer and the access log: `{"attachment","policy","digest",
    /// "parameters_sha256","decision"}`, `digest` the content digest of the code that decided.
    fn ran(&self, decision: &Decision) -> Value {
        json!({
            "attachment": self.id,
            "policy": self.policy,
            "digest": digest(&self.policy),
            "parameters_sha256": wattlet_policy::log::sha256_hex(&self.parameters),
            "decision": decision.name(),
        })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": self.object,
            "policy": self.policy,
            "version": VERSION,
            "parameters": serde_json::from_str::<Value>(&self.parameters).unwrap_or(Value::Null),
            "digest": self.digest,
            "principal": self.principal,
            "attached_at": crate::timestamp::db_to_api(self.attached_at.clone()),
        })
    }
}

const COLUMNS: &str = "id, household, object, policy, parameters, principal, attached_at, digest";

fn attachment(row: &crate::db::Row) -> ApiResult<Attachment> {
    Ok(Attachment {
        id: row
            .get::<i64>(0)
            .ok_or_else(|| ApiError::Database("attachment without id".into()))?,
        household: col_text(row, 1),
        object: col_required(row, 2)?,
        policy: col_required(row, 3)?,
        parameters: col_required(row, 4)?,
        principal: col_required(row, 5)?,
        attached_at: col_text(row, 6),
        digest: col_text(row, 7),
    })
}

/// The chain of `object` for `household` (`None`: the study-wide attachments only), in the
/// order it runs: study-wide first, then the household's, each by id.
pub fn chain(db: &Db, household: Option<&str>, object: ObjectKind) -> ApiResult<Vec<Attachment>> {
    let rows = db.query(
        &format!(
            "SELECT {COLUMNS} FROM policy_attachment
             WHERE object = ? AND (household IS NULL OR household = ?)
             ORDER BY household IS NOT NULL, id"
        ),
        &[text(object.name()), household.map_or(Sql::Null, text)],
    )?;
    rows.rows.iter().map(attachment).collect()
}

pub fn find(db: &Db, id: i64) -> ApiResult<Option<Attachment>> {
    let rows = db.query(
        &format!("SELECT {COLUMNS} FROM policy_attachment WHERE id = ?"),
        &[Sql::Integer(id)],
    )?;
    rows.rows.first().map(attachment).transpose()
}

/// What a chain decided and which attachments ran with what.
pub struct Outcome {
    /// `Err(reason)` when one denied. A row's `origin` is its index in the rows the chain was
    /// given.
    pub rows: Result<Rows, String>,
    /// Whether any policy transformed the rows.
    pub transformed: bool,
    /// A write's copies for the household's export copy (`copy`), as the policies returned
    /// them: their origins name rows the chain was given.
    pub copies: Vec<Rows>,
    /// `{"attachment","policy","parameters_sha256","decision"}` per attachment that ran.
    pub ran: Vec<Value>,
}

/// Runs `chain`'s delete hooks: `Err(reason)` when one denies (rows are no answer to a delete
/// and deny too). Returns what ran, as [`run_rows`].
pub fn run_delete(
    policies: &dyn Policies,
    chain: &[Attachment],
    object: ObjectKind,
    context: &Context,
) -> (Result<(), String>, Vec<Value>) {
    let mut ran = Vec::with_capacity(chain.len());
    for a in chain {
        let decision = policies.delete(&a.policy, &a.parameters, object, context);
        ran.push(a.ran(&decision));
        match decision {
            Decision::Allow => {}
            Decision::Deny(reason) => return (Err(reason), ran),
            Decision::Transform(_) | Decision::Copy(_) => {
                return (
                    Err(format!("{} answered a delete with rows", a.policy)),
                    ran,
                );
            }
        }
    }
    (Ok(()), ran)
}

/// Runs `chain`'s `hook` over `rows`. Rows a policy returns malformed (columns of different
/// lengths, an origin that is no row) deny: nothing is served or stored that cannot be read
/// back. A `copy` leaves the rows as they are and is kept for a write; it denies a read.
pub fn run_rows(
    policies: &dyn Policies,
    chain: &[Attachment],
    hook: Hook,
    object: ObjectKind,
    context: &Context,
    mut rows: Rows,
) -> Outcome {
    let inputs = rows.len();
    let mut ran = Vec::with_capacity(chain.len());
    let (mut transformed, mut copies) = (false, Vec::new());
    for a in chain {
        let (policy, parameters) = (a.policy.as_str(), a.parameters.as_str());
        let decision = match policies.rows(hook, policy, parameters, object, context, &rows) {
            Decision::Transform(new) => match new.check(inputs) {
                Ok(()) => Decision::Transform(new),
                Err(e) => Decision::Deny(format!("policy {policy} returned {e}")),
            },
            Decision::Copy(_) if hook == Hook::Read => {
                Decision::Deny(format!("policy {policy} answered a read with a copy"))
            }
            Decision::Copy(copy) => match copy.check(inputs) {
                Ok(()) => Decision::Copy(copy),
                Err(e) => Decision::Deny(format!("policy {policy} returned a copy of {e}")),
            },
            decision => decision,
        };
        ran.push(a.ran(&decision));
        match decision {
            Decision::Allow => {}
            Decision::Deny(reason) => {
                return Outcome {
                    rows: Err(reason),
                    transformed,
                    copies,
                    ran,
                };
            }
            Decision::Transform(new) => {
                transformed = true;
                rows = new;
            }
            Decision::Copy(copy) => copies.push(copy),
        }
    }
    Outcome {
        rows: Ok(rows),
        transformed,
        copies,
        ran,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every read with what it was built with.
    struct Answers(Decision);

    impl Policies for Answers {
        fn validate(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn at_least_as_strict(&self, _: &str, _: &str, _: &str) -> Result<bool, String> {
            Ok(true)
        }
        fn rows(
            &self,
            _: Hook,
            _: &str,
            _: &str,
            _: ObjectKind,
            _: &Context,
            _: &Rows,
        ) -> Decision {
            self.0.clone()
        }
        fn delete(&self, _: &str, _: &str, _: ObjectKind, _: &Context) -> Decision {
            self.0.clone()
        }
    }

    fn attachment(policy: &str) -> Attachment {
        Attachment {
            id: 1,
            household: None,
            object: "measurements".into(),
            policy: policy.into(),
            parameters: "{}".into(),
            principal: "admin".into(),
            attached_at: None,
            digest: None,
        }
    }

    fn two_rows() -> Rows {
        let mut rows = Rows::with_registers(vec!["0100100700ff".into()]);
        rows.push(Some(0), 0, 0, 1, &[1.0]);
        rows.push(Some(1), 1, 0, 1, &[2.0]);
        rows
    }

    fn read(answer: Decision) -> Outcome {
        run(Hook::Read, answer)
    }

    fn run(hook: Hook, answer: Decision) -> Outcome {
        let context = Context {
            role: Role::Researcher,
            caveats: vec![],
            purpose: None,
            range: TimeRange::default(),
            now: 0,
            peers: None,
        };
        run_rows(
            &Answers(answer),
            &[attachment("odd")],
            hook,
            ObjectKind::Measurements,
            &context,
            two_rows(),
        )
    }

    #[test]
    fn rows_a_policy_returns_malformed_deny() {
        let mut ragged = two_rows();
        ragged.values.pop();
        let outcome = read(Decision::Transform(ragged));
        let reason = outcome.rows.expect_err("denied");
        assert!(
            reason.contains("policy odd returned malformed rows"),
            "{reason}"
        );
        assert_eq!(outcome.ran[0]["decision"], "deny");
        // An origin that names no row the chain was given.
        let mut stranger = two_rows();
        stranger.origin[1] = Some(7);
        assert!(read(Decision::Transform(stranger)).rows.is_err());
        // Well-formed rows pass.
        let mut one = two_rows();
        one = one.filter(|i| i == 1);
        let outcome = read(Decision::Transform(one.clone()));
        assert_eq!((outcome.rows, outcome.transformed), (Ok(one), true));
    }

    #[test]
    fn a_copy_is_kept_for_a_write_and_denies_a_read() {
        let mut copy = two_rows();
        copy = copy.filter(|i| i == 0);
        let outcome = run(Hook::Write, Decision::Copy(copy.clone()));
        assert_eq!(outcome.rows, Ok(two_rows()));
        assert_eq!(
            (outcome.copies, outcome.transformed),
            (vec![copy.clone()], false)
        );
        assert_eq!(outcome.ran[0]["decision"], "copy");
        let reason = read(Decision::Copy(copy)).rows.expect_err("denied");
        assert!(reason.contains("answered a read with a copy"), "{reason}");
        let mut stranger = two_rows();
        stranger.origin[0] = Some(9);
        assert!(run(Hook::Write, Decision::Copy(stranger)).rows.is_err());
    }
}
