//! The streaming decoder: finds telegrams of any supported protocol in a byte stream.

use crate::sml::{FrameScanner, FrameStep, START, parse_frame};
use crate::text::{Line, TextScanner, TextStep, data_line, is_start};
use crate::{Protocol, SkipReason, Skipped, Telegram};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Only this protocol; `None` finds SML frames and text telegrams alike.
    pub protocol: Option<Protocol>,
    /// Drop telegrams whose inner checksum (SML per-message CRC, IEC 62056-21 BCC) fails.
    pub strict_inner_checksums: bool,
    /// Read DZG's Integer16 1-0:16.7.0 as unsigned (DZG DVS74 firmware bug).
    pub dzg_unsigned_power: bool,
    /// Longest telegram accepted, in bytes; bounds memory on a stream of noise.
    pub max_telegram_len: usize,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            protocol: None,
            strict_inner_checksums: false,
            dzg_unsigned_power: false,
            max_telegram_len: 64 * 1024,
        }
    }
}

impl DecoderOptions {
    fn wants(&self, protocol: Protocol) -> bool {
        self.protocol.is_none_or(|p| p == protocol)
    }

    fn wants_text(&self) -> bool {
        self.wants(Protocol::Iec62056_21) || self.wants(Protocol::Dsmr)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Telegram(Telegram),
    Skipped(Skipped),
}

enum Hunt {
    /// A telegram starts at this buffer index.
    Start(usize, Start),
    /// No start yet; bytes from this index on must be kept (a start may be cut off).
    NeedMore(usize),
}

enum Start {
    Sml,
    /// `/` and an identification line.
    Text,
    /// A readout's data lines without identification.
    Headerless,
}

#[derive(Debug)]
enum State {
    Hunting,
    Sml(FrameScanner),
    Text(TextScanner),
}

/// Feed it chunks as they arrive; it yields telegrams and reports skipped bytes with reasons.
#[derive(Debug)]
pub struct Decoder {
    options: DecoderOptions,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    state: State,
    /// Start of the run of garbage bytes not yet reported (stream offset).
    garbage_from: Option<u64>,
    /// The last SML frame's payload buffer, reused so that each frame does not grow its own.
    spare_payload: Vec<u8>,
    /// What came before `buf[0]`, so that a start is judged alike however the stream is chunked.
    before: Before,
}

/// The stream just before `buf[0]`.
#[derive(Debug, Clone, Copy)]
struct Before {
    /// The previous byte; `None` at the start of the stream.
    byte: Option<u8>,
    /// The last byte that is not a line end, i.e. how the previous non-empty line ended.
    line_end_byte: Option<u8>,
    /// `buf[0]` directly follows a telegram or a reported skip (or the stream start).
    event_end: bool,
}

impl Decoder {
    pub fn new(options: DecoderOptions) -> Self {
        Decoder {
            options,
            buf: Vec::new(),
            base: 0,
            state: State::Hunting,
            garbage_from: None,
            spare_payload: Vec::new(),
            before: Before {
                byte: None,
                line_end_byte: None,
                event_end: true,
            },
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        self.push_into(chunk, &mut events);
        events
    }

    /// Like [`Decoder::push`], appending to `events` (saves an allocation per chunk).
    pub fn push_into(&mut self, chunk: &[u8], events: &mut Vec<Event>) {
        self.buf.extend_from_slice(chunk);
        self.run(false, events);
    }

    /// End of stream: reports what is still buffered.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.run(true, &mut events);
        let len = self.buf.len();
        if let State::Sml(_) = self.state {
            let detail = "stream ended inside an SML frame".to_owned();
            self.report(0, len, SkipReason::Truncated, detail, &mut events);
        } else {
            self.mark_garbage(0, len);
        }
        self.flush_garbage(self.base + len as u64, &mut events);
        self.remember(len, true);
        self.state = State::Hunting;
        self.base += len as u64;
        self.buf.clear();
        events
    }

