//! The update of one component as a pure state machine: [`advance`] takes the state and an
//! event and returns the next state, or refuses an event that makes no sense in that state.
//! Nothing here touches files or clocks; [`super::slots`] persists the state and acts on it.
//!
//! ```text
//! Idle ──Stage──▶ Staging ──Staged──▶ Staged ──Switch──▶ Trial{tries, deadline}
//!   ▲                │ Refused            │ Abandon          │ Healthy   → Idle (committed = new)
//!   └────────────────┴────────────────────┘                  │ Unhealthy → Idle (rolled back)
//!                                                            │ Restarted: tries + 1; too many
//!                                                            │   or past the deadline → rolled back
//!                                                            │ Tick past the deadline → rolled back
//! ```
//!
//! Whatever the state, the component that runs is [`State::active`]: the trial's candidate
//! during a trial, else the committed one (`None`: the one the device shipped with). Staging
//! only ever writes the other slot, so a crash at any point leaves the active one untouched.

use serde::{Deserialize, Serialize};

/// One of the two slot directories of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn dir_name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

/// A component version whose files are in a slot, with the digests recorded when they were
/// written: the files are trusted only while they still match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub slot: Slot,
    pub version: semver::Version,
    /// SHA-256 (hex) of `component.wasm`: the bytes the repository signed.
    pub wasm_sha256: String,
    /// SHA-256 (hex) of `component.cwasm`: what this device's engine compiled from them.
    pub cwasm_sha256: String,
}

/// Where the update of a component stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Nothing in progress.
    Idle,
    /// Files of `version` are being written to `slot`: not to be trusted yet.
    Staging {
        slot: Slot,
        version: semver::Version,
    },
    /// Written, digests recorded, linked against this host: ready to switch to.
    Staged { candidate: Installed },
    /// Switched to `candidate`, not committed yet. `tries` counts the starts that did not
    /// commit; times are Unix seconds.
    Trial {
        candidate: Installed,
        tries: u32,
        started: u64,
        deadline: u64,
    },
}

/// How the last update ended, for the status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Committed {
        version: semver::Version,
    },
    /// Refused before the switch (did not link, files not written).
    Refused {
        version: semver::Version,
        reason: String,
    },
    RolledBack {
        version: semver::Version,
        reason: String,
    },
}

/// The persisted state of one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The committed version (`None`: the component the device shipped with).
    pub committed: Option<Installed>,
    pub phase: Phase,
    pub last: Option<Outcome>,
}

impl Default for State {
    fn default() -> Self {
        State {
            committed: None,
            phase: Phase::Idle,
            last: None,
        }
    }
}

impl State {
    /// What runs now: the trial's candidate, else the committed version, else (`None`) the
    /// shipped component.
    pub fn active(&self) -> Option<&Installed> {
        match &self.phase {
            Phase::Trial { candidate, .. } => Some(candidate),
            _ => self.committed.as_ref(),
        }
    }

    /// The slot an update is staged into: never the committed one.
    pub fn inactive_slot(&self) -> Slot {
        self.committed.as_ref().map_or(Slot::A, |c| c.slot.other())
    }

    /// The newest version this component may not go back to or below.
    pub fn floor(&self) -> Option<&semver::Version> {
        self.committed.as_ref().map(|c| &c.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start writing `version` to the inactive slot.
    Stage { version: semver::Version },
    /// The files are written and link against this host.
    Staged(Installed),
    /// Staging failed (write, compile or link): nothing was switched.
    Refused(String),
    /// Give up a staged update that was not switched to (a restart, or a newer one came).
    Abandon,
    /// Run the candidate from now (Unix seconds) until it proves healthy or `deadline`.
    Switch { now: u64, deadline: u64 },
    /// The health check passed.
    Healthy,
    /// The health check failed.
    Unhealthy(String),
    /// The device (re)started at `now` without the trial having committed.
    Restarted { now: u64, max_tries: u32 },
    /// Time passed: a trial past its deadline rolls back.
    Tick { now: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("{event} is not possible while {phase}")]
    Phase {
        phase: &'static str,
        event: &'static str,
    },
    #[error("version {offered} is not newer than the committed {floor}: a device never goes back")]
    NotNewer {
        offered: semver::Version,
        floor: semver::Version,
    },
    #[error(
        "staged {got} in slot {slot:?}, but {expected} was being staged in slot {expected_slot:?}"
    )]
    Mismatch {
        got: semver::Version,
        slot: Slot,
        expected: semver::Version,
        expected_slot: Slot,
    },
}

fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::Staging { .. } => "staging",
        Phase::Staged { .. } => "staged",
        Phase::Trial { .. } => "on trial",
    }
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Stage { .. } => "staging",
        Event::Staged(_) => "staged",
        Event::Refused(_) => "refusing",
        Event::Abandon => "abandoning",
        Event::Switch { .. } => "switching",
        Event::Healthy => "committing",
        Event::Unhealthy(_) => "rolling back",
        Event::Restarted { .. } => "restarting",
        Event::Tick { .. } => "ticking",
    }
}

/// The next state after `event`, or why `event` is refused in `state` (which stays as it is).
pub fn advance(state: &State, event: Event) -> Result<State, Invalid> {
    let refuse = || Invalid::Phase {
        phase: phase_name(&state.phase),
        event: event_name(&event),
    };
    let idle = |committed: Option<Installed>, last: Option<Outcome>| State {
        committed,
        phase: Phase::Idle,
        last,
    };
    let rolled_back = |candidate: &Installed, reason: String| {
        idle(
            state.committed.clone(),
            Some(Outcome::RolledBack {
                version: candidate.version.clone(),
                reason,
            }),
        )
    };
    match (&state.phase, &event) {
        (Phase::Idle, Event::Stage { version }) => {
            if let Some(floor) = state.floor()
                && version <= floor
            {
                return Err(Invalid::NotNewer {
                    offered: version.clone(),
                    floor: floor.clone(),
                });
            }
            Ok(State {
                phase: Phase::Staging {
                    slot: state.inactive_slot(),
                    version: version.clone(),
                },
                ..state.clone()
            })
        }
        (Phase::Staging { slot, version }, Event::Staged(candidate)) => {
            if candidate.slot != *slot || candidate.version != *version {
                return Err(Invalid::Mismatch {
                    got: candidate.version.clone(),
                    slot: candidate.slot,
                    expected: version.clone(),
                    expected_slot: *slot,
                });
            }
            Ok(State {
                phase: Phase::Staged {
                    candidate: candidate.clone(),
                },
                ..state.clone()
            })
        }
        (Phase::Staging { version, .. }, Event::Refused(reason)) => Ok(idle(
            state.committed.clone(),
            Some(Outcome::Refused {
                version: version.clone(),
                reason: reason.clone(),
            }),
        )),
        (Phase::Staging { .. } | Phase::Staged { .. }, Event::Abandon) => {
            Ok(idle(state.committed.clone(), state.last.clone()))
        }
        // A staging or staged update was not switched to before the restart: the active
        // component never changed, so it is dropped (the next poll stages it again).
        (Phase::Staging { .. } | Phase::Staged { .. }, Event::Restarted { .. }) => {
            Ok(idle(state.committed.clone(), state.last.clone()))
        }
        (Phase::Staged { candidate }, Event::Switch { now, deadline }) => Ok(State {
            phase: Phase::Trial {
                candidate: candidate.clone(),
                tries: 0,
                started: *now,
                deadline: *deadline,
            },
            ..state.clone()
        }),
        (Phase::Trial { candidate, .. }, Event::Healthy) => Ok(idle(
            Some(candidate.clone()),
            Some(Outcome::Committed {
                version: candidate.version.clone(),
            }),
        )),
        (Phase::Trial { candidate, .. }, Event::Unhealthy(reason)) => {
            Ok(rolled_back(candidate, reason.clone()))
        }
        (
            Phase::Trial {
                candidate,
                tries,
                started,
                deadline,
            },
            Event::Restarted { now, max_tries },
        ) => {
            let tries = tries.saturating_add(1);
            if tries > *max_tries {
                Ok(rolled_back(
                    candidate,
                    format!("not healthy after {max_tries} restarts"),
                ))
            } else if past(*now, *started, *deadline) {
                Ok(rolled_back(candidate, "not healthy by its deadline".into()))
            } else {
                Ok(State {
                    phase: Phase::Trial {
                        candidate: candidate.clone(),
                        tries,
                        started: *started,
                        deadline: *deadline,
                    },
                    ..state.clone()
                })
            }
        }
        (
            Phase::Trial {
                candidate,
                started,
                deadline,
                ..
            },
            Event::Tick { now },
        ) => {
            if past(*now, *started, *deadline) {
                Ok(rolled_back(candidate, "not healthy by its deadline".into()))
            } else {
                Ok(state.clone())
            }
        }
        (_, Event::Tick { .. } | Event::Restarted { .. }) => Ok(state.clone()),
        _ => Err(refuse()),
    }
}

