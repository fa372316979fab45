//! The checks every fuzz target runs: one protocol, one input, fed whole and in chunks.
//!
//! Input layout: byte 0 selects how the rest is fed and decoded, bytes 1.. are the stream.
//! - bits 0..=5: chunk size 1..=64 for the chunked run;
//! - bit 6: `strict_inner_checksums` and `dzg_unsigned_power` (the option-dependent paths);
//! - bit 7: `max_telegram_len` of 512 instead of the default, so oversized telegrams are reached
//!   with inputs of libFuzzer's usual size.

use wattlet_meter_parser::{Decoder, DecoderOptions, Event, Protocol};

pub fn check(protocol: Protocol, data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector & 0x3f) + 1;
    let flags = selector & 0x40 != 0;
    let options = DecoderOptions {
        protocol: Some(protocol),
        strict_inner_checksums: flags,
        dzg_unsigned_power: flags,
        max_telegram_len: if selector & 0x80 != 0 {
            512
        } else {
            DecoderOptions::default().max_telegram_len
        },
    };

    let whole = decode(options.clone(), [stream].into_iter());
    check_events(protocol, stream.len(), &whole);
    let chunked = decode(options, stream.chunks(chunk));
    assert!(
        chunked == whole,
        "chunks of {chunk} give other events than one push:\n{chunked:#?}\nvs\n{whole:#?}"
    );
}

fn decode<'a>(options: DecoderOptions, chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Event> {
    let mut decoder = Decoder::new(options);
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.push_into(chunk, &mut events);
    }
    events.extend(decoder.finish());
    events
}

/// Events are ordered, non-empty and non-overlapping, lie inside the stream and cover all of it;
/// telegrams are of the requested protocol.
fn check_events(protocol: Protocol, len: usize, events: &[Event]) {
    let mut next = 0u64;
    for event in events {
        let (offset, length) = match event {
            Event::Telegram(t) => {
                assert_eq!(t.protocol, protocol, "telegram of another protocol: {t:#?}");
                (t.offset, t.length)
            }
            Event::Skipped(s) => (s.offset, s.length),
        };
        assert!(length > 0, "empty event {event:#?}");
        assert!(
            offset >= next,
            "event at {offset} overlaps bytes up to {next}: {events:#?}"
        );
        assert_eq!(
            offset, next,
            "bytes {next}..{offset} are in no event: {events:#?}"
        );
        next = offset.checked_add(length).expect("event end overflows u64");
        assert!(
            next <= len as u64,
            "event ends at {next}, stream has {len} bytes"
        );
    }
    assert_eq!(
        next, len as u64,
        "bytes {next}..{len} are in no event: {events:#?}"
    );
}
