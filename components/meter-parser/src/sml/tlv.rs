//! The SML type-length encoding (SML 1.04 §6.3): one or more TL bytes, then the data.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum TlvError {
    #[error("ends inside a value at byte {0}")]
    UnexpectedEnd(usize),
    #[error("unknown type in TL byte {tl:#04x} at byte {at}")]
    UnknownType { tl: u8, at: usize },
    #[error("length {len} in TL at byte {at} is shorter than the TL itself")]
    BadLength { len: usize, at: usize },
    #[error("expected {expected} at byte {at}, found {found}")]
    Unexpected {
        expected: &'static str,
        found: &'static str,
        at: usize,
    },
    #[error("integer of {0} bytes does not fit 64 bits")]
    IntegerTooWide(usize),
    #[error("lists nested deeper than {0}")]
    TooDeep(usize),
}

/// One decoded SML element; lists carry only their element count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Element<'a> {
    /// Octet string of length 0 (TL 0x01): an optional field that is absent.
    Absent,
    EndOfMessage,
    Octets(&'a [u8]),
    Bool(bool),
    /// Signed integer and the number of bytes it was sent in.
    Int(i64, u8),
    Uint(u64, u8),
    List(usize),
}

impl Element<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Element::Absent => "absent value",
            Element::EndOfMessage => "end of message",
            Element::Octets(_) => "octet string",
            Element::Bool(_) => "boolean",
            Element::Int(..) => "integer",
            Element::Uint(..) => "unsigned",
            Element::List(_) => "list",
        }
    }
}

const MAX_DEPTH: usize = 32;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn bytes(&self, from: usize, to: usize) -> &'a [u8] {
        &self.buf[from..to]
    }

    pub(crate) fn next(&mut self) -> Result<Element<'a>, TlvError> {
        let at = self.pos;
        let first = *self.buf.get(at).ok_or(TlvError::UnexpectedEnd(at))?;
        if first == 0x00 {
            self.pos += 1;
            return Ok(Element::EndOfMessage);
        }
        let kind = (first >> 4) & 0x07;
        let mut len = usize::from(first & 0x0f);
        let mut tl_len = 1;
        let mut more = first & 0x80 != 0;
        while more {
            let byte = *self
                .buf
                .get(at + tl_len)
                .ok_or(TlvError::UnexpectedEnd(at))?;
            more = byte & 0x80 != 0;
            // Lengths beyond a frame's size are nonsense; stop before shifting out of range.
            if len > (1 << 20) {
                return Err(TlvError::BadLength { len, at });
            }
            len = (len << 4) | usize::from(byte & 0x0f);
            tl_len += 1;
        }
        if kind == 0x7 {
            self.pos = at + tl_len;
            return Ok(Element::List(len));
        }
        // For everything but lists the length counts the TL bytes too.
        let data_len = len
            .checked_sub(tl_len)
            .ok_or(TlvError::BadLength { len, at })?;
        let start = at + tl_len;
        let data = self
            .buf
            .get(start..start + data_len)
            .ok_or(TlvError::UnexpectedEnd(at))?;
        self.pos = start + data_len;
        Ok(match kind {
            0x0 if data.is_empty() => Element::Absent,
            0x0 => Element::Octets(data),
            0x4 => Element::Bool(data.iter().any(|&b| b != 0)),
            0x5 => Element::Int(signed(data)?, data.len() as u8),
            0x6 => Element::Uint(unsigned(data)?, data.len() as u8),
            _ => return Err(TlvError::UnknownType { tl: first, at }),
        })
    }

    /// Skips one element and, for a list, all it contains.
    pub(crate) fn skip(&mut self) -> Result<(), TlvError> {
        let mut pending = 1usize;
        let mut depth_stack = [0usize; MAX_DEPTH];
        let mut depth = 0;
        loop {
            while pending == 0 {
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
                pending = depth_stack[depth];
            }
            pending -= 1;
            if let Element::List(n) = self.next()? {
                if depth == MAX_DEPTH {
                    return Err(TlvError::TooDeep(MAX_DEPTH));
                }
                depth_stack[depth] = pending;
                depth += 1;
                pending = n;
            }
        }
    }

    fn unexpected(&self, expected: &'static str, found: Element<'_>, at: usize) -> TlvError {
        TlvError::Unexpected {
            expected,
            found: found.kind(),
            at,
        }
    }

    pub(crate) fn list(&mut self) -> Result<usize, TlvError> {
        let at = self.pos;
        match self.next()? {
            Element::List(n) => Ok(n),
            other => Err(self.unexpected("list", other, at)),
        }
    }

    pub(crate) fn octets_opt(&mut self) -> Result<Option<&'a [u8]>, TlvError> {
        let at = self.pos;
        match self.next()? {
            Element::Absent => Ok(None),
            Element::Octets(data) => Ok(Some(data)),
            other => Err(self.unexpected("octet string", other, at)),
        }
    }

    /// An optional integer of any signedness and width; meters disagree on both.
    pub(crate) fn integer_opt(&mut self) -> Result<Option<i128>, TlvError> {
        let at = self.pos;
        match self.next()? {
            Element::Absent => Ok(None),
            Element::Int(v, _) => Ok(Some(i128::from(v))),
            Element::Uint(v, _) => Ok(Some(i128::from(v))),
            other => Err(self.unexpected("integer", other, at)),
        }
    }
}