/// Whether a trial started at `started` is past `deadline` at `now`. A clock now before the
/// start stepped back (a Pi has no battery-backed clock): the deadline cannot be judged and
/// only the count of tries bounds the trial.
fn past(now: u64, started: u64, deadline: u64) -> bool {
    now >= started && now >= deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    fn installed(slot: Slot, version: &str) -> Installed {
        Installed {
            slot,
            version: v(version),
            wasm_sha256: format!("w{version}"),
            cwasm_sha256: format!("c{version}"),
        }
    }

    const MAX_TRIES: u32 = 3;

    /// Every state reachable from a shipped device and from one with a committed version,
    /// through the events of a few versions, times and tries.
    fn events(state: &State) -> Vec<Event> {
        let mut events = vec![
            Event::Abandon,
            Event::Healthy,
            Event::Unhealthy("bad readings".into()),
            Event::Refused("does not link".into()),
        ];
        for version in ["0.9.0", "1.0.0", "2.0.0"] {
            events.push(Event::Stage {
                version: v(version),
            });
            for slot in [Slot::A, Slot::B] {
                events.push(Event::Staged(installed(slot, version)));
            }
        }
        for now in [0, 100, 150, 200, 1000] {
            events.push(Event::Switch {
                now,
                deadline: now + 100,
            });
            events.push(Event::Restarted {
                now,
                max_tries: MAX_TRIES,
            });
            events.push(Event::Tick { now });
        }
        // A trial's own times, and a clock stepped back before it started.
        if let Phase::Trial {
            started, deadline, ..
        } = &state.phase
        {
            for now in [
                started.saturating_sub(50),
                *started,
                deadline.saturating_sub(1),
                *deadline,
            ] {
                events.push(Event::Tick { now });
                events.push(Event::Restarted {
                    now,
                    max_tries: MAX_TRIES,
                });
            }
        }
        events
    }

    /// Walks every reachable state (breadth first, bounded) and checks the invariants on
    /// every transition, accepted or refused.
    #[test]
    fn every_reachable_transition_keeps_the_invariants() {
        let starts = [
            State::default(),
            State {
                committed: Some(installed(Slot::B, "1.0.0")),
                ..State::default()
            },
        ];
        let mut seen: Vec<State> = starts.to_vec();
        let mut queue: std::collections::VecDeque<State> = starts.into_iter().collect();
        let mut transitions = 0;
        while let Some(state) = queue.pop_front() {
            for event in events(&state) {
                transitions += 1;
                let result = advance(&state, event.clone());
                check(&state, &event, &result);
                if let Ok(next) = result
                    && !seen.contains(&next)
                    && seen.len() < 5000
                {
                    seen.push(next.clone());
                    queue.push_back(next);
                }
            }
        }
        assert!(seen.len() > 30, "only {} states reached", seen.len());
        assert!(transitions > 1000);
    }

    fn check(state: &State, event: &Event, result: &Result<State, Invalid>) {
        let context = || format!("{state:?} + {event:?} → {result:?}");
        let Ok(next) = result else {
            return;
        };
        // The committed version only ever moves forward, and only by a healthy trial.
        match (&state.committed, &next.committed) {
            (a, b) if a == b => {}
            (old, Some(new)) => {
                assert_eq!(event, &Event::Healthy, "{}", context());
                assert!(
                    old.as_ref().is_none_or(|o| new.version > o.version),
                    "{}",
                    context()
                );
            }
            (Some(_), None) => panic!("a committed version was forgotten: {}", context()),
            (None, None) => unreachable!(),
        }
        // Staging never writes the slot that runs now, nor the committed one.
        if let Phase::Staging { slot, version } = &next.phase {
            assert_ne!(Some(*slot), state.active().map(|a| a.slot), "{}", context());
            assert_ne!(
                Some(*slot),
                next.committed.as_ref().map(|c| c.slot),
                "{}",
                context()
            );
            assert!(next.floor().is_none_or(|f| version > f), "{}", context());
        }
        // A trial runs the other slot than the committed one, newer than it.
        if let Phase::Trial { candidate, .. } = &next.phase
            && let Some(committed) = &next.committed
        {
            assert_ne!(candidate.slot, committed.slot, "{}", context());
            assert!(candidate.version > committed.version, "{}", context());
        }
        // What runs changes only by a switch (to the candidate), a commit (stays), or a
        // roll back (to the committed version).
        if state.active() != next.active() {
            match event {
                Event::Switch { .. } => {
                    assert!(matches!(next.phase, Phase::Trial { .. }), "{}", context())
                }
                Event::Unhealthy(_) | Event::Restarted { .. } | Event::Tick { .. } => {
                    assert_eq!(next.active(), state.committed.as_ref(), "{}", context());
                    assert!(
                        matches!(next.last, Some(Outcome::RolledBack { .. })),
                        "{}",
                        context()
                    );
                }
                _ => panic!("the running component changed: {}", context()),
            }
        }
        // Tries never exceed the limit while on trial.
        if let Phase::Trial { tries, .. } = &next.phase {
            assert!(*tries <= MAX_TRIES, "{}", context());
        }
    }

    #[test]
    fn a_good_update_commits() {
        let mut state = State::default();
        state = advance(
            &state,
            Event::Stage {
                version: v("1.1.0"),
            },
        )
        .unwrap();
        assert_eq!(
            state.phase,
            Phase::Staging {
                slot: Slot::A,
                version: v("1.1.0")
            }
        );
        state = advance(&state, Event::Staged(installed(Slot::A, "1.1.0"))).unwrap();
        assert_eq!(state.active(), None, "staged is not running yet");
        state = advance(
            &state,
            Event::Switch {
                now: 10,
                deadline: 70,
            },
        )
        .unwrap();
        assert_eq!(state.active(), Some(&installed(Slot::A, "1.1.0")));
        state = advance(&state, Event::Healthy).unwrap();
        assert_eq!(state.committed, Some(installed(Slot::A, "1.1.0")));
        assert_eq!(
            state.last,
            Some(Outcome::Committed {
                version: v("1.1.0")
            })
        );
        assert_eq!(state.inactive_slot(), Slot::B);
    }

    #[test]
    fn restarts_count_tries_and_roll_back() {
        let committed = installed(Slot::A, "1.0.0");
        let trial = |tries| State {
            committed: Some(committed.clone()),
            phase: Phase::Trial {
                candidate: installed(Slot::B, "1.1.0"),
                tries,
                started: 100,
                deadline: 200,
            },
            last: None,
        };
        let restarted =
            |state: &State, now| advance(state, Event::Restarted { now, max_tries: 2 }).unwrap();
        assert_eq!(restarted(&trial(0), 150), trial(1));
        assert_eq!(restarted(&trial(1), 150), trial(2));
        let back = restarted(&trial(2), 150);
        assert_eq!(back.active(), Some(&committed));
        assert_eq!(
            back.last,
            Some(Outcome::RolledBack {
                version: v("1.1.0"),
                reason: "not healthy after 2 restarts".into()
            })
        );
        let late = restarted(&trial(0), 200);
        assert!(
            matches!(late.last, Some(Outcome::RolledBack { ref reason, .. }) if reason.contains("deadline"))
        );
        // A clock that stepped back before the start does not end the trial; tries still count.
        assert_eq!(restarted(&trial(0), 5), trial(1));
        assert_eq!(
            advance(&trial(0), Event::Tick { now: 5 }).unwrap(),
            trial(0)
        );
        assert_eq!(
            advance(&trial(0), Event::Tick { now: 199 }).unwrap(),
            trial(0)
        );
        assert!(matches!(
            advance(&trial(0), Event::Tick { now: 200 }).unwrap().last,
            Some(Outcome::RolledBack { .. })
        ));
    }

    #[test]
    fn never_back_and_nonsense_refused() {
        let state = State {
            committed: Some(installed(Slot::A, "1.2.0")),
            ..State::default()
        };
        for old in ["1.2.0", "1.1.9", "0.1.0"] {
            assert!(matches!(
                advance(&state, Event::Stage { version: v(old) }),
                Err(Invalid::NotNewer { .. })
            ));
        }
        assert!(matches!(
            advance(&state, Event::Healthy),
            Err(Invalid::Phase { .. })
        ));
        assert!(matches!(
            advance(
                &state,
                Event::Switch {
                    now: 0,
                    deadline: 1
                }
            ),
            Err(Invalid::Phase { .. })
        ));
        let staging = advance(
            &state,
            Event::Stage {
                version: v("1.3.0"),
            },
        )
        .unwrap();
        assert!(matches!(
            advance(&staging, Event::Staged(installed(Slot::A, "1.3.0"))),
            Err(Invalid::Mismatch { .. })
        ));
        assert!(matches!(
            advance(
                &staging,
                Event::Stage {
                    version: v("1.4.0")
                }
            ),
            Err(Invalid::Phase { .. })
        ));
    }
}
