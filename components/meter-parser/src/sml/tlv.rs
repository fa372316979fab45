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

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn bytes(&self, from: usize, to: usize) -> &'a [u8] {
        &self.buf[from..to]
    }

    /// Reads one TL field: (type bits, length as sent, bytes of TL). 0x00 is end of message.
    #[inline(always)]
    fn tl(&self, at: usize) -> Result<(u8, usize, usize), TlvError> {
        let first = *self.buf.get(at).ok_or(TlvError::UnexpectedEnd(at))?;
        let kind = (first >> 4) & 0x07;
        let mut len = usize::from(first & 0x0f);
        let mut tl_len = 1;
        // Almost every TL is one byte; multi-byte lengths take the loop.
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
        Ok((kind, len, tl_len))
    }

    #[inline(always)]
    pub(crate) fn next(&mut self) -> Result<Element<'a>, TlvError> {
        let at = self.pos;
        let first = *self.buf.get(at).ok_or(TlvError::UnexpectedEnd(at))?;
        if first == 0x00 {
            self.pos += 1;
            return Ok(Element::EndOfMessage);
        }
        let (kind, len, tl_len) = self.tl(at)?;
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

    /// Skips one element and, for a list, all it contains. Elements are stored in preorder, so a
    /// count of elements still owed is enough: no stack, and no depth limit is needed because
    /// every element consumes at least one byte.
    pub(crate) fn skip(&mut self) -> Result<(), TlvError> {
        let mut owed = 1usize;
        while owed > 0 {
            owed -= 1;
            let at = self.pos;
            if self.buf.get(at) == Some(&0x00) {
                self.pos += 1;
                continue;
            }
            // Only the TL is read: skipped values need no decoding.
            let (kind, len, tl_len) = self.tl(at)?;
            if kind == 0x7 {
                self.pos = at + tl_len;
                owed = owed.saturating_add(len);
            } else {
                if len < tl_len {
                    return Err(TlvError::BadLength { len, at });
                }
                let end = at + len;
                if end > self.buf.len() {
                    return Err(TlvError::UnexpectedEnd(at));
                }
                if !matches!(kind, 0x0 | 0x4 | 0x5 | 0x6) {
                    return Err(TlvError::UnknownType {
                        tl: self.buf[at],
                        at,
                    });
                }
                self.pos = end;
            }
        }
        Ok(())
    }

    fn unexpected(&self, expected: &'static str, found: Element<'_>, at: usize) -> TlvError {
        TlvError::Unexpected {
            expected,
            found: found.kind(),
            at,
        }
    }

    #[inline(always)]
    pub(crate) fn list(&mut self) -> Result<usize, TlvError> {
        let at = self.pos;
        match self.next()? {
            Element::List(n) => Ok(n),
            other => Err(self.unexpected("list", other, at)),
        }
    }

    #[inline(always)]
    pub(crate) fn octets_opt(&mut self) -> Result<Option<&'a [u8]>, TlvError> {
        let at = self.pos;
        match self.next()? {
            Element::Absent => Ok(None),
            Element::Octets(data) => Ok(Some(data)),
            other => Err(self.unexpected("octet string", other, at)),
        }
    }

    /// An optional integer of any signedness and width; meters disagree on both.
    #[inline(always)]
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
    // Start from all ones for negatives so the shifts below sign-extend.
    let start = if fill == 0xff { -1i64 } else { 0 };
    Ok(significant
        .iter()
        .fold(start, |acc, &b| (acc << 8) | i64::from(b)))
}

fn unsigned(data: &[u8]) -> Result<u64, TlvError> {
    let significant = strip_extension(data, 0x00)?;
    Ok(significant
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
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
        let huge = [0xff, 0xff, 0xff, 0x7f];
        assert!(Reader::new(&huge).skip().is_err());
        let mut nested = Reader::new(&[0x72, 0x62, 0x01, 0x71, 0x01, 0x42]);
        nested.skip().unwrap();
        assert_eq!(nested.pos, 5);
    }
}
