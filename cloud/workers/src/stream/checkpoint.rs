//! Checkpoints in the stream [`STATE_STREAM`](super::STATE_STREAM) (one message per subject).
//!
//! NATS payloads are limited (1 MB by default), so the operator state is cut into chunks on
//! `debs.state.<task>.<gen>.<k>`; then the manifest `debs.state.<task>` names the generation, the
//! chunk count, the length and the SHA-256 of the whole, with the task's position. Chunks first,
//! manifest last, the previous generation purged after: a kill in between leaves the previous
//! manifest and its chunks valid (at worst a dead generation's chunks stay behind). `gen` is
//! unique per writer (the writer's lease sequence and a counter), so two writers never mix
//! chunks. A manifest whose chunks are missing or do not hash to its SHA-256 is refused
//! ([`CheckpointError`]); the task then replays from the start.

use async_nats::jetstream::{Context, stream};
use serde::{Deserialize, Serialize};

use super::{STATE_STREAM, STATE_SUBJECT};

/// Chunk size: well under the default 1 MB payload limit.
pub const CHUNK: usize = 512 * 1024;

/// Where a task is, with the operator state's chunks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The chunks' generation.
    pub generation: String,
    pub chunks: u32,
    pub len: u64,
    pub sha256: String,
    /// The last input stream sequence the state includes (0: none).
    pub input_seq: u64,
    /// Rows produced (the next row's index).
    pub produced: u64,
    /// Events pushed and messages dead-lettered so far.
    pub events: u64,
    pub dead: u64,
    /// Partitions whose end marker was seen.
    pub ends: Vec<u32>,
    /// The task has finished: every row is published.
    pub done: bool,
    /// Sealed runs: per partition, the number of the last batch taken (a batch not past it is
    /// refused as replayed).
    #[serde(default)]
    pub last_batches: std::collections::BTreeMap<u32, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("chunk {0} of the checkpoint is missing")]
    MissingChunk(u32),
    #[error("the checkpoint's chunks hold {got} bytes, the manifest says {want}")]
    Length { got: u64, want: u64 },
    #[error("the checkpoint's SHA-256 is {got}, the manifest says {want}")]
    Sha256 { got: String, want: String },
    #[error("the manifest does not parse: {0}")]
    Manifest(String),
    #[error("cannot read the checkpoint: {0}")]
    Nats(String),
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// `state` cut into chunks of at most [`CHUNK`] bytes (one empty chunk for an empty state).
pub fn split(state: &[u8]) -> Vec<&[u8]> {
    if state.is_empty() {
        return vec![state];
    }
    state.chunks(CHUNK).collect()
}

/// The chunks joined and checked against the manifest.
pub fn assemble(
    manifest: &Manifest,
    chunks: &[Option<Vec<u8>>],
) -> Result<Vec<u8>, CheckpointError> {
    let mut state = Vec::with_capacity(manifest.len as usize);
    for k in 0..manifest.chunks {
        match chunks.get(k as usize) {
            Some(Some(chunk)) => state.extend_from_slice(chunk),
            _ => return Err(CheckpointError::MissingChunk(k)),
        }
    }
    if state.len() as u64 != manifest.len {
        return Err(CheckpointError::Length {
            got: state.len() as u64,
            want: manifest.len,
        });
    }
    let got = sha256_hex(&state);
    if got != manifest.sha256 {
        return Err(CheckpointError::Sha256 {
            got,
            want: manifest.sha256.clone(),
        });
    }
    Ok(state)
}

pub fn manifest_subject(task: &str) -> String {
    format!("{STATE_SUBJECT}.{task}")
}

pub fn chunk_subject(task: &str, generation: &str, k: u32) -> String {
    format!("{STATE_SUBJECT}.{task}.{generation}.{k}")
}

pub struct Checkpoints {
    js: Context,
    stream: stream::Stream,
}

