//! Task ownership: one lease message per task (`debs.lease.<task>`, one message per subject in
//! [`COORD_STREAM`](super::COORD_STREAM)), written compare-and-set with
//! `Nats-Expected-Last-Subject-Sequence` = the sequence of the lease message the writer read: of
//! two workers racing for a task exactly one succeeds. A lease holds its owner and an expiry
//! (Unix ms, the owner's clock: the workers' clocks must agree to well under the lease time);
//! the owner renews it before. An empty owner is a released task; `done` marks a finished task,
//! which nobody takes again.
//!
//! Members announce themselves on `debs.member.<id>` with an expiry, renewed as the leases;
//! each aims at [`fair_share`] of the tasks.

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{Context, stream};
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};

use super::{COORD_STREAM, LEASE_SUBJECT, MEMBER_SUBJECT};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The owning worker's id; empty: nobody.
    pub owner: String,
    /// Unix ms after which the lease is free.
    pub expires_ms: u64,
    #[serde(default)]
    pub done: bool,
}

impl Lease {
    /// Whether worker `me` may take the task at `now_ms`: it is free, released or expired, or
    /// held by `me` (a previous process of the same id, which is dead: ids are unique among
    /// live workers).
    pub fn takeable(&self, me: &str, now_ms: u64) -> bool {
        !self.done && (self.owner.is_empty() || self.owner == me || self.expires_ms <= now_ms)
    }
}

/// The tasks a worker aims to hold: ceil(tasks / live members) (at least one member: itself).
pub fn fair_share(tasks: usize, members: usize) -> usize {
    tasks.div_ceil(members.max(1))
}

/// How many tasks to release (positive) or try to take (negative) holding `held` of a share.
pub fn imbalance(held: usize, share: usize) -> isize {
    held as isize - share as isize
}

pub struct Leases {
    js: Context,
    stream: stream::Stream,
}

/// A lease as read: the sequence of its message (0: none yet) and its content.
#[derive(Clone, Debug, Default)]
pub struct Read {
    pub seq: u64,
    pub lease: Lease,
}

impl Leases {
    pub async fn open(js: &Context) -> anyhow::Result<Self> {
        Ok(Leases {
            js: js.clone(),
            stream: js.get_stream(COORD_STREAM).await?,
        })
    }

    pub async fn read(&self, task: &str) -> anyhow::Result<Read> {
        let subject = format!("{LEASE_SUBJECT}.{task}");
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => Ok(Read {
                seq: m.sequence,
                lease: serde_json::from_slice(&m.payload).unwrap_or_default(),
            }),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(Read::default())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `lease` if the task's lease message is still the one with sequence `expected`;
    /// the new sequence, or None when another writer came first.
    pub async fn write(
        &self,
        task: &str,
        expected: u64,
        lease: &Lease,
    ) -> anyhow::Result<Option<u64>> {
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(
                format!("{LEASE_SUBJECT}.{task}"),
                headers,
                serde_json::to_vec(lease)?.into(),
            )
            .await?;
        match ack.await {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Announces worker `id` as live until `expires_ms` (0: leaving).
    pub async fn heartbeat(&self, id: &str, expires_ms: u64) -> anyhow::Result<()> {
        self.js
            .publish(
                format!("{MEMBER_SUBJECT}.{id}"),
                expires_ms.to_string().into(),
            )
            .await?
            .await?;
        Ok(())
    }

    /// The members live at `now_ms`.
    pub async fn members(&self, now_ms: u64) -> anyhow::Result<Vec<String>> {
        let subjects: Vec<(String, usize)> = self
            .stream
            .info_with_subjects(format!("{MEMBER_SUBJECT}.>"))
            .await?
            .try_collect()
            .await?;
        let mut live = Vec::new();
        for (subject, _) in subjects {
            let Ok(m) = self.stream.get_last_raw_message_by_subject(&subject).await else {
                continue;
            };
            let expires: u64 = std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if expires > now_ms {
                let id = subject[MEMBER_SUBJECT.len() + 1..].to_owned();
                live.push(id);
            }
        }
        live.sort();
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_shares() {
        assert_eq!(fair_share(9, 0), 9);
        assert_eq!(fair_share(9, 1), 9);
        assert_eq!(fair_share(9, 2), 5);
        assert_eq!(fair_share(9, 3), 3);
        assert_eq!(fair_share(9, 4), 3);
        assert_eq!(fair_share(9, 20), 1);
        // The shares always cover every task.
        for tasks in 1..30 {
            for members in 1..12 {
                assert!(fair_share(tasks, members) * members >= tasks);
            }
        }
        assert_eq!(imbalance(5, 3), 2);
        assert_eq!(imbalance(1, 3), -2);
    }

    #[test]
    fn who_may_take_a_lease() {
        let held = Lease {
            owner: "a".into(),
            expires_ms: 1000,
            done: false,
        };
        assert!(!held.takeable("b", 999));
        assert!(held.takeable("b", 1000));
        assert!(held.takeable("a", 10));
        assert!(Lease::default().takeable("b", 0));
        let done = Lease {
            done: true,
            ..Lease::default()
        };
        assert!(!done.takeable("b", u64::MAX));
    }
}
