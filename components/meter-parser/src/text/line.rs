//! The shape of a readout's data lines: `address(value)(…)address(…)…` up to the line end.
//!
//! A readout that arrives without its identification line (a D0 gateway's answer over HTTP or
//! TCP) has no start marker; what marks it is that its lines are data sets and nothing else,
//! which prose and binary noise never are.

use crate::Obis;

const STX: u8 = 0x02;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete data line of this many bytes (its line end not included).
    Data(usize),
    /// Data-line shaped so far; the line end has not arrived.
    Prefix,
    /// Not a data line.
    Invalid,
}

fn address_byte(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b'*' | b'C' | b'F' | b'L' | b'P')
}

enum State {
    /// In an address that began at this index.
    Address(usize),
    /// Inside `(…)`.
    Group,
    /// After `)`: another value, another data set or the line end.
    AfterGroup,
}

/// Is the line at the start of `bytes` a data line? `first`: the readout's first line, which may
/// begin with STX and may not be a continuation (`(value)` alone, as DSMR 2.2 sends gas). Lines
/// longer than `max_len` are not data lines.
pub(crate) fn data_line(bytes: &[u8], first: bool, max_len: usize) -> Line {
    let mut i = usize::from(first && bytes.first() == Some(&STX));
    let mut state = if !first && bytes.get(i) == Some(&b'(') {
        State::AfterGroup
    } else {
        State::Address(i)
    };
    loop {
        if i > max_len {
            return Line::Invalid;
        }
        let Some(&b) = bytes.get(i) else {
            return Line::Prefix;
        };
        state = match state {
            State::Group => match b {
                b')' => State::AfterGroup,
                b'(' => return Line::Invalid,
                0x20..=0x7e => State::Group,
                _ => return Line::Invalid,
            },
            State::AfterGroup => match b {
                b'(' => State::Group,
                b'\r' | b'\n' => return Line::Data(i),
                _ if address_byte(b) => State::Address(i),
                _ => return Line::Invalid,
            },
            State::Address(start) => match b {
                b'(' if i > start => {
                    let address = std::str::from_utf8(&bytes[start..i]).ok();
                    if address.and_then(|a| a.parse::<Obis>().ok()).is_none() {
                        return Line::Invalid;
                    }
                    State::Group
                }
                _ if address_byte(b) => State::Address(start),
                _ => return Line::Invalid,
            },
        };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines() {
        assert_eq!(
            data_line(b"1.8.0(001846.0*kWh)\r\n", true, 100),
            Line::Data(19)
        );
        assert_eq!(
            data_line(b"\x021-0:1.8.0*255(1.0*kWh)(2)\n", true, 100),
            Line::Data(26)
        );
        assert_eq!(
            data_line(b"6.8(1*GJ)6.26(2*m3)F(0)\n", true, 100),
            Line::Data(23)
        );
        assert_eq!(data_line(b"(00001.001)\r\n", false, 100), Line::Data(11));
        assert_eq!(data_line(b"1.8.0(0018", true, 100), Line::Prefix);
        assert_eq!(data_line(b"1.8.0(1)", true, 100), Line::Prefix);
    }

    #[test]
    fn not_data_lines() {
        for line in [
            &b"(00001.001)\r\n"[..],
            b"Copyright (c) 2018\r\n",
            b"1.2 (foo)\r\n",
            b"1.8.0(1)x\r\n",
            b"1.8.0(a\r\nb)\r\n",
            b"\r\n",
            b"!\r\n",
            b"/ISK5\r\n",
            b"300.1(1)\r\n",
            b"1.8.0(\x1b\x1b)\r\n",
            b"()\r\n",
        ] {
            assert_eq!(data_line(line, true, 100), Line::Invalid, "{line:?}");
        }
        assert_eq!(
            data_line(b"1.8.0(000000000000)\r\n", true, 8),
            Line::Invalid
        );
    }
}
