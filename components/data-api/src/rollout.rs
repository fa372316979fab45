//! Staged rollouts of a component version: which devices may install it, and when a rollout
//! stops by itself.
//!
//! The signed update repository says *what* a version is (TUF: only the release role can
//! publish one); a rollout says *who may install it now*. A device installs a version only if
//! both agree, so the cloud can hold an update back but never push one the repository did not
//! sign.
//!
//! - **Cohorts.** A device's place in a component's rollouts is a fixed point in basis points,
//!   [`bucket`]: SHA-256 of the component name and the device id. The same devices go first in
//!   every rollout of a component (known canaries, whose owners can be told), and different
//!   components spread the risk over different devices.
//! - **Stages** are increasing percentages ending at 100 (e.g. 5 → 50 → 100). A device is
//!   admitted once its bucket is below the current stage's share; the devices that joined at a
//!   stage are that stage's cohort ([`Plan::stage_of`]).
//! - **Pausing.** Every outcome a device reports updates its cohort's tally; when the current
//!   stage's cohort has at least `min_reports` outcomes and more than `max_failure_rate` of
//!   them rolled back, the rollout pauses with the figures as its reason. A paused rollout
//!   admits nobody (devices already updated keep the version: their version floor). An
//!   administrator resumes it (same stage) or cancels it.
//!
//! [`Rollout::advance`] is the one state machine; the SQL only stores what it returns.

use sha2::{Digest, Sha256};

/// Basis points: 10,000 is every device.
pub const ALL: u32 = 10_000;

/// Why a plan or a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    #[error("stages must be percentages from 1 to 100, strictly increasing, ending at 100")]
    Stages,
    #[error("max_failure_rate must be a number from 0 to 1")]
    FailureRate,
    #[error("min_reports must be at least 1")]
    MinReports,
    #[error("the rollout is {0}: it cannot {1}")]
    Transition(&'static str, &'static str),
}

/// How a rollout proceeds; fixed when it is created.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    stages: Vec<u32>,
    max_failure_rate: f64,
    min_reports: u32,
}

impl Plan {
    pub fn new(
        stages_percent: &[u32],
        max_failure_rate: f64,
        min_reports: u32,
    ) -> Result<Self, RolloutError> {
        let increasing = stages_percent.windows(2).all(|pair| pair[0] < pair[1]);
        let in_range = stages_percent.iter().all(|p| (1..=100).contains(p));
        if !increasing || !in_range || stages_percent.last() != Some(&100) {
            return Err(RolloutError::Stages);
        }
        if !(0.0..=1.0).contains(&max_failure_rate) {
            return Err(RolloutError::FailureRate);
        }
        if min_reports == 0 {
            return Err(RolloutError::MinReports);
        }
        Ok(Plan {
            stages: stages_percent.iter().map(|p| p * 100).collect(),
            max_failure_rate,
            min_reports,
        })
    }

    pub fn stages_percent(&self) -> Vec<u32> {
        self.stages.iter().map(|bp| bp / 100).collect()
    }

    pub fn max_failure_rate(&self) -> f64 {
        self.max_failure_rate
    }

    pub fn min_reports(&self) -> u32 {
        self.min_reports
    }

    /// The stage at which a device of this bucket is admitted (its cohort).
    pub fn stage_of(&self, bucket: u32) -> usize {
        self.stages
            .iter()
            .position(|&share| bucket < share)
            .unwrap_or(self.stages.len() - 1)
    }
}

/// A device's fixed place in a component's rollouts, in basis points (0..10,000).
pub fn bucket(component: &str, device: &str) -> u32 {
    let mut hash = Sha256::new();
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    hash.update((component.len() as u64).to_be_bytes());
    hash.update(component.as_bytes());
    hash.update(device.as_bytes());
    let digest = hash.finalize();
    let head = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
    (head % u64::from(ALL)) as u32
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Admitting devices up to `stages[stage]`.
    Active { stage: usize },
    /// Stopped at `stage`, admitting nobody, until resumed.
    Paused { stage: usize, reason: String },
    /// Every device admitted.
    Complete,
    /// Stopped for good.
    Cancelled,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Active { .. } => "active",
            State::Paused { .. } => "paused",
            State::Complete => "complete",
            State::Cancelled => "cancelled",
        }
    }

    /// The stage the rollout reached (the last one once complete; none once cancelled).
    pub fn stage(&self, plan: &Plan) -> Option<usize> {
        match self {
            State::Active { stage } | State::Paused { stage, .. } => Some(*stage),
            State::Complete => Some(plan.stages.len() - 1),
            State::Cancelled => None,
        }
    }
}

