//! Setting a serial line (or a pseudo-terminal) raw, with a speed and a framing.
//!
//! rustix reads and writes the line settings with the TCGETS2/TCSETS2 ioctls. qemu-user 7.2
//! (Debian 12's, which runs the aarch64 build's tests) answers those with ENOSYS, while glibc's
//! `tcgetattr`/`tcsetattr` use TCGETS/TCSETS, which it emulates. So on ENOSYS the same settings
//! are applied through glibc; every real kernel since 2.6.20 takes the rustix path.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::termios::{self, ControlModes, OptionalActions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// 8 data bits, no parity, 1 stop bit (SML, DSMR).
    EightN1,
    /// 7 data bits, even parity, 1 stop bit (IEC 62056-21).
    SevenE1,
}

/// Why a serial device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot set {} raw at {baud} baud (is it a serial device?): {source}", path.display())]
    Configure {
        path: PathBuf,
        baud: u32,
        source: io::Error,
    },
}

/// Opens a serial device non-blocking and raw with the given speed and framing.
pub fn open(path: &Path, baud: u32, framing: Framing) -> Result<OwnedFd, OpenError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| OpenError::Open {
        path: path.to_owned(),
        source: e.into(),
    })?;
    configure(&fd, baud, framing).map_err(|source| OpenError::Configure {
        path: path.to_owned(),
        baud,
        source,
    })?;
    Ok(fd)
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

    /// The line settings as glibc reads them back (works where rustix's ioctls do not).
    fn read_back(fd: BorrowedFd<'_>) -> libc::termios {
        // SAFETY: as in `configure_with_glibc`.
        unsafe {
            let mut tio: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(fd.as_raw_fd(), &mut tio), 0);
            tio
        }
    }

    /// Both paths leave a line raw with the same framing and speed. Under an emulator without
    /// TCGETS2 only the glibc path can run, and `configure` must take it.
    #[test]
    fn both_paths_set_raw_framing_and_speed() {
        for framing in [Framing::EightN1, Framing::SevenE1] {
            let mut results = Vec::new();
            for path in ["rustix", "glibc", "configure"] {
                let pty = wattlet_meter_sim::Pty::open().unwrap();
                let line = rustix::fs::open(
                    pty.slave_path(),
                    rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
                    rustix::fs::Mode::empty(),
                )
                .unwrap();
                match path {
                    "rustix" => match configure_with_rustix(line.as_fd(), 2400, framing) {
                        Err(Errno::NOSYS) => continue, // an emulator: see the module docs
                        other => other.unwrap(),
                    },
                    "glibc" => configure_with_glibc(line.as_fd(), 2400, framing).unwrap(),
                    _ => configure(&line, 2400, framing).unwrap(),
                }
                let tio = read_back(line.as_fd());
                // SAFETY: reading speeds out of a valid termios value.
                let speeds = unsafe { (libc::cfgetispeed(&tio), libc::cfgetospeed(&tio)) };
                results.push((
                    path,
                    tio.c_cflag & (libc::CSIZE | libc::PARENB | libc::PARODD | libc::CSTOPB),
                    tio.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG),
                    tio.c_iflag & (libc::ICRNL | libc::IXON | libc::ISTRIP),
                    tio.c_oflag & libc::OPOST,
                    speeds,
                ));
            }
            let expected_bits = match framing {
                Framing::EightN1 => libc::CS8,
                Framing::SevenE1 => libc::CS7 | libc::PARENB,
            };
            for (path, cflag, lflag, iflag, oflag, speeds) in &results {
                // Linux's pty driver may force CS8 without parity (a pty has no parity to
                // keep), so 7E1 is only checked on real lines.
                if framing == Framing::EightN1 {
                    assert_eq!(*cflag, expected_bits, "{path} {framing:?}");
                }
                assert_eq!((*lflag, *iflag, *oflag), (0, 0, 0), "{path}: not raw");
                assert_eq!(*speeds, (libc::B2400, libc::B2400), "{path}");
            }
        }
        let pty = wattlet_meter_sim::Pty::open().unwrap();
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
