//! OBIS codes (IEC 62056-61): six value groups `A-B:C.D.E*F`.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Obis(pub [u8; 6]);

impl Obis {
    pub const fn new(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> Self {
        Obis([a, b, c, d, e, f])
    }

    /// Lower-case hex of the six bytes, the form the Data API stores (`0100010800ff` for 1.8.0).
    /// Short codes like `1.8.0` are ambiguous across media; the hex form is not.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Obis)
    }
}

impl fmt::Display for Obis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a}-{b}:{c}.{d}.{e}*{g}")
    }
}

impl Serialize for Obis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an OBIS code: {0:?}")]
pub struct ObisParseError(pub String);

/// Value-group letters of IEC 62056-61 used in place of numbers in the C group.
fn group_value(text: &str) -> Option<u8> {
    match text {
        "C" => Some(96),
        "F" => Some(97),
        "L" => Some(98),
        "P" => Some(99),
        _ => text.parse().ok(),
    }
}

impl FromStr for Obis {
    type Err = ObisParseError;

    /// Parses the full form `A-B:C.D.E*F` and the reduced forms of IEC 62056-21 data sets
    /// (`1.8.0`, `C.1.0`, `F.F`, `F`, `32.7`, `6.8*01`). Missing groups take the defaults of an
    /// electricity meter: A = 1, B = 0, E = 0, F = 255.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ObisParseError(text.to_owned());
        let (ab, rest) = match text.split_once(':') {
            Some((ab, rest)) => (Some(ab), rest),
            None => (None, text),
        };
        let (a, b) = match ab {
            Some(ab) => {
                let (a, b) = ab.split_once('-').ok_or_else(err)?;
                (a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?)
            }
            None => (1, 0),
        };
        let (cde, f) = match rest.split_once('*') {
            Some((cde, f)) => (cde, f.parse().map_err(|_| err())?),
            None => (rest, 255),
        };
        // A lone `F` is the error register F.F (Landis+Gyr and Siemens heat meters send `F(0)`).
        if cde == "F" {
            return Ok(Obis([a, b, 97, 97, 0, f]));
        }
        let mut groups = cde.split('.');
        let c = groups.next().and_then(group_value).ok_or_else(err)?;
        let d = groups.next().and_then(group_value).ok_or_else(err)?;
        let e = match groups.next() {
            Some(e) => group_value(e).ok_or_else(err)?,
            None => 0,
        };
        if groups.next().is_some() {
            return Err(err());
        }
        Ok(Obis([a, b, c, d, e, f]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_reduced_forms() {
        assert_eq!(
            "1-0:1.8.0*255".parse::<Obis>().unwrap().to_hex(),
            "0100010800ff"
        );
        assert_eq!("1.8.0".parse::<Obis>().unwrap().to_hex(), "0100010800ff");
        assert_eq!(
            "C.1.0".parse::<Obis>().unwrap(),
            Obis::new(1, 0, 96, 1, 0, 255)
        );
        assert_eq!(
            "F.F".parse::<Obis>().unwrap(),
            Obis::new(1, 0, 97, 97, 0, 255)
        );
        assert_eq!(
            "F".parse::<Obis>().unwrap(),
            Obis::new(1, 0, 97, 97, 0, 255)
        );
        assert_eq!(
            "6.8*01".parse::<Obis>().unwrap(),
            Obis::new(1, 0, 6, 8, 0, 1)
        );
        assert_eq!(
            "0-1:24.2.1".parse::<Obis>().unwrap(),
            Obis::new(0, 1, 24, 2, 1, 255)
        );
        assert_eq!(Obis::new(1, 0, 16, 7, 0, 255).to_string(), "1-0:16.7.0*255");
    }

    #[test]
    fn rejects_non_codes() {
        for bad in [
            "",
            "1",
            "x.y",
            "1.2.3.4",
            "1-0:1.8.0*",
            "300.1.1",
            "1-0",
            "-:1.8.0",
        ] {
            assert!(bad.parse::<Obis>().is_err(), "{bad:?}");
        }
    }
}
