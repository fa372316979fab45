//! Attenuable bearer tokens for researchers, administrators, participants and workers (DESIGN
//! "Data API": a holder may
//! add restrictions — read-only, one household, an expiry — but never remove them).
//!
//! **Why not biscuit-auth**, the reference: biscuit-auth 6.0 does not build for the Data API's
//! target. On `wasm32` its authorizer measures run time with `performance.now()` through
//! wasm-bindgen (JavaScript), which a `wasm32-wasip2` component has no way to import. This crate
//! is the macaroon construction (HMAC chaining, Birgisson et al. 2014) over well-kept primitives
//! (`hmac`, `sha2`), with first-party caveats only:
//!
//! - minting: `tag₀ = HMAC(root, "wattlet-token/v1" ‖ id)`, then one caveat, the role;
//! - every caveat `c` moves the tag on: `tagᵢ = HMAC(tagᵢ₋₁, c)`;
//! - the token carries the id, the caveats in order and the last tag.
//!
//! Anyone holding a token can append a caveat (they know the last tag), nobody without the root
//! key can remove or change one (that needs an earlier tag). The verifier recomputes the chain
//! and compares tags in constant time; then every caveat must hold for the request. A caveat
//! this version does not know makes the token invalid: unknown restrictions fail closed.
//!
//! Text form: `wt1.<base64url(JSON {"id", "caveats": [..]})>.<base64url(tag)>`, no padding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

mod secret;
pub use secret::{MIN_SECRET_BITS, MIN_SECRET_CHARS, WeakSecret, check_secret};

const PREFIX: &str = "wt1.";
const DOMAIN: &[u8] = b"wattlet-token/v1\n";
/// Longer tokens are refused before any work (a header is not a place for megabytes).
const MAX_TOKEN_LEN: usize = 4096;
const MAX_CAVEATS: usize = 32;

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything under `/api/management`.
    Administrator,
    /// Registers participants and sees their consent; no device administration.
    Researcher,
    /// A participant, for their own household only (`/api/household/...`); never management.
    Participant,
    /// The NIALM workers (untrusted hosts): only storing and reading results
    /// (`POST /api/worker/disaggregation`, `GET /api/worker/disaggregation/:item`), never
    /// plaintext readings. No other role reaches those.
    Worker,
    /// The NIALM work manager (control plane, trusted): only the meters and their power
    /// readings with the household's data key (`GET /api/worker/meters`,
    /// `GET /api/worker/meter/:uuid/power`). No other role reaches those.
    Manager,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Researcher => "researcher",
            Role::Participant => "participant",
            Role::Worker => "worker",
            Role::Manager => "manager",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "administrator" => Some(Role::Administrator),
            "researcher" => Some(Role::Researcher),
            "participant" => Some(Role::Participant),
            "worker" => Some(Role::Worker),
            "manager" => Some(Role::Manager),
            _ => None,
        }
    }
}

/// A class of a household's personal data: what a token's `class` caveat names and what each
/// Data API endpoint serves (the data objects policies are attached to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataClass {
    /// The meter's measurement series.
    Measurements,
    /// The household's registration details.
    Registration,
    /// NIALM results.
    Disaggregation,
    /// Load forecasts.
    Forecast,
}

impl DataClass {
    pub fn name(self) -> &'static str {
        match self {
            DataClass::Measurements => "measurements",
            DataClass::Registration => "registration",
            DataClass::Disaggregation => "disaggregation",
            DataClass::Forecast => "forecast",
        }
    }

    /// Every class, in the order the documentation lists them.
    pub const ALL: [DataClass; 4] = [
        DataClass::Measurements,
        DataClass::Registration,
        DataClass::Disaggregation,
        DataClass::Forecast,
    ];

    pub fn parse(s: &str) -> Option<DataClass> {
        DataClass::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Whether its objects are series in time, which a `range` caveat can cut.
    pub fn timed(self) -> bool {
        self != DataClass::Registration
    }
}