/// Outcomes reported by one cohort's devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub committed: u32,
    pub rolled_back: u32,
}

impl Tally {
    pub fn reports(&self) -> u32 {
        self.committed + self.rolled_back
    }
}

/// What happens to a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An administrator moves it to its next stage (the last one completes it).
    Advance,
    /// An administrator resumes a paused rollout at its stage.
    Resume,
    /// An administrator stops it for good.
    Cancel,
    /// The current stage's cohort tally changed (a device reported an outcome).
    Reported(Tally),
}

/// A rollout: its plan and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub plan: Plan,
    pub state: State,
}

impl Rollout {
    pub fn start(plan: Plan) -> Self {
        Rollout {
            plan,
            state: State::Active { stage: 0 },
        }
    }

    /// Whether a device of `bucket` may install the version now.
    pub fn admits(&self, bucket: u32) -> bool {
        match self.state {
            State::Active { stage } => bucket < self.plan.stages[stage],
            State::Complete => true,
            State::Paused { .. } | State::Cancelled => false,
        }
    }

    /// The state after `event`; refused transitions name the state.
    pub fn advance(&self, event: &Event) -> Result<State, RolloutError> {
        let last = self.plan.stages.len() - 1;
        let refuse = |what| Err(RolloutError::Transition(self.state.name(), what));
        match (&self.state, event) {
            (State::Active { stage }, Event::Advance) if *stage == last => Ok(State::Complete),
            (State::Active { stage }, Event::Advance) => Ok(State::Active { stage: stage + 1 }),
            (State::Paused { stage, .. }, Event::Resume) => Ok(State::Active { stage: *stage }),
            (State::Active { .. } | State::Paused { .. }, Event::Cancel) => Ok(State::Cancelled),
            (State::Active { stage }, Event::Reported(tally)) => Ok(match self.failing(tally) {
                Some(reason) => State::Paused {
                    stage: *stage,
                    reason,
                },
                None => self.state.clone(),
            }),
            // Late reports change nothing once an administrator or the rule has acted.
            (_, Event::Reported(_)) => Ok(self.state.clone()),
            (_, Event::Advance) => refuse("advance"),
            (_, Event::Resume) => refuse("resume"),
            (_, Event::Cancel) => refuse("cancel"),
        }
    }

