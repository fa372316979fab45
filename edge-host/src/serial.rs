//! Setting a serial line (or a pseudo-terminal) raw, with a speed and a framing.
//!
//! rustix reads and writes the line settings with the TCGETS2/TCSETS2 ioctls. qemu-user 7.2
//! (Debian 12's, which runs the aarch64 build's tests) answers those with ENOSYS, while glibc's
//! `tcgetattr`/`tcsetattr` use TCGETS/TCSETS, which it emulates. So on ENOSYS the same settings
//! are applied through glibc; every real kernel since 2.6.20 takes the rustix path.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::io::Errno;
use rustix::termios::{self, ControlModes, OptionalActions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 8 data bits, no parity, 1 stop bit (SML, DSMR).
    EightN1,
    /// 7 data bits, even parity, 1 stop bit (IEC 62056-21).
    SevenE1,
}

/// Makes `line` raw (no byte translated, swallowed or echoed) at `baud` with `framing`.
pub fn configure(line: impl AsFd, baud: u32, framing: Framing) -> io::Result<()> {
    let fd = line.as_fd();
    match configure_with_rustix(fd, baud, framing) {
        Err(Errno::NOSYS) => configure_with_glibc(fd, baud, framing),
        other => other.map_err(io::Error::from),
    }
}

fn configure_with_rustix(fd: BorrowedFd<'_>, baud: u32, framing: Framing) -> Result<(), Errno> {
    let mut tio = termios::tcgetattr(fd)?;
    tio.make_raw();
    tio.control_modes.remove(
        ControlModes::CSIZE | ControlModes::CSTOPB | ControlModes::PARENB | ControlModes::PARODD,
    );
    tio.control_modes
        .insert(ControlModes::CREAD | ControlModes::CLOCAL);
    match framing {
        Framing::EightN1 => tio.control_modes.insert(ControlModes::CS8),
        Framing::SevenE1 => tio
            .control_modes
            .insert(ControlModes::CS7 | ControlModes::PARENB),
    }
    tio.set_speed(baud)?;
    termios::tcsetattr(fd, OptionalActions::Now, &tio)
}

fn configure_with_glibc(fd: BorrowedFd<'_>, baud: u32, framing: Framing) -> io::Result<()> {
    let speed = match baud {
        300 => libc::B300,
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19_200 => libc::B19200,
        38_400 => libc::B38400,
        57_600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{baud} baud is not a standard line speed"),
            ));
        }
    };
    let check = |result: libc::c_int| {
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: `termios` is plain old data, so all zeroes is a valid value; `fd` is borrowed
    // open for the whole call; each call gets a valid pointer to `tio`, which outlives it.
    unsafe {
        let mut tio: libc::termios = std::mem::zeroed();
        check(libc::tcgetattr(fd.as_raw_fd(), &mut tio))?;
        libc::cfmakeraw(&mut tio);
        // CIBAUD 0: the input speed follows the output speed (else the line's old input speed
        // would stay).
        tio.c_cflag &= !(libc::CSIZE | libc::CSTOPB | libc::PARENB | libc::PARODD | libc::CIBAUD);
        tio.c_cflag |= libc::CREAD | libc::CLOCAL;
        tio.c_cflag |= match framing {
            Framing::EightN1 => libc::CS8,
            Framing::SevenE1 => libc::CS7 | libc::PARENB,
        };
        check(libc::cfsetspeed(&mut tio, speed))?;
        check(libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &tio))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths leave a pty with the same settings, read back through rustix.
    #[test]
    fn glibc_fallback_sets_what_rustix_sets() {
        for framing in [Framing::EightN1, Framing::SevenE1] {
            let a = crate::sim::Pty::open().unwrap();
            let b = crate::sim::Pty::open().unwrap();
            let open = |pty: &crate::sim::Pty| {
                rustix::fs::open(
                    pty.slave_path(),
                    rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
                    rustix::fs::Mode::empty(),
                )
                .unwrap()
            };
            let (fa, fb) = (open(&a), open(&b));
            configure_with_rustix(fa.as_fd(), 2400, framing).unwrap();
            configure_with_glibc(fb.as_fd(), 2400, framing).unwrap();
            let (ta, tb) = (
                termios::tcgetattr(&fa).unwrap(),
                termios::tcgetattr(&fb).unwrap(),
            );
            // Speeds are encoded differently (rustix names the input speed, glibc lets it
            // follow the output speed): compared as speeds below.
            let speed_bits = ControlModes::from_bits_retain(libc::CBAUD | libc::CIBAUD);
            assert_eq!(
                ta.control_modes.difference(speed_bits),
                tb.control_modes.difference(speed_bits),
                "{framing:?}"
            );
            assert_eq!(ta.local_modes, tb.local_modes);
            assert_eq!(ta.input_modes, tb.input_modes);
            assert_eq!(ta.output_modes, tb.output_modes);
            assert_eq!((ta.input_speed(), tb.input_speed()), (2400, 2400));
            assert_eq!((ta.output_speed(), tb.output_speed()), (2400, 2400));
        }
        let pty = crate::sim::Pty::open().unwrap();
        let error = configure_with_glibc(
            rustix::fs::open(
                pty.slave_path(),
                rustix::fs::OFlags::RDWR,
                rustix::fs::Mode::empty(),
            )
            .unwrap()
            .as_fd(),
            12_345,
            Framing::EightN1,
        )
        .unwrap_err();
        assert!(error.to_string().contains("12345 baud"), "{error}");
    }
}
