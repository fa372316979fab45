//! SML 1.03/1.04: the transport layer (framing, escapes, padding, CRC) and the message layer.

mod message;
mod tlv;
mod transport;

pub(crate) use message::parse_frame;
pub(crate) use transport::{FrameScanner, FrameStep, START};
