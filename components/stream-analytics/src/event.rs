//! The challenge's input event and its CSV form
//! (`id,timestamp,value,property,plug_id,household_id,house_id`, no header).
//!
//! Values are exact integers in thousandths of the challenge's unit: a load in milliwatts, work in
//! Wh (kWh·1000). The decimal text is parsed digit by digit, never through a float, so "12.345"
//! is exactly 12345. More than three decimals are rounded half away from zero on the fourth
//! ("0.0005" → 1, "-0.0005" → -1); an exponent ("1e3") is refused.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

/// What a value measures (the challenge's `property` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Property {
    /// Cumulative work since the plug started, kWh (value in Wh).
    Work = 0,
    /// Current load, W (value in mW).
    Load = 1,
}

/// One measurement of one plug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    /// Unix seconds.
    pub ts: u32,
    /// Thousandths of the unit: mW for a load, Wh for work.
    pub value_mw: i64,
    pub property: Property,
    pub plug: u32,
    pub household: u32,
    pub house: u32,
}

/// A plug's identity: the challenge numbers plugs within a household and households within a
/// house, so a plug id alone is not unique. Orders by house, household, plug (the output order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlugKey {
    pub house: u32,
    pub household: u32,
    pub plug: u32,
}

impl Event {
    pub fn key(&self) -> PlugKey {
        PlugKey {
            house: self.house,
            household: self.household,
            plug: self.plug,
        }
    }

    pub fn is_load(&self) -> bool {
        self.property == Property::Load
    }

    /// The challenge's CSV line (no newline); values with exactly three decimals.
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.id,
            self.ts,
            format_milli(self.value_mw),
            self.property as u8,
            self.plug,
            self.household,
            self.house
        )
    }
}

/// `12345` → `"12.345"`, `-5` → `"-0.005"`.
pub fn format_milli(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// The CSV columns, in order; an error names the one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    Timestamp,
    Value,
    Property,
    PlugId,
    HouseholdId,
    HouseId,
}

const FIELDS: [Field; 7] = [
    Field::Id,
    Field::Timestamp,
    Field::Value,
    Field::Property,
    Field::PlugId,
    Field::HouseholdId,
    Field::HouseId,
];

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Id => "id",
            Field::Timestamp => "timestamp",
            Field::Value => "value",
            Field::Property => "property",
            Field::PlugId => "plug_id",
            Field::HouseholdId => "household_id",
            Field::HouseId => "house_id",
        })
    }
}

/// Why a field did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("missing")]
    Missing,
    #[error("empty")]
    Empty,
    #[error("not an unsigned integer: {0:?}")]
    NotInteger(String),
    #[error("out of range: {0:?}")]
    OutOfRange(String),
    #[error("not a decimal number: {0:?}")]
    NotDecimal(String),
    #[error("unknown property {0:?} (0 = work, 1 = load)")]
    UnknownProperty(String),
    #[error("{0} columns, expected 7")]
    TooManyColumns(usize),
}

/// A line that is not a challenge event: the 1-based line number and the failing column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: field {field}: {problem}")]
pub struct ParseError {
    pub line: u64,
    pub field: Field,
    pub problem: Problem,
}

/// Reading a CSV stream failed: bad bytes from the reader, or a bad line.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("line {line}: {source}")]
    Io { line: u64, source: std::io::Error },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Parses one line (without its newline; a trailing `\r` is tolerated). `line` is only for errors.
pub fn parse_line(text: &str, line: u64) -> Result<Event, ParseError> {
    let text = text.strip_suffix('\r').unwrap_or(text);
    let err = |field, problem| ParseError {
        line,
        field,
        problem,
    };
    let mut cols = text.split(',');
    let mut next = |i: usize| -> Result<&str, ParseError> {
        let field = FIELDS[i];
        match cols.next() {
            None => Err(err(field, Problem::Missing)),
            Some(s) => {
                let s = s.trim();
                if s.is_empty() {
                    Err(err(field, Problem::Empty))
                } else {
                    Ok(s)
                }
            }
        }
    };
    // Field by field, so the first bad column is the one reported.
    let id = parse_uint(next(0)?).map_err(|p| err(Field::Id, p))?;
    let ts = parse_uint(next(1)?).map_err(|p| err(Field::Timestamp, p))?;
    let value_mw = parse_milli(next(2)?).map_err(|p| err(Field::Value, p))?;
    let property = match next(3)? {
        "0" => Property::Work,
        "1" => Property::Load,
        other => {
            return Err(err(
                Field::Property,
                Problem::UnknownProperty(other.to_string()),
            ));
        }
    };
    let plug = parse_uint(next(4)?).map_err(|p| err(Field::PlugId, p))?;
    let household = parse_uint(next(5)?).map_err(|p| err(Field::HouseholdId, p))?;
    let house = parse_uint(next(6)?).map_err(|p| err(Field::HouseId, p))?;
    let extra = cols.count();
    if extra > 0 {
        return Err(err(Field::HouseId, Problem::TooManyColumns(7 + extra)));
    }
    Ok(Event {
        id,
        ts,
        value_mw,
        property,
        plug,
        household,
        house,
    })
}

fn parse_uint<T: TryFrom<u64>>(s: &str) -> Result<T, Problem> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::NotInteger(s.to_string()));
    }
    let v: u64 = s.parse().map_err(|_| Problem::OutOfRange(s.to_string()))?;
    T::try_from(v).map_err(|_| Problem::OutOfRange(s.to_string()))
}

/// A decimal (`-12.3456`, `7`, `.5`, `5.`) times 1000, exactly (rounding: the module comment).
pub fn parse_milli(s: &str) -> Result<i64, Problem> {
    let bad = || Problem::NotDecimal(s.to_string());
    let range = || Problem::OutOfRange(s.to_string());
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut v: i64 = 0;
    for b in int.bytes() {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(range)?;
    }
    let f = frac.as_bytes();
    for i in 0..3 {
        let d = f.get(i).map_or(0, |b| i64::from(b - b'0'));
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d))
            .ok_or_else(range)?;
    }
    // Half away from zero: only the first dropped digit decides.
    if f.get(3).is_some_and(|&b| b >= b'5') {
        v = v.checked_add(1).ok_or_else(range)?;
    }
    Ok(if negative { -v } else { v })
}

/// Events from a challenge CSV stream, one per line; blank lines are skipped. (A `.gz` file is
/// the caller's to decompress.) Errors name the 1-based line.
pub struct EventReader<R> {
    reader: R,
    line: u64,
    buf: String,
}

impl<R: BufRead> EventReader<R> {
    pub fn new(reader: R) -> Self {
        EventReader {
            reader,
            line: 0,
            buf: String::new(),
        }
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<Event, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(ReadError::Io {
                        line: self.line,
                        source,
                    }));
                }
            }
            let text = self.buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            return Some(parse_line(text, self.line).map_err(ReadError::from));
        }
    }
}
