//! systemd integration (`Type=notify`): `READY=1` once the sensor is ready (capture attached,
//! listeners bound, privileges dropped), `WATCHDOG=1` from the main loop at half of
//! `WatchdogSec=` (a stuck loop gets the service restarted), `STOPPING=1` when the ordered
//! shutdown begins. Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the sensor is ready, with a one-line status.
pub(super) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the shutdown has begun.
pub(super) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pets the watchdog.
pub(super) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to pet the watchdog: half of `WatchdogSec=`, when the service has one.
pub(super) fn watchdog_period() -> Option<Duration> {
    let mut usec = 0u64;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
        .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::warn!(error = %err, "Notifying systemd failed.");
    }
}
