//! Timestamps in text telegrams: DSMR `YYMMDDhhmmssX` (X = `W` winter, `S` summer time), DSMR 2.2
//! `YYMMDDhhmmss`, IEC 62056-21 `YYMMDDhhmm` and `YY-MM-DD hh:mm[:ss]`.
//!
//! Only DSMR's W/S flag says which UTC offset applies (DSMR is Dutch, Belgian and Luxembourgish
//! time: W = UTC+1, S = UTC+2), so only such stamps become Unix seconds. The others are the meter's
//! wall clock without an offset; callers keep them in notes rather than guess a zone.

/// A timestamp as the meter sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// The offset was sent: seconds since 1970-01-01 UTC.
    Utc(i64),
    /// The meter's wall clock, offset unknown.
    Local(Civil),
    /// DSMR shape without a time to give (`000000000000W`, `000101000000W`).
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl std::fmt::Display for Civil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

impl Civil {
    fn new(digits: &[u32]) -> Option<Civil> {
        let [yy, month, day, hour, minute, rest @ ..] = digits else {
            return None;
        };
        let civil = Civil {
            year: 2000 + i64::from(*yy),
            month: *month,
            day: *day,
            hour: *hour,
            minute: *minute,
            second: rest.first().copied().unwrap_or(0),
        };
        let valid = (1..=12).contains(&civil.month)
            && (1..=days_in_month(civil.year, civil.month)).contains(&civil.day)
            && civil.hour < 24
            && civil.minute < 60
            && civil.second < 60;
        valid.then_some(civil)
    }

    /// Seconds since 1970-01-01 of this wall-clock time read as UTC.
    fn unix(self) -> i64 {
        // Days from civil (proleptic Gregorian), after Howard Hinnant's algorithm.
        let (y, m) = if self.month <= 2 {
            (self.year - 1, i64::from(self.month) + 9)
        } else {
            (self.year, i64::from(self.month) - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Pairs of decimal digits; `None` if any byte is not a digit.
fn pairs(digits: &[u8]) -> Option<Vec<u32>> {
    digits
        .chunks(2)
        .map(|pair| match pair {
            [a @ b'0'..=b'9', b @ b'0'..=b'9'] => {
                Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            }
            _ => None,
        })
        .collect()
}

/// The stamp in `text`, or `None` when `text` is not shaped like one.
pub(crate) fn parse(text: &str) -> Option<Stamp> {
    let text = text.trim();
    let bytes = text.as_bytes();
    match bytes {
        [digits @ .., flag @ (b'W' | b'S')] if digits.len() == 12 => {
            let civil = pairs(digits)?;
            // Meters without a time send an impossible date or the start of 2000
            // (`000101000000W`, `000101000001W`).
            let Some(civil) =
                Civil::new(&civil).filter(|c| (c.year, c.month, c.day, c.hour) != (2000, 1, 1, 0))
            else {
                return Some(Stamp::Unset);
            };
            let offset = if *flag == b'S' { 2 * 3600 } else { 3600 };
            Some(Stamp::Utc(civil.unix() - offset))
        }
        _ if bytes.len() == 10 || bytes.len() == 12 => Civil::new(&pairs(bytes)?).map(Stamp::Local),
        // `YY-MM-DD hh:mm` or `YY-MM-DD hh:mm:ss` (Landis+Gyr).
        _ if matches!(bytes.len(), 14 | 17) => {
            let digits: Vec<u8> = bytes
                .iter()
                .enumerate()
                .filter(|&(i, _)| !matches!(i, 2 | 5 | 8 | 11 | 14))
                .map(|(_, &b)| b)
                .collect();
            let separators = bytes
                .iter()
                .enumerate()
                .filter(|&(i, _)| matches!(i, 2 | 5 | 8 | 11 | 14))
                .map(|(i, &b)| (i, b));
            for (i, b) in separators {
                let want = match i {
                    8 => b' ',
                    11 | 14 => b':',
                    _ => b'-',
                };
                if b != want {
                    return None;
                }
            }
            Civil::new(&pairs(&digits)?).map(Stamp::Local)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsmr_stamps_carry_their_offset() {
        // 2023-02-04 07:30:00 CET = 06:30:00 UTC.
        assert_eq!(parse("230204073000W"), Some(Stamp::Utc(1_675_492_200)));
        // 2022-09-01 15:00:00 CEST = 13:00:00 UTC.
        assert_eq!(parse("220901150000S"), Some(Stamp::Utc(1_662_037_200)));
        assert_eq!(parse("000000000000W"), Some(Stamp::Unset));
        assert_eq!(parse("000101000001W"), Some(Stamp::Unset));
        assert_eq!(parse("2302040730001W"), None);
    }

    #[test]
    fn local_stamps_stay_local() {
        let Some(Stamp::Local(civil)) = parse("2312010930") else {
            panic!("10-digit stamp not read");
        };
        assert_eq!(civil.to_string(), "2023-12-01 09:30:00");
        assert!(matches!(parse("161107190000"), Some(Stamp::Local(_))));
        assert!(matches!(parse("18-07-31 10:15"), Some(Stamp::Local(_))));
        assert!(matches!(parse("18-07-31 10:15:42"), Some(Stamp::Local(_))));
        for text in [
            "0000000123",
            "2313010930",
            "2302300930",
            "18/07/31 10:15",
            "12345",
            "",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn civil_to_unix() {
        let epoch = Civil::new(&[70, 1, 1, 0, 0, 0]).map(|c| Civil { year: 1970, ..c });
        assert_eq!(epoch.map(Civil::unix), Some(0));
        let leap = Civil::new(&[24, 2, 29, 12, 0, 0]);
        assert_eq!(leap.map(Civil::unix), Some(1_709_208_000));
        assert_eq!(Civil::new(&[23, 2, 29, 12, 0, 0]), None);
    }
}
