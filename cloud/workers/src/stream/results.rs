//! Reading a run back: every task's rows from the output stream, checked (indexes 0..n, each
//! once), and the tasks' status from their checkpoints.

use std::collections::BTreeMap;

use anyhow::Context as _;
use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt as _;

use wattlet_sealing::Purpose;

use super::checkpoint::{Checkpoints, Manifest};
use super::sealed::Payloads;
use super::{INDEX_HEADER, OUT_STREAM, OUT_SUBJECT, TaskKind, events_meta, tasks};

/// Every output row: task → (index, row) in stream order (duplicates included). A sealed run's
/// rows are opened with `payloads` (the run's key); a message that does not open, or that was
/// sealed for another place of the run, is an error.
pub async fn read_outputs(
    js: &Context,
    payloads: &Payloads,
) -> anyhow::Result<BTreeMap<String, Vec<(u64, String)>>> {
    let mut stream = js.get_stream(OUT_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let mut all: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    if last == 0 {
        return Ok(all);
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("{OUT_SUBJECT}.>"),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        let seq = message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        let task = message.subject[OUT_SUBJECT.len() + 1..].to_owned();
        let first: u64 = message
            .headers
            .as_ref()
            .and_then(|h| h.get(INDEX_HEADER))
            .and_then(|v| v.as_str().parse().ok())
            .with_context(|| format!("output message {seq} has no {INDEX_HEADER}"))?;
        let item = format!("{task}-{first}");
        let plaintext = payloads
            .open_item(&item, Purpose::Result, &message.payload)
            .map_err(|e| anyhow::anyhow!("output message {seq} ({item}): {e}"))?;
        let rows = all.entry(task).or_default();
        let text = String::from_utf8_lossy(&plaintext);
        for (i, row) in text.split('\n').enumerate() {
            rows.push((first + i as u64, row.to_owned()));
        }
        if seq >= last {
            break;
        }
    }
    Ok(all)
}

/// What is wrong with one task's rows: each index in 0..n exactly once.
pub fn check(task: &str, rows: &[(u64, String)]) -> Vec<String> {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (index, _) in rows {
        *seen.entry(*index).or_default() += 1;
    }
    let mut problems = Vec::new();
    for (index, count) in &seen {
        if *count > 1 {
            problems.push(format!("{task}: row {index} published {count} times"));
        }
    }
    let n = seen.len() as u64;
    if let Some((&max, _)) = seen.last_key_value()
        && max + 1 != n
    {
        let missing = (0..=max).filter(|i| !seen.contains_key(i)).count();
        problems.push(format!("{task}: {missing} rows missing below index {max}"));
    }
    problems
}

/// Rows sorted by index, one per index (the first seen).
pub fn sorted(rows: &[(u64, String)]) -> Vec<(u64, String)> {
    let mut by_index: BTreeMap<u64, String> = BTreeMap::new();
    for (index, row) in rows {
        by_index.entry(*index).or_insert_with(|| row.clone());
    }
    by_index.into_iter().collect()
}

/// Each task of the run and its last checkpoint's manifest (None: never checkpointed); empty
/// while there is no input stream.
pub async fn status(js: &Context) -> anyhow::Result<Vec<(TaskKind, Option<Manifest>)>> {
    let Some(meta) = events_meta(js).await? else {
        return Ok(Vec::new());
    };
    super::ensure_streams(js).await?;
    let checkpoints = Checkpoints::open(js).await?;
    let mut all = Vec::new();
    for kind in tasks(meta.partitions) {
        let manifest = checkpoints.manifest(&kind.name()).await?;
        all.push((kind, manifest));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_repeats_are_found() {
        let rows = |ix: &[u64]| -> Vec<(u64, String)> {
            ix.iter().map(|&i| (i, format!("r{i}"))).collect()
        };
        assert!(check("t", &rows(&[0, 1, 2])).is_empty());
        assert!(check("t", &rows(&[2, 0, 1])).is_empty());
        assert_eq!(check("t", &rows(&[0, 1, 1, 2])).len(), 1);
        assert_eq!(
            check("t", &rows(&[0, 2, 3])),
            vec!["t: 1 rows missing below index 3"]
        );
        assert_eq!(sorted(&rows(&[2, 0, 1, 0])).len(), 3);
    }
}
