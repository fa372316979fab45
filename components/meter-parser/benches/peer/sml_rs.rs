//! sml-rs, the peer the parser is measured against, used as its README shows: streaming
//! transport decode, complete parse of each frame, then the GetList values read as numbers.
//! Included by the parser's own bench and by the component bench (crates/runtime), so both
//! measure the same peer code.

use std::hint::black_box;

use sml_rs::parser::common::Value as SmlValue;
use sml_rs::parser::complete::{MessageBody, parse};
use sml_rs::transport::decode_streaming;
use sml_rs::util::ArrayBuf;

/// sml-rs over one capture, used as its README shows: streaming transport decode, complete parse
/// of each frame, then the GetList values read as numbers. Returns frames parsed.
pub fn sml_rs_count(bytes: &[u8]) -> usize {
    let mut frames = decode_streaming::<ArrayBuf<4096>>(black_box(bytes));
    let mut parsed = 0;
    while let Some(frame) = frames.next() {
        let Ok(payload) = frame else { continue };
        let Ok(file) = parse(payload) else { continue };
        parsed += 1;
        for message in &file.messages {
            if let MessageBody::GetListResponse(list) = &message.message_body {
                for entry in &list.val_list {
                    black_box((
                        entry.obj_name,
                        number(&entry.value),
                        entry.scaler,
                        entry.unit,
                    ));
                }
            }
        }
    }
    parsed
}

/// The integer in an sml-rs value, as a user reading meter values would extract it.
fn number(value: &SmlValue<'_>) -> Option<i64> {
    Some(match *value {
        SmlValue::I8(v) => v.into(),
        SmlValue::I16(v) => v.into(),
        SmlValue::I32(v) => v.into(),
        SmlValue::I64(v) => v,
        SmlValue::U8(v) => v.into(),
        SmlValue::U16(v) => v.into(),
        SmlValue::U32(v) => v.into(),
        SmlValue::U64(v) => i64::try_from(v).ok()?,
        _ => return None,
    })
}