    /// The reason to pause, when the cohort's failure rate is over the plan's limit.
    fn failing(&self, tally: &Tally) -> Option<String> {
        let reports = tally.reports();
        if reports < self.plan.min_reports || reports == 0 {
            return None;
        }
        let rate = f64::from(tally.rolled_back) / f64::from(reports);
        (rate > self.plan.max_failure_rate).then(|| {
            format!(
                "{} of {} devices in this stage rolled back ({:.0} % > {:.0} %)",
                tally.rolled_back,
                reports,
                rate * 100.0,
                self.plan.max_failure_rate * 100.0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::new(&[5, 50, 100], 0.2, 5).expect("plan")
    }

    fn rollout(state: State) -> Rollout {
        Rollout {
            plan: plan(),
            state,
        }
    }

    fn paused() -> State {
        State::Paused {
            stage: 1,
            reason: "r".into(),
        }
    }

    const HEALTHY: Tally = Tally {
        committed: 9,
        rolled_back: 1,
    };
    const FAILING: Tally = Tally {
        committed: 3,
        rolled_back: 2,
    };

    #[test]
    fn plans_are_checked() {
        assert_eq!(Plan::new(&[], 0.1, 1), Err(RolloutError::Stages));
        assert_eq!(Plan::new(&[5, 50], 0.1, 1), Err(RolloutError::Stages));
        assert_eq!(Plan::new(&[50, 5, 100], 0.1, 1), Err(RolloutError::Stages));
        assert_eq!(Plan::new(&[5, 5, 100], 0.1, 1), Err(RolloutError::Stages));
        assert_eq!(Plan::new(&[0, 100], 0.1, 1), Err(RolloutError::Stages));
        assert_eq!(Plan::new(&[5, 101], 0.1, 1), Err(RolloutError::Stages));
        assert_eq!(Plan::new(&[100], 1.5, 1), Err(RolloutError::FailureRate));
        assert_eq!(
            Plan::new(&[100], f64::NAN, 1),
            Err(RolloutError::FailureRate)
        );
        assert_eq!(Plan::new(&[100], 0.1, 0), Err(RolloutError::MinReports));
        assert_eq!(plan().stages_percent(), vec![5, 50, 100]);
    }

    /// Every state × event, against the table the module documents.
    #[test]
    fn every_transition() {
        let states = [
            State::Active { stage: 0 },
            State::Active { stage: 2 },
            paused(),
            State::Complete,
            State::Cancelled,
        ];
        let events = [
            Event::Advance,
            Event::Resume,
            Event::Cancel,
            Event::Reported(HEALTHY),
            Event::Reported(FAILING),
        ];
        for state in &states {
            for event in &events {
                let got = rollout(state.clone()).advance(event);
                let want = match (state, event) {
                    (State::Active { stage: 0 }, Event::Advance) => Ok(State::Active { stage: 1 }),
                    (State::Active { stage: 2 }, Event::Advance) => Ok(State::Complete),
                    (State::Paused { stage: 1, .. }, Event::Resume) => {
                        Ok(State::Active { stage: 1 })
                    }
                    (State::Active { .. } | State::Paused { .. }, Event::Cancel) => {
                        Ok(State::Cancelled)
                    }
                    (State::Active { stage }, Event::Reported(t)) if *t == FAILING => {
                        Ok(State::Paused {
                            stage: *stage,
                            reason: "2 of 5 devices in this stage rolled back (40 % > 20 %)".into(),
                        })
                    }
                    (_, Event::Reported(_)) => Ok(state.clone()),
                    (_, Event::Advance) => Err(RolloutError::Transition(state.name(), "advance")),
                    (_, Event::Resume) => Err(RolloutError::Transition(state.name(), "resume")),
                    (_, Event::Cancel) => Err(RolloutError::Transition(state.name(), "cancel")),
                };
                assert_eq!(got, want, "{state:?} + {event:?}");
            }
        }
    }

    #[test]
    fn pausing_waits_for_enough_reports_and_a_rate_over_the_limit() {
        let active = rollout(State::Active { stage: 0 });
        let stays = |t: Tally| active.advance(&Event::Reported(t)) == Ok(active.state.clone());
        // Four failures of four are below min_reports (5).
        assert!(stays(Tally {
            committed: 0,
            rolled_back: 4
        }));
        // Exactly at the limit (1 of 5 = 20 %) is not over it.
        assert!(stays(Tally {
            committed: 4,
            rolled_back: 1
        }));
        assert!(!stays(Tally {
            committed: 3,
            rolled_back: 2
        }));
        // A zero limit pauses on the first failure once enough devices reported.
        let strict = Rollout::start(Plan::new(&[100], 0.0, 1).expect("plan"));
        assert!(matches!(
            strict.advance(&Event::Reported(Tally {
                committed: 0,
                rolled_back: 1
            })),
            Ok(State::Paused { .. })
        ));
    }

    #[test]
    fn admission_follows_the_stage() {
        let shares = [(0, 500), (1, 5_000), (2, ALL)];
        for (stage, share) in shares {
            let r = rollout(State::Active { stage });
            assert!(r.admits(0) && r.admits(share - 1), "stage {stage}");
            assert!(share == ALL || !r.admits(share), "stage {stage}");
        }
        assert!(rollout(State::Complete).admits(ALL - 1));
        assert!(!rollout(paused()).admits(0));
        assert!(!rollout(State::Cancelled).admits(0));
        let p = plan();
        assert_eq!(
            [0, 499, 500, 4_999, 5_000, ALL - 1].map(|b| p.stage_of(b)),
            [0, 0, 1, 1, 2, 2]
        );
    }

    #[test]
    fn buckets_are_stable_spread_and_per_component() {
        assert_eq!(
            bucket("meter-parser", "pi-1"),
            bucket("meter-parser", "pi-1")
        );
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
        // 20,000 devices: each tenth of the range gets 10 % ± 1 %.
        let mut tenths = [0u32; 10];
        let mut same = 0;
        for i in 0..20_000 {
            let device = format!("pi-{i}");
            let b = bucket("meter-parser", &device);
            assert!(b < ALL);
            tenths[(b / 1_000) as usize] += 1;
            same += u32::from(b / 1_000 == bucket("upload", &device) / 1_000);
        }
        assert!(
            tenths.iter().all(|n| (1_800..=2_200).contains(n)),
            "{tenths:?}"
        );
        // Another component's tenths are independent: ~10 % coincide.
        assert!((1_600..=2_400).contains(&same), "{same}");
    }
}