/// Big-endian two's complement of any width up to 8 bytes, sign-extended (3-, 5-, 6- and 7-byte
/// integers occur in real telegrams). Wider values are accepted when the extra bytes are only sign.
fn signed(data: &[u8]) -> Result<i64, TlvError> {
    let Some(&first) = data.first() else {
        return Ok(0);
    };
    let fill = if first & 0x80 != 0 { 0xff } else { 0x00 };
    let significant = strip_extension(data, fill)?;
    let mut bytes = [fill; 8];
    bytes[8 - significant.len()..].copy_from_slice(significant);
    Ok(i64::from_be_bytes(bytes))
}

fn unsigned(data: &[u8]) -> Result<u64, TlvError> {
    let significant = strip_extension(data, 0x00)?;
    let mut bytes = [0u8; 8];
    bytes[8 - significant.len()..].copy_from_slice(significant);
    Ok(u64::from_be_bytes(bytes))
}

fn strip_extension(data: &[u8], fill: u8) -> Result<&[u8], TlvError> {
    if data.len() <= 8 {
        return Ok(data);
    }
    let (extra, rest) = data.split_at(data.len() - 8);
    let sign_kept = fill == 0 || rest[0] & 0x80 != 0;
    if extra.iter().all(|&b| b == fill) && sign_kept {
        Ok(rest)
    } else {
        Err(TlvError::IntegerTooWide(data.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Element<'_> {
        Reader::new(bytes).next().unwrap()
    }

    #[test]
    fn odd_width_integers_are_sign_extended() {
        assert_eq!(one(&[0x54, 0xff, 0xfe, 0x00]), Element::Int(-512, 3));
        assert_eq!(one(&[0x54, 0x01, 0x00, 0x00]), Element::Int(65536, 3));
        assert_eq!(one(&[0x53, 0xd6, 0xca]), Element::Int(-10550, 2));
        assert_eq!(
            one(&[0x56, 0x00, 0x00, 0x08, 0xd1, 0xcf]),
            Element::Int(577_999, 5)
        );
        assert_eq!(one(&[0x65, 0x00, 0x00, 0x01, 0x01]), Element::Uint(257, 4));
    }

    #[test]
    fn multi_byte_lengths() {
        // TL 0x83 0x02: octet string of 0x32 bytes including the two TL bytes.
        let mut bytes = vec![0x83, 0x02];
        bytes.extend(std::iter::repeat_n(0xaa, 0x30));
        assert_eq!(one(&bytes), Element::Octets(&bytes[2..]));
        assert_eq!(one(&[0xf1, 0x01]), Element::List(0x11));
    }

    #[test]
    fn absent_and_errors() {
        assert_eq!(one(&[0x01]), Element::Absent);
        assert!(matches!(
            Reader::new(&[0x05, 0x00]).next(),
            Err(TlvError::UnexpectedEnd(0))
        ));
        assert!(matches!(
            Reader::new(&[0x31]).next(),
            Err(TlvError::UnknownType { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x80]).next(),
            Err(TlvError::UnexpectedEnd(0))
        ));
        let wide = [0x5a, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            Reader::new(&wide).next(),
            Err(TlvError::IntegerTooWide(9))
        ));
    }

    #[test]
    fn skip_is_bounded() {
        let deep = vec![0x71; 100];
        assert!(Reader::new(&deep).skip().is_err());
        let mut nested = Reader::new(&[0x72, 0x62, 0x01, 0x71, 0x01, 0x42]);
        nested.skip().unwrap();
        assert_eq!(nested.pos, 5);
    }
}
