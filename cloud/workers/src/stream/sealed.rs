//! A sealed run: events, rows and checkpoints under the run's dataset key, so that NATS and
//! its disks never hold a reading (ARCHITECTURE.md "Confidential functions").
//!
//! The data set belongs to no household, so its key is a *dataset key* of the key broker
//! (`POST /kbs/v0/dataset-key`, administrators): the broker answers the key once, to its
//! owner, who seals the events (`wattlet stream replay --key FILE`) and reads the rows
//! (`wattlet stream results --key FILE`); workers get it only after attestation
//! (`GET /kbs/v0/resource/dataset-key/{id}`). Deleting the key at the broker makes every copy
//! of the run unreadable.
//!
//! Every payload is a [`Sealed`] envelope (JSON) whose authenticated item names what it is, so
//! that a payload cannot be moved to another place of the run:
//! - an input batch: [`BatchItem`] `e<first event id>.<count>@<partition>.<n>` (the
//!   partition's `n`-th batch), checked against the events inside;
//! - a row message: `<task>-<first row index>`, checked against its subject and index header;
//! - a checkpoint: `<task>/<generation>`, checked against its manifest.
//!
//! A batch is also refused when its number is not past the last batch taken from its partition:
//! a sealed batch published again under a fresh message id is a replay, not new data. (The
//! numbers depend on the file alone, like the batches, so a repeated replay is refused too.)

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use wattlet_key_broker::protocol::{DATASET_KEY_PATH, DatasetKey, DatasetKeyRequest};
use wattlet_sealing::{DataKey, KeyId, Purpose, Sealed};

use crate::api::ApiOptions;

/// The run's dataset key, held in memory.
pub struct RunKey {
    pub id: KeyId,
    key: DataKey,
}

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl RunKey {
    pub fn new(id: KeyId, key: DataKey) -> RunKey {
        RunKey { id, key }
    }

    /// The key as the broker answered it.
    pub fn from_dataset_key(made: &DatasetKey) -> anyhow::Result<RunKey> {
        let id = KeyId::parse(&made.key_id).context("key_id")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(made.key.trim())
            .context("key: not base64")?;
        let key = DataKey::from_bytes(&bytes).context("key")?;
        Ok(RunKey { id, key })
    }

    /// A key file written by `wattlet stream key create`.
    pub fn read(path: &Path) -> anyhow::Result<RunKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?;
        let made: DatasetKey = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a dataset key file (wattlet stream key create writes one)",
                path.display()
            )
        })?;
        RunKey::from_dataset_key(&made).with_context(|| format!("key file {}", path.display()))
    }
}

/// What a sealed input batch was sealed as: its events (first id, count) and its place (the
/// partition's `number`-th batch, from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchItem {
    pub first_id: u64,
    pub count: usize,
    pub partition: u32,
    pub number: u64,
}

impl std::fmt::Display for BatchItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "e{}.{}@{}.{}",
            self.first_id, self.count, self.partition, self.number
        )
    }
}

impl std::str::FromStr for BatchItem {
    type Err = String;

    fn from_str(text: &str) -> Result<BatchItem, String> {
        let bad =
            || format!("{text:.80} is not a batch item (e<first id>.<count>@<partition>.<n>)");
        let (events, place) = text.split_once('@').ok_or_else(bad)?;
        let (first_id, count) = events
            .strip_prefix('e')
            .and_then(|e| e.split_once('.'))
            .ok_or_else(bad)?;
        let (partition, number) = place.split_once('.').ok_or_else(bad)?;
        Ok(BatchItem {
            first_id: first_id.parse().map_err(|_| bad())?,
            count: count.parse().map_err(|_| bad())?,
            partition: partition.parse().map_err(|_| bad())?,
            number: number.parse().map_err(|_| bad())?,
        })
    }
}

/// How a run's payloads travel.
#[derive(Clone, Debug, Default)]
pub enum Payloads {
    /// In the clear (a run replayed without a key).
    #[default]
    Plain,
    /// Sealed under the run's dataset key.
    Sealed(Arc<RunKey>),
}

impl Payloads {
    pub fn sealed(key: RunKey) -> Payloads {
        Payloads::Sealed(Arc::new(key))
    }

    /// The key id a run with these payloads records in its stream description.
    pub fn key_id(&self) -> Option<String> {
        match self {
            Payloads::Plain => None,
            Payloads::Sealed(key) => Some(key.id.to_string()),
        }
    }

    /// `plaintext` as it goes on the queue for `item`.
    pub fn seal(&self, item: &str, purpose: Purpose, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        match self {
            Payloads::Plain => Ok(plaintext.to_vec()),
            Payloads::Sealed(key) => {
                let sealed = Sealed::seal(&key.key, &key.id, item, purpose, plaintext)?;
                Ok(serde_json::to_vec(&sealed)?)
            }
        }
    }

    /// The plaintext of a payload from the queue and the item it was sealed for (None in the
    /// clear); or why it is not authentic.
    pub fn open(
        &self,
        purpose: Purpose,
        payload: &[u8],
    ) -> Result<(Option<String>, Vec<u8>), String> {
        match self {
            Payloads::Plain => Ok((None, payload.to_vec())),
            Payloads::Sealed(key) => {
                let sealed: Sealed = serde_json::from_slice(payload).map_err(|_| {
                    "not sealed: the run is sealed, every payload must be a sealed envelope"
                        .to_owned()
                })?;
                if sealed.key_id != key.id.as_str() {
                    return Err(format!(
                        "sealed under key {:.64}, not the run's key {}",
                        sealed.key_id, key.id
                    ));
                }
                let plaintext = sealed
                    .open(&key.key, purpose)
                    .map_err(|e| format!("not authentic: {e}"))?;
                Ok((Some(sealed.item), plaintext))
            }
        }
    }

