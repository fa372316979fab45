//! systemd's notification protocol (`Type=notify`, `WatchdogSec=`): the daemon says when it is
//! ready and when it stops, and feeds the watchdog from its main loop, so a loop that wedges
//! stops the feeding and systemd kills and restarts the daemon. Without `NOTIFY_SOCKET` (not
//! started by systemd) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct ServiceManager {
    /// How often the watchdog is fed: half of systemd's `WATCHDOG_USEC`; `None`: no watchdog.
    every: Option<Duration>,
    last_fed: Instant,
    /// Whether a failed notification was logged already (logged once, not every ping).
    failed: bool,
}

impl ServiceManager {
    /// The service manager the environment names (`NOTIFY_SOCKET`, `WATCHDOG_USEC`,
    /// `WATCHDOG_PID`).
    pub fn from_env() -> Self {
        ServiceManager {
            every: sd_notify::watchdog_enabled().map(|timeout| timeout / 2),
            last_fed: Instant::now(),
            failed: false,
        }
    }

    /// How often [`ServiceManager::alive`] must be called; `None` when there is no watchdog.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.every
    }

    /// The daemon is running: its components are loaded and its buffer open.
    pub fn ready(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_fed = Instant::now();
    }

    /// The daemon is stopping (systemd waits for the exit rather than calling it a crash).
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// Called from the main loop (at least every [`ServiceManager::watchdog_every`]) and between
    /// long steps of it: feeds the watchdog, at most twice per period.
    pub fn alive(&mut self) {
        if let Some(every) = self.every
            && self.last_fed.elapsed() >= every / 2
        {
            self.send(&[NotifyState::Watchdog]);
            self.last_fed = Instant::now();
        }
    }

    fn send(&mut self, states: &[NotifyState]) {
        if let Err(error) = sd_notify::notify(states)
            && !self.failed
        {
            self.failed = true;
            tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
        }
    }
}
