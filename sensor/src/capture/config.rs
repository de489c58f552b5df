//! `sensor.xdp`: how the XDP program attaches, its maps and ring buffer, and how the agent
//! drains it. The configuration file reads it; the capture owns it.

use serde::Deserialize;

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode where the driver supports it, generic mode otherwise.
    #[default]
    Auto,
    /// Generic XDP, run by the kernel network stack; works on every interface.
    Skb,
    /// Native XDP, run by the driver; fails where the driver lacks support.
    Drv,
}

impl std::str::FromStr for XdpMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "skb" => Ok(Self::Skb),
            "drv" => Ok(Self::Drv),
            other => Err(format!(
                "unknown XDP mode `{other}` (expected auto, skb or drv)"
            )),
        }
    }
}

/// `sensor.xdp`: the kernel program and its ring buffer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdpConfig {
    /// Interfaces to attach to; empty means the top-level `interface`.
    pub interfaces: Vec<String>,
    /// Attach mode.
    pub mode: XdpMode,
    /// Ring buffer size in bytes (power of two, at least one page).
    pub ring_buffer_bytes: u32,
    /// Identical probes (source, destination, port, kind) within this window give one record.
    pub dedup_window_ms: u64,
    /// Records per second allowed per source, all CPUs together (0: unlimited). A source is
    /// the address masked to `sensor.source_prefix` (IPv4 /32, IPv6 /64 by default).
    pub source_budget: u32,
    /// Records per second allowed per CPU (0: unlimited).
    pub cpu_budget: u32,
    /// Pending ring-buffer bytes that wake the reader early.
    pub wakeup_bytes: u32,
    /// The reader drains the ring buffer at least this often.
    pub drain_interval_ms: u64,
    /// Kernel counters are logged this often (0: only at exit).
    pub stats_interval_secs: u64,
    /// Deduplication slots per CPU at most (a power of two, 1024 to 4,194,304); fewer on hosts
    /// where `max_map_memory_mib` would be exceeded.
    pub dedup_slots: u32,
    /// Slots of the per-source budget table shared by all CPUs (a power of two, 1024 to
    /// 16,777,216).
    pub source_slots: u32,
    /// Memory the deduplication cache (per CPU) and the source-budget table may take together,
    /// MiB; the loader shrinks the cache per CPU to fit.
    pub max_map_memory_mib: u32,
    /// Records (XDP) or observations (libpcap) folded in per turn of the agent's loop, so
    /// that shutdown, service events and statistics interleave with draining under any load.
    pub drain_batch: usize,
    /// Aggregate scans in the kernel: once a source has sent 16 records to one destination,
    /// its probes set bits in a port bitmap the agent reads every drain tick instead of writing
    /// a record each (`sensor_common::aggregate`).
    pub aggregate: bool,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: XdpMode::Auto,
            ring_buffer_bytes: sensor_common::RECORDS_MAP_BYTES,
            dedup_window_ms: 1_000,
            source_budget: 200_000,
            cpu_budget: 4_000_000,
            wakeup_bytes: 64 * 1024,
            drain_interval_ms: 20,
            stats_interval_secs: 60,
            dedup_slots: sensor_common::DEDUP_SLOTS,
            source_slots: sensor_common::SOURCE_BUDGET_SLOTS,
            max_map_memory_mib: 64,
            drain_batch: 4_096,
            aggregate: true,
        }
    }
}

impl XdpConfig {
    /// The map sizes asked of the loader.
    #[must_use]
    pub fn map_request(&self) -> super::sizing::MapRequest {
        super::sizing::MapRequest {
            dedup_slots: self.dedup_slots,
            source_slots: self.source_slots,
            max_bytes: u64::from(self.max_map_memory_mib).saturating_mul(1 << 20),
        }
    }
}
