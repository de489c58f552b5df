//! Clocks: the kernel stamps records with CLOCK_MONOTONIC; events carry UTC wall time.

use chrono::{DateTime, Utc};

/// CLOCK_MONOTONIC now, in nanoseconds (the clock `bpf_ktime_get_ns` reads).
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec; CLOCK_MONOTONIC is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Converts monotonic timestamps to wall-clock time, re-anchored on every call to [`Self::now`]
/// so wall-clock steps (NTP) are followed.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    wall: DateTime<Utc>,
    mono_ns: u64,
}

impl WallClock {
    /// Anchors the conversion at the current instant.
    #[must_use]
    pub fn now() -> Self {
        Self {
            wall: Utc::now(),
            mono_ns: monotonic_ns(),
        }
    }

    /// An explicit anchor (tests).
    #[must_use]
    pub const fn anchored(wall: DateTime<Utc>, mono_ns: u64) -> Self {
        Self { wall, mono_ns }
    }

    /// The monotonic reading of the anchor.
    #[must_use]
    pub const fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    /// Wall-clock time of a monotonic timestamp.
    #[must_use]
    pub fn to_wall(&self, mono_ns: u64) -> DateTime<Utc> {
        let delta = i64::try_from(self.mono_ns.abs_diff(mono_ns)).unwrap_or(i64::MAX);
        let delta = chrono::Duration::nanoseconds(delta);
        if mono_ns >= self.mono_ns {
            self.wall + delta
        } else {
            self.wall - delta
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::{WallClock, monotonic_ns};

    #[test]
    fn converts_both_directions() {
        let anchor = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap();
        let clock = WallClock::anchored(anchor, 10_000_000_000);
        assert_eq!(
            clock.to_wall(9_000_000_000),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 9).unwrap()
        );
        assert_eq!(
            clock.to_wall(12_500_000_000).timestamp_millis(),
            anchor.timestamp_millis() + 2_500
        );
    }

    #[test]
    fn monotonic_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a && a > 0);
    }
}
