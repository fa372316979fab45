//! Unlocking a meter by PIN at its optical interface.
//!
//! German smart meters ("moderne Messeinrichtung") leave the factory locked: their D0 interface
//! sends only a reduced data set (no power 16.7.0, energy without decimals) until the household
//! enters the 4-digit PIN its metering operator issues. The PIN is entered with light pulses at
//! the meter's optical sensor, and how is model-specific; one [`PinEntry`] per model turns a PIN
//! into pulses, which [`send`] gives through the probe's transmitting LED.

use std::os::fd::AsFd;
use std::str::FromStr;
use std::time::Duration;

/// A 4-digit meter PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin([u8; 4]);

impl std::fmt::Debug for Pin {
    /// A PIN is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(****)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnlockError {
    #[error("a meter PIN is exactly 4 digits")]
    BadPin,
    #[error("no PIN entry is known for meter model {0:?} (known: {known})", known = known_models().join(", "))]
    UnknownModel(String),
}

impl FromStr for Pin {
    type Err = UnlockError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: Vec<u8> = text
            .bytes()
            .map(|b| {
                if b.is_ascii_digit() {
                    Ok(b - b'0')
                } else {
                    Err(UnlockError::BadPin)
                }
            })
            .collect::<Result<_, _>>()?;
        <[u8; 4]>::try_from(digits)
            .map(Pin)
            .map_err(|_| UnlockError::BadPin)
    }
}

/// Light on for `on`, then off for `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulse {
    pub on: Duration,
    pub off: Duration,
}

/// How one meter model takes a PIN by light.
pub trait PinEntry: Sync {
    /// The model name as the Data API knows it (`MT681`, …).
    fn model(&self) -> &'static str;
    /// The pulses that enter `pin`, from a meter at rest to the meter checking the PIN.
    fn pulses(&self, pin: &Pin) -> Vec<Pulse>;
}

/// Iskra MT681 (and MT175): a pulse wakes the display, a second starts PIN entry with the
/// first digit at 0; each pulse counts the current digit up by one, and a pause of more than
/// three seconds moves on to the next digit; after the fourth digit the meter checks the PIN.
pub struct IskraMt681;

impl IskraMt681 {
    /// Long enough for the meter to register, short enough to count quickly.
    const PULSE: Duration = Duration::from_millis(300);
    const BETWEEN_PULSES: Duration = Duration::from_millis(700);
    /// Longer than the meter's 3 s digit timeout, with margin.
    const NEXT_DIGIT: Duration = Duration::from_millis(4500);
}

impl PinEntry for IskraMt681 {
    fn model(&self) -> &'static str {
        "MT681"
    }

    fn pulses(&self, pin: &Pin) -> Vec<Pulse> {
        let short = Pulse {
            on: Self::PULSE,
            off: Self::BETWEEN_PULSES,
        };
        // Wake the display, then open PIN entry.
        let mut pulses = vec![short, short];
        for &digit in &pin.0 {
            pulses.extend(std::iter::repeat_n(short, usize::from(digit)));
            // The pause that ends the digit replaces the last short gap (or, for a 0, follows
            // the previous digit's pause).
            match pulses.last_mut() {
                Some(last) if digit > 0 => last.off = Self::NEXT_DIGIT,
                _ => pulses.push(Pulse {
                    on: Duration::ZERO,
                    off: Self::NEXT_DIGIT,
                }),
            }
        }
        pulses
    }
}

static MODELS: [&dyn PinEntry; 1] = [&IskraMt681];

fn known_models() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.model()).collect()
}

/// The PIN entry of `model`.
pub fn for_model(model: &str) -> Result<&'static dyn PinEntry, UnlockError> {
    MODELS
        .iter()
        .copied()
        .find(|m| {
            m.model().eq_ignore_ascii_case(model)
                || (model.eq_ignore_ascii_case("MT175") && m.model() == "MT681")
        })
        .ok_or_else(|| UnlockError::UnknownModel(model.to_owned()))
}

/// Gives `pulses` through the probe's LED on `line` (a serial device opened at `baud`, 8N1).
///
/// An optical probe lights its LED while the transmit line is at space (logical 0). A 0x00
/// byte is nine bit-times of space and one of mark, so a run of them holds the LED on for the
/// pulse's length, flickering too fast for a meter's sensor to see the gaps.
pub fn send(line: impl AsFd, baud: u32, pulses: &[Pulse]) -> std::io::Result<()> {
    let bytes_per_second = f64::from(baud) / 10.0;
    for pulse in pulses {
        let count = (pulse.on.as_secs_f64() * bytes_per_second).round() as usize;
        let space = vec![0u8; count];
        let mut written = 0;
        while written < space.len() {
            match rustix::io::write(&line, &space[written..]) {
                Ok(n) => written += n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Wait until the bytes are on the wire, so the pause starts when the light goes off.
        rustix::termios::tcdrain(&line)?;
        std::thread::sleep(pulse.off);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_four_digits_and_never_printed() {
        assert!("0042".parse::<Pin>().is_ok());
        for bad in ["", "123", "12345", "12a4", "１２３４"] {
            assert_eq!(bad.parse::<Pin>(), Err(UnlockError::BadPin), "{bad:?}");
        }
        assert_eq!(format!("{:?}", "1234".parse::<Pin>().unwrap()), "Pin(****)");
    }

    /// Reads the pulses back the way the meter counts them: pulses separated by less than its
    /// 3 s timeout count up one digit; a longer pause moves to the next.
    fn as_meter_sees_it(pulses: &[Pulse]) -> Vec<u8> {
        let timeout = Duration::from_secs(3);
        let mut digits = Vec::new();
        let mut current = 0u8;
        let lit: Vec<_> = pulses.iter().skip(2).collect();
        for pulse in lit {
            if !pulse.on.is_zero() {
                current += 1;
            }
            if pulse.off > timeout {
                digits.push(current);
                current = 0;
            }
        }
        digits
    }

    #[test]
    fn mt681_digits_are_counted_pulses() {
        let entry = for_model("mt681").unwrap();
        for pin in ["1234", "0000", "9081", "5500"] {
            let pulses = entry.pulses(&pin.parse().unwrap());
            let digits: String = as_meter_sees_it(&pulses)
                .iter()
                .map(|d| char::from(b'0' + d))
                .collect();
            assert_eq!(digits, pin);
            assert!(
                pulses[..2].iter().all(|p| p.off < Duration::from_secs(3)),
                "wake-up pulses"
            );
        }
        assert_eq!(for_model("MT175").unwrap().model(), "MT681");
        assert!(matches!(
            for_model("DD3"),
            Err(UnlockError::UnknownModel(_))
        ));
    }
}
