//! The parser's health check before a commit: golden telegrams (real captures, embedded) read
//! through the new parser must give exactly the readings the running parser gives.
//!
//! Neither component world (`wattlet:meter/meter-parser`, `wattlet:edge/upload`) has a health
//! export today; the checks here and the upload's first acknowledged batch stand in for one.

use wattlet_meter_parser::{DecoderOptions, Event, Reading};
use wattlet_runtime::meter::MeterDecoder;

/// Real captures: SML, DSMR 5 and IEC 62056-21 (see `golden/SOURCES.md`).
pub const GOLDEN: [(&str, &[u8]); 3] = [
    (
        "sml_iskra_mt631",
        include_bytes!("golden/sml_iskra_mt631.bin"),
    ),
    ("dsmr5_isk", include_bytes!("golden/dsmr5_isk.txt")),
    (
        "iec_esy5q3da1004",
        include_bytes!("golden/iec_esy5q3da1004.txt"),
    ),
];

/// The readings of every telegram `decoder` finds in `capture`.
pub fn readings(
    decoder: &mut dyn MeterDecoder,
    capture: &[u8],
) -> anyhow::Result<Vec<Vec<Reading>>> {
    let mut events = decoder.push(capture)?;
    events.extend(decoder.finish()?);
    Ok(events
        .into_iter()
        .filter_map(|event| match event {
            Event::Telegram(telegram) => Some(telegram.readings),
            Event::Skipped(_) => None,
        })
        .collect())
}

/// Compares the candidate with the running parser on every golden capture; `Err` says why the
/// candidate is not healthy.
pub fn compare_parsers(
    make_old: &mut dyn FnMut() -> anyhow::Result<Box<dyn MeterDecoder>>,
    make_new: &mut dyn FnMut() -> anyhow::Result<Box<dyn MeterDecoder>>,
) -> Result<(), String> {
    for (name, capture) in GOLDEN {
        let expected = make_old()
            .and_then(|mut old| readings(old.as_mut(), capture))
            .map_err(|e| format!("the running parser cannot read {name}: {e:#}"))?;
        let actual = make_new()
            .and_then(|mut new| readings(new.as_mut(), capture))
            .map_err(|e| format!("the new parser fails on {name}: {e:#}"))?;
        if actual.iter().all(Vec::is_empty) {
            return Err(format!("the new parser reads nothing from {name}"));
        }
        if actual != expected {
            let telegrams = |r: &Vec<Vec<Reading>>| r.iter().map(Vec::len).collect::<Vec<_>>();
            return Err(format!(
                "the new parser reads {name} differently: readings per telegram {:?}, the running one {:?}",
                telegrams(&actual),
                telegrams(&expected)
            ));
        }
    }
    Ok(())
}

/// The decoder options of the health check: every protocol, as a meter of unknown kind.
pub fn options() -> DecoderOptions {
    DecoderOptions::default()
}