    /// [`Payloads::open`] of a payload that must have been sealed for `item`.
    pub fn open_item(
        &self,
        item: &str,
        purpose: Purpose,
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        let (sealed_for, plaintext) = self.open(purpose, payload)?;
        match sealed_for {
            Some(other) if other != item => Err(format!(
                "sealed for {other:.80}, found in the place of {item}: moved or replayed"
            )),
            _ => Ok(plaintext),
        }
    }
}

/// `POST /kbs/v0/dataset-key` as an administrator (`options.token`).
pub async fn create_key(options: &ApiOptions, name: &str) -> anyhow::Result<DatasetKey> {
    let client = crate::api::client(options)?.with_bearer(options.token.clone());
    let body = serde_json::to_value(DatasetKeyRequest {
        name: name.to_owned(),
    })?;
    let answer = client
        .call("POST", DATASET_KEY_PATH, Some(&body))
        .await
        .context("the key broker did not make a dataset key")?;
    serde_json::from_value(answer).context("unreadable answer of the key broker")
}

/// `DELETE /kbs/v0/dataset-key/{id}` as an administrator: the run becomes unreadable.
pub async fn delete_key(options: &ApiOptions, id: &KeyId) -> anyhow::Result<()> {
    let client = crate::api::client(options)?.with_bearer(options.token.clone());
    client
        .call("DELETE", &format!("{DATASET_KEY_PATH}/{id}"), None)
        .await
        .with_context(|| format!("the key broker did not delete the dataset key {id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Payloads {
        Payloads::sealed(RunKey::new(
            KeyId::generate().unwrap(),
            DataKey::generate().unwrap(),
        ))
    }

    #[test]
    fn plain_payloads_pass_and_sealed_ones_are_bound_to_key_item_and_purpose() {
        let plain = Payloads::Plain;
        assert_eq!(plain.seal("e1.1", Purpose::Item, b"x").unwrap(), b"x");
        assert_eq!(
            plain.open(Purpose::Item, b"x").unwrap(),
            (None, b"x".to_vec())
        );

        let run = sealed();
        let payload = run.seal("e1.2", Purpose::Item, b"1,2,3").unwrap();
        assert!(
            !payload.windows(5).any(|w| w == b"1,2,3"),
            "no plaintext on the queue"
        );
        assert_eq!(
            run.open(Purpose::Item, &payload).unwrap(),
            (Some("e1.2".to_owned()), b"1,2,3".to_vec())
        );
        assert_eq!(
            run.open_item("e1.2", Purpose::Item, &payload).unwrap(),
            b"1,2,3"
        );
        let moved = run.open_item("e5.2", Purpose::Item, &payload).unwrap_err();
        assert!(moved.contains("moved or replayed"), "{moved}");
        let purpose = run.open(Purpose::Result, &payload).unwrap_err();
        assert!(purpose.starts_with("not authentic"), "{purpose}");
        let other = sealed().open(Purpose::Item, &payload).unwrap_err();
        assert!(other.contains("not the run's key"), "{other}");
        let clear = run.open(Purpose::Item, b"1,2,3").unwrap_err();
        assert!(clear.starts_with("not sealed"), "{clear}");
        // A forged envelope under the run's key id but another key.
        let Payloads::Sealed(key) = &run else {
            unreachable!()
        };
        let forged = Sealed::seal(
            &DataKey::generate().unwrap(),
            &key.id,
            "e1.2",
            Purpose::Item,
            b"9,9,9",
        )
        .unwrap();
        let forged = run
            .open(Purpose::Item, &serde_json::to_vec(&forged).unwrap())
            .unwrap_err();
        assert!(forged.starts_with("not authentic"), "{forged}");
    }

    #[test]
    fn batch_items_round_trip_and_nothing_else_parses() {
        let item = BatchItem {
            first_id: 17,
            count: 3,
            partition: 2,
            number: 40,
        };
        assert_eq!(item.to_string(), "e17.3@2.40");
        assert_eq!("e17.3@2.40".parse(), Ok(item));
        for bad in [
            "e17.3",
            "17.3@2.40",
            "e17.3@2",
            "e17.x@2.40",
            "e17.3@2.40.1",
            "",
            "@.",
        ] {
            assert!(bad.parse::<BatchItem>().is_err(), "{bad}");
        }
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_say_why() {
        let dir = std::env::temp_dir().join(format!("wattlet-runkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = DatasetKey {
            key_id: KeyId::generate().unwrap().to_string(),
            name: "run".into(),
            key: base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            created_at: 1,
        };
        let file = dir.join("run.key");
        std::fs::write(&file, serde_json::to_string(&made).unwrap()).unwrap();
        let key = RunKey::read(&file).unwrap();
        assert_eq!(key.id.as_str(), made.key_id);
        std::fs::write(&file, "{}").unwrap();
        let e = format!("{:#}", RunKey::read(&file).unwrap_err());
        assert!(e.contains("not a dataset key file"), "{e}");
        let short = DatasetKey {
            key: base64::engine::general_purpose::STANDARD.encode([7u8; 5]),
            ..made
        };
        std::fs::write(&file, serde_json::to_string(&short).unwrap()).unwrap();
        assert!(RunKey::read(&file).is_err());
        let e = format!("{:#}", RunKey::read(&dir.join("missing")).unwrap_err());
        assert!(e.contains("cannot read the key file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
