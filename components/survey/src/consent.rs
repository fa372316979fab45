//! Consent, per household: `not granted` → `granted` → `revoked`, each step once, never back.
//!
//! This is the only definition of the states. The edge asks it whether to measure and upload,
//! the Data API which transition a request may make and whether to store an upload, the
//! workers whether a household's data may be processed; SQL only stores the state it returns
//! (by [`ConsentState::as_str`]) and selects by [`ConsentState::permitting`].

use serde::{Deserialize, Serialize};

/// A household's consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    NotGranted,
    Granted,
    Revoked,
}

/// What may be done with a household and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Use {
    /// A device reads the household's meters.
    Measure,
    /// A device sends measurements; the Data API stores them.
    Upload,
    /// Processing that keeps the link to the household (NIALM results per meter).
    ProcessPersonal,
    /// Processing of anonymized data only.
    ProcessAnonymous,
}

/// A transition the state machine does not allow, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("consent is already granted")]
    AlreadyGranted,
    #[error("consent was revoked and cannot be granted again")]
    RevokedForGood,
    #[error("consent was never granted")]
    NeverGranted,
    #[error("consent is already revoked")]
    AlreadyRevoked,
}

/// A stored state that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consent state {0:?} (expected not_granted, granted or revoked)")]
pub struct UnknownState(pub String);

impl ConsentState {
    pub const ALL: [ConsentState; 3] = [
        ConsentState::NotGranted,
        ConsentState::Granted,
        ConsentState::Revoked,
    ];

    /// The name stored in databases and sent in JSON: `not_granted`, `granted`, `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::NotGranted => "not_granted",
            ConsentState::Granted => "granted",
            ConsentState::Revoked => "revoked",
        }
    }

    /// Whether the household's consent allows `what`.
    pub fn permits(self, what: Use) -> bool {
        match self {
            ConsentState::NotGranted => false,
            ConsentState::Granted => true,
            // Revoked: devices stop for good, uploads are refused, data may only be processed
            // anonymously.
            ConsentState::Revoked => what == Use::ProcessAnonymous,
        }
    }

    /// The states that permit `what`, for an SQL `state IN (…)` condition.
    pub fn permitting(what: Use) -> impl Iterator<Item = ConsentState> {
        Self::ALL.into_iter().filter(move |s| s.permits(what))
    }

    /// `POST /api/household/consent`: not granted → granted.
    pub fn grant(self) -> Result<ConsentState, TransitionError> {
        match self {
            ConsentState::NotGranted => Ok(ConsentState::Granted),
            ConsentState::Granted => Err(TransitionError::AlreadyGranted),
            ConsentState::Revoked => Err(TransitionError::RevokedForGood),
        }
    }

    /// `DELETE /api/household/consent`: granted → revoked.
    pub fn revoke(self) -> Result<ConsentState, TransitionError> {
        match self {
            ConsentState::Granted => Ok(ConsentState::Revoked),
            ConsentState::NotGranted => Err(TransitionError::NeverGranted),
            ConsentState::Revoked => Err(TransitionError::AlreadyRevoked),
        }
    }

    /// The state a device holds after the cloud reported `reported`. Consent never moves
    /// backwards: once revoked the device stays stopped whatever a later answer says, and a
    /// granted consent is not taken back by a stale `not granted`.
    pub fn advance(self, reported: ConsentState) -> ConsentState {
        if self.rank() >= reported.rank() {
            self
        } else {
            reported
        }
    }

    fn rank(self) -> u8 {
        match self {
            ConsentState::NotGranted => 0,
            ConsentState::Granted => 1,
            ConsentState::Revoked => 2,
        }
    }
}

impl std::fmt::Display for ConsentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ConsentState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::ConsentState::{self, *};
    use super::{TransitionError, Use};

    const USES: [Use; 4] = [
        Use::Measure,
        Use::Upload,
        Use::ProcessPersonal,
        Use::ProcessAnonymous,
    ];

    #[test]
    fn every_transition() {
        assert_eq!(NotGranted.grant(), Ok(Granted));
        assert_eq!(Granted.grant(), Err(TransitionError::AlreadyGranted));
        assert_eq!(Revoked.grant(), Err(TransitionError::RevokedForGood));
        assert_eq!(Granted.revoke(), Ok(Revoked));
        assert_eq!(NotGranted.revoke(), Err(TransitionError::NeverGranted));
        assert_eq!(Revoked.revoke(), Err(TransitionError::AlreadyRevoked));
    }

    #[test]
    fn a_device_only_moves_forward() {
        for from in ConsentState::ALL {
            for reported in ConsentState::ALL {
                let to = from.advance(reported);
                assert!(to.rank() >= from.rank(), "{from} + {reported} → {to}");
                assert!(to == from || to == reported, "{from} + {reported} → {to}");
            }
        }
        assert_eq!(NotGranted.advance(Granted), Granted);
        assert_eq!(Granted.advance(NotGranted), Granted);
        assert_eq!(Revoked.advance(Granted), Revoked);
        assert_eq!(Granted.advance(Revoked), Revoked);
    }

    #[test]
    fn what_each_state_permits() {
        let permitted = |state: ConsentState| -> Vec<Use> {
            USES.into_iter().filter(|u| state.permits(*u)).collect()
        };
        assert_eq!(permitted(NotGranted), []);
        assert_eq!(permitted(Granted), USES);
        assert_eq!(permitted(Revoked), [Use::ProcessAnonymous]);
        assert_eq!(
            ConsentState::permitting(Use::Upload).collect::<Vec<_>>(),
            [Granted]
        );
        assert_eq!(
            ConsentState::permitting(Use::ProcessAnonymous).collect::<Vec<_>>(),
            [Granted, Revoked]
        );
    }

    #[test]
    fn names_round_trip_in_text_and_json() {
        for state in ConsentState::ALL {
            assert_eq!(state.as_str().parse::<ConsentState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<ConsentState>(&json).unwrap(), state);
        }
        assert!("maybe".parse::<ConsentState>().is_err());
        assert!("Granted".parse::<ConsentState>().is_err());
    }
}
