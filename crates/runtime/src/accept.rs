//! Accepting connections without ever giving up: every listener of wattlet (the admin listener,
//! `wattlet serve`) accepts through [`accept`].
//!
//! An accept error is never the end of a server. Out of file descriptors (`EMFILE`, `ENFILE`)
//! or kernel memory (`ENOBUFS`, `ENOMEM`), the pending connection stays in the kernel's backlog
//! and accepting again at once would fail again at once, spinning a core: such errors are logged
//! and the listener backs off (10 ms, doubling up to 1 s) until a connection is accepted.
//! Errors that belong to one connection (it was reset before it was accepted, …) are skipped.
//!
//! A listener made with [`bind`] has a deep backlog: a server at its connection cap stops
//! accepting, and clients wait there meanwhile.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The listen backlog of [`bind`] (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: u32 = 4096;

/// How often an ongoing accept failure is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A TCP listener on `addr` with a backlog of [`BACKLOG`]. std's and tokio's `bind` ask for 128:
/// with a flood of held connections that queue overflowed, the kernel dropped new clients'
/// SYNs, and their retries (1 s, 3 s, 7 s, 15 s …) left them unserved long after slots had
/// freed. Call it inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// How long the next failing accept waits: grows while accepting fails, resets on success.
#[derive(Debug, Default)]
pub struct Backoff {
    pause: Option<Duration>,
    /// When a failure was last logged, and how many have not been since.
    logged: Option<Instant>,
    unlogged: u64,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self
            .pause
            .map_or(FIRST_PAUSE, |p| (p * 2).min(LONGEST_PAUSE));
        self.pause = Some(pause);
        pause
    }
}

/// The next connection on `listener` and its peer's address. Never fails: errors are logged
/// (naming `what` listener) and accepting goes on, after a pause when the error says the
/// process or the kernel is out of a resource.
pub async fn accept(
    listener: &TcpListener,
    what: &str,
    backoff: &mut Backoff,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                backoff.pause = None;
                return accepted;
            }
            Err(error) if is_connection_error(&error) => {
                tracing::debug!(listener = what, %error, "a connection failed before it was accepted");
            }
            Err(error) => {
                let pause = backoff.next();
                // Under a flood this repeats many times a second: one line every few seconds.
                if backoff.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                    tracing::warn!(listener = what, %error, pause_ms = pause.as_millis() as u64, failures_not_logged = backoff.unlogged, "cannot accept connections; pausing (raise the open-file limit or lower the connection cap)");
                    backoff.logged = Some(Instant::now());
                    backoff.unlogged = 0;
                } else {
                    backoff.unlogged += 1;
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Errors of one connection (as `accept(2)` lists them), not of the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_a_second_and_resets() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u64> = (0..9).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.pause = None;
        assert_eq!(backoff.next(), FIRST_PAUSE);
    }
}