    /// Decodes as much of the buffer as possible, then drops the consumed bytes.
    fn run(&mut self, eof: bool, events: &mut Vec<Event>) {
        let mut consumed = 0;
        // Where the last event ended, if that is in the buffer (a start may follow it directly).
        let mut event_end = self.before.event_end.then_some(0);
        loop {
            let rest = &self.buf[consumed..];
            let step = match &mut self.state {
                State::Hunting => match self.hunt(consumed, eof, event_end == Some(consumed)) {
                    Hunt::Start(start, kind) => {
                        self.mark_garbage(consumed, start);
                        self.flush_garbage(self.base + start as u64, events);
                        consumed = start;
                        self.state = match kind {
                            Start::Text => State::Text(TextScanner::identified(
                                self.begins_line(start, event_end == Some(start)),
                            )),
                            Start::Headerless => State::Text(TextScanner::headerless()),
                            Start::Sml => State::Sml(FrameScanner::new(std::mem::take(
                                &mut self.spare_payload,
                            ))),
                        };
                        continue;
                    }
                    Hunt::NeedMore(keep) => {
                        self.mark_garbage(consumed, keep);
                        consumed = keep;
                        break;
                    }
                },
                State::Sml(scanner) => match scanner.advance(rest, self.options.max_telegram_len) {
                    FrameStep::NeedMore => break,
                    FrameStep::Complete { len, notes } => {
                        let offset = self.base + consumed as u64;
                        match parse_frame(
                            &scanner.payload,
                            &self.options,
                            offset,
                            len as u64,
                            notes,
                        ) {
                            Ok(telegram) => events.push(Event::Telegram(telegram)),
                            Err((reason, detail)) => events.push(Event::Skipped(Skipped {
                                offset,
                                length: len as u64,
                                reason,
                                detail,
                            })),
                        }
                        len
                    }
                    FrameStep::Broken {
                        len,
                        reason,
                        detail,
                    } => {
                        self.report(consumed, len, reason, detail, events);
                        len
                    }
                },
                State::Text(scanner) => {
                    let offset = self.base + consumed as u64;
                    match scanner.advance(
                        rest,
                        eof,
                        self.options.max_telegram_len,
                        &self.options,
                        offset,
                    ) {
                        TextStep::NeedMore => break,
                        TextStep::Telegram { len, telegram }
                            if self.options.wants(telegram.protocol) =>
                        {
                            events.push(Event::Telegram(telegram));
                            len
                        }
                        TextStep::Telegram { len, telegram } => {
                            let detail = format!(
                                "{:?} telegram; the decoder wants another protocol",
                                telegram.protocol
                            );
                            self.report(consumed, len, SkipReason::Garbage, detail, events);
                            len
                        }
                        TextStep::Skip {
                            len,
                            reason: SkipReason::Garbage,
                            ..
                        } => {
                            self.mark_garbage(consumed, consumed + len);
                            len
                        }
                        TextStep::Skip {
                            len,
                            reason,
                            detail,
                        } => {
                            self.report(consumed, len, reason, detail, events);
                            len
                        }
                    }
                }
            };
            consumed += step.max(1);
            // Garbage merges into the run before the next start; anything else is an event.
            if self.garbage_from.is_none() {
                event_end = Some(consumed);
            }
            if let State::Sml(scanner) = std::mem::replace(&mut self.state, State::Hunting) {
                self.spare_payload = scanner.payload;
            }
        }
        self.remember(consumed, event_end == Some(consumed));
        self.buf.drain(..consumed);
        self.base += consumed as u64;
    }

    /// Keeps what the next chunk's starts are judged by before `..consumed` is dropped.
    fn remember(&mut self, consumed: usize, event_end: bool) {
        let dropped = &self.buf[..consumed];
        if let Some(&last) = dropped.last() {
            self.before.byte = Some(last);
        }
        if let Some(&b) = dropped.iter().rev().find(|&&b| b != b'\r' && b != b'\n') {
            self.before.line_end_byte = Some(b);
        }
        self.before.event_end = event_end;
    }

    /// The byte before buffer index `at`.
    fn byte_before(&self, at: usize) -> Option<u8> {
        match at {
            0 => self.before.byte,
            _ => Some(self.buf[at - 1]),
        }
    }

    /// Does a `/` at `at` begin a line: after a line end, control bytes (a probe's wake-up bytes),
    /// an event, or at the stream start?
    fn begins_line(&self, at: usize, after_event: bool) -> bool {
        after_event
            || match self.byte_before(at) {
                None => true,
                Some(b) => !(b' '..=b'~').contains(&b),
            }
    }

