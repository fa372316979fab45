//! Units: the DLMS/COSEM unit table (IEC 62056-62) that SML uses, and the unit strings of text
//! telegrams, both mapped to one set of base-unit symbols.

/// Symbols for DLMS unit codes 1..=64; `None` where the code is reserved or has no symbol.
const DLMS_SYMBOLS: [Option<&str>; 65] = [
    None,
    Some("a"),
    Some("mo"),
    Some("wk"),
    Some("d"),
    Some("h"),
    Some("min"),
    Some("s"),
    Some("deg"),
    Some("degC"),
    Some("currency"),
    Some("m"),
    Some("m/s"),
    Some("m3"),
    Some("m3"),
    Some("m3/h"),
    Some("m3/h"),
    Some("m3/d"),
    Some("m3/d"),
    Some("l"),
    Some("kg"),
    Some("N"),
    Some("Nm"),
    Some("Pa"),
    Some("bar"),
    Some("J"),
    Some("J/h"),
    Some("W"),
    Some("VA"),
    Some("var"),
    Some("Wh"),
    Some("VAh"),
    Some("varh"),
    Some("A"),
    Some("C"),
    Some("V"),
    Some("V/m"),
    Some("F"),
    Some("Ohm"),
    Some("Ohm m2/m"),
    Some("Wb"),
    Some("T"),
    Some("A/m"),
    Some("H"),
    Some("Hz"),
    Some("1/Wh"),
    Some("1/varh"),
    Some("1/VAh"),
    Some("V2h"),
    Some("A2h"),
    Some("kg/s"),
    Some("S"),
    Some("K"),
    Some("1/V2h"),
    Some("1/A2h"),
    Some("1/m3"),
    Some("%"),
    Some("Ah"),
    None,
    None,
    Some("Wh/m3"),
    Some("J/m3"),
    Some("mol%"),
    Some("g/m3"),
    Some("Pa s"),
];

/// A DLMS/COSEM unit code (IEC 62056-62), the unit SML sends and that text units map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Unit(pub u8);

impl Unit {
    pub const WATT: Unit = Unit(27);
    pub const WATT_HOUR: Unit = Unit(30);

    /// The symbol, e.g. `Wh`; codes 0, 58, 59 and 253–255 ("count") have none.
    pub fn symbol(self) -> Option<&'static str> {
        DLMS_SYMBOLS.get(usize::from(self.0)).copied().flatten()
    }
}

impl serde::Serialize for Unit {
    /// The symbol where there is one, else the code, so no unit is lost in output.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.symbol() {
            Some(symbol) => serializer.serialize_str(symbol),
            None => serializer.serialize_u8(self.0),
        }
    }
}

/// Maps a unit string of a text telegram to a DLMS unit and the power of ten that converts the
/// value into that base unit (`kWh` → (Wh, 3)). Unknown units give `None`; the caller notes them.
pub fn text_unit(unit: &str) -> Option<(Unit, i8)> {
    let (prefix, base) = match unit.as_bytes() {
        [b'k', rest @ ..] if !rest.is_empty() => (3, &unit[1..]),
        [b'M', rest @ ..] if !rest.is_empty() => (6, &unit[1..]),
        [b'G', rest @ ..] if !rest.is_empty() => (9, &unit[1..]),
        _ => (0, unit),
    };
    let code = match base {
        "Wh" => 30,
        "W" => 27,
        "varh" => 32,
        "var" => 29,
        "VAh" => 31,
        "VA" => 28,
        "V" => 35,
        "A" => 33,
        "Hz" => 44,
        "m3" => 13,
        "m3ph" => 15,
        "s" => 7,
        "min" => 6,
        "h" => 5,
        "C" => 9,
        "J" => 25,
        _ => return None,
    };
    Some((Unit(code), prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlms_codes() {
        assert_eq!(Unit(30).symbol(), Some("Wh"));
        assert_eq!(Unit(27).symbol(), Some("W"));
        assert_eq!(Unit(35).symbol(), Some("V"));
        assert_eq!(Unit(255).symbol(), None);
        assert_eq!(Unit(0).symbol(), None);
    }

    #[test]
    fn text_units_to_base() {
        assert_eq!(text_unit("kWh"), Some((Unit::WATT_HOUR, 3)));
        assert_eq!(text_unit("kW"), Some((Unit::WATT, 3)));
        assert_eq!(text_unit("MWh"), Some((Unit::WATT_HOUR, 6)));
        assert_eq!(text_unit("GJ"), Some((Unit(25), 9)));
        assert_eq!(text_unit("W"), Some((Unit::WATT, 0)));
        assert_eq!(text_unit("m3"), Some((Unit(13), 0)));
        assert_eq!(text_unit("m"), None);
        assert_eq!(text_unit("furlong"), None);
    }
}