/// One restriction. Every caveat of a token must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caveat {
    /// The request must be allowed to this role. Minting adds one; a second one can only narrow
    /// (both must hold).
    Role(Role),
    /// Reading only: no request that changes anything.
    ReadOnly,
    /// Only this household (a household id).
    Household(String),
    /// Valid before this instant, in seconds since the Unix epoch.
    ExpiresAt(u64),
    /// Only data of this class: every endpoint serving anything else is refused.
    Class(DataClass),
    /// Only data from `from` (inclusive) to `to` (exclusive), seconds since the Unix epoch:
    /// rows outside are never selected, and endpoints serving no time series are refused.
    Range { from: i64, to: i64 },
}

impl Caveat {
    /// The canonical text that is chained into the tag.
    pub fn encode(&self) -> String {
        match self {
            Caveat::Role(role) => format!("role={}", role.name()),
            Caveat::ReadOnly => "read_only".to_owned(),
            Caveat::Household(id) => format!("household={id}"),
            Caveat::ExpiresAt(t) => format!("expires_at={t}"),
            Caveat::Class(class) => format!("class={}", class.name()),
            Caveat::Range { from, to } => format!("range={from}..{to}"),
        }
    }

    pub fn decode(s: &str) -> Result<Caveat, TokenError> {
        let unknown = || TokenError::UnknownCaveat(s.chars().take(80).collect());
        match s.split_once('=') {
            None if s == "read_only" => Ok(Caveat::ReadOnly),
            Some(("role", role)) => Role::parse(role).map(Caveat::Role).ok_or_else(unknown),
            Some(("household", id)) if !id.is_empty() => Ok(Caveat::Household(id.to_owned())),
            Some(("expires_at", t)) => t.parse().map(Caveat::ExpiresAt).map_err(|_| unknown()),
            Some(("class", class)) => DataClass::parse(class)
                .map(Caveat::Class)
                .ok_or_else(unknown),
            Some(("range", range)) => {
                let (from, to) = range.split_once("..").ok_or_else(unknown)?;
                match (from.parse(), to.parse()) {
                    (Ok(from), Ok(to)) if from < to => Ok(Caveat::Range { from, to }),
                    _ => Err(unknown()),
                }
            }
            _ => Err(unknown()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a wattlet token (wt1.…)")]
    Malformed,
    #[error("the token's signature does not verify (altered, or from another key)")]
    BadSignature,
    #[error("unknown restriction {0:?}: this server cannot honour it")]
    UnknownCaveat(String),
    #[error("the token names no role")]
    NoRole,
    #[error("the token expired at {0} (seconds since 1970)")]
    Expired(u64),
}

/// A token as carried in `authorization: Bearer …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    id: String,
    caveats: Vec<Caveat>,
    tag: [u8; 32],
}

fn hmac(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in message {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The root key of the tokens, derived from a server secret (the Data API's `admin_token`), so
/// that rotating the secret invalidates every token.
pub fn root_key(server_secret: &[u8]) -> [u8; 32] {
    hmac(server_secret, &[b"wattlet-token/root-key/v1"])
}

impl Token {
    /// A new token for `role`, signed with `root` (the server's secret). `id` should be unique
    /// per token (random); it is not secret.
    pub fn mint(root: &[u8], id: &str, role: Role) -> Token {
        Token {
            id: id.to_owned(),
            caveats: Vec::new(),
            tag: hmac(root, &[DOMAIN, id.as_bytes()]),
        }
        .attenuate(Caveat::Role(role))
    }

    /// The same token with one more restriction. Needs no key.
    pub fn attenuate(mut self, caveat: Caveat) -> Token {
        self.tag = hmac(&self.tag, &[caveat.encode().as_bytes()]);
        self.caveats.push(caveat);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }

    pub fn encode(&self) -> String {
        let caveats: Vec<String> = self.caveats.iter().map(Caveat::encode).collect();
        let payload = serde_json::json!({ "id": self.id, "caveats": caveats });
        format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode(self.tag)
        )
    }

    /// Parses the text form; says nothing about validity (see [`Token::verify`]).
    pub fn decode(text: &str) -> Result<Token, TokenError> {
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = text
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(TokenError::Malformed)?;
        let tag: [u8; 32] = URL_SAFE_NO_PAD
            .decode(tag)
            .ok()
            .and_then(|t| t.try_into().ok())
            .ok_or(TokenError::Malformed)?;
        let payload: serde_json::Value = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(TokenError::Malformed)?;
        let id = payload["id"].as_str().ok_or(TokenError::Malformed)?;
        let caveats = payload["caveats"].as_array().ok_or(TokenError::Malformed)?;
        if caveats.len() > MAX_CAVEATS {
            return Err(TokenError::Malformed);
        }
        let caveats = caveats
            .iter()
            .map(|c| {
                c.as_str()
                    .ok_or(TokenError::Malformed)
                    .and_then(Caveat::decode)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Token {
            id: id.to_owned(),
            caveats,
            tag,
        })
    }

    /// Checks the signature chain against `root` and the expiry against `now` (seconds since
    /// the epoch); returns what the token allows.
    pub fn verify(&self, root: &[u8], now: u64) -> Result<Grant, TokenError> {
        let mut tag = hmac(root, &[DOMAIN, self.id.as_bytes()]);
        for caveat in &self.caveats {
            tag = hmac(&tag, &[caveat.encode().as_bytes()]);
        }
        if !constant_time_eq(&tag, &self.tag) {
            return Err(TokenError::BadSignature);
        }
        if !self.caveats.iter().any(|c| matches!(c, Caveat::Role(_))) {
            return Err(TokenError::NoRole);
        }
        for caveat in &self.caveats {
            if let Caveat::ExpiresAt(t) = caveat
                && now >= *t
            {
                return Err(TokenError::Expired(*t));
            }
        }
        Ok(Grant {
            caveats: self.caveats.clone(),
        })
    }
}

/// Whether `caveats` hold data caveats (`class`, `range`) for [`Grant::permits_data`].
pub fn has_data_caveats(caveats: &[Caveat]) -> bool {
    caveats
        .iter()
        .any(|c| matches!(c, Caveat::Class(_) | Caveat::Range { .. }))
}

/// The time range of data `caveats` allow, in seconds since the epoch: the
/// intersection of its `range` caveats (`from >= to` when they do not overlap); `None`
/// without one.
pub fn data_range(caveats: &[Caveat]) -> Option<(i64, i64)> {
    caveats
        .iter()
        .filter_map(|c| match c {
            Caveat::Range { from, to } => Some((*from, *to)),
            _ => None,
        })
        .reduce(|(f1, t1), (f2, t2)| (f1.max(f2), t1.min(t2)))
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// What a request touches, as the Data API describes it to [`Grant::permits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<'a> {
    /// Changes something (anything but GET).
    pub write: bool,
    /// The least role allowed to do it.
    pub needs: Role,
    pub scope: Scope<'a>,
}

/// Which households a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One existing household.
    Household(&'a str),
    /// Every household: a household-restricted token sees only its own (the caller filters
    /// with [`Grant::households`]).
    Households,
    /// None in particular (registering a new one, importing regions, minting): refused to
    /// household-restricted tokens.
    Global,
}

/// Why a valid token does not allow a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    #[error("this needs an administrator; the token is a researcher's")]
    Role,
    #[error("a participant's token reaches only the participant's own household endpoints")]
    Participant,
    #[error("this is for participants; the token is not a participant's")]
    NotParticipant,
    #[error("the token is read-only")]
    ReadOnly,
    #[error("the token is restricted to one household")]
    Household,
    #[error("a worker's token reaches only the worker endpoints")]
    Worker,
    #[error("this is for workers; the token is not a worker's")]
    NotWorker,
    #[error("a manager's token reaches only the manager endpoints (meters and power readings)")]
    Manager,
    #[error("this is for the work manager; the token is not a manager's")]
    NotManager,
    #[error("the token is restricted to {} data", .0.name())]
    Class(DataClass),
    #[error("the token is restricted to a time range of data; this serves no time series")]
    Range,
}

/// A verified token's restrictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    caveats: Vec<Caveat>,
}

impl Grant {
    /// Everything `role` may do, without restrictions (the server's own secret was presented).
    pub fn unrestricted(role: Role) -> Grant {
        Grant {
            caveats: vec![Caveat::Role(role)],
        }
    }

    /// Whether every caveat holds for `operation`.
    pub fn permits(&self, operation: &Operation<'_>) -> Result<(), Denied> {
        for caveat in &self.caveats {
            match caveat {
                Caveat::Role(Role::Researcher) if operation.needs == Role::Administrator => {
                    return Err(Denied::Role);
                }
                Caveat::Role(Role::Participant) => return Err(Denied::Participant),
                // Workers, the manager and everyone else are kept apart every way: a worker's
                // token reaches nothing but the worker endpoints, a manager's nothing but the
                // manager endpoints, and an administrator's neither.
                Caveat::Role(Role::Worker) if operation.needs != Role::Worker => {
                    return Err(Denied::Worker);
                }
                Caveat::Role(Role::Manager) if operation.needs != Role::Manager => {
                    return Err(Denied::Manager);
                }
                Caveat::Role(role) if operation.needs == Role::Worker && *role != Role::Worker => {
                    return Err(Denied::NotWorker);
                }
                Caveat::Role(role)
                    if operation.needs == Role::Manager && *role != Role::Manager =>
                {
                    return Err(Denied::NotManager);
                }
                Caveat::ReadOnly if operation.write => return Err(Denied::ReadOnly),
                Caveat::Household(id) => match operation.scope {
                    Scope::Household(h) if h == id => {}
                    Scope::Households => {}
                    Scope::Household(_) | Scope::Global => return Err(Denied::Household),
                },
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the token's data caveats allow an endpoint serving `class` (`None`: no personal
    /// data class, e.g. consent, devices, tokens): each `class` caveat must name it, and a
    /// `range` caveat needs a series in time.
    pub fn permits_data(&self, class: Option<DataClass>) -> Result<(), Denied> {
        for caveat in &self.caveats {
            match caveat {
                Caveat::Class(only) if class != Some(*only) => return Err(Denied::Class(*only)),
                Caveat::Range { .. } if !class.is_some_and(DataClass::timed) => {
                    return Err(Denied::Range);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// For `/api/household/...`: the one household a participant's token speaks for. Every role
    /// caveat must be `participant` and the household caveats must name one household.
    pub fn participant_household(&self) -> Result<&str, Denied> {
        let roles_ok = self
            .caveats
            .iter()
            .all(|c| !matches!(c, Caveat::Role(r) if *r != Role::Participant));
        let households = self.households();
        match households.first() {
            Some(first) if roles_ok && households.iter().all(|h| h == first) => Ok(first),
            Some(_) if roles_ok => Err(Denied::Household),
            _ => Err(Denied::NotParticipant),
        }
    }

    /// Whether the token is restricted to reading.
    pub fn read_only(&self) -> bool {
        self.caveats.contains(&Caveat::ReadOnly)
    }

    /// The households the token is restricted to (each must match); empty when unrestricted.
    pub fn households(&self) -> Vec<&str> {
        self.caveats
            .iter()
            .filter_map(|c| match c {
                Caveat::Household(id) => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }

    /// When the token stops being valid: the earliest of its expiries; `None` without one.
    pub fn expires_at(&self) -> Option<u64> {
        self.caveats
            .iter()
            .filter_map(|c| match c {
                Caveat::ExpiresAt(t) => Some(*t),
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &[u8] = b"root secret for tests";
    const NOW: u64 = 1_764_600_000;

    fn researcher() -> Token {
        Token::mint(ROOT, "t-1", Role::Researcher)
    }

    fn register() -> Operation<'static> {
        Operation {
            write: true,
            needs: Role::Researcher,
            scope: Scope::Global,
        }
    }

    #[test]
    fn minted_tokens_round_trip_and_verify() {
        let token = researcher()
            .attenuate(Caveat::ExpiresAt(NOW + 60))
            .attenuate(Caveat::Household("h-1".into()));
        let text = token.encode();
        assert!(text.starts_with("wt1."), "{text}");
        let decoded = Token::decode(&text).unwrap();
        assert_eq!(decoded, token);
        let grant = decoded.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.households(), ["h-1"]);
        assert_eq!(
            decoded.verify(b"another root", NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn restrictions_hold_and_a_second_role_only_narrows() {
        let admin = Token::mint(ROOT, "t-2", Role::Administrator);
        let revoke_device = Operation {
            write: true,
            needs: Role::Administrator,
            scope: Scope::Household("h-1"),
        };
        assert_eq!(
            admin.verify(ROOT, NOW).unwrap().permits(&revoke_device),
            Ok(())
        );
        let read_only = admin.clone().attenuate(Caveat::ReadOnly);
        assert_eq!(
            read_only.verify(ROOT, NOW).unwrap().permits(&revoke_device),
            Err(Denied::ReadOnly)
        );
        let narrowed = admin.attenuate(Caveat::Role(Role::Researcher));
        assert_eq!(
            narrowed.verify(ROOT, NOW).unwrap().permits(&revoke_device),
            Err(Denied::Role)
        );
        // Appending "administrator" to a researcher's token widens nothing.
        let widened = researcher().attenuate(Caveat::Role(Role::Administrator));
        assert_eq!(
            widened.verify(ROOT, NOW).unwrap().permits(&revoke_device),
            Err(Denied::Role)
        );
        let household = researcher().attenuate(Caveat::Household("h-1".into()));
        let grant = household.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.permits(&register()), Err(Denied::Household));
        let other = Operation {
            write: false,
            needs: Role::Researcher,
            scope: Scope::Household("h-2"),
        };
        assert_eq!(grant.permits(&other), Err(Denied::Household));
        let own = Operation {
            scope: Scope::Household("h-1"),
            ..other
        };
        assert_eq!(grant.permits(&own), Ok(()));
    }

    #[test]
    fn removing_or_changing_a_caveat_breaks_the_signature() {
        let token = researcher()
            .attenuate(Caveat::ReadOnly)
            .attenuate(Caveat::Household("h-1".into()));
        let mut dropped = token.clone();
        dropped.caveats.remove(1);
        assert_eq!(dropped.verify(ROOT, NOW), Err(TokenError::BadSignature));
        let mut changed = token.clone();
        changed.caveats[2] = Caveat::Household("h-2".into());
        assert_eq!(changed.verify(ROOT, NOW), Err(TokenError::BadSignature));
        let mut promoted = token.clone();
        promoted.caveats[0] = Caveat::Role(Role::Administrator);
        assert_eq!(promoted.verify(ROOT, NOW), Err(TokenError::BadSignature));
        let mut reordered = token;
        reordered.caveats.swap(1, 2);
        assert_eq!(reordered.verify(ROOT, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn participant_tokens_reach_one_household_and_no_management() {
        let token =
            Token::mint(ROOT, "p-1", Role::Participant).attenuate(Caveat::Household("h-1".into()));
        let grant = token.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.participant_household(), Ok("h-1"));
        let list = Operation {
            write: false,
            needs: Role::Researcher,
            scope: Scope::Households,
        };
        assert_eq!(grant.permits(&list), Err(Denied::Participant));
        let two = token.clone().attenuate(Caveat::Household("h-2".into()));
        assert_eq!(
            two.verify(ROOT, NOW).unwrap().participant_household(),
            Err(Denied::Household)
        );
        let promoted = token.attenuate(Caveat::Role(Role::Administrator));
        assert_eq!(
            promoted.verify(ROOT, NOW).unwrap().participant_household(),
            Err(Denied::NotParticipant)
        );
        let researcher = researcher().attenuate(Caveat::Household("h-1".into()));
        assert_eq!(
            researcher
                .verify(ROOT, NOW)
                .unwrap()
                .participant_household(),
            Err(Denied::NotParticipant)
        );
        let unscoped = Token::mint(ROOT, "p-2", Role::Participant);
        assert_eq!(
            unscoped.verify(ROOT, NOW).unwrap().participant_household(),
            Err(Denied::NotParticipant)
        );
    }

    #[test]
    fn worker_tokens_reach_worker_operations_only_and_attenuate() {
        let worker = Token::mint(ROOT, "w-1", Role::Worker);
        let read = Operation {
            write: false,
            needs: Role::Worker,
            scope: Scope::Household("h-1"),
        };
        let write = Operation {
            write: true,
            ..read.clone()
        };
        let grant = worker.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.permits(&read), Ok(()));
        assert_eq!(grant.permits(&write), Ok(()));
        assert_eq!(grant.permits(&register()), Err(Denied::Worker));
        assert_eq!(grant.participant_household(), Err(Denied::NotParticipant));
        for role in [Role::Administrator, Role::Researcher] {
            let other = Token::mint(ROOT, "o-1", role).verify(ROOT, NOW).unwrap();
            assert_eq!(other.permits(&read), Err(Denied::NotWorker), "{role:?}");
        }
        assert_eq!(
            Grant::unrestricted(Role::Administrator).permits(&read),
            Err(Denied::NotWorker)
        );
        let participant =
            Token::mint(ROOT, "p-1", Role::Participant).attenuate(Caveat::Household("h-1".into()));
        assert!(
            participant
                .verify(ROOT, NOW)
                .unwrap()
                .permits(&read)
                .is_err()
        );
        // A worker's token restricted like any other; a second role only narrows.
        let read_only = worker.clone().attenuate(Caveat::ReadOnly);
        let grant = read_only.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.permits(&read), Ok(()));
        assert_eq!(grant.permits(&write), Err(Denied::ReadOnly));
        let one = worker.clone().attenuate(Caveat::Household("h-2".into()));
        assert_eq!(
            one.verify(ROOT, NOW).unwrap().permits(&read),
            Err(Denied::Household)
        );
        let promoted = worker.attenuate(Caveat::Role(Role::Administrator));
        let grant = promoted.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.permits(&read), Err(Denied::NotWorker));
        assert_eq!(grant.permits(&register()), Err(Denied::Worker));
        assert_eq!(Role::parse("worker"), Some(Role::Worker));
        assert_eq!(
            Caveat::decode("role=worker"),
            Ok(Caveat::Role(Role::Worker))
        );
    }

    #[test]
    fn manager_and_worker_tokens_reach_only_their_own_operations() {
        let manager = Token::mint(ROOT, "m-1", Role::Manager);
        let worker = Token::mint(ROOT, "w-2", Role::Worker);
        let read_power = Operation {
            write: false,
            needs: Role::Manager,
            scope: Scope::Household("h-1"),
        };
        let store_result = Operation {
            write: true,
            needs: Role::Worker,
            scope: Scope::Household("h-1"),
        };
        let grant = manager.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.permits(&read_power), Ok(()));
        assert_eq!(grant.permits(&store_result), Err(Denied::Manager));
        assert_eq!(grant.permits(&register()), Err(Denied::Manager));
        let grant = worker.verify(ROOT, NOW).unwrap();
        assert_eq!(grant.permits(&store_result), Ok(()));
        assert_eq!(grant.permits(&read_power), Err(Denied::Worker));
        for role in [Role::Administrator, Role::Researcher] {
            let other = Token::mint(ROOT, "o-2", role).verify(ROOT, NOW).unwrap();
            assert_eq!(
                other.permits(&read_power),
                Err(Denied::NotManager),
                "{role:?}"
            );
        }
        assert_eq!(
            Grant::unrestricted(Role::Administrator).permits(&read_power),
            Err(Denied::NotManager)
        );
        // Appending the other role widens nothing.
        let both = manager.attenuate(Caveat::Role(Role::Worker));
        let grant = both.verify(ROOT, NOW).unwrap();
        assert!(grant.permits(&read_power).is_err());
        assert!(grant.permits(&store_result).is_err());
        assert_eq!(Role::parse("manager"), Some(Role::Manager));
        assert_eq!(Role::Manager.name(), "manager");
        assert_eq!(
            Caveat::decode("role=manager"),
            Ok(Caveat::Role(Role::Manager))
        );
    }

    #[test]
    fn data_caveats_name_a_class_and_a_time_range_and_only_narrow() {
        use DataClass::*;
        let classes = DataClass::ALL;
        for class in classes {
            assert_eq!(DataClass::parse(class.name()), Some(class));
            let caveat = Caveat::Class(class);
            assert_eq!(Caveat::decode(&caveat.encode()), Ok(caveat));
        }
        // A student's token: measurements only, read-only, November 2026.
        let november = Caveat::Range {
            from: 1_793_491_200,
            to: 1_796_083_200,
        };
        assert_eq!(november.encode(), "range=1793491200..1796083200");
        assert_eq!(Caveat::decode(&november.encode()), Ok(november.clone()));
        let student = researcher()
            .attenuate(Caveat::Class(Measurements))
            .attenuate(Caveat::ReadOnly)
            .attenuate(november.clone());
        let text = student.encode();
        let grant = Token::decode(&text).unwrap().verify(ROOT, NOW).unwrap();
        assert_eq!(grant.permits_data(Some(Measurements)), Ok(()));
        for other in [Disaggregation, Forecast] {
            assert_eq!(
                grant.permits_data(Some(other)),
                Err(Denied::Class(Measurements))
            );
        }
        assert_eq!(grant.permits_data(None), Err(Denied::Class(Measurements)));
        assert!(has_data_caveats(grant.caveats()));
        assert_eq!(
            data_range(grant.caveats()),
            Some((1_793_491_200, 1_796_083_200))
        );
        // A range alone reaches series only; two classes reach nothing.
        let ranged = researcher().attenuate(november).verify(ROOT, NOW).unwrap();
        assert_eq!(ranged.permits_data(Some(Forecast)), Ok(()));
        assert_eq!(ranged.permits_data(Some(Registration)), Err(Denied::Range));
        assert_eq!(ranged.permits_data(None), Err(Denied::Range));
        let both = researcher()
            .attenuate(Caveat::Class(Measurements))
            .attenuate(Caveat::Class(Forecast))
            .verify(ROOT, NOW)
            .unwrap();
        for class in classes {
            assert!(both.permits_data(Some(class)).is_err(), "{class:?}");
        }
        // Ranges intersect; disjoint ones leave nothing.
        let narrower = student
            .attenuate(Caveat::Range {
                from: 1_794_000_000,
                to: 1_800_000_000,
            })
            .attenuate(Caveat::Range {
                from: 0,
                to: 1_795_000_000,
            });
        assert_eq!(
            data_range(narrower.caveats()),
            Some((1_794_000_000, 1_795_000_000))
        );
        let disjoint = [
            Caveat::Range { from: 0, to: 10 },
            Caveat::Range { from: 20, to: 30 },
        ];
        assert_eq!(data_range(&disjoint), Some((20, 10)));
        // Without data caveats nothing changes.
        let plain = researcher().verify(ROOT, NOW).unwrap();
        assert!(!has_data_caveats(plain.caveats()));
        assert_eq!(plain.permits_data(None), Ok(()));
        assert_eq!(data_range(plain.caveats()), None);
        // Malformed data caveats are unknown restrictions: the token is refused.
        for bad in [
            "class=everything",
            "class=",
            "range=5..5",
            "range=9..1",
            "range=1..",
            "range=a..b",
            "range=1-2",
        ] {
            assert!(
                matches!(Caveat::decode(bad), Err(TokenError::UnknownCaveat(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn expiry_and_missing_role() {
        let token = researcher().attenuate(Caveat::ExpiresAt(NOW));
        assert_eq!(token.verify(ROOT, NOW - 1).map(|_| ()), Ok(()));
        assert_eq!(token.verify(ROOT, NOW), Err(TokenError::Expired(NOW)));
        let roleless = Token {
            id: "t-3".into(),
            caveats: Vec::new(),
            tag: hmac(ROOT, &[DOMAIN, b"t-3"]),
        };
        assert_eq!(roleless.verify(ROOT, NOW), Err(TokenError::NoRole));
    }

    #[test]
    fn the_earliest_expiry_counts() {
        let grant = researcher().verify(ROOT, NOW).unwrap();
        assert_eq!(grant.expires_at(), None);
        let token = researcher()
            .attenuate(Caveat::ExpiresAt(NOW + 900))
            .attenuate(Caveat::ExpiresAt(NOW + 60))
            .attenuate(Caveat::ExpiresAt(NOW + 3600));
        assert_eq!(
            token.verify(ROOT, NOW).unwrap().expires_at(),
            Some(NOW + 60)
        );
    }

    #[test]
    fn bad_text_is_refused() {
        let good = researcher().encode();
        let (payload, _) = good.rsplit_once('.').unwrap();
        let unknown_caveat = format!(
            "wt1.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"id":"x","caveats":["role=researcher","ip=10.0.0.1"]}"#),
            URL_SAFE_NO_PAD.encode([0u8; 32])
        );
        assert_eq!(
            Token::decode(&unknown_caveat),
            Err(TokenError::UnknownCaveat("ip=10.0.0.1".into()))
        );
        for bad in [
            "",
            "wt1.",
            "wt2.abc.def",
            "Bearer",
            &format!("{payload}.AAAA"),
            payload,
            &"wt1.".repeat(2000),
            "wt1.!!!.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(Token::decode(bad), Err(TokenError::Malformed), "{bad}");
        }
        for caveat in ["role=owner", "household=", "expires_at=soon", "readonly"] {
            assert!(Caveat::decode(caveat).is_err(), "{caveat}");
        }
    }
}