impl Checkpoints {
    pub async fn open(js: &Context) -> anyhow::Result<Self> {
        Ok(Checkpoints {
            js: js.clone(),
            stream: js.get_stream(STATE_STREAM).await?,
        })
    }

    /// The task's manifest, or None when it has none.
    pub async fn manifest(&self, task: &str) -> Result<Option<Manifest>, CheckpointError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&manifest_subject(task))
            .await
        {
            Ok(m) => serde_json::from_slice(&m.payload)
                .map(Some)
                .map_err(|e| CheckpointError::Manifest(e.to_string())),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(CheckpointError::Nats(e.to_string())),
        }
    }

    /// The task's last checkpoint: manifest and operator state, checked.
    pub async fn load(&self, task: &str) -> Result<Option<(Manifest, Vec<u8>)>, CheckpointError> {
        let Some(manifest) = self.manifest(task).await? else {
            return Ok(None);
        };
        let mut chunks = Vec::new();
        for k in 0..manifest.chunks {
            let subject = chunk_subject(task, &manifest.generation, k);
            match self.stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => chunks.push(Some(m.payload.to_vec())),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    chunks.push(None)
                }
                Err(e) => return Err(CheckpointError::Nats(e.to_string())),
            }
        }
        let state = assemble(&manifest, &chunks)?;
        Ok(Some((manifest, state)))
    }

    /// Writes `state` as generation `manifest.generation` (chunks, then the manifest), then
    /// purges the chunks of `previous`.
    pub async fn save(
        &self,
        task: &str,
        mut manifest: Manifest,
        state: &[u8],
        previous: Option<&str>,
    ) -> anyhow::Result<()> {
        let chunks = split(state);
        manifest.chunks = chunks.len() as u32;
        manifest.len = state.len() as u64;
        manifest.sha256 = sha256_hex(state);
        let mut acks = Vec::new();
        for (k, chunk) in chunks.iter().enumerate() {
            let subject = chunk_subject(task, &manifest.generation, k as u32);
            acks.push(self.js.publish(subject, chunk.to_vec().into()).await?);
        }
        for ack in acks {
            ack.await?;
        }
        self.js
            .publish(
                manifest_subject(task),
                serde_json::to_vec(&manifest)?.into(),
            )
            .await?
            .await?;
        if let Some(previous) = previous.filter(|p| *p != manifest.generation) {
            self.stream
                .purge()
                .filter(format!("{STATE_SUBJECT}.{task}.{previous}.>"))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(state: &[u8]) -> Manifest {
        Manifest {
            generation: "1-0".into(),
            chunks: split(state).len() as u32,
            len: state.len() as u64,
            sha256: sha256_hex(state),
            ..Manifest::default()
        }
    }

    #[test]
    fn chunks_round_trip_and_are_checked() {
        let state: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i * 7) as u8).collect();
        let chunks: Vec<Option<Vec<u8>>> = split(&state).iter().map(|c| Some(c.to_vec())).collect();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.as_ref().unwrap().len() <= CHUNK));
        let manifest = manifest_of(&state);
        assert_eq!(assemble(&manifest, &chunks).unwrap(), state);

        let mut missing = chunks.clone();
        missing[1] = None;
        assert!(matches!(
            assemble(&manifest, &missing),
            Err(CheckpointError::MissingChunk(1))
        ));
        let mut corrupt = chunks.clone();
        corrupt[2].as_mut().unwrap()[3] ^= 1;
        assert!(matches!(
            assemble(&manifest, &corrupt),
            Err(CheckpointError::Sha256 { .. })
        ));
        let short = &chunks[..2];
        assert!(assemble(&manifest, short).is_err());
        let empty = manifest_of(&[]);
        assert_eq!(split(&[]).len(), 1);
        assert_eq!(
            assemble(&empty, &[Some(Vec::new())]).unwrap(),
            Vec::<u8>::new()
        );
    }
}
