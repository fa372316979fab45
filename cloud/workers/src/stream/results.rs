//! Reading a run back: a task's rows from the output stream, in index order, each checked to
//! come once (indexes 0..n), written out as they are read (a month of the challenge is hundreds
//! of millions of rows: nothing is held), and the tasks' status from their checkpoints.

use std::io::Write;

use anyhow::Context as _;
use async_nats::jetstream::Context;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures::StreamExt as _;
use wattlet_sealing::Purpose;

use super::checkpoint::{Checkpoints, Manifest};
use super::sealed::Payloads;
use super::{INDEX_HEADER, OUT_STREAM, OUT_SUBJECT, TaskKind, events_meta, tasks};

/// One task's rows as they are read: a task publishes its rows in index order (a restart
/// skips those already there), so a row whose index is below the next one is a duplicate and
/// one above it means rows are missing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TaskRows {
    /// Rows written: the next index expected.
    pub next: u64,
    /// Rows seen again.
    pub duplicates: u64,
    /// Rows missing, at the index where they were found missing.
    pub missing: Vec<(u64, u64)>,
    /// Messages skipped: not sealed for their place in a sealed run (forged, moved), or
    /// without an index.
    pub forged: u64,
}

impl TaskRows {
    /// Takes the rows of one message (one a line) whose first index is `first`, writing each
    /// new one to `out` as `<task>,<index>,<row>`.
    pub fn take(
        &mut self,
        task: &str,
        first: u64,
        text: &str,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        for (i, row) in text.split('\n').enumerate() {
            let index = first + i as u64;
            if index < self.next {
                self.duplicates += 1;
                continue;
            }
            if index > self.next {
                self.missing.push((self.next, index - self.next));
            }
            writeln!(out, "{task},{index},{row}")?;
            self.next = index + 1;
        }
        Ok(())
    }

    /// What is wrong with the task's rows, one line each.
    pub fn problems(&self, task: &str) -> Vec<String> {
        let mut problems: Vec<String> = self
            .missing
            .iter()
            .map(|(at, n)| format!("{task}: {n} rows missing from index {at}"))
            .collect();
        if self.duplicates > 0 {
            problems.push(format!(
                "{task}: {} rows published more than once",
                self.duplicates
            ));
        }
        problems
    }
}

/// Writes `task`'s rows from the output stream to `out` in index order. A sealed run's rows are
/// opened with `payloads` (the run's key); a message that does not open for its place (forged
/// on NATS, or moved) is skipped and counted in [`TaskRows::forged`].
pub async fn write_task_rows(
    js: &Context,
    payloads: &Payloads,
    task: &str,
    out: &mut dyn Write,
) -> anyhow::Result<TaskRows> {
    let mut rows = TaskRows::default();
    scan(js, task, |seq, first, payload| {
        match payloads.open_item(&format!("{task}-{first}"), Purpose::Result, payload) {
            Ok(plaintext) => rows.take(task, first, &String::from_utf8_lossy(&plaintext), out)?,
            Err(e) => {
                tracing::warn!(task, seq, "output message skipped: {e}");
                rows.forged += 1;
            }
        }
        Ok(())
    })
    .await?;
    Ok(rows)
}

/// The highest row index of `task` among the output messages that open for their place.
pub async fn last_authentic_index(
    js: &Context,
    payloads: &Payloads,
    task: &str,
) -> anyhow::Result<Option<u64>> {
    let mut last = None;
    scan(js, task, |_, first, payload| {
        if let Ok(rows) = payloads.open_item(&format!("{task}-{first}"), Purpose::Result, payload) {
            let end = first.saturating_add(rows.split(|&b| b == b'\n').count() as u64 - 1);
            last = Some(last.map_or(end, |l: u64| l.max(end)));
        }
        Ok(())
    })
    .await?;
    Ok(last)
}

/// Calls `f(stream sequence, first row index, payload)` for each of `task`'s output messages,
/// in stream order, up to the last one there now.
async fn scan(
    js: &Context,
    task: &str,
    mut f: impl FnMut(u64, u64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let subject = format!("{OUT_SUBJECT}.{task}");
    let stream = js.get_stream(OUT_STREAM).await?;
    let last = match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => m.sequence,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(()),
        Err(e) => return Err(e).context("cannot read the output stream"),
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject,
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
        match message
            .headers
            .as_ref()
            .and_then(|h| h.get(INDEX_HEADER))
            .and_then(|v| v.as_str().parse().ok())
        {
            Some(first) => f(seq, first, &message.payload)?,
            None => tracing::warn!(task, seq, "output message without {INDEX_HEADER} skipped"),
        }
        if seq >= last {
            break;
        }
    }
    Ok(())
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
    fn rows_are_written_once_in_order_and_gaps_and_repeats_are_found() {
        let mut out = Vec::new();
        let mut rows = TaskRows::default();
        rows.take("t", 0, "a\nb", &mut out).unwrap();
        rows.take("t", 1, "b\nc", &mut out).unwrap(); // a restart published row 1 again
        rows.take("t", 5, "f", &mut out).unwrap(); // rows 3..5 never came
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "t,0,a\nt,1,b\nt,2,c\nt,5,f\n"
        );
        assert_eq!(rows.next, 6);
        assert_eq!(
            rows.problems("t"),
            vec![
                "t: 2 rows missing from index 3",
                "t: 1 rows published more than once"
            ]
        );
        let mut clean = TaskRows::default();
        clean.take("t", 0, "a", &mut Vec::new()).unwrap();
        assert!(clean.problems("t").is_empty());
    }
}
