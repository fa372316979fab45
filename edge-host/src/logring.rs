//! The last log lines, kept in memory for diagnostics bundles.
//!
//! A `tracing` layer formats each event at `INFO` or above (whatever `WATTLET_LOG` lets through
//! to standard error) as one line and keeps the newest [`LINES`] in a ring. The daemon logs no
//! readings (meter ids, times and counts only), so neither does the ring.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Lines kept.
pub const LINES: usize = 500;
/// A longer line is cut.
const LINE_BYTES: usize = 1024;

static RING: OnceLock<Mutex<VecDeque<String>>> = OnceLock::new();

fn ring() -> &'static Mutex<VecDeque<String>> {
    RING.get_or_init(|| Mutex::new(VecDeque::with_capacity(LINES)))
}

/// The kept lines, oldest first.
pub fn recent() -> Vec<String> {
    let ring = ring().lock().unwrap_or_else(|p| p.into_inner());
    ring.iter().cloned().collect()
}

fn push(line: String) {
    let mut ring = ring().lock().unwrap_or_else(|p| p.into_inner());
    if ring.len() == LINES {
        ring.pop_front();
    }
    ring.push_back(line);
}

/// The layer that fills the ring.
pub struct RingLayer;

impl<S: Subscriber> tracing_subscriber::Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut line = format!(
            "{} {level} {}:",
            crate::clock::show(std::time::SystemTime::now()),
            event.metadata().target()
        );
        event.record(&mut Fields(&mut line));
        if line.len() > LINE_BYTES {
            let mut end = LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        push(line);
    }
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = if field.name() == "message" {
            write!(self.0, " {value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = if field.name() == "message" {
            write!(self.0, " {value}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn the_ring_keeps_the_newest_info_lines() {
        let subscriber = tracing_subscriber::registry().with(RingLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("not kept");
            for i in 0..LINES + 10 {
                tracing::info!(meter = "m", i, "line");
            }
            tracing::warn!(detail = %"x".repeat(5000), "long");
        });
        let lines = recent();
        assert_eq!(lines.len(), LINES);
        assert!(lines.iter().all(|l| !l.contains("not kept")));
        assert!(lines[0].contains("line meter=\"m\" i=11"), "{}", lines[0]);
        let last = lines.last().unwrap();
        assert!(last.contains("WARN") && last.contains("long"), "{last}");
        assert!(last.len() <= LINE_BYTES);
    }
}
