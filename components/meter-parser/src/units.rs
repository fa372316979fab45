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

/// The symbol of a DLMS unit code; 255 ("count") and unknown codes have none.
pub fn dlms_symbol(code: u8) -> Option<&'static str> {
    DLMS_SYMBOLS.get(usize::from(code)).copied().flatten()
}

/// Maps a unit string of a text telegram to a base unit and the power of ten that converts the
/// value into it (`kWh` → (`Wh`, 3)). Unknown units keep no symbol; the caller notes them.
pub fn text_unit(unit: &str) -> Option<(&'static str, i8)> {
    let (prefix, base) = match unit.as_bytes() {
        [b'k', rest @ ..] if !rest.is_empty() => (3, &unit[1..]),
        [b'M', rest @ ..] if !rest.is_empty() => (6, &unit[1..]),
        _ => (0, unit),
    };
    let symbol = match base {
        "Wh" => "Wh",
        "W" => "W",
        "varh" => "varh",
        "var" => "var",
        "VAh" => "VAh",
        "VA" => "VA",
        "V" => "V",
        "A" => "A",
        "Hz" => "Hz",
        "m3" => "m3",
        "m3ph" => "m3/h",
        "s" => "s",
        "h" => "h",
        "m" => "m",
        "C" => "degC",
        "GJ" => "GJ",
        "J" => "J",
        _ => return None,
    };
    Some((symbol, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlms_codes() {
        assert_eq!(dlms_symbol(30), Some("Wh"));
        assert_eq!(dlms_symbol(27), Some("W"));
        assert_eq!(dlms_symbol(35), Some("V"));
        assert_eq!(dlms_symbol(255), None);
        assert_eq!(dlms_symbol(0), None);
    }

    #[test]
    fn every_produced_symbol_round_trips() {
        for unit in ["kWh", "MWh", "kvarh", "m3ph", "C", "GJ", "h", "m"] {
            let (symbol, _) = text_unit(unit).unwrap();
            assert_eq!(unit_symbol(symbol), Some(symbol), "{unit}");
        }
        assert_eq!(unit_symbol("Wh"), Some("Wh"));
        assert_eq!(unit_symbol("parsec"), None);
    }

    #[test]
    fn text_units_to_base() {
        assert_eq!(text_unit("kWh"), Some(("Wh", 3)));
        assert_eq!(text_unit("kW"), Some(("W", 3)));
        assert_eq!(text_unit("MWh"), Some(("Wh", 6)));
        assert_eq!(text_unit("W"), Some(("W", 0)));
        assert_eq!(text_unit("m3"), Some(("m3", 0)));
        assert_eq!(text_unit("m"), Some(("m", 0)));
        assert_eq!(text_unit("furlong"), None);
    }
}

/// The static symbol equal to `symbol`, for units that crossed a boundary as strings (the WIT
/// interface); `None` for a symbol this crate never produces.
pub fn unit_symbol(symbol: &str) -> Option<&'static str> {
    DLMS_SYMBOLS
        .iter()
        .flatten()
        .copied()
        .chain(["GJ"])
        .find(|s| *s == symbol)
}