    /// Does a line for a readout without identification begin at `at`: after LF, an event, or at
    /// the stream start? (The hunt looks for LF; any other rule would depend on where a chunk
    /// happened to end.)
    fn after_line_feed(&self, at: usize, after_event: bool) -> bool {
        after_event || matches!(self.byte_before(at), None | Some(b'\n'))
    }

    /// Does a readout without identification start at the line at `at`? Its first line must be
    /// a data line, and the line before must not end like one: data lines after a cut-off data
    /// line are the rest of a telegram whose start was missed, not a readout of their own.
    fn headerless_start(&self, at: usize, eof: bool) -> Option<bool> {
        let line_end_byte = self.buf[..at]
            .iter()
            .rev()
            .find(|&&b| b != b'\r' && b != b'\n')
            .copied()
            .or(self.before.line_end_byte);
        if line_end_byte == Some(b')') {
            return Some(false);
        }
        match data_line(&self.buf[at..], true, self.options.max_telegram_len) {
            Line::Data(_) => Some(true),
            Line::Prefix if !eof => None,
            Line::Prefix | Line::Invalid => Some(false),
        }
    }

    /// Finds the next telegram start at or after `from` (`after_event`: an event ends at `from`).
    /// Bytes before it are garbage; a possible start cut off by the end of the buffer is kept for
    /// the next chunk.
    fn hunt(&self, from: usize, eof: bool, after_event: bool) -> Hunt {
        let want_sml = self.options.wants(Protocol::Sml);
        let want_text = self.options.wants_text();
        // A line start to try as a readout without identification.
        let mut line = (want_text && self.after_line_feed(from, after_event)).then_some(from);
        let mut i = from;
        loop {
            if let Some(at) = line.take() {
                match self.headerless_start(at, eof) {
                    Some(true) => return Hunt::Start(at, Start::Headerless),
                    Some(false) => {}
                    None => return Hunt::NeedMore(at),
                }
            }
            let rest = &self.buf[i.min(self.buf.len())..];
            let found = match (want_sml, want_text) {
                (true, true) => memchr::memchr3(0x1b, b'/', b'\n', rest),
                (true, false) => memchr::memchr(0x1b, rest),
                (false, true) => memchr::memchr2(b'/', b'\n', rest),
                (false, false) => None,
            };
            let Some(at) = found.map(|k| i + k) else {
                break;
            };
            let candidate = &self.buf[at..];
            let (verdict, kind) = match candidate[0] {
                b'\n' => {
                    line = Some(at + 1);
                    i = at + 1;
                    continue;
                }
                b'/' => (is_start(candidate), Start::Text),
                _ if candidate.len() >= START.len() => {
                    (Some(candidate.starts_with(&START)), Start::Sml)
                }
                _ if START.starts_with(candidate) => (None, Start::Sml),
                _ => (Some(false), Start::Sml),
            };
            match verdict {
                Some(true) => return Hunt::Start(at, kind),
                Some(false) => i = at + 1,
                None if eof => i = at + 1,
                None => return Hunt::NeedMore(at),
            }
        }
        Hunt::NeedMore(self.buf.len())
    }

    fn mark_garbage(&mut self, from: usize, to: usize) {
        if to > from {
            self.garbage_from.get_or_insert(self.base + from as u64);
        }
    }

    fn report(
        &mut self,
        at: usize,
        len: usize,
        reason: SkipReason,
        detail: String,
        events: &mut Vec<Event>,
    ) {
        self.flush_garbage(self.base + at as u64, events);
        events.push(Event::Skipped(Skipped {
            offset: self.base + at as u64,
            length: len as u64,
            reason,
            detail,
        }));
    }

    /// Reports the pending run of garbage that ends at stream offset `end`.
    fn flush_garbage(&mut self, end: u64, events: &mut Vec<Event>) {
        if let Some(from) = self.garbage_from.take()
            && end > from
        {
            events.push(Event::Skipped(Skipped {
                offset: from,
                length: end - from,
                reason: SkipReason::Garbage,
                detail: "no telegram start".into(),
            }));
        }
    }
}
