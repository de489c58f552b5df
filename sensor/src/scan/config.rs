//! `sensor.portscan`: how probe records are merged into scans.

use std::time::Duration;

use serde::Deserialize;

/// `sensor.portscan`: how probe records are merged into `portscan.query` events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortscanConfig {
    /// Distinct destination ports a source must probe on one destination to be reported.
    pub threshold: usize,
    /// A scan ends when no new probe arrived for this long.
    pub idle_timeout_ms: u64,
    /// A scan still running after this long is reported, and later ports follow in
    /// follow-up events (one per window).
    pub max_window_secs: u64,
    /// Maximum (source, destination) pairs tracked at once; the least recently active is
    /// closed (and reported if it qualifies) when a new one arrives.
    pub max_tracked: usize,
    /// Memory the tracked port sets may hold, MiB (a full 65,536-port scan takes 8 KiB); when
    /// reached, the least recently active pairs are closed first.
    pub max_memory_mib: usize,
    /// Alert-flood control: a first report with fewer distinct ports than this (ICMP: request
    /// types) is a few-port report, subject to `flood_max_reports`.
    pub flood_few_ports: usize,
    /// Few-port reports per destination (and protocol) and window that become events one by
    /// one; later ones in the window are folded into one `portscan.flood` summary. So a window
    /// gives at most this many plus one events for few-port sources of one destination.
    pub flood_max_reports: u64,
    /// Length of a flood window, seconds.
    pub flood_window_secs: u64,
}

impl Default for PortscanConfig {
    fn default() -> Self {
        Self {
            threshold: 3,
            idle_timeout_ms: 5_000,
            max_window_secs: 60,
            max_tracked: 65_536,
            max_memory_mib: 64,
            flood_few_ports: 16,
            flood_max_reports: 50,
            flood_window_secs: 60,
        }
    }
}

impl PortscanConfig {
    /// The idle timeout as a duration.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The maximum window as a duration.
    #[must_use]
    pub fn max_window(&self) -> Duration {
        Duration::from_secs(self.max_window_secs)
    }
}
